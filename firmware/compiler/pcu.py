"""PCU programs: readable descriptions, validated, packed with the HDL's config layouts.

The header counter chain, the body's functional unit, the tail, SIMD programs and
systolic GEMM programs. A program that cannot be expressed raises
:class:`PcuProgramError` naming the part and field.
"""

from dataclasses import dataclass

import numpy as np

from firmware import numerics as N
from hdl.counters import COUNTER_BITS, ChainConfig
from hdl.numerics.ops import ALU_OPS, Op
from hdl.params import RduParams
from hdl.pcu.config import (TILE_COUNT_BITS, Mode, ScaleSrc, Src, TailFunc, Unpack,
                            pcu_config_layout, systolic_interleave)
from hdl.pcu.reduce import IDENTITY, ReduceOp

from .counters import Counter, chain_steps, pack_chain

__all__ = ["PcuProgramError", "Counter", "pack_chain", "chain_steps", "alu_reference",
           "Tail", "tail_reference", "Stage", "SimdProgram", "pack_simd", "simd_reference",
           "unpack_reference",
           "reduce_reference", "accumulate_reference", "SystolicProgram", "pack_systolic",
           "systolic_reference", "systolic_tile_rows", "gemm_streams", "gemm_result",
           "gemm_reference"]

class PcuProgramError(ValueError):
    """A PCU program the hardware cannot run; the message names where and why."""


# --- body functional unit -------------------------------------------------------------

def alu_reference(op, a, b, c):
    """Bit-exact result of body ops ``op`` (array of ``Op`` codes) on uint32 operands."""
    return N.op_reference(op, a, b, c)


# --- tail -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tail:
    """The PCU tail (``hdl.pcu.config.TailConfig``), applied to every result vector.

    ``func`` (``"NONE"``, ``"EXP2"``, ``"RCP"``, ``"RSQRT"``) per lane; ``reduce`` the
    row reduction over the valid lanes (``"ADD"``/``"MAX"``) that ``scale="ROW"`` uses;
    ``row_fn`` a function of that reduction; ``scale``: ``None``, a number (an FP32
    immediate), ``"ROW"`` (``row_fn(reduce(func(x)))``, e.g. ``1 / sum`` for softmax) or
    ``"SIN"`` (``row_fn`` of the scalar input that goes with the vector: in SIMD mode the
    iteration's sin0, in systolic mode one sin0 value per output row);
    ``relu``: ``max(y, +0)``; ``bf16``: round the result to BF16.
    """
    func: str = "NONE"
    reduce: str | None = None
    row_fn: str = "NONE"
    scale: float | str | None = None
    relu: bool = False
    bf16: bool = False


def _enum(enum_cls, name, where, what, members=None):
    """The member of ``enum_cls`` (of ``members``, where only those are allowed) named
    ``name``."""
    allowed = {m.name: m for m in (enum_cls if members is None else members)}
    if not isinstance(name, str) or name not in allowed:
        raise PcuProgramError(f"{where}: unknown {what} {name!r}; {what}s: "
                              f"{', '.join(allowed)}")
    return allowed[name]


def _resolve_tail(tail, sout_reduce=None):
    """The ``TailConfig`` fields of ``tail`` as enums/ints. ``sout_reduce``: the reduction
    a program also emits on the scalar output (one tree serves both)."""
    if not isinstance(tail, Tail):
        raise PcuProgramError(f"tail: expected a Tail, got {tail!r}")
    func = _enum(TailFunc, tail.func, "tail.func", "function")
    row_fn = _enum(TailFunc, tail.row_fn, "tail.row_fn", "function")
    red = None if tail.reduce is None else _enum(ReduceOp, tail.reduce, "tail.reduce",
                                                   "reduction")
    if red is not None and sout_reduce is not None and red != sout_reduce:
        raise PcuProgramError(f"tail.reduce: {red.name} differs from the program's reduce "
                              f"{sout_reduce.name}; one reduction tree serves both")
    imm = 0
    if tail.scale is None:
        scale = ScaleSrc.NONE
    elif tail.scale == "ROW":
        if red is None:
            raise PcuProgramError("tail.scale: ROW scales by row_fn(reduce(...)) and needs "
                                  "tail.reduce")
        scale = ScaleSrc.ROW
    elif tail.scale == "SIN":
        scale = ScaleSrc.SIN
    elif isinstance(tail.scale, str):
        raise PcuProgramError(f"tail.scale: expected None, a number, 'ROW' or 'SIN', got "
                              f"{tail.scale!r}")
    else:
        scale, imm = ScaleSrc.IMM, _imm_bits(float(tail.scale), "tail.scale")
    if row_fn != TailFunc.NONE and scale not in (ScaleSrc.ROW, ScaleSrc.SIN):
        raise PcuProgramError("tail.row_fn: only used with scale='ROW' or 'SIN'")
    for flag in ("relu", "bf16"):
        if not isinstance(getattr(tail, flag), bool):
            raise PcuProgramError(f"tail.{flag}: expected True or False")
    return {"func": func, "red_op": red or sout_reduce or ReduceOp.ADD, "row_fn": row_fn,
            "scale": scale, "imm": imm, "relu": tail.relu, "bf16": tail.bf16}


def _func_reference(func, x):
    return {TailFunc.NONE: lambda v: v, TailFunc.EXP2: N.exp2, TailFunc.RCP: N.rcp,
            TailFunc.RSQRT: N.rsqrt}[func](np.asarray(x, np.uint32))


def tail_reference(cfg, vectors, mask, scalars=None):
    """Bit-exact tail (``hdl.pcu.tail.Tail``) of resolved ``cfg`` on ``vectors`` (n, lanes)
    with lane ``mask`` (n,) and, for ``ScaleSrc.SIN``, the ``scalars`` (n,) that go with
    them: returns (result vectors, row reductions)."""
    f = _func_reference(cfg["func"], vectors)
    row = reduce_reference(cfg["red_op"].value, f, mask)
    y = f
    if cfg["scale"] == ScaleSrc.IMM:
        y = N.fp32_mul(f, np.full_like(f, cfg["imm"]))
    elif cfg["scale"] in (ScaleSrc.ROW, ScaleSrc.SIN):
        src = row if cfg["scale"] == ScaleSrc.ROW else np.asarray(scalars, np.uint32)
        y = N.fp32_mul(f, np.broadcast_to(_func_reference(cfg["row_fn"], src)[:, None], f.shape))
    if cfg["relu"]:
        y = N.fp32_max(y, np.zeros_like(y))
    if cfg["bf16"]:
        y = N.fp32_to_bf16(y).astype(np.uint32) << 16
    return np.asarray(y, np.uint32), row


# --- SIMD programs --------------------------------------------------------------------

@dataclass(frozen=True)
class Stage:
    """One body stage: ``op`` (the name of one of ``hdl.numerics.ops.ALU_OPS``) on operands ``a``, ``b``, ``c`` (``Src``
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
    ``"sin0"``) and emits one output vector after the ``tail``. Unused trailing stages
    pass data through. Source ``RED`` is the cross-lane ``red`` reduction (``"MAX"`` or
    ``"ADD"``) of the iteration's vin0 over its valid lanes.
    ``reduce`` (``"ADD"`` or ``"MAX"``) emits each result's reduction across its valid
    lanes (after the tail function) on the scalar output, and then no vectors unless
    ``vector_out``; ``accumulate = (op, level)`` folds those values and emits one per
    window, a window ending when counter ``level`` wraps (the innermost counter's level:
    one value per innermost loop, e.g. a dot product per row).
    ``scalar_hold = level``: the scalar input is read once per window of counter
    ``level`` (one full run of that counter, as for ``accumulate``) instead of every
    iteration. ``tokens = level``: each such window waits for one control token.
    ``rows_out``: the scalar results leave on the vector output instead, one per packet
    (lane 0), so an AGCU can store them (it packs them densely into memory).
    ``unpack`` (``"HIGH"`` / ``"LOW"``): vin0 carries packed BF16, two per word; the
    program takes each word's high / low half (``"NONE"``: FP32 words).
    """
    counters: tuple
    stages: tuple
    inputs: frozenset = frozenset({"vin0"})
    reduce: str | None = None
    accumulate: tuple | None = None
    tail: Tail = Tail()
    red: str = "MAX"
    vector_out: bool | None = None
    scalar_hold: int | None = None
    tokens: int | None = None
    rows_out: bool = False
    unpack: str = "NONE"


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


def _level(program, value, where):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or \
            not 0 <= value < len(program.counters):
        raise PcuProgramError(f"{where}: level {value!r} is not a counter of this program "
                              f"(0..{len(program.counters) - 1})")
    return value


def _resolve_reduce(program: SimdProgram):
    """(reduce op or None, (acc op, level) or None) as enums, validated."""
    red = None if program.reduce is None else _enum(ReduceOp, program.reduce, "reduce",
                                                      "reduction")
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
        level = _level(program, level, "accumulate")
        acc = (_enum(ReduceOp, name, "accumulate", "reduction"), level)
    return red, acc


def _resolve(program: SimdProgram, params: RduParams):
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
                              f"{params.pcu_stages} (pcu_stages)")
    needs = {"VIN0": "vin0", "VIN1": "vin1", "SIN0": "sin0", "RED": "vin0"}
    stages = []
    for i, st in enumerate(program.stages):
        where = f"stage {i}"
        op = _enum(Op, st.op, where, "op", ALU_OPS)
        srcs = {}
        for field in ("a", "b", "c"):
            name = getattr(st, field)
            src = _enum(Src, name, f"{where}.{field}", "source")
            if name in needs and needs[name] not in program.inputs:
                raise PcuProgramError(f"{where}.{field}: source {name} is not available: "
                                      f"input {needs[name]} is not enabled")
            if name == "PREV" and i == 0 and "vin0" not in program.inputs:
                raise PcuProgramError(f"{where}.{field}: PREV of stage 0 is vector input 0, "
                                      f"which is not enabled")
            srcs[field] = src
        stages.append((op, srcs, _imm_bits(st.imm, f"{where}.imm")))
    while len(stages) < params.pcu_stages:
        stages.append((Op.PASS, {"a": Src.PREV, "b": Src.ZERO, "c": Src.ZERO}, 0))
    return stages


def _pack(params, **fields):
    """One PCU configuration word: ``fields`` over idle defaults."""
    idle_stage = {"op": Op.PASS, "a": Src.PREV, "b": Src.ZERO, "c": Src.ZERO, "imm": 0}
    config = {"mode": Mode.SIMD, "stage": [idle_stage] * params.pcu_stages, "vout_en": 1}
    config.update(fields)
    return pcu_config_layout(params).const(config).as_value().value


def pack_simd(program: SimdProgram, params: RduParams) -> int:
    """Config bits of ``program`` for one PCU (``pcu_config_layout``)."""
    stages = _resolve(program, params)
    red, acc = _resolve_reduce(program)
    tail = _resolve_tail(program.tail, red)
    hred = _enum(ReduceOp, program.red, "red", "reduction")
    hold = _level(program, program.scalar_hold, "scalar_hold")
    if hold is not None and "sin0" not in program.inputs:
        raise PcuProgramError("scalar_hold: input sin0 is not enabled")
    if program.tail.scale == "SIN" and "sin0" not in program.inputs:
        raise PcuProgramError("tail.scale: SIN scales by the scalar input, and input sin0 "
                              "is not enabled")
    tok = _level(program, program.tokens, "tokens")
    vout = (red is None) if program.vector_out is None else bool(program.vector_out)
    if not vout and red is None:
        raise PcuProgramError("vector_out: a program with no reduce must emit vectors")
    if program.rows_out and (red is None or vout):
        raise PcuProgramError("rows_out: the scalar results take the vector output; it "
                              "needs reduce and no vector_out")
    chain = ChainConfig.from_bits(pack_chain(program.counters, params, PcuProgramError))
    return _pack(
        params, chain=chain,
        stage=[{"op": op, "a": s["a"], "b": s["b"], "c": s["c"], "imm": imm}
               for op, s, imm in stages],
        vin_en=int("vin0" in program.inputs) | int("vin1" in program.inputs) << 1,
        sin_en=int("sin0" in program.inputs),
        sin_hold={"en": hold is not None, "level": hold or 0},
        hred=hred, tail=tail, vout_en=vout, reduce={"en": red is not None},
        row_vout=bool(program.rows_out), unpack=_unpack(program),
        acc={"en": acc is not None, "op": acc[0] if acc else ReduceOp.ADD,
             "level": acc[1] if acc else 0},
        tok={"en": tok is not None, "level": tok or 0})


def _unpack(program):
    unpack = _enum(Unpack, program.unpack, "unpack", "unpacking")
    if unpack != Unpack.NONE and "vin0" not in program.inputs:
        raise PcuProgramError("unpack: input vin0 is not enabled")
    return unpack


def unpack_reference(unpack, words):
    """Vector input 0's words as the PCU reads them under ``unpack`` (``Unpack``)."""
    w = np.asarray(words, np.uint32)
    if unpack == Unpack.HIGH:
        return w & np.uint32(0xFFFF0000)
    if unpack == Unpack.LOW:
        return (w << np.uint32(16)).astype(np.uint32)
    return w


def simd_reference(program: SimdProgram, params: RduParams, vin0=None, vin1=None, sin0=None):
    """What the PCU emits for ``program`` given its inputs: ``data`` (n, lanes) uint32,
    ``mask`` (n,) and ``last`` (n,) per iteration (the vector output), and for reducing
    programs the scalar output ``sdata`` and ``slast`` (one per iteration, or one per
    accumulation window). ``sin0`` holds one value per value read (per iteration, or
    per window with ``scalar_hold``)."""
    lanes = params.pcu_lanes
    stages = _resolve(program, params)
    red, acc = _resolve_reduce(program)
    tail = _resolve_tail(program.tail, red)
    steps = chain_steps(program.counters, lanes, PcuProgramError)
    n = len(steps)
    mask = np.array([s["mask"] for s in steps], np.uint32)
    zeros = np.zeros((n, lanes), np.uint32)
    v0 = zeros if vin0 is None else \
        unpack_reference(_unpack(program), np.asarray(vin0, np.uint32).reshape(n, lanes))
    v1 = zeros if vin1 is None else np.asarray(vin1, np.uint32).reshape(n, lanes)
    if program.scalar_hold is None:
        s0 = np.zeros(n, np.uint32) if sin0 is None else np.asarray(sin0, np.uint32).reshape(n)
    else:
        pops = np.array([(s["wrap"] >> program.scalar_hold) & 1 for s in steps], np.int64)
        index = np.concatenate([[0], np.cumsum(pops)[:-1]])
        s0 = np.zeros(int(pops.sum()), np.uint32) if sin0 is None else \
            np.asarray(sin0, np.uint32).reshape(-1)
        s0 = s0[index]
    ctr = np.array([s["lane"] for s in steps], dtype=np.int64).astype(np.uint32)
    hred = reduce_reference(ReduceOp[program.red].value, v0, mask)
    prev = v0
    for op, srcs, imm in stages:
        pick = {Src.PREV: prev, Src.VIN0: v0, Src.VIN1: v1, Src.CTR: ctr,
                Src.SIN0: np.broadcast_to(s0[:, None], (n, lanes)),
                Src.RED: np.broadcast_to(hred[:, None], (n, lanes)),
                Src.IMM: np.full((n, lanes), imm, np.uint32), Src.ZERO: zeros}
        prev = alu_reference(np.full((n, lanes), op.value), pick[srcs["a"]],
                             pick[srcs["b"]], pick[srcs["c"]])
    data, row = tail_reference(tail, prev, mask, s0)
    out = {"data": data, "mask": mask, "last": np.array([s["last"] for s in steps], np.uint32)}
    if red is not None:
        if acc is None:
            out["sdata"], out["slast"] = row, out["last"]
        else:
            ends = np.array([(s["wrap"] >> acc[1]) & 1 for s in steps], bool)
            out["sdata"] = accumulate_reference(acc[0].value, row, ends)
            out["slast"] = out["last"][ends]
    return out


def reduce_reference(op, vectors, mask):
    """Cross-lane reduction of each row of ``vectors`` over the lanes set in ``mask``, in
    the tree order of ``hdl.pcu.reduce.ReduceTree`` (pairs (0,1), (2,3), ... per level)."""
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
    op = ReduceOp(op)
    combine = N.fp32_add if op == ReduceOp.ADD else N.fp32_max
    out, acc = [], np.uint32(IDENTITY[op])
    for x, end in zip(np.asarray(values, np.uint32), ends):
        acc = combine(acc, x)
        if end:
            out.append(int(acc))
            acc = np.uint32(IDENTITY[op])
    return np.array(out, dtype=np.uint32)


# --- systolic programs ----------------------------------------------------------------

def systolic_tile_rows(params: RduParams) -> int:
    """Output rows of one systolic tile: accumulators per FU x stages."""
    return systolic_interleave() * params.pcu_stages


@dataclass(frozen=True)
class SystolicProgram:
    """A PCU program in systolic mode (``hdl.pcu.systolic``): ``tiles`` tiles of ``k``
    accumulation steps; each tile emits its first ``rows`` output rows (default: all
    ``systolic_tile_rows``) with the first ``cols`` lanes valid (default: all), through
    the ``tail``. A tail scaled by ``"SIN"`` takes one sin0 value per output row of each
    group of ``scale_tiles`` consecutive tiles (``tiles`` a multiple of it) and uses it for
    that row in every tile of the group."""
    k: int
    tiles: int = 1
    rows: int | None = None
    cols: int | None = None
    tail: Tail = Tail()
    scale_tiles: int = 1


def _resolve_systolic(program: SystolicProgram, params: RduParams):
    full = systolic_tile_rows(params)
    rows = full if program.rows is None else program.rows
    cols = params.pcu_lanes if program.cols is None else program.cols
    for name, value, hi in (("k", program.k, (1 << (COUNTER_BITS - 1)) - 1),
                            ("tiles", program.tiles, (1 << TILE_COUNT_BITS) - 1),
                            ("rows", rows, full), ("cols", cols, params.pcu_lanes),
                            ("scale_tiles", program.scale_tiles, (1 << TILE_COUNT_BITS) - 1)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
            raise PcuProgramError(f"systolic.{name}: {value!r} must be an integer in 1..{hi}")
    if program.tiles % program.scale_tiles:
        raise PcuProgramError(f"systolic.scale_tiles: {program.tiles} tiles are not whole "
                              f"groups of {program.scale_tiles}")
    tail = _resolve_tail(program.tail)
    return rows, cols, tail


def pack_systolic(program: SystolicProgram, params: RduParams) -> int:
    """Config bits of a systolic ``program`` for one PCU."""
    rows, cols, tail = _resolve_systolic(program, params)
    return _pack(params, mode=Mode.SYSTOLIC, vin_en=3, tail=tail,
                 systolic={"k": program.k, "tiles": program.tiles, "rows": rows,
                           "mask": (1 << cols) - 1, "scale_tiles": program.scale_tiles})


def systolic_reference(program: SystolicProgram, params: RduParams, vin0, vin1, sin0=None):
    """What the PCU emits in systolic mode for streams ``vin0`` (A: one vector per cycle,
    tiles x k x interleave), ``vin1`` (B: one vector per step, tiles x k) and, for a tail
    scaled by ``"SIN"``, ``sin0`` (one per output row of each tile group): ``data``
    (tiles x rows, lanes), ``mask``, ``last``. Each accumulator follows
    ``c = simd_fma(a, b, c)`` in step order from ``c = +0``."""
    rows, cols, tail = _resolve_systolic(program, params)
    S, L, P, K, T = (params.pcu_stages, params.pcu_lanes, systolic_interleave(), program.k,
                     program.tiles)
    a = np.asarray(vin0, np.uint32).reshape(T, K, P, L)[..., :S]    # [t, k, j, s]
    b = np.asarray(vin1, np.uint32).reshape(T, K, L)
    acc = np.zeros((T, P, S, L), np.uint32)
    for kk in range(K):
        acc = N.simd_fma(a[:, kk, :, :, None], b[:, kk, None, None, :], acc)
    out = acc.reshape(T, P * S, L)[:, :rows].reshape(T * rows, L)
    mask = np.full(T * rows, (1 << cols) - 1, np.uint32)
    scalars = None
    if sin0 is not None:
        g = program.scale_tiles
        scalars = np.broadcast_to(np.asarray(sin0, np.uint32).reshape(T // g, 1, rows),
                                  (T // g, g, rows)).reshape(-1)
    data, _ = tail_reference(tail, out, mask, scalars)
    last = np.zeros(T * rows, np.uint32)
    last[-1] = 1
    return {"data": data, "mask": mask, "last": last}


def gemm_streams(a, b, params: RduParams):
    """Lay out ``C = A @ B`` (FP32 bit patterns, A: M x K, B: K x N) for systolic mode:
    output tiles of ``systolic_tile_rows`` x lanes in row-major tile order, padded with
    zeros. Returns (program, vin0, vin1)."""
    a, b = np.asarray(a, np.uint32), np.asarray(b, np.uint32)
    (M, K), (K2, N) = a.shape, b.shape
    if K != K2:
        raise PcuProgramError(f"gemm: A is {M}x{K} but B is {K2}x{N}")
    S, L, P, TM = params.pcu_stages, params.pcu_lanes, systolic_interleave(), \
        systolic_tile_rows(params)
    mt, nt = -(-M // TM), -(-N // L)
    ap = np.zeros((mt * TM, K), np.uint32)
    ap[:M] = a
    bp = np.zeros((K, nt * L), np.uint32)
    bp[:, :N] = b
    vin0 = np.zeros((mt, nt, K, P, L), np.uint32)
    # Tile (i, n), step kk, slot j, lane s: A[i*TM + j*S + s, kk].
    vin0[..., :S] = ap.reshape(mt, P, S, K).transpose(0, 3, 1, 2)[:, None]
    vin1 = bp.reshape(K, nt, L).transpose(1, 0, 2)[None].repeat(mt, 0)
    program = SystolicProgram(k=K, tiles=mt * nt, rows=min(M, TM), cols=min(N, L))
    return program, vin0.reshape(-1, L), vin1.reshape(-1, L)


def gemm_result(rows, m, n, params: RduParams):
    """Reassemble ``C`` (m x n) from the rows a ``gemm_streams`` program emitted."""
    TM, L = systolic_tile_rows(params), params.pcu_lanes
    mt, nt = -(-m // TM), -(-n // L)
    tm = min(m, TM)
    tiles = np.asarray(rows, np.uint32).reshape(mt, nt, tm, L)
    return tiles.transpose(0, 2, 1, 3).reshape(mt * tm, nt * L)[:m, :n]


def gemm_reference(a, b):
    """``C = A @ B`` in the systolic array's order: per output, ``c = simd_fma(a, b, c)``
    over k ascending from ``c = +0``."""
    a, b = np.asarray(a, np.uint32), np.asarray(b, np.uint32)
    c = np.zeros((a.shape[0], b.shape[1]), np.uint32)
    for kk in range(a.shape[1]):
        c = N.simd_fma(a[:, kk, None], b[None, kk, :], c)
    return c
