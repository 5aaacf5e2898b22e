"""A two-layer MLP ``Y = relu?(X @ W1 + b1) @ W2`` fused into one kernel: the hidden
activations stay on chip.

Dataflow of one pipeline (:data:`MLP_UNITS`, placed by the compiler):

* AGCU 1 loads ``[W1 | W2]`` (both in the systolic B layout, the bias as W1's last
  accumulation step) once; the stream is multicast to the PMUs whose write predicates
  keep W1, or a second-layer PCU's share of W2, and each feeds its GEMM once per row tile.
* ``g1`` (systolic PCU): ``H = relu?(X @ W1 + b1)`` — X from AGCU 0 (A layout, re-read
  per column tile of H), the ReLU in its tail. Its rows land column-major in the ``h``
  PMU (:func:`~firmware.kernels.gemm.a_transpose_pmu` in GEMM output order, two row
  tiles deep), which reads them out as the next array's A operand, multicast to the
  second-layer PCUs.
* ``g2`` (systolic PCUs, ``pcus2`` of them sharing the column tiles of Y): ``Y = H @ W2``
  (epilogue ReLU / BF16 as a GEMM's); Y row-major through AGCU store streams.

Where the array has AGCUs to load X through (one per pipeline besides W's) and the units,
``pipes`` such pipelines share out the row tiles of X in contiguous blocks: pipeline ``p``
loads its X through AGCU 0 (``p = 0``) or ``p + 1``; the one W stream fills every
pipeline's W PMUs (no unit is shared between pipelines, so none waits for another's).
:func:`mlp_plan` picks the pipelines and second-layer PCUs.

The same bits as the two GEMMs run one after the other through HBM (H stored in FP32;
both arrays round their operands to BF16 the same way).
"""

import functools
from dataclasses import dataclass

import numpy as np

from firmware import numerics as N
from firmware.compiler.agcu import TensorAccess
from firmware.compiler.counters import Counter
from firmware.compiler.pcu import (SystolicProgram, Tail, gemm_streams, pack_systolic,
                                   systolic_reference)
from firmware.compiler.place import PlacementError, VFlow, agcu, port, try_place
from firmware.compiler.pmu import AccessPattern, PmuProgram, pack_pmu
from firmware.compiler.program import kernel_program, stream_words
from hdl.agcu.config import stores
from hdl.grid import grid_coords

from .gemm import GemmShape, a_transpose_pmu, pack_a, pack_b, with_ones_column
from .pipelines import agcu_programs, blocks, two_stage_cycles

__all__ = ["MLP_UNITS", "MlpShape", "Mlp", "compile_mlp", "mlp_plan", "mlp_bound"]

#: The logical units of one pipeline with one second-layer PCU.
MLP_UNITS = {"g1": "pcu", "w1_pmu": "pmu", "h_pmu": "pmu", "g2": "pcu", "w2_pmu": "pmu"}


@dataclass(frozen=True)
class MlpShape:
    """``m`` rows through ``k`` inputs -> ``hidden`` -> ``n`` outputs."""
    g1: GemmShape          # H = X W1 (+ b1): m x hidden, k (+ 1)
    g2: GemmShape          # Y = H W2: m x n, hidden
    pipes: int = 1         # pipelines sharing out the row tiles

    @classmethod
    def of(cls, params, m, k, hidden, n, bias=False, pcus2=1, pipes=1):
        """``pcus2``: PCUs sharing the second layer's column tiles (in each pipeline);
        ``pipes``: pipelines sharing the row tiles."""
        g1 = GemmShape.of(params, m, hidden, k, bias)
        if isinstance(pipes, bool) or not isinstance(pipes, int) or not 1 <= pipes <= g1.mt:
            raise ValueError(f"mlp: pipes = {pipes!r} must be 1..{g1.mt} (the row tiles)")
        return cls(g1, GemmShape.of(params, m, n, hidden, pcus=pcus2), pipes)

    def pipe_tiles(self):
        """(first row tile, row tiles) of each pipeline."""
        return blocks(self.g1.mt, self.pipes)

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


def _limits(params, sh):
    """Why ``sh`` cannot run here, as far as resources go (placement may still refuse)."""
    cap = params.pmu_banks * params.pmu_bank_words
    out = []
    per = 1 + sh.g2.pcus
    for need, what, have in (
            (sh.pipes * per, "PCUs", len(grid_coords(params, "pcu"))),
            (sh.pipes * (per + 1), "PMUs", len(grid_coords(params, "pmu"))),
            (sh.pipes + 1, "AGCUs (W through one, each pipeline's X through another)",
             params.agcus),
            (sh.pipes * sh.g2.pcus, "AGCU store streams (one per second-layer PCU)",
             params.agcus * len(stores(params)))):
        if need > have:
            out.append(f"needs {need} {what}, the array has {have}")
    for name, words in (("W1", sh.g1.b_words), ("a PCU's share of W2", sh.g2.part_words)):
        if words > cap:
            out.append(f"{name} needs {words} words of PMU, a PMU holds {cap}")
    return out


def _check(params, sh, bufs):
    limits = _limits(params, sh)
    if limits:
        raise ValueError(f"mlp over {sh.pipes} pipeline(s) of {1 + sh.g2.pcus} PCUs: "
                         + "; ".join(limits))
    for name, buf, need in (("x", bufs[0], sh.x_words), ("w", bufs[1], sh.w_words),
                            ("y", bufs[2], sh.y_words)):
        if buf.words < need:
            raise ValueError(f"mlp: buffer {name} has {buf.words} words, the layout needs "
                             f"{need}")


def _w_pmus(sh, tiles):
    """W1 and each second-layer PCU's share of W2, each kept by its PMU from the multicast
    [W1 | W2] stream; read once per row tile of the pipeline (``tiles``)."""
    s1, s2, total = sh.g1, sh.g2, Counter(0, sh.w_words)
    part = s2.part_words
    w1 = PmuProgram(AccessPattern((total,), hi=s1.b_words),
                    AccessPattern((Counter(0, tiles), Counter(0, s1.b_words)), repeat=(0,)))
    w2 = [PmuProgram(AccessPattern((total,), base=-(s1.b_words + i * part), lo=0, hi=part),
                     AccessPattern((Counter(0, tiles), Counter(0, part)), repeat=(0,)))
          for i in range(s2.pcus)]
    return w1, w2


def _pipe_units(sh, p):
    """Unit names of pipeline ``p``: (g1, w1 PMU, h PMU, second-layer PCUs, their W2
    PMUs); pipeline 0's as :data:`MLP_UNITS` names them, the others' with ``@p``."""
    at = "" if p == 0 else f"@{p}"
    n2 = sh.g2.pcus
    g2 = ("g2",) if n2 == 1 else tuple(f"g2_{i}" for i in range(n2))
    pm = ("w2_pmu",) if n2 == 1 else tuple(f"w2_pmu{i}" for i in range(n2))
    return (f"g1{at}", f"w1_pmu{at}", f"h_pmu{at}", tuple(u + at for u in g2),
            tuple(u + at for u in pm))


def _agcu_plan(params, sh):
    """(X's AGCU per pipeline, W's AGCU, the (AGCU, store stream) of each second-layer PCU
    by pipeline): W through AGCU 1, pipeline p's X through AGCU 0 or p + 1; results through
    the store streams of AGCUs that load nothing first, then W's, then X's (a store takes
    beats from the AGCU's load; X streams a vector per cycle, W only at the start)."""
    x_agcus = [0] + [p + 1 for p in range(1, sh.pipes)]
    order = [a for a in range(params.agcus) if a not in x_agcus and a != 1] + [1] + x_agcus
    slots = [(a, st) for a in order for st in stores(params)]
    n2 = sh.g2.pcus
    return x_agcus, 1, [slots[p * n2:(p + 1) * n2] for p in range(sh.pipes)]


def _flows(sh, plan):
    """Units ({name: kind}) and vector flows of the fused kernel with AGCUs ``plan``
    (:func:`_agcu_plan`)."""
    s1, s2 = sh.g1, sh.g2
    P = s1.tile_rows // s1.stages
    y_rate = min(1.0, s2.rows / (s2.k * P))
    x_agcus, w_agcu, y_streams = plan
    units, w_pmus, flows = {}, [], []
    for p in range(sh.pipes):
        g1, w1, h, g2, pm = _pipe_units(sh, p)
        at = "" if p == 0 else f"@{p}"
        units.update({g1: "pcu", w1: "pmu", h: "pmu", **{u: "pcu" for u in g2},
                      **{u: "pmu" for u in pm}})
        w_pmus += [w1, *pm]
        flows += [
            VFlow(f"x{at}", agcu(x_agcus[p]), (port(g1),)),
            VFlow(f"w1{at}", port(w1), (port(g1, 1),), rate=1 / P),
            VFlow(f"h{at}", port(g1), (port(h),), rate=min(1.0, s1.rows / (s1.k * P))),
            VFlow(f"h_cols{at}", port(h), tuple(port(u) for u in g2)),
            *(VFlow(_pipe_flow("w2_", i, len(g2), p), port(m), (port(u, 1),), rate=1 / P)
              for i, (u, m) in enumerate(zip(g2, pm))),
            *(VFlow(_pipe_flow("y", i, len(g2), p), port(u), (agcu(a),), rate=y_rate,
                    shares="y") for i, (u, (a, _)) in enumerate(zip(g2, y_streams[p])))]
    # Loaded once, first: the flow every pipeline's W PMUs keep their part of.
    flows.insert(0, VFlow("w", agcu(w_agcu), tuple(port(u) for u in w_pmus)))
    return units, flows


@functools.lru_cache(maxsize=64)
def _placed(params, sh):
    """The placement of the fused MLP of shape ``sh`` (or its PlacementError), once per
    shape (the plan's try and the compile ask for the same one)."""
    plan = _agcu_plan(params, sh)
    units, flows = _flows(sh, plan)
    layout = try_place(params, f"mlp over {sh.pipes} pipeline(s)", units, vec=flows)
    return layout if isinstance(layout, PlacementError) else (layout, plan)


def _rows(acc, first, tiles):
    """``acc`` (outermost dimension: row tiles) for ``tiles`` row tiles from ``first``."""
    return TensorAccess((tiles,) + acc.shape[1:], acc.strides,
                        acc.offset + first * acc.strides[0])


def compile_mlp(params, m, k, hidden, n, *, x, w, y, bias=False, relu=True, relu2=False,
                bf16=False, pcus2=1, pipes=1):
    """The fused kernel for buffers ``x`` (``MlpShape.x_words``), ``w`` (``w_words``:
    ``[W1 | W2]``) and ``y`` (``y_words``); ``relu``: after the first layer; ``relu2``,
    ``bf16``: the second layer's epilogue; ``pcus2``: PCUs sharing the second layer's
    column tiles (each with its share of W2 in a PMU, fed H by one multicast stream);
    ``pipes``: pipelines sharing out the row tiles. A shape that does not fit raises
    ValueError (or PlacementError) naming the resource."""
    sh = MlpShape.of(params, m, k, hidden, n, bias, pcus2, pipes)
    _check(params, sh, (x, w, y))
    placed = _placed(params, sh)
    if isinstance(placed, PlacementError):
        raise placed
    layout, (x_agcus, w_agcu, y_streams) = placed
    s1, s2 = sh.g1, sh.g2
    share = s2.nt // s2.pcus
    tiles = sh.pipe_tiles()
    x_accs = [_rows(s1.a_access(), t0, t) for t0, t in tiles]
    y_accs = [[_rows(s2.c_access(i), t0, t) for i in range(s2.pcus)] for t0, t in tiles]
    w_acc = TensorAccess((sh.w_words,), (1,))
    pcus, pmus = {}, {}
    for p, (_, t) in enumerate(tiles):
        g1, w1, h, g2, pm = _pipe_units(sh, p)
        w1_pmu, w2_pmus = _w_pmus(sh, t)
        pcus[g1] = pack_systolic(SystolicProgram(k=s1.k, tiles=t * s1.nt, rows=s1.rows,
                                                 cols=s1.cols, tail=Tail(relu=relu)), params)
        g2_cfg = pack_systolic(SystolicProgram(k=s2.k, tiles=t * share, rows=s2.rows,
                                               cols=s2.cols, tail=Tail(relu=relu2, bf16=bf16)),
                               params)
        pcus.update({u: g2_cfg for u in g2})
        pmus.update({w1: pack_pmu(w1_pmu, params), **{u: pack_pmu(q, params)
                                                       for u, q in zip(pm, w2_pmus)},
                     h: pack_pmu(a_transpose_pmu(params, t, s1.rows, s2.k, share,
                                                 col_tiles=s1.nt), params)})
    loads = {a: (acc, x, sh.x_words, "x" if p == 0 else f"x@{p}")
             for p, (a, acc) in enumerate(zip(x_agcus, x_accs))}
    loads[w_agcu] = (w_acc, w, sh.w_words, "w")
    stores = [(a, y_accs[p][i], y, sh.y_words, _pipe_flow("y", i, s2.pcus, p))
              for p in range(sh.pipes) for i, (a, _) in enumerate(y_streams[p])]
    parts = {"pcus": layout.configs("pcu", pcus), "pmus": layout.configs("pmu", pmus),
             "agcus": agcu_programs(params, layout, loads, stores), "vec": layout.vec,
             "layout": layout}
    programs = {"g1": SystolicProgram(k=s1.k, tiles=s1.mt * s1.nt, rows=s1.rows,
                                      cols=s1.cols, tail=Tail(relu=relu)),
                "g2": SystolicProgram(k=s2.k, tiles=s2.mt * share, rows=s2.rows,
                                      cols=s2.cols, tail=Tail(relu=relu2, bf16=bf16))}

    def execute(mem, args):
        xv = np.concatenate([mem[stream_words(x, args, (a, "load"), acc)]
                             for a, acc in zip(x_agcus, x_accs)]).reshape(-1, params.pcu_lanes)
        ww = mem[stream_words(w, args, (w_agcu, "load"), w_acc)]
        out = _pipeline(params, sh, programs, xv, ww)     # per second-layer PCU, all rows
        per_tile = share * s2.rows
        for p, (t0, t) in enumerate(tiles):
            for i, key in enumerate(y_streams[p]):
                rows = out[i][t0 * per_tile:(t0 + t) * per_tile, :s2.cols]
                mem[stream_words(y, args, key, y_accs[p][i])] = rows.reshape(-1)
    return Mlp(sh, programs, kernel_program(params, "mlp", **parts, execute=execute), parts,
               bool(bias))


def _pipe_flow(name, i, n, p):
    """The flow name of second-layer PCU ``i`` (of ``n``) of pipeline ``p``: ``y``,
    ``y1``, ``y@2``, ``w2_1@2`` .."""
    return (f"{name}{i}" if n > 1 else name.rstrip("_")) + ("" if p == 0 else f"@{p}")


def _estimate(params, sh):
    """Cycles the fused kernel takes at least: the longest pipeline's row tiles through its
    two layers (:func:`two_stage_cycles`)."""
    s1, s2 = sh.g1, sh.g2
    P = s1.tile_rows // s1.stages
    return two_stage_cycles(max(t for _, t in sh.pipe_tiles()), s1.nt * s1.k * P,
                            s2.nt // s2.pcus * s2.k * P)


@functools.lru_cache(maxsize=256)
def mlp_plan(params, m, k, hidden, n, bias=False):
    """The :class:`MlpShape` (pipelines, second-layer PCUs per pipeline) of the fastest
    fused kernel of this shape that fits here (units, AGCUs, PMU capacities and a
    placement with links of its own), fewer units on a tie; None if none does."""
    g1 = GemmShape.of(params, m, hidden, k, bias)
    cands = []
    for pipes in range(1, min(g1.mt, params.agcus - 1) + 1):
        for pcus2 in range(1, -(-n // params.pcu_lanes) + 1):
            sh = MlpShape.of(params, m, k, hidden, n, bias, pcus2, pipes)
            if not _limits(params, sh):
                cands.append((_estimate(params, sh), pipes * (1 + pcus2), pipes, sh))
    for *_, sh in sorted(cands, key=lambda c: c[:3]):
        if not isinstance(_placed(params, sh), PlacementError):
            return sh
    return None


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
