"""Row softmax on the socket: ``Y[i, :] = softmax(X[i, :])`` for rows of any length that
fit a PMU buffer (more than the lanes: a row is several vectors).

Three passes over each row, streamed through three PCUs and two PMUs:

1. ``max``  (PCU): the row's maximum — the cross-lane reduction of every vector folded
   over the row by the accumulator; one scalar per row.
2. ``exp``  (PCU): ``e = exp2((x - max) * log2(e))`` per element (the row read again from
   a PMU that buffers the rows while their maxima are computed), the row sum of ``e``
   folded the same way; ``e`` to a second PMU, the sum to the next PCU.
3. ``norm`` (PCU): ``y = e * rcp(sum)`` — the tail scaled by ``rcp`` of the scalar input
   (``ScaleSrc.SIN``), one sum held per row.

Dataflow: AGCU 0 loads X (rows padded to whole vectors) and multicasts it to the ``max``
PCU and the row PMU; the ``norm`` PCU's rows go to AGCU 1's store stream, which writes
only the valid lanes, so Y can be stored densely or in any strided layout.
"""

import math
from dataclasses import dataclass

import numpy as np

from firmware import numerics as N
from firmware.compiler.agcu import Segment, TensorAccess, access_words, pack_agcu
from firmware.compiler.counters import Counter
from firmware.compiler.pcu import SimdProgram, Stage, Tail, pack_simd, simd_reference
from firmware.compiler.pmu import AccessPattern, PmuProgram, pack_pmu
from firmware.compiler.place import VFlow, agcu, place_and_route, port
from firmware.compiler.program import kernel_program, stream_words

__all__ = ["SOFTMAX_UNITS", "Softmax", "softmax_programs", "softmax_reference",
           "row_kernel_reference", "row_words", "row_buffer_pmu", "softmax_bound", "compile_softmax", "ROW_BUFFERS"]

#: Rows each PMU buffers (N-buffering depth): how far the exp pass may trail the max pass.
ROW_BUFFERS = 4

LOG2E = math.log2(math.e)


#: The kernel's logical units: three PCUs and the two PMUs that buffer the rows.
SOFTMAX_UNITS = {"max": "pcu", "rows_pmu": "pmu", "exp": "pcu", "e_pmu": "pmu", "norm": "pcu"}


def softmax_programs(rows, n, scale=1.0):
    """The three PCU programs of a softmax over ``rows`` rows of ``n`` values of
    ``scale * x`` (``scale`` folds into the exp2 argument: ``(x - max) * scale * log2 e``,
    exact for a positive scale as max(scale x) = scale max(x) is applied after)."""
    chain = (Counter(0, rows), Counter(0, n))
    return {
        "max": SimdProgram(chain, (), reduce="MAX", accumulate=("MAX", 1)),
        "exp": SimdProgram(chain, (Stage("SUB", "VIN0", "SIN0"),
                                   Stage("MUL", "PREV", "IMM", imm=float(scale) * LOG2E)),
                           frozenset({"vin0", "sin0"}), reduce="ADD", accumulate=("ADD", 1),
                           tail=Tail(func="EXP2"), vector_out=True, scalar_hold=1),
        "norm": SimdProgram(chain, (), frozenset({"vin0", "sin0"}), scalar_hold=1,
                            tail=Tail(scale="SIN", row_fn="RCP")),
    }


def softmax_reference(params, programs, vectors):
    """Bit-exact softmax of ``vectors`` (rows x vectors-per-row, lanes) as the three PCUs
    compute it; returns (y vectors, their masks)."""
    mx = simd_reference(programs["max"], params, vin0=vectors)["sdata"]
    ex = simd_reference(programs["exp"], params, vin0=vectors, sin0=mx)
    out = simd_reference(programs["norm"], params, vin0=ex["data"], sin0=ex["sdata"])
    return out["data"], out["mask"]


def softmax_bound(t_max, n, lanes):
    """Relative error bound of a softmax element against float64, for exponent arguments
    ``|t| <= t_max`` (log2 units) over rows of ``n``: rounding ``x - max``, the scale and
    their product perturb t by at most 1.5 |t| 2^-23 (exp2 turns it into a relative
    1.5 ln2 |t| 2^-23, taken as 2 ln2 |t| 2^-23); exp2 and rcp add TAIL_ULP_BOUND ulp
    each, the final product 0.5 ulp; the row sum of positive terms is a tree over the lanes
    then one add per vector: (log2 lanes + n / lanes) roundings of 0.5 ulp of the sum.
    One ulp is at most 2^-23 of the value."""
    adds = math.log2(lanes) + -(-n // lanes)
    return 2.0 ** -23 * (2 * math.log(2) * t_max + 2 * N.TAIL_ULP_BOUND + 0.5 + 0.5 * adds)


@dataclass(frozen=True)
class Softmax:
    """A compiled softmax: its program, the PCU programs (for the reference) and the
    parts as ``kernel_program`` takes them."""
    program: object
    programs: dict
    rows: int
    n: int
    x_stride: int
    y_stride: int
    parts: dict

    #: The AGCU streams of each operand (the keys of a launch's offsets).
    streams = {"x": ((0, "load"),), "y": ((1, "store"),)}

    def reference(self, params, x):
        """Bit-exact Y (rows x n) for X (rows x n FP32 words)."""
        return row_kernel_reference(params, x, self.rows, self.n, lambda v: softmax_reference(
            params, self.programs, v)[0])


def row_words(params, kernel, rows, n):
    """Words of a row of ``n`` values padded to whole vectors, for a row kernel over
    ``rows`` rows whose PMUs buffer ROW_BUFFERS rows; ValueError naming ``kernel`` for
    sizes that are not positive integers or rows too long for a PMU."""
    for name, v in (("rows", rows), ("n", n)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{kernel}: {name} = {v!r} must be a positive integer")
    xs = -(-n // params.pcu_lanes) * params.pcu_lanes
    cap = params.pmu_banks * params.pmu_bank_words
    if ROW_BUFFERS * xs > cap:
        raise ValueError(f"{kernel}: rows of {n} values ({xs} words padded) do not fit "
                         f"{ROW_BUFFERS} row buffers of a {cap}-word PMU")
    return xs


def row_buffer_pmu(params, rows, n):
    """The packed config of a PMU that buffers one row per window, ROW_BUFFERS windows
    deep (a row read again after its reduction)."""
    row = AccessPattern((Counter(0, rows), Counter(0, n)), repeat=(0,))
    return pack_pmu(PmuProgram(row, row, nbuf=ROW_BUFFERS,
                               buf_words=row_words(params, "row buffer", rows, n),
                               w_level=1, r_level=1), params)


def row_kernel_reference(params, x, rows, n, fn):
    """``fn`` (a row kernel's reference over vectors) on X (rows x n FP32 words), each row
    padded to whole vectors as the AGCU loads it; the rows' first ``n`` words of its
    result."""
    L = params.pcu_lanes
    xs = -(-n // L) * L
    v = np.zeros((rows, xs), np.uint32)
    v[:, :n] = np.asarray(x, np.uint32).reshape(rows, n)
    return fn(v.reshape(-1, L)).reshape(rows, xs)[:, :n]


def compile_softmax(params, rows, n, *, x, y, x_stride=None, y_stride=None, store=None,
                    scale=1.0, partial=False):
    """Softmax of each of ``rows`` rows of ``n`` FP32 values (times ``scale`` > 0) in
    buffer ``x`` (row ``i`` at word ``i * x_stride``; default: ``n`` rounded up to whole
    vectors, the padding ignored) into buffer ``y`` (row stride ``y_stride``, default
    ``n``, only the ``n`` values written; or any ``store`` TensorAccess that visits
    ``rows`` x ``n`` words, e.g. another kernel's operand layout); ``partial``: a
    partial bitstream (``kernel_program``)."""
    L = params.pcu_lanes
    xs = row_words(params, "softmax", rows, n)
    if not scale > 0:
        raise ValueError(f"softmax: scale {scale!r} must be positive")
    x_stride = xs if x_stride is None else x_stride
    y_stride = n if y_stride is None else y_stride
    if x_stride < n or y_stride < n:
        raise ValueError(f"softmax: row strides ({x_stride}, {y_stride}) shorter than a "
                         f"row of {n}")
    store = TensorAccess((rows, n), (y_stride, 1)) if store is None else store
    if int(np.prod(store.shape)) != rows * n:
        raise ValueError(f"softmax: the store access visits {int(np.prod(store.shape))} "
                         f"words, the result has {rows} x {n}")
    x_words, y_words = (rows - 1) * x_stride + xs, int(access_words(store).max()) + 1
    for name, buf, need in (("x", x, x_words), ("y", y, y_words)):
        if buf.words < need:
            raise ValueError(f"softmax {rows}x{n}: buffer {name} has {buf.words} words, "
                             f"the layout needs {need}")
    if params.agcus < 2:
        raise ValueError("the softmax kernel needs two AGCUs")
    programs = softmax_programs(rows, n, scale)
    pmu = row_buffer_pmu(params, rows, n)

    layout = place_and_route(params, "softmax", SOFTMAX_UNITS, vec=[
        VFlow("x", agcu(0), (port("max"), port("rows_pmu"))),
        VFlow("x_again", port("rows_pmu"), (port("exp"),)),
        VFlow("e", port("exp"), (port("e_pmu"),)),
        VFlow("e_again", port("e_pmu"), (port("norm"),)),
        VFlow("y", port("norm"), (agcu(1),)),
    ], sca=[
        VFlow("max", port("max"), (port("exp"),), rate=1 / -(-n // L)),
        VFlow("sum", port("exp"), (port("norm"),), rate=1 / -(-n // L)),
    ])
    vec, sca = layout.vec, layout.sca
    load = TensorAccess((rows, xs), (x_stride, 1))
    agcus = {
        0: pack_agcu(params, load=(load, 0), segments=[Segment(x.addr, x.words)],
                     hdr=vec.headers["x"])[0],
        1: pack_agcu(params, store=(store, 0), segments=[Segment(y.addr, y.words)])[0],
    }
    parts = {"pcus": layout.configs("pcu", {u: pack_simd(programs[u], params)
                                            for u in ("max", "exp", "norm")}),
             "pmus": layout.configs("pmu", {"rows_pmu": pmu, "e_pmu": pmu}),
             "agcus": agcus, "vec": vec, "sca": sca, "layout": layout}

    def execute(mem, args):
        v = mem[stream_words(x, args, (0, "load"), load)].reshape(-1, L)
        out, _ = softmax_reference(params, programs, v)
        mem[stream_words(y, args, (1, "store"), store)] = out.reshape(rows, xs)[:, :n]\
            .reshape(-1)
    return Softmax(kernel_program(params, "softmax", **parts, execute=execute,
                                  partial=partial), programs,
                   rows, n, x_stride, y_stride, parts)
