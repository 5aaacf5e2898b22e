"""PCU programs: readable descriptions, validated, packed with the HDL's config layouts.

So far: the header counter chain, the body's functional unit, and SIMD programs. A
program that cannot be expressed raises
:class:`PcuProgramError` naming the part and field.
"""

from dataclasses import dataclass

import numpy as np

from hdl.params import RduParams
from hdl.pcu.config import COUNTER_BITS, MAX_COUNTERS, ChainConfig

__all__ = ["PcuProgramError", "Counter", "pack_chain", "chain_steps", "alu_reference",
           "Stage", "SimdProgram", "pack_simd", "simd_reference", "reduce_reference",
           "accumulate_reference"]

_SMIN, _SMAX = -(1 << (COUNTER_BITS - 1)), (1 << (COUNTER_BITS - 1)) - 1
_STRIDE_MAX = (1 << (COUNTER_BITS - 1)) - 1


class PcuProgramError(ValueError):
    """A PCU program the hardware cannot run; the message names where and why."""


@dataclass(frozen=True)
class Counter:
    """``for v in range(min, max, stride)``."""
    min: int
    max: int
    stride: int = 1


def _check_chain(counters, lanes):
    counters = list(counters)
    if len(counters) > MAX_COUNTERS:
        raise PcuProgramError(f"counters: {len(counters)} nested counters, the header has "
                              f"{MAX_COUNTERS}")
    for i, c in enumerate(counters):
        where = f"counter {i}" + (" (innermost)" if i == len(counters) - 1 else "")
        for name in ("min", "max", "stride"):
            if not isinstance(getattr(c, name), int):
                raise PcuProgramError(f"{where}: {name} must be an integer, got "
                                      f"{getattr(c, name)!r}")
        if not (_SMIN <= c.min <= _SMAX and _SMIN <= c.max <= _SMAX):
            raise PcuProgramError(f"{where}: range [{c.min}, {c.max}) exceeds INT32")
        if c.stride < 1 or c.stride > _STRIDE_MAX:
            raise PcuProgramError(f"{where}: stride {c.stride} must be in 1..{_STRIDE_MAX}")
        if c.min >= c.max:
            raise PcuProgramError(f"{where}: empty range [{c.min}, {c.max})")
        step = c.stride * (lanes if i == len(counters) - 1 else 1)
        if c.max - 1 + step + c.stride * (lanes - 1) > _SMAX:
            raise PcuProgramError(f"{where}: values past max overflow INT32 "
                                  f"(max {c.max}, step {step})")
    return counters


def pack_chain(counters, params: RduParams) -> int:
    """Config bits of a counter chain (``ChainConfig``); ``[]`` leaves it unused."""
    counters = _check_chain(counters, params.pcu_lanes)
    ctr = [{"min": c.min, "max": c.max, "stride": c.stride} for c in counters]
    ctr += [{"min": 0, "max": 0, "stride": 0}] * (MAX_COUNTERS - len(ctr))
    return ChainConfig.const({"depth": len(counters), "ctr": ctr}).as_value().value


def chain_steps(counters, lanes):
    """Reference: the elements a chain emits, as dicts of ``value`` (list), ``lane``
    (list), ``mask`` (int), ``wrap`` (int) and ``last`` (bool)."""
    counters = _check_chain(counters, lanes)
    d = len(counters)
    if d == 0:
        return []
    ranges = [range(c.min, c.max, c.stride * (lanes if i == d - 1 else 1))
              for i, c in enumerate(counters)]
    steps = []

    def walk(level, prefix):
        r = ranges[level]
        for k, v in enumerate(r):
            values = prefix + [v]
            if level + 1 < d:
                walk(level + 1, values)
                continue
            inner = counters[-1]
            lane = [v + l * inner.stride for l in range(lanes)]
            mask = sum(1 << l for l in range(lanes) if lane[l] < inner.max)
            # wrap[i]: counters i..d-1 are all at their last value.
            at_last = [values[j] == ranges[j][-1] for j in range(d)]
            wrap = sum(1 << i for i in range(d) if all(at_last[i:]))
            steps.append({"value": values + [0] * (MAX_COUNTERS - d), "lane": lane,
                          "mask": mask, "wrap": wrap, "last": bool(wrap & 1)})

    walk(0, [])
    return steps


# --- body functional unit -------------------------------------------------------------

def alu_reference(op, a, b, c):
    """Bit-exact result of ``AluOp`` ``op`` (array of opcodes) on uint32 operands."""
    from firmware import numerics as N
    from hdl.pcu.alu import AluOp
    op, a, b, c = (np.asarray(x, np.uint32) for x in (op, a, b, c))
    table = {
        AluOp.PASS: lambda: a,
        AluOp.FMA: lambda: N.simd_fma(a, b, c),
        AluOp.ADD: lambda: N.fp32_add(a, b),
        AluOp.SUB: lambda: N.fp32_sub(a, b),
        AluOp.MUL: lambda: N.fp32_mul(a, b),
        AluOp.MAX: lambda: N.fp32_max(a, b),
        AluOp.MIN: lambda: N.fp32_min(a, b),
        AluOp.CMP_EQ: lambda: N.fp32_cmp(a, b, N.CmpOp.EQ),
        AluOp.CMP_LT: lambda: N.fp32_cmp(a, b, N.CmpOp.LT),
        AluOp.CMP_LE: lambda: N.fp32_cmp(a, b, N.CmpOp.LE),
        AluOp.SELECT: lambda: N.select(c, a, b),
        AluOp.AND: lambda: a & b,
        AluOp.OR: lambda: a | b,
        AluOp.XOR: lambda: a ^ b,
        AluOp.SHL: lambda: N.shl(a, b),
        AluOp.SHR: lambda: N.shr(a, b),
        AluOp.IADD: lambda: N.i32_add(a, b),
        AluOp.IMUL: lambda: N.i32_mul(a, b),
        AluOp.ILT: lambda: N.i32_lt(a, b),
    }
    out = np.zeros(op.shape, dtype=np.uint32)
    for code, fn in table.items():
        sel = op == code.value
        if sel.any():
            out[sel] = np.broadcast_to(fn(), op.shape)[sel]
    return out


# --- SIMD programs --------------------------------------------------------------------

@dataclass(frozen=True)
class Stage:
    """One body stage: ``op`` (an ``AluOp`` name) on operands ``a``, ``b``, ``c`` (``Src``
    names); ``imm`` is a float (stored as FP32) or an int (stored as INT32)."""
    op: str
    a: str = "PREV"
    b: str = "ZERO"
    c: str = "ZERO"
    imm: float | int = 0


@dataclass(frozen=True)
class SimdProgram:
    """A PCU program in SIMD mode.

    ``counters`` set the iterations (the innermost is unrolled over the lanes); each
    iteration takes one element from each input in ``inputs`` (``"vin0"``, ``"vin1"``,
    ``"sin0"``) and emits one output vector. Unused trailing stages pass data through.
    ``reduce`` (``"ADD"`` or ``"MAX"``) reduces each result vector across its valid lanes
    onto the scalar output instead; ``accumulate = (op, level)`` then folds those values
    and emits one per window, a window ending when counter ``level`` wraps (the innermost
    counter's level: one value per innermost loop, e.g. a dot product per row).
    """
    counters: tuple
    stages: tuple
    inputs: frozenset = frozenset({"vin0"})
    reduce: str | None = None
    accumulate: tuple | None = None


def _imm_bits(imm, where):
    if isinstance(imm, bool) or not isinstance(imm, (int, float)):
        raise PcuProgramError(f"{where}: imm must be a number, got {imm!r}")
    if isinstance(imm, int):
        if not -(1 << 31) <= imm < (1 << 32):
            raise PcuProgramError(f"{where}: imm {imm} does not fit 32 bits")
        return imm & 0xFFFFFFFF
    with np.errstate(over="ignore"):
        value = np.float32(imm)
    if not np.isfinite(value) and np.isfinite(imm):
        raise PcuProgramError(f"{where}: imm {imm} overflows FP32")
    return int(value.view(np.uint32))


def _resolve_reduce(program: SimdProgram):
    """(reduce op or None, (acc op, level) or None) as enums, validated."""
    from hdl.pcu.reduce import ReduceOp
    def op_of(name, where):
        if name not in ReduceOp.__members__:
            raise PcuProgramError(f"{where}: unknown reduction {name!r}; reductions: "
                                  f"{', '.join(ReduceOp.__members__)}")
        return ReduceOp[name]
    red = None if program.reduce is None else op_of(program.reduce, "reduce")
    acc = None
    if program.accumulate is not None:
        if red is None:
            raise PcuProgramError("accumulate: needs reduce (the accumulator folds the "
                                  "per-iteration reductions)")
        try:
            name, level = program.accumulate
        except (TypeError, ValueError):
            raise PcuProgramError(f"accumulate: expected (op, level), got "
                                  f"{program.accumulate!r}") from None
        if not isinstance(level, int) or not 0 <= level < len(program.counters):
            raise PcuProgramError(f"accumulate: level {level!r} is not a counter of this "
                                  f"program (0..{len(program.counters) - 1})")
        acc = (op_of(name, "accumulate"), level)
    return red, acc


def _resolve(program: SimdProgram, params: RduParams):
    from hdl.pcu.alu import AluOp
    from hdl.pcu.config import Src
    known_inputs = {"vin0", "vin1", "sin0"}
    bad = set(program.inputs) - known_inputs
    if bad:
        raise PcuProgramError(f"inputs: unknown input {sorted(bad)[0]!r}; the PCU has "
                              f"{sorted(known_inputs)}")
    if not program.counters:
        raise PcuProgramError("counters: a SIMD program needs at least one counter "
                              "(the iteration count)")
    if len(program.stages) > params.pcu_stages:
        raise PcuProgramError(f"stages: {len(program.stages)} stages, the PCU has "
                              f"{params.pcu_stages}")
    needs = {"VIN0": "vin0", "VIN1": "vin1", "SIN0": "sin0"}
    stages = []
    for i, st in enumerate(program.stages):
        where = f"stage {i}"
        if st.op not in AluOp.__members__:
            raise PcuProgramError(f"{where}: unknown op {st.op!r}; ops: "
                                  f"{', '.join(AluOp.__members__)}")
        srcs = {}
        for field in ("a", "b", "c"):
            name = getattr(st, field)
            if name not in Src.__members__:
                raise PcuProgramError(f"{where}.{field}: unknown source {name!r}; sources: "
                                      f"{', '.join(Src.__members__)}")
            if name in needs and needs[name] not in program.inputs:
                raise PcuProgramError(f"{where}.{field}: source {name} is not available: "
                                      f"input {needs[name]} is not enabled")
            if name == "PREV" and i == 0 and "vin0" not in program.inputs:
                raise PcuProgramError(f"{where}.{field}: PREV of stage 0 is vector input 0, "
                                      f"which is not enabled")
            srcs[field] = Src[name]
        stages.append((AluOp[st.op], srcs, _imm_bits(st.imm, f"{where}.imm")))
    while len(stages) < params.pcu_stages:
        stages.append((AluOp.PASS, {"a": Src.PREV, "b": Src.ZERO, "c": Src.ZERO}, 0))
    return stages


def pack_simd(program: SimdProgram, params: RduParams) -> int:
    """Config bits of ``program`` for one PCU (``pcu_config_layout``)."""
    from hdl.pcu.config import pcu_config_layout
    from hdl.pcu.reduce import ReduceOp
    stages = _resolve(program, params)
    red, acc = _resolve_reduce(program)
    chain = ChainConfig.from_bits(pack_chain(program.counters, params))
    layout = pcu_config_layout(params)
    return layout.const({
        "chain": chain,
        "stage": [{"op": op, "a": s["a"], "b": s["b"], "c": s["c"], "imm": imm}
                  for op, s, imm in stages],
        "vin_en": int("vin0" in program.inputs) | int("vin1" in program.inputs) << 1,
        "sin_en": int("sin0" in program.inputs),
        "reduce": {"en": red is not None, "op": red or ReduceOp.ADD},
        "acc": {"en": acc is not None, "op": acc[0] if acc else ReduceOp.ADD,
                "level": acc[1] if acc else 0},
    }).as_value().value


def simd_reference(program: SimdProgram, params: RduParams, vin0=None, vin1=None, sin0=None):
    """What the PCU emits for ``program`` given its inputs: ``data`` (n, lanes) uint32,
    ``mask`` (n,) and ``last`` (n,) per iteration (the vector output), and for reducing
    programs the scalar output ``sdata`` and ``slast`` (one per iteration, or one per
    accumulation window)."""
    from hdl.pcu.config import Src
    lanes = params.pcu_lanes
    stages = _resolve(program, params)
    steps = chain_steps(program.counters, lanes)
    n = len(steps)
    zeros = np.zeros((n, lanes), np.uint32)
    v0 = zeros if vin0 is None else np.asarray(vin0, np.uint32).reshape(n, lanes)
    v1 = zeros if vin1 is None else np.asarray(vin1, np.uint32).reshape(n, lanes)
    s0 = np.zeros(n, np.uint32) if sin0 is None else np.asarray(sin0, np.uint32).reshape(n)
    ctr = np.array([s["lane"] for s in steps], dtype=np.int64).astype(np.uint32)
    prev = v0
    for op, srcs, imm in stages:
        pick = {Src.PREV: prev, Src.VIN0: v0, Src.VIN1: v1, Src.CTR: ctr,
                Src.SIN0: np.broadcast_to(s0[:, None], (n, lanes)),
                Src.IMM: np.full((n, lanes), imm, np.uint32), Src.ZERO: zeros}
        prev = alu_reference(np.full((n, lanes), op.value), pick[srcs["a"]],
                             pick[srcs["b"]], pick[srcs["c"]])
    out = {"data": prev, "mask": np.array([s["mask"] for s in steps], np.uint32),
           "last": np.array([s["last"] for s in steps], np.uint32)}
    red, acc = _resolve_reduce(program)
    if red is not None:
        per_iter = reduce_reference(red.value, out["data"], out["mask"])
        if acc is None:
            out["sdata"], out["slast"] = per_iter, out["last"]
        else:
            ends = np.array([(s["wrap"] >> acc[1]) & 1 for s in steps], bool)
            out["sdata"] = accumulate_reference(acc[0].value, per_iter, ends)
            out["slast"] = out["last"][ends]
    return out


def reduce_reference(op, vectors, mask):
    """Cross-lane reduction of each row of ``vectors`` over the lanes set in ``mask``, in
    the tree order of ``hdl.pcu.reduce.ReduceTree`` (pairs (0,1), (2,3), ... per level)."""
    from firmware import numerics as N
    from hdl.pcu.reduce import IDENTITY, ReduceOp
    op = ReduceOp(op)
    v = np.asarray(vectors, np.uint32)
    lanes = v.shape[1]
    bits = (np.asarray(mask, np.uint32)[:, None] >> np.arange(lanes)) & 1
    v = np.where(bits == 1, v, np.uint32(IDENTITY[op]))
    combine = N.fp32_add if op == ReduceOp.ADD else N.fp32_max
    while v.shape[1] > 1:
        v = combine(v[:, 0::2], v[:, 1::2])
    return v[:, 0]


def accumulate_reference(op, values, ends):
    """Window results of the stream accumulator: ``op`` folded over ``values`` in order,
    starting from the identity, a window closing at each set ``ends``."""
    from firmware import numerics as N
    from hdl.pcu.reduce import IDENTITY, ReduceOp
    op = ReduceOp(op)
    combine = N.fp32_add if op == ReduceOp.ADD else N.fp32_max
    out, acc = [], np.uint32(IDENTITY[op])
    for x, end in zip(np.asarray(values, np.uint32), ends):
        acc = combine(acc, x)
        if end:
            out.append(int(acc))
            acc = np.uint32(IDENTITY[op])
    return np.array(out, dtype=np.uint32)
