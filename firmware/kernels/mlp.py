"""A two-layer MLP ``Y = relu?(X @ W1 + b1) @ W2`` fused into one kernel: the hidden
activations stay on chip.

Dataflow (two PCUs, three PMUs, two AGCUs; :data:`MLP_UNITS`, placed by the compiler):

* AGCU 1 loads ``[W1 | W2]`` (both in the systolic B layout, the bias as W1's last
  accumulation step) once; the stream is multicast to two PMUs whose write predicates
  keep one each, and each PMU feeds its GEMM once per row tile.
* ``g1`` (systolic PCU): ``H = relu?(X @ W1 + b1)`` — X from AGCU 0 (A layout, re-read
  per column tile of H), the ReLU in its tail. Its rows land column-major in the ``h``
  PMU (:func:`~firmware.kernels.gemm.a_transpose_pmu` in GEMM output order, two row
  tiles deep), which reads them out as the next array's A operand.
* ``g2`` (systolic PCU): ``Y = H @ W2`` (epilogue ReLU / BF16 as a GEMM's); Y to AGCU
  1's store stream, row-major.

The same bits as the two GEMMs run one after the other through HBM (H stored in FP32;
both arrays round their operands to BF16 the same way).
"""

from dataclasses import dataclass

import numpy as np

from firmware import numerics as N
from firmware.compiler.agcu import Segment, TensorAccess, pack_agcu
from firmware.compiler.counters import Counter
from firmware.compiler.pcu import (SystolicProgram, Tail, gemm_streams, pack_systolic,
                                   systolic_reference)
from firmware.compiler.place import PlacementError, VFlow, agcu, place_and_route, port
from firmware.compiler.pmu import AccessPattern, PmuProgram, pack_pmu
from firmware.compiler.program import kernel_program, stream_words
from firmware.runtime.memory import Buffer

from .gemm import GemmShape, a_transpose_pmu, pack_a, pack_b

__all__ = ["MLP_UNITS", "MlpShape", "Mlp", "compile_mlp", "mlp_fits", "mlp_bound"]

#: The fused kernel's logical units.
MLP_UNITS = {"g1": "pcu", "w1_pmu": "pmu", "h_pmu": "pmu", "g2": "pcu", "w2_pmu": "pmu"}


@dataclass(frozen=True)
class MlpShape:
    """``m`` rows through ``k`` inputs -> ``hidden`` -> ``n`` outputs."""
    g1: GemmShape          # H = X W1 (+ b1): m x hidden, k (+ 1)
    g2: GemmShape          # Y = H W2: m x n, hidden

    @classmethod
    def of(cls, params, m, k, hidden, n, bias=False):
        return cls(GemmShape.of(params, m, hidden, k, bias), GemmShape.of(params, m, n, hidden))

    @property
    def x_words(self):
        return self.g1.a_words

    @property
    def w_words(self):
        return self.g1.b_words + self.g2.b_words

    @property
    def y_words(self):
        return self.g2.c_words

    @property
    def macs(self):
        return self.g1.macs + self.g2.macs


@dataclass(frozen=True)
class Mlp:
    """A compiled fused MLP."""
    shape: MlpShape
    programs: dict
    program: object
    parts: dict
    bias: bool

    def pack_x(self, params, x):
        """X (m x k FP32 words) in the layout AGCU 0 streams (with the ones column of the
        bias step when compiled with a bias)."""
        x = np.asarray(x, np.uint32)
        if self.bias:
            x = np.hstack([x, np.full((x.shape[0], 1), 0x3F800000, np.uint32)])
        return pack_a(params, x)

    def pack_w(self, params, w1, w2, b1=None):
        """``[W1 (; b1) | W2]`` in the layout AGCU 1 streams."""
        w1 = np.asarray(w1, np.uint32)
        if self.bias != (b1 is not None):
            raise ValueError("the MLP was compiled " + ("with" if self.bias else "without")
                             + " a bias")
        if self.bias:
            w1 = np.vstack([w1, np.asarray(b1, np.uint32).reshape(1, -1)])
        return np.concatenate([pack_b(params, w1), pack_b(params, np.asarray(w2, np.uint32))])

    def unpack_y(self, words):
        s = self.shape.g2
        return np.asarray(words, np.uint32)[:s.c_words].reshape(s.c_rows, s.c_cols)[:s.m, :s.n]

    def reference(self, params, x, w1, w2, b1=None):
        """Y bit-exactly as the kernel computes it."""
        s1 = self.shape.g1
        xs = np.repeat(self.pack_x(params, x).reshape(s1.mt, 1, -1), s1.nt, axis=1)
        rows = _pipeline(params, self.shape, self.programs, xs.reshape(-1, params.pcu_lanes),
                         self.pack_w(params, w1, w2, b1))
        s2 = self.shape.g2
        out = rows.reshape(s2.mt, s2.nt, s2.rows, -1)[..., :s2.cols].transpose(0, 2, 1, 3)
        return out.reshape(s2.c_rows, s2.c_cols)[:s2.m, :s2.n]


def _pipeline(params, sh, programs, x_vectors, w):
    """Y rows (store order: row tile, column tile, row) from the X vectors AGCU 0 streams
    and the words AGCU 1 loads."""
    L, s1, s2 = params.pcu_lanes, sh.g1, sh.g2
    w1 = np.asarray(w[:s1.b_words], np.uint32).reshape(-1, L)
    w2 = np.asarray(w[s1.b_words:sh.w_words], np.uint32).reshape(-1, L)
    h = systolic_reference(programs["g1"], params, x_vectors, np.tile(w1, (s1.mt, 1)))["data"]
    h = h.reshape(s1.mt, s1.nt, s1.rows, L).transpose(0, 2, 1, 3).reshape(s1.mt, s1.rows, -1)
    # The A operand: row tiles of TM rows (rows past `rows` are never drained: zeros).
    a = np.zeros((s1.mt, s1.tile_rows, s2.k), np.uint32)
    a[:, :s1.rows] = h[:, :, :s2.k]
    _, vin0, _ = gemm_streams(a.reshape(-1, s2.k), np.zeros((s2.k, s2.n), np.uint32), params)
    return systolic_reference(programs["g2"], params, vin0, np.tile(w2, (s2.mt, 1)))["data"]


def _check(params, sh, bufs):
    cap = params.pmu_banks * params.pmu_bank_words
    if params.agcus < 2:
        raise ValueError("the MLP kernel needs two AGCUs")
    for name, words in (("W1", sh.g1.b_words), ("W2", sh.g2.b_words)):
        if words > cap:
            raise ValueError(f"mlp: {name} needs {words} words of PMU, a PMU holds {cap}")
    for name, buf, need in (("x", bufs[0], sh.x_words), ("w", bufs[1], sh.w_words),
                            ("y", bufs[2], sh.y_words)):
        if buf.words < need:
            raise ValueError(f"mlp: buffer {name} has {buf.words} words, the layout needs "
                             f"{need}")


def _w_pmus(sh):
    """W1 and W2, each kept by its PMU from the multicast [W1 | W2] stream; read once per
    row tile."""
    s1, s2, total = sh.g1, sh.g2, Counter(0, sh.w_words)
    w1 = PmuProgram(AccessPattern((total,), hi=s1.b_words),
                    AccessPattern((Counter(0, s1.mt), Counter(0, s1.b_words)), repeat=(0,)))
    w2 = PmuProgram(AccessPattern((total,), base=-s1.b_words, lo=0),
                    AccessPattern((Counter(0, s2.mt), Counter(0, s2.b_words)), repeat=(0,)))
    return w1, w2


def compile_mlp(params, m, k, hidden, n, *, x, w, y, bias=False, relu=True, relu2=False,
                bf16=False):
    """The fused kernel for buffers ``x`` (``MlpShape.x_words``), ``w`` (``w_words``:
    ``[W1 | W2]``) and ``y`` (``y_words``); ``relu``: after the first layer; ``relu2``,
    ``bf16``: the second layer's epilogue. A shape that does not fit raises ValueError
    naming the resource."""
    sh = MlpShape.of(params, m, k, hidden, n, bias)
    _check(params, sh, (x, w, y))
    s1, s2 = sh.g1, sh.g2
    P = s1.tile_rows // s1.stages
    programs = {
        "g1": SystolicProgram(k=s1.k, tiles=s1.mt * s1.nt, rows=s1.rows, cols=s1.cols,
                              tail=Tail(relu=relu)),
        "g2": SystolicProgram(k=s2.k, tiles=s2.mt * s2.nt, rows=s2.rows, cols=s2.cols,
                              tail=Tail(relu=relu2, bf16=bf16)),
    }
    h_pmu = a_transpose_pmu(params, s1.mt, s1.rows, s2.k, s2.nt, col_tiles=s1.nt)
    layout = place_and_route(params, "mlp", MLP_UNITS, vec=[
        VFlow("x", agcu(0), (port("g1"),)),
        VFlow("w", agcu(1), (port("w1_pmu"), port("w2_pmu"))),     # loaded once, first
        VFlow("w1", port("w1_pmu"), (port("g1", 1),), rate=1 / P),
        VFlow("h", port("g1"), (port("h_pmu"),), rate=min(1.0, s1.rows / (s1.k * P))),
        VFlow("h_cols", port("h_pmu"), (port("g2"),)),
        VFlow("w2", port("w2_pmu"), (port("g2", 1),), rate=1 / P),
        VFlow("y", port("g2"), (agcu(1),), rate=min(1.0, s2.rows / (s2.k * P))),
    ])
    vec = layout.vec
    x_acc, y_acc = s1.a_access(), s2.c_access()
    w_acc = TensorAccess((sh.w_words,), (1,))
    w1_pmu, w2_pmu = _w_pmus(sh)
    agcus = {
        0: pack_agcu(params, load=(x_acc, 0), segments=[Segment(x.addr, sh.x_words)],
                     hdr=vec.headers["x"])[0],
        1: pack_agcu(params, load=(w_acc, 0), store=(y_acc, 1),
                     segments=[Segment(w.addr, sh.w_words), Segment(y.addr, sh.y_words)],
                     hdr=vec.headers["w"])[0],
    }
    parts = {
        "pcus": layout.configs("pcu", {u: pack_systolic(programs[u], params)
                                       for u in ("g1", "g2")}),
        "pmus": layout.configs("pmu", {"w1_pmu": pack_pmu(w1_pmu, params),
                                       "w2_pmu": pack_pmu(w2_pmu, params),
                                       "h_pmu": pack_pmu(h_pmu, params)}),
        "agcus": agcus, "vec": vec, "layout": layout,
    }

    def execute(mem, args):
        xv = mem[stream_words(x, args, (0, "load"), x_acc)].reshape(-1, params.pcu_lanes)
        ww = mem[stream_words(w, args, (1, "load"), w_acc)]
        rows = _pipeline(params, sh, programs, xv, ww)
        mem[stream_words(y, args, (1, "store"), y_acc)] = rows[:, :s2.cols].reshape(-1)
    return Mlp(sh, programs, kernel_program(params, "mlp", **parts, execute=execute), parts,
               bool(bias))


def mlp_fits(params, m, k, hidden, n, bias=False):
    """Whether the fused kernel of this shape fits the array (PMU capacities, AGCUs, a
    placement with links of its own): compiled once against placeholder buffers."""
    sh = MlpShape.of(params, m, k, hidden, n, bias)
    bufs = [Buffer("hbm", 0, words, name) for name, words in
            (("x", sh.x_words), ("w", sh.w_words), ("y", sh.y_words))]
    try:
        compile_mlp(params, m, k, hidden, n, x=bufs[0], w=bufs[1], y=bufs[2], bias=bias)
    except (ValueError, PlacementError):
        return False
    return True


def mlp_bound(x, w1, b1, w2):
    """(Y_exact, bound on |Y - Y_exact|), float64, elementwise, for BF16-valued operands
    (FP32 words) of ``Y = relu(X W1 + b1) W2``.

    Products of BF16 values are exact in FP32; the first layer's k (+ bias) terms are
    summed with one FP32 rounding each: |dH| <= (k + 2) 2^-24 (|X||W1| + |b1|), and ReLU
    does not grow it. The second array rounds H to BF16 (relative 2^-8), then sums
    ``hidden`` exact products: (hidden + 1) 2^-24 of sum |H'||W2|."""
    f = lambda a: N.from_bits(np.asarray(a, np.uint32)).astype(np.float64)  # noqa: E731
    fx, f1, f2 = f(x), f(w1), f(w2)
    fb = np.zeros(f1.shape[1]) if b1 is None else f(b1)
    h = np.maximum(fx @ f1 + fb, 0)
    k, hidden = fx.shape[1], f1.shape[1]
    u = 2.0 ** -24
    dh = (k + 2) * u * (np.abs(fx) @ np.abs(f1) + np.abs(fb))
    hm = h + dh
    bound = (dh + 2.0 ** -8 * hm) @ np.abs(f2) + (hidden + 1) * u * (1 + 2.0 ** -8) * (
        hm @ np.abs(f2))
    return h @ f2, bound * 1.01
