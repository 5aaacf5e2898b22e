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

import functools
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

from .gemm import GemmShape, a_transpose_pmu, pack_a, pack_b, with_ones_column

__all__ = ["MLP_UNITS", "MlpShape", "Mlp", "compile_mlp", "mlp_pcus", "mlp_bound"]

#: The fused kernel's logical units.
MLP_UNITS = {"g1": "pcu", "w1_pmu": "pmu", "h_pmu": "pmu", "g2": "pcu", "w2_pmu": "pmu"}


@dataclass(frozen=True)
class MlpShape:
    """``m`` rows through ``k`` inputs -> ``hidden`` -> ``n`` outputs."""
    g1: GemmShape          # H = X W1 (+ b1): m x hidden, k (+ 1)
    g2: GemmShape          # Y = H W2: m x n, hidden

    @classmethod
    def of(cls, params, m, k, hidden, n, bias=False, pcus2=1):
        """``pcus2``: PCUs sharing the second layer's column tiles."""
        return cls(GemmShape.of(params, m, hidden, k, bias),
                   GemmShape.of(params, m, n, hidden, pcus=pcus2))

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
        return pack_a(params, with_ones_column(x) if self.bias else x)

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
        s1, s2 = self.shape.g1, self.shape.g2
        xs = np.repeat(self.pack_x(params, x).reshape(s1.mt, 1, -1), s1.nt, axis=1)
        parts = _pipeline(params, self.shape, self.programs, xs.reshape(-1, params.pcu_lanes),
                          self.pack_w(params, w1, w2, b1))
        share = s2.nt // s2.pcus
        out = np.concatenate([r.reshape(s2.mt, share, s2.rows, -1)[..., :s2.cols]
                              for r in parts], axis=1).transpose(0, 2, 1, 3)
        return out.reshape(s2.c_rows, s2.c_cols)[:s2.m, :s2.n]


def _pipeline(params, sh, programs, x_vectors, w):
    """Y rows of each second-layer PCU (store order: row tile, its column tiles, row) from
    the X vectors AGCU 0 streams and the words AGCU 1 loads."""
    L, s1, s2 = params.pcu_lanes, sh.g1, sh.g2
    w1 = np.asarray(w[:s1.b_words], np.uint32).reshape(-1, L)
    w2 = np.asarray(w[s1.b_words:sh.w_words], np.uint32).reshape(-1, L)
    h = systolic_reference(programs["g1"], params, x_vectors, np.tile(w1, (s1.mt, 1)))["data"]
    h = h.reshape(s1.mt, s1.nt, s1.rows, L).transpose(0, 2, 1, 3).reshape(s1.mt, s1.rows, -1)
    # The A operand: row tiles of TM rows (rows past `rows` are never drained: zeros).
    a = np.zeros((s1.mt, s1.tile_rows, s2.k), np.uint32)
    a[:, :s1.rows] = h[:, :, :s2.k]
    share = s2.nt // s2.pcus
    _, vin0, _ = gemm_streams(a.reshape(-1, s2.k), np.zeros((s2.k, share * L), np.uint32),
                              params)
    part = s2.part_words
    return [systolic_reference(programs["g2"], params, vin0,
                               np.tile(w2.reshape(-1)[i * part:(i + 1) * part].reshape(-1, L),
                                       (s2.mt, 1)))["data"] for i in range(s2.pcus)]


def _check(params, sh, bufs):
    cap = params.pmu_banks * params.pmu_bank_words
    if params.agcus < sh.g2.pcus + 1:
        raise ValueError(f"the MLP kernel needs {sh.g2.pcus + 1} AGCUs (X through one, a store "
                         f"stream per second-layer PCU through the others), the array has "
                         f"{params.agcus}")
    for name, words in (("W1", sh.g1.b_words), ("a PCU's share of W2", sh.g2.part_words)):
        if words > cap:
            raise ValueError(f"mlp: {name} needs {words} words of PMU, a PMU holds {cap}")
    for name, buf, need in (("x", bufs[0], sh.x_words), ("w", bufs[1], sh.w_words),
                            ("y", bufs[2], sh.y_words)):
        if buf.words < need:
            raise ValueError(f"mlp: buffer {name} has {buf.words} words, the layout needs "
                             f"{need}")


def _w_pmus(sh):
    """W1 and each second-layer PCU's share of W2, each kept by its PMU from the multicast
    [W1 | W2] stream; read once per row tile."""
    s1, s2, total = sh.g1, sh.g2, Counter(0, sh.w_words)
    part = s2.part_words
    w1 = PmuProgram(AccessPattern((total,), hi=s1.b_words),
                    AccessPattern((Counter(0, s1.mt), Counter(0, s1.b_words)), repeat=(0,)))
    w2 = [PmuProgram(AccessPattern((total,), base=-(s1.b_words + i * part), lo=0, hi=part),
                     AccessPattern((Counter(0, s2.mt), Counter(0, part)), repeat=(0,)))
          for i in range(s2.pcus)]
    return w1, w2


def _units(n2):
    """Logical units with ``n2`` second-layer PCUs: (units, second-layer PCUs, their PMUs)."""
    if n2 == 1:
        return dict(MLP_UNITS), ("g2",), ("w2_pmu",)
    g2 = tuple(f"g2_{i}" for i in range(n2))
    pm = tuple(f"w2_pmu{i}" for i in range(n2))
    units = {"g1": "pcu", "w1_pmu": "pmu", "h_pmu": "pmu", **{u: "pcu" for u in g2},
             **{u: "pmu" for u in pm}}
    return units, g2, pm


def _flows(sh, g2, pm):
    s1, s2 = sh.g1, sh.g2
    P = s1.tile_rows // s1.stages
    y_rate = min(1.0, s2.rows / (s2.k * P))
    # Result PCU i stores through AGCU i + 1: AGCU 0's port streams X at a vector per
    # cycle, and stores there would take beats from it (the result flows drain to memory
    # and may share links with each other).
    y_agcus = tuple(range(1, len(g2) + 1))
    return [
        VFlow("x", agcu(0), (port("g1"),)),
        VFlow("w", agcu(1), (port("w1_pmu"), *(port(u) for u in pm))),   # loaded once, first
        VFlow("w1", port("w1_pmu"), (port("g1", 1),), rate=1 / P),
        VFlow("h", port("g1"), (port("h_pmu"),), rate=min(1.0, s1.rows / (s1.k * P))),
        VFlow("h_cols", port("h_pmu"), tuple(port(u) for u in g2)),
        *(VFlow(f"w2_{i}" if len(g2) > 1 else "w2", port(m), (port(u, 1),), rate=1 / P)
          for i, (u, m) in enumerate(zip(g2, pm))),
        *(VFlow(f"y{i}" if len(g2) > 1 else "y", port(u), (agcu(a),), rate=y_rate, shares="y")
          for i, (u, a) in enumerate(zip(g2, y_agcus))),
    ], y_agcus


def compile_mlp(params, m, k, hidden, n, *, x, w, y, bias=False, relu=True, relu2=False,
                bf16=False, pcus2=1):
    """The fused kernel for buffers ``x`` (``MlpShape.x_words``), ``w`` (``w_words``:
    ``[W1 | W2]``) and ``y`` (``y_words``); ``relu``: after the first layer; ``relu2``,
    ``bf16``: the second layer's epilogue; ``pcus2``: PCUs sharing the second layer's
    column tiles (each with its share of W2 in a PMU, fed H by one multicast stream, its
    results through its own AGCU, not X's). A shape that does not fit raises ValueError
    naming the resource."""
    sh = MlpShape.of(params, m, k, hidden, n, bias, pcus2)
    _check(params, sh, (x, w, y))
    s1, s2 = sh.g1, sh.g2
    share = s2.nt // s2.pcus
    programs = {
        "g1": SystolicProgram(k=s1.k, tiles=s1.mt * s1.nt, rows=s1.rows, cols=s1.cols,
                              tail=Tail(relu=relu)),
        "g2": SystolicProgram(k=s2.k, tiles=s2.mt * share, rows=s2.rows, cols=s2.cols,
                              tail=Tail(relu=relu2, bf16=bf16)),
    }
    h_pmu = a_transpose_pmu(params, s1.mt, s1.rows, s2.k, share, col_tiles=s1.nt)
    units, g2, pm = _units(s2.pcus)
    flows, y_agcus = _flows(sh, g2, pm)
    layout = place_and_route(params, "mlp", units, vec=flows)
    vec = layout.vec
    x_acc, w_acc = s1.a_access(), TensorAccess((sh.w_words,), (1,))
    y_accs = [s2.c_access(i) for i in range(s2.pcus)]
    loads = {0: (x_acc, x, sh.x_words, "x"), 1: (w_acc, w, sh.w_words, "w")}
    agcus = {}
    for a in sorted(set(loads) | set(y_agcus)):
        segs, load, store, hdr = [], None, None, None
        if a in loads:
            acc, buf, words, name = loads[a]
            segs, load, hdr = [Segment(buf.addr, words)], (acc, 0), vec.headers[name]
        if a in y_agcus:
            store = (y_accs[y_agcus.index(a)], len(segs))
            segs = segs + [Segment(y.addr, sh.y_words)]
        agcus[a] = pack_agcu(params, load=load, store=store, segments=segs, hdr=hdr)[0]
    w1_pmu, w2_pmus = _w_pmus(sh)
    parts = {
        "pcus": layout.configs("pcu", {u: pack_systolic(programs[u[:2]], params)
                                       for u in ("g1", *g2)}),
        "pmus": layout.configs("pmu", {"w1_pmu": pack_pmu(w1_pmu, params),
                                       "h_pmu": pack_pmu(h_pmu, params),
                                       **{u: pack_pmu(p_, params) for u, p_ in zip(pm, w2_pmus)}}),
        "agcus": agcus, "vec": vec, "layout": layout,
    }

    def execute(mem, args):
        xv = mem[stream_words(x, args, (0, "load"), x_acc)].reshape(-1, params.pcu_lanes)
        ww = mem[stream_words(w, args, (1, "load"), w_acc)]
        for rows, a, acc in zip(_pipeline(params, sh, programs, xv, ww), y_agcus, y_accs):
            mem[stream_words(y, args, (a, "store"), acc)] = rows[:, :s2.cols].reshape(-1)
    return Mlp(sh, programs, kernel_program(params, "mlp", **parts, execute=execute), parts,
               bool(bias))


@functools.lru_cache(maxsize=256)
def mlp_pcus(params, m, k, hidden, n, bias=False):
    """The most second-layer PCUs the fused kernel of this shape can use here (no more
    than its column tiles, or the AGCUs besides X's; PMU capacities and a placement with
    links of its own): compiled against placeholder buffers; 0 if it does not fit."""
    for pcus2 in range(min(params.agcus - 1, -(-n // params.pcu_lanes)), 0, -1):
        sh = MlpShape.of(params, m, k, hidden, n, bias, pcus2)
        bufs = [Buffer("hbm", 0, words, name) for name, words in
                (("x", sh.x_words), ("w", sh.w_words), ("y", sh.y_words))]
        try:
            compile_mlp(params, m, k, hidden, n, x=bufs[0], w=bufs[1], y=bufs[2], bias=bias,
                        pcus2=pcus2)
        except (ValueError, PlacementError):
            continue
        return pcus2
    return 0


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
