"""PMU programs: bank-bit choice and the reference of the banked scratchpad, packed with
the HDL's config layouts (``hdl.pmu.config``). Errors name the field."""

from dataclasses import dataclass

import numpy as np

from hdl.counters import MAX_COUNTERS, ChainConfig
from hdl.params import RduParams
from hdl.pmu.config import (LANE_OFFSET_BITS, MAX_BUFFERS, addr_bits, address_config_layout,
                            bank_bits, bank_config_layout, pmu_config_layout)

from .counters import chain_steps, pack_chain

__all__ = ["PmuProgramError", "BankBits", "pack_bank_bits", "bank_of", "offset_of",
           "conflict_cycles", "choose_bank_bits", "AccessPattern", "pack_access",
           "access_reference", "PmuProgram", "pack_pmu", "pmu_reference"]


class PmuProgramError(ValueError):
    """A PMU program the hardware cannot run; the message names where and why."""


@dataclass(frozen=True)
class BankBits:
    """``bank = ((a >> shift) ^ (a >> fold_shift if fold_shift is not None else 0)) mod
    banks``. The default (``shift = 0``) interleaves consecutive words across banks."""
    shift: int = 0
    fold_shift: int | None = None


def _check(bits: BankBits, params: RduParams):
    a, nb = addr_bits(params), bank_bits(params)
    for name in ("shift", "fold_shift"):
        v = getattr(bits, name)
        if v is None and name == "fold_shift":
            continue
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= a - nb:
            raise PmuProgramError(f"bank_bits.{name}: {v!r} must be an integer in "
                                  f"0..{a - nb} (address bits {a}, bank bits {nb})")
    f = bits.fold_shift
    if f is not None and f < bits.shift + nb and bits.shift < f + nb:
        raise PmuProgramError(f"bank_bits.fold_shift: bits [{f}, {f + nb}) overlap the bank "
                              f"field [{bits.shift}, {bits.shift + nb}); the mapping would "
                              f"not be one-to-one")


def pack_bank_bits(bits: BankBits, params: RduParams) -> int:
    _check(bits, params)
    return bank_config_layout(params).const({
        "shift": bits.shift, "fold": bits.fold_shift is not None,
        "fold_shift": bits.fold_shift or 0}).as_value().value


def bank_of(addr, bits: BankBits, params: RduParams):
    a = np.asarray(addr, np.int64)
    b = a >> bits.shift
    if bits.fold_shift is not None:
        b = b ^ (a >> bits.fold_shift)
    return b & (params.pmu_banks - 1)


def offset_of(addr, bits: BankBits, params: RduParams):
    a = np.asarray(addr, np.int64)
    low = a & ((1 << bits.shift) - 1)
    return low | ((a >> (bits.shift + bank_bits(params))) << bits.shift)


def conflict_cycles(addrs, bits: BankBits, params: RduParams, mask=None):
    """Extra cycles a sequence of vector accesses (rows of ``addrs``) spends on bank
    conflicts: per vector, the most lanes any one bank serves, minus one."""
    b = bank_of(addrs, bits, params)
    if mask is not None:
        on = ((np.asarray(mask)[:, None] >> np.arange(b.shape[1])) & 1).astype(bool)
    else:
        on = np.ones(b.shape, bool)
    total = 0
    for row, valid in zip(b, on):
        if valid.any():
            total += int(np.bincount(row[valid], minlength=params.pmu_banks).max()) - 1
    return total


def choose_bank_bits(patterns, params: RduParams) -> BankBits:
    """Bank bits under which every access pattern (arrays of vector addresses, one row
    per access, or ``access_reference`` results, whose lane masks count) has the fewest
    conflict cycles; ties prefer no fold, then a low shift."""
    a, nb = addr_bits(params), bank_bits(params)
    best = None
    for fold in [None] + list(range(a - nb + 1)):
        for shift in range(a - nb + 1):
            bits = BankBits(shift, fold)
            try:
                _check(bits, params)
            except PmuProgramError:
                continue
            cost = sum(conflict_cycles(p["addr"], bits, params, p["mask"])
                       if isinstance(p, dict) else conflict_cycles(p, bits, params)
                       for p in patterns)
            if best is None or cost < best[0]:
                best = (cost, bits)
            if cost == 0 and fold is None:
                return bits
    return best[1]


_I32 = (-(1 << 31), (1 << 31) - 1)


@dataclass(frozen=True)
class AccessPattern:
    """An address pipeline program (``hdl.pmu.config.address_config_layout``): nested
    ``counters`` (``firmware.compiler.counters.Counter``; the innermost unrolled over
    the lanes), a ``base``, an optional offset per lane, and the predicate range
    ``[lo, hi)`` (default: the whole PMU). ``repeat``: outer counters (indices) that do
    not add to the address, e.g. a loop over tiles that all land in one buffer.
    ``scalar_base`` / ``scalar_hi``: every window of counter ``scalar_level`` reads from
    the pipeline's scalar input an offset added to ``base``, then its ``hi`` bound."""
    counters: tuple
    base: int = 0
    repeat: tuple = ()
    scalar_base: bool = False
    scalar_hi: bool = False
    scalar_level: int = 0
    lane_offset: tuple | None = None
    lo: int | None = None
    hi: int | None = None


def _resolve_access(pattern: AccessPattern, params: RduParams, where):
    if not pattern.counters:
        raise PmuProgramError(f"{where}.counters: an access pattern needs at least one counter")
    lanes = params.pcu_lanes
    offsets = tuple(pattern.lane_offset) if pattern.lane_offset is not None else (0,) * lanes
    if len(offsets) != lanes:
        raise PmuProgramError(f"{where}.lane_offset: {len(offsets)} offsets for {lanes} lanes")
    lim = 1 << (LANE_OFFSET_BITS - 1)
    for l, o in enumerate(offsets):
        if isinstance(o, bool) or not isinstance(o, int) or not -lim <= o < lim:
            raise PmuProgramError(f"{where}.lane_offset[{l}]: {o!r} must be an integer in "
                                  f"{-lim}..{lim - 1}")
    lo = 0 if pattern.lo is None else pattern.lo
    hi = params.pmu_banks * params.pmu_bank_words if pattern.hi is None else pattern.hi
    for name, v in (("base", pattern.base), ("lo", lo), ("hi", hi)):
        if isinstance(v, bool) or not isinstance(v, int) or not _I32[0] <= v <= _I32[1]:
            raise PmuProgramError(f"{where}.{name}: {v!r} must be an INT32")
    if lo >= hi:
        raise PmuProgramError(f"{where}: empty predicate range [{lo}, {hi})")
    if not isinstance(pattern.scalar_level, int) or \
            not 0 <= pattern.scalar_level < len(pattern.counters):
        raise PmuProgramError(f"{where}.scalar_level: {pattern.scalar_level!r} is not a "
                              f"counter (0..{len(pattern.counters) - 1})")
    for i in pattern.repeat:
        if isinstance(i, bool) or not isinstance(i, int) or \
                not 0 <= i < len(pattern.counters) - 1:
            raise PmuProgramError(f"{where}.repeat: {i!r} is not an outer counter "
                                  f"(0..{len(pattern.counters) - 2})")
    return offsets, lo, hi


def pack_access(pattern: AccessPattern, params: RduParams, where="access") -> int:
    """Config bits of an address pipeline; errors name ``where`` and the field."""
    offsets, lo, hi = _resolve_access(pattern, params, where)
    chain = ChainConfig.from_bits(pack_chain(pattern.counters, params, PmuProgramError,
                                             f"{where}."))
    return address_config_layout(params).const({
        "chain": chain, "base": pattern.base, "lane_offset": list(offsets), "lo": lo,
        "ctr_en": sum(1 << i for i in range(MAX_COUNTERS) if i not in pattern.repeat),
        "dyn": {"base": pattern.scalar_base, "hi": pattern.scalar_hi,
                "level": pattern.scalar_level},
        "hi": hi}).as_value().value


def access_reference(pattern: AccessPattern, params: RduParams, where="access",
                     scalars=None):
    """The steps an address pipeline emits: ``addr`` (n, lanes) int64, ``mask``,
    ``wrap`` and ``last`` (n,). ``scalars``: what its scalar input supplies, in order
    (per window: the base offset, then hi, as the pattern reads them)."""
    offsets, lo, hi = _resolve_access(pattern, params, where)
    steps = chain_steps(pattern.counters, params.pcu_lanes, PmuProgramError, f"{where}.")
    d, lanes = len(pattern.counters), params.pcu_lanes
    feed = iter([] if scalars is None else [int(np.int32(np.uint32(x))) for x in scalars])
    outer = [i for i in range(d - 1) if i not in pattern.repeat]
    addr, mask, fresh = [], [], True
    off, hi_now = 0, hi
    for s in steps:
        if fresh:
            try:
                off = next(feed) if pattern.scalar_base else 0
                hi_now = next(feed) if pattern.scalar_hi else hi
            except StopIteration:
                raise PmuProgramError(f"{where}: the scalar input ran out") from None
        row = [pattern.base + off + sum(s["value"][i] for i in outer) + s["lane"][l] +
               offsets[l] for l in range(lanes)]
        addr.append(row)
        mask.append(sum(1 << l for l in range(lanes)
                        if s["mask"] >> l & 1 and lo <= row[l] < hi_now))
        fresh = bool(s["wrap"] >> pattern.scalar_level & 1)
    return {"addr": np.array(addr, np.int64), "mask": np.array(mask, np.int64),
            "wrap": np.array([s["wrap"] for s in steps]),
            "value": np.array([s["value"] for s in steps]),
            "last": np.array([s["last"] for s in steps], np.int64)}


@dataclass(frozen=True)
class PmuProgram:
    """A PMU program (``hdl.pmu.config.pmu_config_layout``): bank bits, the ``write`` and
    ``read`` access patterns (addresses inside one buffer), and ``nbuf`` buffers of
    ``buf_words`` words (default: the capacity divided evenly). A write window is one run
    of write counter ``w_level`` and fills a buffer; a read window (``r_level``) drains
    one; both sides have the same number of windows. ``read_flow``: a read counter whose
    value, shifted right by ``read_flow_shift``, is the flow id each read vector leaves
    with (default: all leave by flow 0). ``skip_empty``: read steps with no lane on send
    nothing (else an all-off vector)."""
    write: AccessPattern
    read: AccessPattern
    bank_bits: BankBits = BankBits()
    nbuf: int = 1
    buf_words: int | None = None
    w_level: int = 0
    r_level: int = 0
    read_flow: int | None = None
    read_flow_shift: int = 0
    skip_empty: bool = False


def _windows(steps, level):
    return int(sum((w >> level) & 1 for w in steps["wrap"]))


def _resolve_pmu(program: PmuProgram, params: RduParams, wsin=None, rsin=None):
    cap = params.pmu_banks * params.pmu_bank_words
    if isinstance(program.nbuf, bool) or program.nbuf not in range(1, MAX_BUFFERS + 1):
        raise PmuProgramError(f"nbuf: {program.nbuf!r} must be 1..{MAX_BUFFERS}")
    buf = cap // program.nbuf if program.buf_words is None else program.buf_words
    if isinstance(buf, bool) or not isinstance(buf, int) or not 1 <= buf <= cap // program.nbuf:
        raise PmuProgramError(f"buf_words: {buf!r} x {program.nbuf} buffers must fit the "
                              f"PMU's {cap} words")
    sides = {}
    for name, pattern, level, sin in (("write", program.write, program.w_level, wsin),
                                      ("read", program.read, program.r_level, rsin)):
        if not isinstance(level, int) or not 0 <= level < len(pattern.counters):
            raise PmuProgramError(f"{name[0]}_level: {level!r} is not a counter of the "
                                  f"{name} pattern")
        dynamic = pattern.scalar_base or pattern.scalar_hi
        if dynamic and sin is None:
            # Addresses depend on run-time scalars: only the static fields are checked.
            _resolve_access(pattern, params, name)
            steps = {"wrap": [s["wrap"] for s in chain_steps(
                pattern.counters, params.pcu_lanes, PmuProgramError, f"{name}.")]}
            sides[name] = (steps, _windows(steps, level))
            continue
        steps = access_reference(pattern, params, name, sin)
        on = ((steps["mask"][:, None] >> np.arange(params.pcu_lanes)) & 1).astype(bool)
        used = steps["addr"][on]
        if used.size and (used.min() < 0 or used.max() >= buf):
            raise PmuProgramError(f"{name}: addresses {used.min()}..{used.max()} leave the "
                                  f"buffer [0, {buf}) (use lo/hi to drop lanes)")
        sides[name] = (steps, _windows(steps, level))
    if program.read_flow is not None:
        from hdl.packet import flow_bits
        rf = program.read_flow
        if isinstance(rf, bool) or not isinstance(rf, int) or \
                not 0 <= rf < len(program.read.counters):
            raise PmuProgramError(f"read_flow: {rf!r} is not a counter of the read pattern")
        c, sh = program.read.counters[rf], program.read_flow_shift
        if isinstance(sh, bool) or not isinstance(sh, int) or not 0 <= sh < 32:
            raise PmuProgramError(f"read_flow_shift: {sh!r} must be 0..31")
        if c.min < 0 or (c.max - 1) >> sh >= 1 << flow_bits(params):
            raise PmuProgramError(f"read_flow: counter {rf} runs {c.min}..{c.max - 1}, "
                                  f">> {sh} not flow ids 0..{(1 << flow_bits(params)) - 1}")
    if sides["write"][1] != sides["read"][1]:
        raise PmuProgramError(f"windows: the write pattern fills {sides['write'][1]} buffers, "
                              f"the read pattern drains {sides['read'][1]}")
    return buf, sides


def pack_pmu(program: PmuProgram, params: RduParams) -> int:
    buf, _ = _resolve_pmu(program, params)
    return pmu_config_layout(params).const({
        "banks": bank_config_layout(params).from_bits(pack_bank_bits(program.bank_bits, params)),
        "write": address_config_layout(params).from_bits(pack_access(program.write, params,
                                                                     "write")),
        "read": address_config_layout(params).from_bits(pack_access(program.read, params,
                                                                    "read")),
        "nbuf": program.nbuf, "buf_words": buf, "w_level": program.w_level,
        "r_level": program.r_level,
        "r_flow": {"en": program.read_flow is not None, "level": program.read_flow or 0,
                   "shift": program.read_flow_shift},
        "r_skip": bool(program.skip_empty),
    }).as_value().value


def pmu_reference(program: PmuProgram, params: RduParams, vin, vin_mask=None, wsin=None,
                  rsin=None):
    """The vectors a PMU emits for input vectors ``vin`` (n, lanes) and the scalar inputs
    of its pipelines: for each window, the write window's stores, then the read window's
    loads. Lanes a read leaves off read as 0 here (don't-care in hardware); ``flow``: the
    flow id of each vector."""
    buf, sides = _resolve_pmu(program, params, wsin if wsin is not None else [],
                              rsin if rsin is not None else [])
    (ws, _), (rs, _) = sides["write"], sides["read"]
    lanes = params.pcu_lanes
    vin = np.asarray(vin, np.uint32)
    vm = np.full(len(vin), (1 << lanes) - 1) if vin_mask is None else np.asarray(vin_mask)
    mem = np.zeros(buf * program.nbuf, np.uint32)
    out, masks, flows = [], [], []
    wi = ri = 0
    final_sent = True
    for window in range(_windows(ws, program.w_level)):
        base = (window % program.nbuf) * buf
        while True:
            m = int(ws["mask"][wi]) & int(vm[wi])
            for l in range(lanes):
                if m >> l & 1:
                    mem[base + ws["addr"][wi, l]] = vin[wi, l]
            wi += 1
            if ws["wrap"][wi - 1] >> program.w_level & 1:
                break
        while True:
            m = int(rs["mask"][ri])
            if m or not program.skip_empty:
                out.append([mem[base + rs["addr"][ri, l]] if m >> l & 1 else 0
                            for l in range(lanes)])
                masks.append(m)
                flows.append(0 if program.read_flow is None else
                             int(rs["value"][ri][program.read_flow]) >> program.read_flow_shift)
            final_sent = bool(m) or not program.skip_empty
            ri += 1
            if rs["wrap"][ri - 1] >> program.r_level & 1:
                break
    last = np.zeros(len(out), np.int64)
    if out and final_sent:      # a dropped final step takes `last` with it
        last[-1] = 1
    return {"data": np.array(out, np.uint32), "mask": np.array(masks), "last": last,
            "flow": np.array(flows)}
