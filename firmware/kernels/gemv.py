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
    """``n`` outputs, ``k`` inputs, over ``shares`` PCUs (one per AGCU)."""
    n: int
    k: int
    lanes: int
    shares: int

    @classmethod
    def of(cls, params, n, k, shares=None):
        for name, v in (("n", n), ("k", k)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"gemv: {name} = {v!r} must be a positive integer")
        room = min(params.agcus, len(grid_coords(params, "pcu")), len(grid_coords(params, "pmu")))
        shares = min(room, n) if shares is None else shares
        if not 1 <= shares <= min(room, n):
            raise ValueError(f"gemv: {shares} shares; 1 .. {min(room, n)} (one PCU, PMU and "
                             f"AGCU each, at most one per output row)")
        s = cls(n, k, params.pcu_lanes, shares)
        if 2 * s.kp > params.pmu_banks * params.pmu_bank_words:
            raise ValueError(f"gemv: x of {k} words (two buffers of {s.kp}) does not fit a "
                             f"PMU of {params.pmu_banks * params.pmu_bank_words} words")
        return s

    @property
    def kp(self):
        """Words per row in memory: ``k`` padded to whole vectors."""
        return -(-self.k // self.lanes) * self.lanes

    def rows(self, p):
        """(first row, rows) of share ``p``."""
        base, extra = divmod(self.n, self.shares)
        return p * base + min(p, extra), base + (p < extra)

    @property
    def w_words(self):
        return self.n * self.kp

    @property
    def bytes(self):
        """Compulsory HBM bytes of one iteration: W and x in, y out (4-byte words)."""
        return 4 * (self.n * self.k + self.k + self.n)


def _pcu_program(sh, rows):
    return SimdProgram(counters=(Counter(0, rows), Counter(0, sh.k)),
                       stages=(Stage("MUL", "VIN0", "VIN1"),),
                       inputs=frozenset({"vin0", "vin1"}), reduce="ADD",
                       accumulate=("ADD", 1), vector_out=False, rows_out=True)


def _pmu_program(sh, rows):
    return PmuProgram(AccessPattern((Counter(0, sh.kp),)),
                      AccessPattern((Counter(0, rows), Counter(0, sh.kp)), repeat=(0,)),
                      nbuf=2, buf_words=sh.kp)


@dataclass(frozen=True)
class Gemv:
    """The compiled kernel: its program and shape; ``pack_w`` / ``pack_x`` lay operands
    out, ``reference`` is the bit-exact result."""
    program: object
    shape: GemvShape

    def pack_w(self, w):
        sh = self.shape
        w = np.asarray(w, np.uint32).reshape(sh.n, sh.k)
        return np.pad(w, ((0, 0), (0, sh.kp - sh.k))).reshape(-1)

    def pack_x(self, x):
        sh = self.shape
        return np.pad(np.asarray(x, np.uint32).reshape(sh.k), (0, sh.kp - sh.k))

    def reference(self, params, w_words, x_words):
        """``y`` (n,) uint32 from the packed operands, as the PCUs compute it."""
        sh = self.shape
        w = np.asarray(w_words, np.uint32).reshape(sh.n, sh.kp)
        return np.concatenate([_share(params, sh, p, w[slice(*_span(sh, p))], x_words)
                               for p in range(sh.shares)])


def _span(sh, p):
    r0, rows = sh.rows(p)
    return r0, r0 + rows


def _share(params, sh, p, w_rows, x_words):
    """Share ``p``'s outputs: its PCU's accumulated row reductions."""
    rows = sh.rows(p)[1]
    xs = np.tile(np.asarray(x_words, np.uint32).reshape(-1, sh.lanes), (rows, 1))
    return simd_reference(_pcu_program(sh, rows), params, vin0=w_rows, vin1=xs)["sdata"]


def compile_gemv(params, n, k, *, w, x, y, shares=None):
    """``y = W x`` for FP32 words (``W`` packed by :meth:`Gemv.pack_w`); ``w``, ``x``,
    ``y``: the buffers each iteration's operands start in (kernel looping steps them)."""
    sh = GemvShape.of(params, n, k, shares)
    P = sh.shares
    kinds = {**{f"pcu{p}": "pcu" for p in range(P)}, **{f"x{p}": "pmu" for p in range(P)}}
    # AGCU 0's port carries x (one row's worth per iteration) beside share 0's rows.
    rate_x = 1 / (sh.rows(0)[1] + 1)
    vec = [VFlow("x", agcu(0), tuple(port(f"x{p}", 0) for p in range(P)), rate=rate_x,
                 shares="agcu0")]
    for p in range(P):
        vec += [VFlow(f"w{p}", agcu(p), (port(f"pcu{p}", 0),),
                      rate=1 - rate_x if p == 0 else 1.0, shares="agcu0" if p == 0 else None),
                VFlow(f"xr{p}", port(f"x{p}"), (port(f"pcu{p}", 1),)),
                VFlow(f"y{p}", port(f"pcu{p}"), (agcu(p),), rate=sh.lanes / sh.kp,
                      shares="y")]
    layout = place_and_route(params, "gemv", kinds, vec=vec)
    x_acc = TensorAccess((sh.kp,), (1,))
    w_acc, y_acc = {}, {}
    for p in range(P):
        r0, rows = sh.rows(p)
        w_acc[p] = TensorAccess((rows * sh.kp,), (1,), offset=r0 * sh.kp)
        y_acc[p] = TensorAccess((rows,), (1,), offset=r0)
    agcus = agcu_programs(
        params, layout, {p: (w_acc[p], w, sh.w_words, f"w{p}") for p in range(P)},
        [(p, y_acc[p], y, n, f"y{p}") for p in range(P)],
        prologues={0: (x_acc, x, sh.kp, "x")})
    parts = {"pcus": layout.configs("pcu", {f"pcu{p}": pack_simd(
                 _pcu_program(sh, sh.rows(p)[1]), params) for p in range(P)}),
             "pmus": layout.configs("pmu", {f"x{p}": pack_pmu(
                 _pmu_program(sh, sh.rows(p)[1]), params) for p in range(P)}),
             "agcus": agcus, "vec": layout.vec, "layout": layout}

    def execute(mem, args):
        xs = mem[stream_words(x, args, (0, "load2"), x_acc)]
        for p in range(P):
            ws = mem[stream_words(w, args, (p, "load"), w_acc[p])]
            mem[stream_words(y, args, (p, "store"), y_acc[p])] = _share(params, sh, p, ws, xs)
    return Gemv(kernel_program(params, "gemv", **parts, execute=execute), sh)
