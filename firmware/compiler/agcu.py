"""AGCU access programs: a strided tensor (up to 5-D, stride 0 = a repeated dimension) in
a memory segment -> the counter chain, run length and segment of one AGCU stream (load
or store), packed with ``hdl.agcu.config``. Errors name the problem."""

from dataclasses import dataclass

import numpy as np

from hdl.agcu.config import RUN_BITS, access_layout, agcu_config_layout, stores, streams
from hdl.counters import MAX_COUNTERS
from hdl.memory.config import MAX_BURST, MemoryMap

from .counters import Counter, chain_steps, check_chain, pack_chain

__all__ = ["AgcuProgramError", "Segment", "TensorAccess", "AgcuProgram", "lower_access",
           "access_words", "pack_agcu", "stream_extents", "run_bursts"]

#: A contiguous run and one counter per further dimension.
MAX_DIMS = MAX_COUNTERS + 1


class AgcuProgramError(ValueError):
    """An access the AGCU cannot make; the message says which field and why."""


@dataclass(frozen=True)
class Segment:
    """``size`` words of memory from global word address ``base``."""
    base: int
    size: int


@dataclass(frozen=True)
class TensorAccess:
    """Element ``(i0, .., i{d-1})`` (outermost first) is the word at segment-relative
    offset ``offset + sum(i_k * strides[k])``, visited in row-major order. A stride of 0
    repeats the inner dimensions (the same words again)."""
    shape: tuple
    strides: tuple
    offset: int = 0


@dataclass(frozen=True)
class AgcuProgram:
    counters: tuple          # firmware.compiler.counters.Counter, outermost first
    run: int                 # contiguous words per chain step
    addr_en: tuple = ()      # per counter: it moves the address (else it repeats)

    @property
    def words(self):
        n = self.run
        for c in self.counters:
            n *= len(range(c.min, c.max, c.stride))
        return n


def _check_access(a):
    if not isinstance(a.shape, tuple) or not isinstance(a.strides, tuple):
        raise AgcuProgramError("shape and strides must be tuples")
    if not 1 <= len(a.shape) <= MAX_DIMS:
        raise AgcuProgramError(f"shape {a.shape}: 1 to {MAX_DIMS} dimensions")
    if len(a.strides) != len(a.shape):
        raise AgcuProgramError(f"strides {a.strides} do not match shape {a.shape}")
    for k, (n, s) in enumerate(zip(a.shape, a.strides)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise AgcuProgramError(f"shape[{k}] = {n!r}: must be a positive integer")
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise AgcuProgramError(f"strides[{k}] = {s!r}: must be a number of words >= 0 "
                                   f"(the AGCU counters step forwards; 0 repeats)")
    if isinstance(a.offset, bool) or not isinstance(a.offset, int) or a.offset < 0:
        raise AgcuProgramError(f"offset {a.offset!r}: must be a non-negative word offset")


def lower_access(access: TensorAccess) -> AgcuProgram:
    """Runs and counters: the innermost dimension is a run if its stride is 1, and outer
    dimensions contiguous with the run are folded into it; every other dimension of
    size > 1 is a counter — one that moves the address, or (stride 0) one that only
    repeats. The offset rides on the outermost address counter."""
    _check_access(access)
    dims = list(zip(access.shape, access.strides))
    run = 1
    if dims[-1][1] == 1:
        run = dims.pop()[0]
        while dims and dims[-1][1] == run:
            run *= dims.pop()[0]
    dims = [(n, s) for n, s in dims if n > 1]
    if not any(s for _, s in dims):
        dims.insert(0, (1, 1))              # an address counter to carry the offset
    if len(dims) > MAX_COUNTERS:
        raise AgcuProgramError(f"access {access.shape} / {access.strides} needs {len(dims)} "
                               f"counters after folding contiguous dimensions; the AGCU "
                               f"chain has {MAX_COUNTERS}")
    if run >= 1 << RUN_BITS:
        raise AgcuProgramError(f"a contiguous run of {run} words exceeds the AGCU's "
                               f"{(1 << RUN_BITS) - 1}")
    counters = [Counter(0, n * s, s) if s else Counter(0, n, 1) for n, s in dims]
    addr_en = tuple(bool(s) for _, s in dims)
    k = addr_en.index(True)
    c = counters[k]
    counters[k] = Counter(access.offset, access.offset + c.max, c.stride)
    check_chain(counters, 1, AgcuProgramError, "AGCU ")
    return AgcuProgram(tuple(counters), run, addr_en)


def access_words(access: TensorAccess) -> np.ndarray:
    """Reference: the segment-relative word offset of every element, in visit order."""
    _check_access(access)
    idx = np.zeros(1, dtype=np.int64) + access.offset
    for n, s in zip(access.shape, access.strides):
        idx = (idx[:, None] + np.arange(n, dtype=np.int64)[None, :] * s).reshape(-1)
    return idx


def _run_starts(prog: AgcuProgram):
    return [sum(v for v, en in zip(st["value"], prog.addr_en) if en)
            for st in chain_steps(list(prog.counters), 1)]


def pack_agcu(params, *, segments, load=None, store=None, by_flow=(), hdr=None,
              load2=None, hdr2=None, check_bounds=True):
    """The AGCU config (``agcu_config_layout``) as an integer, and the lowered programs
    ({"load": AgcuProgram, "store": ...} of the streams used).

    ``load`` / ``store``: ``(TensorAccess, segment)`` of each stream used (``load``
    streams to ``vout`` with header ``hdr``, ``store`` from ``vin``); ``load2`` (with
    header ``hdr2``): the prologue of each iteration's load (read in full before
    ``load``'s, e.g. a layer's activations before its weights); ``by_flow``:
    ``(TensorAccess, segment, flow id)`` of each further store stream (``store2`` ..), the
    store of the packets that arrive with that flow id (``FabricRoutes.arrivals``;
    ``store`` takes the rest); ``segments`` is the
    segment table (:class:`Segment` list, at most ``agcu_segments``). With
    ``check_bounds`` an access reaching outside its segment is refused here; without,
    the AGCU's own check faults at run time (tests of the fault path)."""
    mm = MemoryMap(params)
    total = mm.beats * mm.words
    if not 1 <= len(segments) <= params.agcu_segments:
        raise AgcuProgramError(f"segment table of {len(segments)} entries; the AGCU has "
                               f"{params.agcu_segments}")
    for k, sg in enumerate(segments):
        if not (0 <= sg.base and 0 < sg.size and sg.base + sg.size <= total):
            raise AgcuProgramError(f"segment {k}: words {sg.base:#x} + {sg.size:#x} are not "
                                   f"inside memory ({total:#x} words)")
    if load is None and store is None:
        raise AgcuProgramError("an AGCU program needs a load or a store stream")
    if load2 is not None and load is None:
        raise AgcuProgramError("load2 is the prologue of the load stream; the AGCU program "
                               "needs a load stream beside it")
    extra = stores(params)[1:]
    if len(by_flow) > len(extra):
        raise AgcuProgramError(f"{1 + len(by_flow)} store streams; the AGCU has "
                               f"{params.agcu_stores} (agcu_stores)")
    if by_flow and store is None:
        raise AgcuProgramError("a store stream by flow id takes one flow of the store "
                               "traffic; the AGCU program needs a store stream beside it")
    flows = {}
    for name, (_, _, flow) in zip(extra, by_flow):
        if not 0 <= flow < params.rdn_flows:
            raise AgcuProgramError(f"{name}: flow id {flow} outside 0..{params.rdn_flows - 1}")
        if flow in flows.values():
            raise AgcuProgramError(f"{name}: flow id {flow} is taken by another store stream")
        flows[f"{name}_flow"] = flow
    layout = agcu_config_layout(params)
    seg_list = [{"base": s.base, "size": s.size} for s in segments]
    seg_list += [{"base": 0, "size": 0}] * (params.agcu_segments - len(seg_list))
    value = layout.const({"segments": seg_list, "hdr": hdr or {}, "hdr2": hdr2 or {},
                          **flows}).as_value().value
    progs = {}
    for name, stream in (("load", load), ("load2", load2), ("store", store),
                         *((n, (acc, seg)) for n, (acc, seg, _) in zip(extra, by_flow))):
        if stream is None:
            continue
        access, segment = stream
        prog = progs[name] = lower_access(access)
        if not 0 <= segment < len(segments):
            raise AgcuProgramError(f"{name}: segment {segment}: the table has "
                                   f"{len(segments)} entries")
        if check_bounds:
            hi = max(_run_starts(prog)) + prog.run
            if hi > segments[segment].size:
                raise AgcuProgramError(f"{name}: access {access.shape} / {access.strides} + "
                                       f"{access.offset} reaches word {hi - 1} of segment "
                                       f"{segment}, which has {segments[segment].size} words")
        acc = access_layout(params)
        fields = acc.const({"en": 1, "run": prog.run, "segment": segment,
                            "addr_en": sum(1 << i for i, e in enumerate(prog.addr_en) if e)}) \
            .as_value().value
        fields |= pack_chain(list(prog.counters), params, AgcuProgramError, "AGCU ",
                             lanes=1) << acc["chain"].offset
        value |= fields << layout[name].offset
    return value, progs


def stream_extents(params, value):
    """What each enabled stream of a packed AGCU config touches: {stream: (lo, hi,
    size)}, words ``lo .. hi - 1`` of its segment of ``size`` words (before kernel
    arguments move it)."""
    cfg = agcu_config_layout(params).from_bits(value)
    out = {}
    for name in streams(params):
        acc = cfg[name]
        if not acc.en:
            continue
        lo = hi = 0
        for i in range(acc.chain.depth):
            if acc.addr_en >> i & 1:
                c = acc.chain.ctr[i]
                lo += c.min
                hi += c.min + (c.max - 1 - c.min) // c.stride * c.stride
        out[name] = (lo, hi + acc.run, int(cfg.segments[acc.segment].size))
    return out


def run_bursts(words, phys, run):
    """Reference of the AGCU's splitter: the bursts ``(beat, len, lo, hi)`` of ``run``
    words from global word address ``phys`` with ``words`` words per beat — cut at
    MAX_BURST-beat block boundaries and at the end of the run."""
    out = []
    while run:
        beat, lo = divmod(phys, words)
        room = (MAX_BURST - beat % MAX_BURST) * words - lo
        take = min(run, room)
        nbeats = -(-(lo + take) // words)
        out.append((beat, nbeats - 1, lo, lo + take - (nbeats - 1) * words))
        phys += take
        run -= take
    return out
