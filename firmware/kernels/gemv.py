"""GEMV for decode: ``y = W x`` with the weights streamed from HBM through every AGCU.

Dataflow (memory-bound by design: a decode step reads every weight once and does one
multiply-add with it): ``W`` (``n`` outputs x ``k`` inputs, row-major, each row padded to
whole vectors) is split by rows into one share per AGCU; share ``p`` streams through
AGCU ``p``'s load stream into PCU ``p``'s ``vin0``, a vector per cycle — every AGCU's
load stream, so the whole HBM bandwidth. ``x`` (``k`` words, padded likewise) is read by
AGCU 0's ``load2``, the prologue of each iteration's load (read in full before the
weights, which therefore never overtake it on their shared path), and multicast to one
PMU per PCU that replays it for every row on ``vin1``. Each PCU multiplies lane by lane,
reduces each product vector across its lanes and accumulates a row's reductions: one
``y`` value per row, sent as a one-lane packet (``rows_out``) to AGCU ``p``'s store
stream, which packs them densely into memory. Kernel looping runs layer after layer as
one pipelined run (weights, ``x`` and ``y`` stepped by the AGCU strides): the next
layer's ``x`` and weights are read while this one drains.
"""

from dataclasses import dataclass

import numpy as np

from firmware.compiler.agcu import TensorAccess
from firmware.compiler.counters import Counter
from firmware.compiler.pcu import SimdProgram, Stage, pack_simd, simd_reference
from firmware.compiler.place import VFlow, agcu, place_and_route, port
from firmware.compiler.pmu import AccessPattern, PmuProgram, pack_pmu
from firmware.compiler.program import kernel_program, stream_words
from hdl.grid import grid_coords

from .pipelines import agcu_programs

__all__ = ["GemvShape", "Gemv", "compile_gemv"]


@dataclass(frozen=True)
class GemvShape:
    """``n`` outputs, ``k`` inputs, over ``shares`` PCUs; ``packed``: the weights are BF16
    stored two per word, one word feeding two PCUs (each takes its half), so each AGCU's
    stream carries two shares."""
    n: int
    k: int
    lanes: int
    shares: int
    packed: bool = False

    @classmethod
    def of(cls, params, n, k, shares=None, packed=False):
        for name, v in (("n", n), ("k", k)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"gemv: {name} = {v!r} must be a positive integer")
        per = 2 if packed else 1
        units = min(len(grid_coords(params, "pcu")), len(grid_coords(params, "pmu")))
        room = min(params.agcus * per, units // per * per, -(-n // per) * per)
        shares = room if shares is None else shares
        if isinstance(shares, bool) or not isinstance(shares, int) or \
                not per <= shares <= room or shares % per:
            what = "an even number" if packed else "a number"
            raise ValueError(f"gemv: {shares!r} shares; {what} in {per} .. {room} (a PCU "
                             f"and a PMU each, {per} per AGCU, at most one per output row)")
        s = cls(n, k, params.pcu_lanes, shares, packed)
        if 2 * s.kp > params.pmu_banks * params.pmu_bank_words:
            raise ValueError(f"gemv: x of {k} words (two buffers of {s.kp}) does not fit a "
                             f"PMU of {params.pmu_banks * params.pmu_bank_words} words")
        return s

    @property
    def kp(self):
        """Words per row in memory: ``k`` padded to whole vectors."""
        return -(-self.k // self.lanes) * self.lanes

    @property
    def streams(self):
        """Weight streams: one per AGCU used."""
        return self.shares // 2 if self.packed else self.shares

    def stream_of(self, p):
        """(AGCU stream, its store stream name) of share ``p``."""
        if not self.packed:
            return p, "store"
        return p // 2, ("store", "store2")[p % 2]

    def rows(self, p):
        """(first row, rows) of share ``p`` (packed: all alike, the last padded)."""
        if self.packed:
            per = -(-self.n // self.shares)
            return p * per, per
        base, extra = divmod(self.n, self.shares)
        return p * base + min(p, extra), base + (p < extra)

    @property
    def y_words(self):
        """Words of y in memory (packed: the padded rows' results too)."""
        return self.rows(self.shares - 1)[0] + self.rows(self.shares - 1)[1]

    @property
    def w_words(self):
        return self.y_words * self.kp // (2 if self.packed else 1)

    def stream_words(self, s):
        """(first word, words) of weight stream ``s``."""
        shares = (2 * s, 2 * s + 1) if self.packed else (s,)
        r0 = self.rows(shares[0])[0]
        rows = sum(self.rows(p)[1] for p in shares) // len(shares)
        return r0 * self.kp // len(shares), rows * self.kp

    @property
    def bytes(self):
        """Compulsory HBM bytes of one iteration: W (2 or 4 bytes a weight) and x in, y
        out (4-byte words)."""
        return (2 if self.packed else 4) * self.n * self.k + 4 * (self.k + self.n)


def _pcu_program(sh, p):
    unpack = ("HIGH", "LOW")[p % 2] if sh.packed else "NONE"
    return SimdProgram(counters=(Counter(0, sh.rows(p)[1]), Counter(0, sh.k)),
                       stages=(Stage("MUL", "VIN0", "VIN1"),),
                       inputs=frozenset({"vin0", "vin1"}), reduce="ADD",
                       accumulate=("ADD", 1), vector_out=False, rows_out=True, unpack=unpack)


def _pmu_program(sh, p):
    rows = sh.rows(p)[1]
    return PmuProgram(AccessPattern((Counter(0, sh.kp),)),
                      AccessPattern((Counter(0, rows), Counter(0, sh.kp)), repeat=(0,)),
                      nbuf=2, buf_words=sh.kp)


@dataclass(frozen=True)
class Gemv:
    """The compiled kernel: its program and shape; ``pack_w`` / ``pack_x`` lay operands
    out, ``reference`` is the bit-exact result."""
    program: object
    shape: GemvShape

    @property
    def streams(self):
        """The AGCU streams of each operand (the keys of a launch's offsets): ``w`` every
        weight stream, ``x`` AGCU 0's prologue, ``y`` every share's store stream."""
        sh = self.shape
        return {"w": tuple((s, "load") for s in range(sh.streams)), "x": ((0, "load2"),),
                "y": tuple(sh.stream_of(p) for p in range(sh.shares))}

    def pack_w(self, w):
        """W (n x k FP32 words; packed: BF16 values, low halves zero) in memory order."""
        sh = self.shape
        w = np.asarray(w, np.uint32).reshape(sh.n, sh.k)
        rows = np.zeros((sh.y_words, sh.kp), np.uint32)
        rows[:sh.n, :sh.k] = w
        if not sh.packed:
            return rows.reshape(-1)
        if (w & 0xFFFF).any():
            raise ValueError("gemv: packed weights must be BF16 values (FP32 words with the "
                             "low 16 bits zero)")
        per = sh.rows(0)[1]
        pairs = rows.reshape(sh.streams, 2, per, sh.kp)
        return (pairs[:, 0] | (pairs[:, 1] >> np.uint32(16))).reshape(-1)

    def pack_x(self, x):
        sh = self.shape
        return np.pad(np.asarray(x, np.uint32).reshape(sh.k), (0, sh.kp - sh.k))

    def reference(self, params, w_words, x_words):
        """``y`` (``y_words``,) uint32 from the packed operands, as the PCUs compute it."""
        sh = self.shape
        w = np.asarray(w_words, np.uint32)
        out = []
        for p in range(sh.shares):
            first, words = sh.stream_words(sh.stream_of(p)[0])
            out.append(_share(params, sh, p, w[first:first + words], x_words))
        return np.concatenate(out)


def _share(params, sh, p, w_words, x_words):
    """Share ``p``'s outputs from its weight stream's words: its PCU's accumulated row
    reductions."""
    rows = sh.rows(p)[1]
    xs = np.tile(np.asarray(x_words, np.uint32).reshape(-1, sh.lanes), (rows, 1))
    return simd_reference(_pcu_program(sh, p), params, vin0=w_words, vin1=xs)["sdata"]


def compile_gemv(params, n, k, *, w, x, y, shares=None, packed=False, partial=False,
                 w_stride=None, y_stride=1):
    """``y = W x`` for FP32 inputs and FP32 or (``packed``) BF16 weights, ``W`` laid out by
    :meth:`Gemv.pack_w`; ``w``, ``x``, ``y``: the buffers each iteration's operands start
    in (kernel looping steps them); ``partial``: a partial bitstream (``kernel_program``).
    ``w_stride`` (FP32 weights only): words from one row of ``W`` to the next (default the
    padded row, ``kp``: rows back to back), e.g. the first ``k`` columns of a wider matrix
    (the columns from ``k`` to the vector end are read but are not valid lanes: the
    PCU's lane reduction leaves them out, whatever they hold);
    ``y_stride``: words between consecutive outputs in ``y`` (e.g. a column of a
    row-major matrix)."""
    sh = GemvShape.of(params, n, k, shares, packed)
    w_stride = sh.kp if w_stride is None else w_stride
    if packed and w_stride != sh.kp:
        raise ValueError("gemv: a row stride for packed weights (rows pair up in words)")
    for name, v, lo in (("w_stride", w_stride, sh.kp), ("y_stride", y_stride, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"gemv: {name} = {v!r}; at least {lo}")
    P, S = sh.shares, sh.streams
    kinds = {**{f"pcu{p}": "pcu" for p in range(P)}, **{f"x{p}": "pmu" for p in range(P)}}
    # AGCU 0's port carries x (one row's worth per iteration) beside stream 0's rows.
    rate_x = 1 / (sh.rows(0)[1] + 1)
    vec = [VFlow("x", agcu(0), tuple(port(f"x{p}", 0) for p in range(P)), rate=rate_x,
                 shares="agcu0")]
    for s in range(S):
        dsts = tuple(port(f"pcu{p}", 0) for p in range(P) if sh.stream_of(p)[0] == s)
        vec.append(VFlow(f"w{s}", agcu(s), dsts, rate=1 - rate_x if s == 0 else 1.0,
                         shares="agcu0" if s == 0 else None))
    # A PCU's results: a packet a row, a row every kp / lanes cycles — but the PCUs that
    # share an AGCU share its edge link, so with short rows (kp = lanes: a row a cycle)
    # the link sets their pace and the weights stream waits for it.
    per_agcu = max(sum(sh.stream_of(p)[0] == s for p in range(P)) for s in range(S))
    rate_y = min(sh.lanes / sh.kp, 1 / per_agcu)
    for p in range(P):
        vec += [VFlow(f"xr{p}", port(f"x{p}"), (port(f"pcu{p}", 1),)),
                VFlow(f"y{p}", port(f"pcu{p}"), (agcu(sh.stream_of(p)[0]),),
                      rate=rate_y, shares="y")]
    layout = place_and_route(params, "gemv", kinds, vec=vec)
    x_acc = TensorAccess((sh.kp,), (1,))
    if w_stride == sh.kp:
        w_acc = {s: TensorAccess((sh.stream_words(s)[1],), (1,),
                                 offset=sh.stream_words(s)[0]) for s in range(S)}
    else:
        w_acc = {s: TensorAccess((sh.rows(s)[1], sh.kp), (w_stride, 1),
                                 offset=sh.rows(s)[0] * w_stride) for s in range(S)}
    y_acc = {p: TensorAccess((sh.rows(p)[1],), (y_stride,), offset=sh.rows(p)[0] * y_stride)
             for p in range(P)}
    w_need = (sh.y_words - 1) * w_stride + sh.kp if w_stride != sh.kp else sh.w_words
    agcus = agcu_programs(
        params, layout, {s: (w_acc[s], w, w_need, f"w{s}") for s in range(S)},
        [(sh.stream_of(p)[0], y_acc[p], y, (sh.y_words - 1) * y_stride + 1, f"y{p}")
         for p in range(P)],
        prologues={0: (x_acc, x, sh.kp, "x")})
    parts = {"pcus": layout.configs("pcu", {f"pcu{p}": pack_simd(_pcu_program(sh, p), params)
                                            for p in range(P)}),
             "pmus": layout.configs("pmu", {f"x{p}": pack_pmu(_pmu_program(sh, p), params)
                                            for p in range(P)}),
             "agcus": agcus, "vec": layout.vec, "layout": layout}

    def execute(mem, args):
        xs = mem[stream_words(x, args, (0, "load2"), x_acc)]
        for p in range(P):
            s, store = sh.stream_of(p)
            ws = mem[stream_words(w, args, (s, "load"), w_acc[s])]
            mem[stream_words(y, args, (s, store), y_acc[p])] = _share(params, sh, p, ws, xs)
    return Gemv(kernel_program(params, "gemv", **parts, execute=execute, partial=partial), sh)
