"""Attention ``O = softmax(Q K^T / sqrt(d)) V`` on the socket, fused into one kernel
(intermediates stay on chip) and, for comparison, unfused (one kernel per op through
HBM).

Fused dataflow (four PCUs, four PMUs, two AGCUs; :data:`ATTENTION_UNITS`, placed by the
compiler):

* AGCU 1 loads ``[K^T | V]`` (both in the systolic B layout) once; the stream is
  multicast to two PMUs whose write predicates keep K^T in one and V in the other.
* ``qk`` (systolic PCU): ``S = Q K^T * log2(e) / sqrt(d)`` — Q from AGCU 0 (A layout,
  re-read per key tile), K^T from its PMU (re-read per query tile). The tail's scale
  folds ``1/sqrt(d)`` and the ``log2(e)`` of the exp2 that follows.
* S lands row-major in the ``s`` PMU (double-buffered per query tile). It reads each
  row twice, alternating between two flows: row ``r + LAG`` to the ``max`` PCU (row
  maximum: the reduction tree folded over the row by the accumulator), then row ``r`` to
  the ``exp`` PCU (``e = exp2(s - max)``, the row sum folded the same way) — the max of
  a row is ready by the time its exp pass starts. Steps past the tile's rows are
  predicated off and send nothing.
* ``e`` lands column-major in the ``e`` PMU, which reads it out as the systolic A operand
  (STAGES rows of one key per vector); the row sums go to the ``pv`` PCU's scalar input.
* ``pv`` (systolic PCU): ``O = rcp(sum) * (e V)`` — V from its PMU, the tail scaled by
  ``rcp`` of each row's sum (``ScaleSrc.SIN``, one scalar per row reused for every
  column tile); O to AGCU 1's store stream.

Where the array has room (AGCUs for a Q load and an O store stream per pipeline, PCUs and
PMUs for the units, a placement with links of their own; :func:`attention_plan` picks by
an estimate of the arrays' time), several such pipelines share out the query tiles in
contiguous blocks: pipeline ``i`` loads its Q through AGCU ``2i`` and stores its O through
AGCU ``2i + 1``; [K^T | V] is loaded once and multicast to every pipeline's K and V PMUs.
In each pipeline ``pv_pcus`` PCUs may share O's column tiles (``pv``, ``pv_b``, ..: e and
the row sums multicast to them, each with its columns of V in a PMU and its own store
stream). With ``proj`` the head's output projection ``O @ Wo`` follows in the same
kernel (:data:`PROJ_UNITS`): O lands column-major in a PMU that feeds it to the
projection's array as its A operand, Wo (after V in the K/V stream) in a PMU; the kernel
stores ``O Wo``.

The placement gives every vector and scalar flow links of its own: flows that shared a
link buffer could block each other (a stalled consumer of one holding up the other's
packets behind it) and close a dependency cycle through the pipeline.

Operands are BF16 values in FP32 words. Rows of the last query tile past ``seq`` are
zero queries (uniform softmax); they are computed and stored like the others.
"""

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np

from firmware import numerics as N
from firmware.compiler.agcu import TensorAccess
from firmware.compiler.counters import Counter
from firmware.compiler.pcu import (SimdProgram, Stage, SystolicProgram, Tail, gemm_streams,
                                   pack_simd, pack_systolic, simd_reference,
                                   systolic_reference, systolic_tile_rows)
from firmware.compiler.pmu import AccessPattern, PmuProgram, pack_pmu
from firmware.compiler.place import PlacementError, VFlow, agcu, port, try_place
from firmware.compiler.program import kernel_program, stream_words
from firmware.runtime.memory import Buffer
from hdl.agcu.config import stores
from hdl.grid import grid_coords
from hdl.pcu.pcu import Pcu

from .gemm import (GemmShape, a_transpose_buffers, a_transpose_pmu, compile_gemm, gemm_pcus,
                   pack_a, pack_b, pack_rows, transposed_stream)
from .pipelines import agcu_programs, blocks, two_stage_cycles
from .softmax import LOG2E, compile_softmax, softmax_bound

__all__ = ["ATTENTION_UNITS", "attention_units", "attention_plan", "attention_pipes",
           "attention_flows", "attention_fits", "attention_placement", "pv_name",
           "AttentionShape", "Attention", "compile_attention",
           "attention_bound", "exact_attention", "UnfusedAttention",
           "compile_attention_unfused", "unfused_words"]


#: The fused kernel's logical units (the compiler places them).
ATTENTION_UNITS = {"qk": "pcu", "k_pmu": "pmu", "s_pmu": "pmu", "max": "pcu", "exp": "pcu",
                   "e_pmu": "pmu", "pv": "pcu", "v_pmu": "pmu"}


@dataclass(frozen=True)
class AttentionShape:
    """Tiling of one attention head: ``seq`` queries and keys, head dim ``d``."""
    seq: int
    d: int
    qk: GemmShape          # S = Q K^T   (seq x seq, k = d)
    pv: GemmShape          # O = P V     (seq x d, k = seq)
    tiles: int | None = None    # query tiles of one pipeline (default: all of them)
    proj: GemmShape | None = None   # Y = O Wo (seq x n, k = d), fused after the head
    pv_pcus: int = 1       # PCUs sharing P V's column tiles in each pipeline

    @classmethod
    def of(cls, params, seq, d, proj=None, pv_pcus=1):
        """``proj``: the columns of an output projection ``O @ Wo`` fused after the head
        (None: the kernel stores O); ``pv_pcus``: PCUs sharing O's column tiles (a divisor
        of them; 1 with a projection, which takes whole rows of O)."""
        for name, v in (("seq", seq), ("d", d), ("pv_pcus", pv_pcus)) + (
                (("proj", proj),) if proj is not None else ()):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"attention: {name} = {v!r} must be a positive integer")
        pv = GemmShape.of(params, seq, d, seq)
        if pv.nt % pv_pcus or (proj is not None and pv_pcus > 1):
            raise ValueError(f"attention: pv_pcus = {pv_pcus} must divide O's {pv.nt} column "
                             f"tiles" + (" and be 1 with a projection" if proj else ""))
        return cls(seq, d, GemmShape.of(params, seq, seq, d), pv,
                   proj=None if proj is None else GemmShape.of(params, seq, proj, d),
                   pv_pcus=pv_pcus)

    @property
    def pv_share(self):
        """O's column tiles each P V PCU computes."""
        return self.pv.nt // self.pv_pcus

    @property
    def out(self):
        """The GEMM whose result the kernel stores: the projection's, else P V's."""
        return self.pv if self.proj is None else self.proj

    @property
    def rows(self):
        """Query rows per tile."""
        return self.qk.rows

    @property
    def mt(self):
        """Query tiles (of one pipeline where ``tiles`` says so)."""
        return self.qk.mt if self.tiles is None else self.tiles

    def pipe_tiles(self, pipes):
        """(first query tile, tiles) of each of ``pipes`` pipelines: contiguous blocks,
        the first ``mt % pipes`` one tile longer."""
        return blocks(self.qk.mt, pipes)

    @property
    def s_cols(self):
        """Words per row of S (keys rounded up to whole vectors)."""
        return self.qk.nt * self.qk.lanes

    @property
    def q_rows(self):
        """Row stride of Q row-major (the query-stationary layout): d in whole vectors."""
        return self.qk.k_vectors

    @property
    def q_words(self):
        """Words of Q in the systolic A layout or row-major (whole query tiles), whichever
        is larger (the kernel chooses)."""
        return max(self.qk.a_words, self.qk.mt * self.qk.tile_rows * self.q_rows)

    @property
    def k_words(self):
        return self.qk.b_words

    @property
    def v_words(self):
        return self.pv.b_words

    @property
    def wo_words(self):
        return 0 if self.proj is None else self.proj.b_words

    @property
    def kv_words(self):
        """Words of ``[K^T | V (| Wo)]``, the one stream AGCU 1 loads."""
        return self.k_words + self.v_words + self.wo_words

    @property
    def o_words(self):
        return self.out.c_words

    @property
    def macs(self):
        """MACs the systolic PCUs perform (padding included)."""
        return self.qk.macs + self.pv.macs + (0 if self.proj is None else self.proj.macs)


def attention_bound(q, k, v, lanes):
    """Bound on |O - O_exact| (float64, elementwise) for BF16-valued Q, K, V.

    S: d exact products, one FP32 rounding each, then the scale c = log2(e)/sqrt(d)
    (rounded to FP32) and the product rounding: |dS'| <= c (d 2^-24 sum|q||k|) + 2 2^-24
    |S'|. Each probability then errs relatively by at most 2 ln2 max|dS'| (numerator and
    normaliser) plus the softmax's own rounding (``softmax_bound`` over rows of seq).
    The systolic array multiplies BF16 operands: the probabilities (or the unnormalised
    e) enter P V rounded to BF16 (8 significant bits), a relative 2^-8 more. O = sum p v:
    the probability errors weigh |v|; the accumulation adds (seq + 1) roundings of 2^-24
    of sum p|v| (P V in FP32, then the scale by rcp(sum) and its product rounding are
    inside softmax_bound)."""

    fq, fk, fv = (N.from_bits(x).astype(np.float64) for x in (q, k, v))
    seq, d = fq.shape[0], fq.shape[1]
    c = LOG2E / math.sqrt(d)
    s = fq @ fk.T * c
    ds = c * d * 2.0 ** -24 * (np.abs(fq) @ np.abs(fk).T) + 2 * 2.0 ** -24 * np.abs(s)
    t = s - s.max(axis=1, keepdims=True)
    rel_p = 2 * math.log(2) * ds.max(axis=1) + softmax_bound(
        float(np.max(np.abs(t))), seq, lanes)
    e = np.exp2(t)
    p = e / e.sum(axis=1, keepdims=True)
    weight = p @ np.abs(fv)
    return ((rel_p[:, None] + 2.0 ** -8) * 1.01 + (seq + 2) * 2.0 ** -24) * weight


def exact_attention(q, k, v, magnitude=False):
    """float64 O for FP32-word operands; with ``magnitude`` also ``P |V|`` (the scale
    errors are measured against: O_ij can cancel to ~0)."""
    fq, fk, fv = (N.from_bits(x).astype(np.float64) for x in (q, k, v))
    s = fq @ fk.T / math.sqrt(fq.shape[1])
    e = np.exp(s - s.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    return (p @ fv, p @ np.abs(fv)) if magnitude else p @ fv


@dataclass(frozen=True)
class Attention:
    """A compiled fused attention kernel. ``arg_keys``: the AGCU arguments ({"q", "kv",
    "o"}: ((AGCU, "load"/"store"), ...)) that move each buffer (kernel looping steps them
    all per head)."""
    shape: AttentionShape
    programs: dict
    program: object
    parts: dict
    arg_keys: dict = dataclasses.field(default_factory=dict)
    q_stationary: bool = False      # Q row-major, each query tile held by a PMU

    def pack_q(self, params, q):
        """Q (seq x d FP32 words) as the kernel loads it: the systolic A layout, or (query
        stationary) row-major in whole query tiles (zeros) with rows of ``q_rows`` words
        (the pad: NaNs, never read into a product)."""
        if not self.q_stationary:
            return pack_a(params, q)
        sh = self.shape
        return pack_rows(q, sh.qk.mt * sh.qk.tile_rows, sh.q_rows)

    def pack_kv(self, params, k, v, wo=None):
        """``[K^T | V (| Wo)]`` (K, V: seq x d FP32 words; Wo: d x proj) in the layout
        AGCU 1 streams."""
        if (wo is None) != (self.shape.proj is None):
            raise ValueError("the attention was compiled " + ("with" if self.shape.proj else
                                                              "without") + " a projection")
        parts = [pack_b(params, np.asarray(k, np.uint32).T), pack_b(params, v)]
        return np.concatenate(parts + ([] if wo is None else [pack_b(params, wo)]))

    def unpack_o(self, words):
        """The result (O, or O Wo with a projection) from the words the kernel stores."""
        out, sh = self.shape.out, self.shape
        return np.asarray(words, np.uint32)[:out.c_words].reshape(out.c_rows, out.c_cols)[
            :sh.seq, :out.n]

    def reference(self, params, q, k, v, wo=None):
        """O (seq x d), or O Wo, bit-exactly as the kernel computes it."""
        sh = self.shape
        qs = np.repeat(pack_a(params, q).reshape(sh.mt, 1, -1), sh.qk.nt, axis=1)  # as qk takes Q
        parts = _pipeline(params, sh, self.programs, qs.reshape(-1, params.pcu_lanes),
                          self.pack_kv(params, k, v, wo))
        out = sh.out
        rows = np.concatenate([r.reshape(sh.mt, -1, sh.rows, r.shape[-1]) for r in parts],
                              axis=1).transpose(0, 2, 1, 3)
        return rows.reshape(out.c_rows, -1)[:sh.seq, :out.n]


def _programs(params, sh):
    chain = (Counter(0, sh.mt * sh.rows), Counter(0, sh.seq))
    return {
        "qk": SystolicProgram(k=sh.d, tiles=sh.mt * sh.qk.nt, rows=sh.rows, cols=sh.qk.cols,
                              tail=Tail(scale=LOG2E / math.sqrt(sh.d))),
        "max": SimdProgram(chain, (), reduce="MAX", accumulate=("MAX", 1)),
        "exp": SimdProgram(chain, (Stage("SUB", "VIN0", "SIN0"),), frozenset({"vin0", "sin0"}),
                           reduce="ADD", accumulate=("ADD", 1), tail=Tail(func="EXP2"),
                           vector_out=True, scalar_hold=1),
        "pv": SystolicProgram(k=sh.seq, tiles=sh.mt * sh.pv_share, rows=sh.rows,
                              cols=sh.pv.cols, tail=Tail(scale="SIN", row_fn="RCP"),
                              scale_tiles=sh.pv_share),
        **({} if sh.proj is None else {
            "proj": SystolicProgram(k=sh.d, tiles=sh.mt * sh.proj.nt, rows=sh.rows,
                                    cols=sh.proj.cols)}),
    }


def _pipeline(params, sh, programs, q_vectors, kv):
    """The rows each storing PCU emits (the P V PCUs, or the projection's; in store order:
    query tile, its column tiles, row), from the Q vectors AGCU 0 streams (each query tile
    once per key tile) and the words AGCU 1 loads."""
    L, TM = params.pcu_lanes, sh.qk.tile_rows
    kt = np.asarray(kv[:sh.k_words], np.uint32).reshape(-1, L)
    vb = np.asarray(kv[sh.k_words:sh.k_words + sh.v_words], np.uint32).reshape(-1, L)
    s = systolic_reference(programs["qk"], params, q_vectors, np.tile(kt, (sh.mt, 1)))["data"]
    s_rows = s.reshape(sh.mt, sh.qk.nt, sh.rows, L).transpose(0, 2, 1, 3).reshape(-1, L)
    mx = simd_reference(programs["max"], params, vin0=s_rows)["sdata"]
    ex = simd_reference(programs["exp"], params, vin0=s_rows, sin0=mx)
    e = ex["data"].reshape(sh.mt, sh.rows, sh.s_cols)[:, :, :sh.seq]
    # The A operand: query tiles of TM rows (rows past `rows` are never drained: zeros).
    a = np.zeros((sh.mt, TM, sh.seq), np.uint32)
    a[:, :sh.rows] = e
    share = sh.pv_share
    _, vin0, _ = gemm_streams(a.reshape(-1, sh.seq),
                              np.zeros((sh.seq, share * L), np.uint32), params)
    part = vb.reshape(sh.pv_pcus, -1, L)            # each PCU's column tiles of V
    outs = [systolic_reference(programs["pv"], params, vin0, np.tile(part[i], (sh.mt, 1)),
                               ex["sdata"])["data"] for i in range(sh.pv_pcus)]
    if sh.proj is None:
        return outs
    o = outs[0]
    # O's rows (query tile, d tile, row) as the projection's A operand, as the O PMU
    # transposes them.
    o = o.reshape(sh.mt, sh.pv.nt, sh.rows, L).transpose(0, 2, 1, 3).reshape(sh.mt, sh.rows, -1)
    a = np.zeros((sh.mt, TM, sh.d), np.uint32)
    a[:, :sh.rows] = o[:, :, :sh.d]
    _, vin0, _ = gemm_streams(a.reshape(-1, sh.d), np.zeros((sh.d, sh.proj.nt * L), np.uint32),
                              params)
    wo = np.asarray(kv[sh.k_words + sh.v_words:sh.kv_words], np.uint32).reshape(-1, L)
    return [systolic_reference(programs["proj"], params, vin0, np.tile(wo, (sh.mt, 1)))["data"]]


def _s_lag(params, sh):
    """Rows the max pass runs ahead of the exp pass: enough that a row's max (the PCU
    pipeline's latency after its last vector) is out when its exp pass starts, at most
    the scalar FIFOs' depth (the maxima wait there)."""
    per_step = 2 * sh.qk.nt                  # vectors the S PMU sends per lag step
    lag = 1
    while lag * per_step < Pcu.latency(params) and lag < params.pcu_fifo_depth:
        lag *= 2
    return min(lag, params.pcu_fifo_depth)


def _s_stride(sh):
    """Row stride of S in its PMU: a power of two, so a lag of rows is a power of two
    and its counter value shifted down is the flow id."""
    return 1 << (sh.s_cols - 1).bit_length()


def _s_pmu(params, sh):
    """S row-major, a query tile per buffer; per step r: row r to the exp PCU (flow 0),
    row r + lag to the max PCU (flow 1); rows outside the tile send nothing."""
    L, sp, lag = params.pcu_lanes, _s_stride(sh), _s_lag(params, sh)
    write = AccessPattern((Counter(0, sh.mt), Counter(0, sh.qk.nt * L, L),
                           Counter(0, sh.rows * sp, sp), Counter(0, L)), repeat=(0,))
    read = AccessPattern((Counter(0, sh.mt), Counter(-lag * sp, sh.rows * sp, sp),
                          Counter(0, lag * sp + 1, lag * sp), Counter(0, sh.seq)),
                         repeat=(0,), lo=0, hi=sh.rows * sp)
    return PmuProgram(write, read, nbuf=2, buf_words=sh.rows * sp, w_level=1, r_level=1,
                      read_flow=2, read_flow_shift=(lag * sp).bit_length() - 1,
                      skip_empty=True)


def _kv_pmus(params, sh):
    """K^T, each P V PCU's column tiles of V (and Wo), each kept by its PMU from the
    multicast [K^T | V (| Wo)] stream; read once per query tile."""
    total = Counter(0, sh.kv_words)
    out, v_part = [], sh.v_words // sh.pv_pcus
    for base, words in ((0, sh.k_words),
                        *((sh.k_words + i * v_part, v_part) for i in range(sh.pv_pcus)),
                        (sh.k_words + sh.v_words, sh.wo_words)):
        if words:
            out.append(PmuProgram(AccessPattern((total,), base=-base, lo=0, hi=words),
                                  AccessPattern((Counter(0, sh.mt), Counter(0, words)),
                                                repeat=(0,))))
    return out


def pipe_name(name, i):
    """A unit or flow of pipeline ``i``: pipeline 0 keeps the plain names."""
    return name if i == 0 else f"{name}{i}"


def pipe_agcus(i):
    """(Q load, O store) AGCUs of pipeline ``i``; AGCU 1 also loads [K^T | V] for all."""
    return 2 * i, 2 * i + 1


#: The units a fused output projection adds to a pipeline: O's transposing PMU, the
#: projection's PCU and the PMU holding Wo.
PROJ_UNITS = {"o_pmu": "pmu", "proj": "pcu", "wo_pmu": "pmu"}


def pv_name(name, j):
    """P V PCU ``j``'s unit or flow (``pv``, ``v_pmu``, ``o``, ...): the first keeps the
    plain name, the others get ``_b``, ``_c`` .."""
    return name if j == 0 else f"{name}_{chr(ord('a') + j)}"


def attention_units(pipes=1, q_pmu=False, proj=False, pv_pcus=1):
    """The logical units of ``pipes`` pipelines (:data:`ATTENTION_UNITS` each, with
    ``q_pmu`` a PMU holding its query tile, with ``proj`` :data:`PROJ_UNITS`, with
    ``pv_pcus`` P V PCUs, each with its PMU of V)."""
    units = dict(ATTENTION_UNITS, **({"q_pmu": "pmu"} if q_pmu else {}),
                 **(PROJ_UNITS if proj else {}),
                 **{pv_name(u, j): kind for j in range(1, pv_pcus)
                    for u, kind in (("pv", "pcu"), ("v_pmu", "pmu"))})
    return {pipe_name(u, i): kind for i in range(pipes) for u, kind in units.items()}


def attention_flows(params, sh, pipes=1, q_pmu=False):
    """The fused kernel's (vector, scalar) flows between the units of ``pipes`` pipelines
    (:func:`attention_units`): each its own Q load and O store stream, [K^T | V] multicast
    once to every pipeline's K and V PMUs. ``q_pmu``: each query tile is loaded once
    (row-major) into a PMU that transposes it and feeds it once per key tile."""
    P = sh.qk.tile_rows // params.pcu_stages
    vec, sca = [], []
    for i in range(pipes):
        u = functools.partial(pipe_name, i=i)
        qa, oa = pipe_agcus(i)
        if q_pmu:
            vec += [VFlow(u("q"), agcu(qa), (port(u("q_pmu")),),
                          rate=sh.qk.tile_rows / (sh.qk.lanes * P * sh.qk.nt)),
                    VFlow(u("q_cols"), port(u("q_pmu")), (port(u("qk")),))]
        else:
            vec += [VFlow(u("q"), agcu(qa), (port(u("qk")),))]
        pvs = [u(pv_name("pv", j)) for j in range(sh.pv_pcus)]
        if i == 0:      # loaded once, before the pipelines run
            keep = ("k_pmu", *(pv_name("v_pmu", j) for j in range(sh.pv_pcus))) + \
                (("wo_pmu",) if sh.proj else ())
            vec.append(VFlow("kv", agcu(1), tuple(port(pipe_name(m, j)) for j in range(pipes)
                                                  for m in keep)))
        vec += [
            VFlow(u("kt"), port(u("k_pmu")), (port(u("qk"), 1),), rate=1 / P),
            VFlow(u("s"), port(u("qk")), (port(u("s_pmu")),),
                  rate=min(1.0, sh.rows / (sh.d * P))),
            VFlow(u("s_exp"), port(u("s_pmu")), (port(u("exp")),), rate=0.5),
            VFlow(u("s_max"), port(u("s_pmu")), (port(u("max")),), rate=0.5),
            VFlow(u("e"), port(u("exp")), (port(u("e_pmu")),), rate=0.5),
            VFlow(u("e_cols"), port(u("e_pmu")), tuple(port(pv) for pv in pvs)),
        ]
        for j, pv in enumerate(pvs):    # results drain to memory: they may share links
            vec += [VFlow(u(pv_name("v", j)), port(u(pv_name("v_pmu", j))), (port(pv, 1),),
                          rate=1 / P),
                    VFlow(u(pv_name("o", j)), port(pv),
                          (port(u("o_pmu")) if sh.proj else agcu(oa),),
                          rate=min(1.0, sh.rows / (sh.seq * P)),
                          shares=None if sh.proj else u("o"))]
        if sh.proj:     # O's rows transposed into the projection's A operand
            vec += [VFlow(u("o_cols"), port(u("o_pmu")), (port(u("proj")),)),
                    VFlow(u("wo"), port(u("wo_pmu")), (port(u("proj"), 1),), rate=1 / P),
                    VFlow(u("y"), port(u("proj")), (agcu(oa),),
                          rate=min(1.0, sh.rows / (sh.d * P)))]
        sca += [VFlow(u("max"), port(u("max")), (port(u("exp")),), rate=1 / sh.qk.nt),
                VFlow(u("sum"), port(u("exp")), tuple(port(pv) for pv in pvs),
                      rate=1 / sh.qk.nt)]
    return vec, sca


@functools.lru_cache(maxsize=256)
def attention_plan(params, seq, d, proj=None):
    """(pipelines, query stationary, P V PCUs per pipeline) of the fused kernel here: of
    those the array has units, AGCUs (a Q load and an O store stream per pipeline) and
    store streams for, the fastest by :func:`_estimate` (on a tie: with a PMU holding each
    query tile — Q then crosses HBM once —, then fewer units) that places with links of
    its own. ``proj``: with a fused output projection of that many columns. (1, False, 1)
    where nothing places (the compile then names why)."""
    sh = AttentionShape.of(params, seq, d, proj)
    cands = []
    for pipes in range(1, max(1, min(params.agcus // 2, sh.mt)) + 1):
        for pv_pcus in range(1, 2 if proj else min(sh.pv.nt, params.agcu_stores) + 1):
            if sh.pv.nt % pv_pcus:
                continue
            for q_pmu in (True, False):
                if q_pmu and not a_transpose_buffers(params, sh.d):
                    continue
                units = attention_units(pipes, q_pmu, proj is not None, pv_pcus)
                kinds = list(units.values())
                if kinds.count("pcu") > len(grid_coords(params, "pcu")) or \
                        kinds.count("pmu") > len(grid_coords(params, "pmu")):
                    continue
                cands.append((_estimate(sh, pipes, pv_pcus), not q_pmu, len(units),
                              pipes, q_pmu, pv_pcus))
    for *_, pipes, q_pmu, pv_pcus in sorted(cands):
        sub = dataclasses.replace(sh, pv_pcus=pv_pcus)
        if not isinstance(_placed(params, sub, pipes, q_pmu), PlacementError):
            return pipes, q_pmu, pv_pcus
    return 1, False, 1


def _estimate(sh, pipes, pv_pcus):
    """Cycles the pipelines' arrays take at least: the longest pipeline's query tiles
    through Q K^T and P V shared by ``pv_pcus`` (:func:`two_stage_cycles`)."""
    P = sh.qk.tile_rows // sh.qk.stages
    return two_stage_cycles(-(-sh.qk.mt // pipes), sh.qk.nt * sh.d * P,
                            sh.pv.nt // pv_pcus * sh.seq * P)


def _graph(params, sh, pipes, q_pmu):
    """(units, vector flows, scalar flows) of the fused kernel of shape ``sh``."""
    return (attention_units(pipes, q_pmu, sh.proj is not None, sh.pv_pcus),
            *attention_flows(params, sh, pipes, q_pmu))


@functools.lru_cache(maxsize=64)
def _placed(params, sh, pipes, q_pmu):
    """The placed fused kernel (or its PlacementError), once per plan."""
    units, vec, sca = _graph(params, sh, pipes, q_pmu)
    return try_place(params, "attention", units, vec=vec, sca=sca)


def attention_placement(params, seq, d):
    """(units, vector flows, scalar flows) of the fused kernel :func:`attention_plan`
    picks here (what placement is timed on)."""
    pipes, q_pmu, pv_pcus = attention_plan(params, seq, d)
    return _graph(params, AttentionShape.of(params, seq, d, pv_pcus=pv_pcus), pipes, q_pmu)


def attention_pipes(params, seq, d):
    """Pipelines the fused kernel runs here (:func:`attention_plan`)."""
    return attention_plan(params, seq, d)[0]


def compile_attention(params, seq, d, *, q, kv, o, pipes=None, q_stationary=None,
                      proj=None, pv_pcus=None):
    """The fused kernel for buffers ``q`` (``shape.q_words``), ``kv`` (``kv_words``) and
    ``o`` (``o_words``); a configuration that does not fit raises ValueError naming the
    resource. ``pipes``: pipelines sharing out the query tiles; ``q_stationary``: each
    query tile held by a PMU (Q row-major in memory); by default as :func:`attention_plan`
    chooses. ``proj``: the columns of an output projection ``O @ Wo`` fused after the
    head (Wo after V in ``kv``; the kernel stores ``O Wo``); ``pv_pcus``: PCUs sharing
    P V's column tiles in each pipeline (each storing through its own store stream)."""
    plan = attention_plan(params, seq, d, proj)
    sh = AttentionShape.of(params, seq, d, proj, plan[2] if pv_pcus is None else pv_pcus)
    L, cap = params.pcu_lanes, params.pmu_banks * params.pmu_bank_words
    if params.agcus < 2:
        raise ValueError("the attention kernel needs two AGCUs")
    for name, words in (("K^T", sh.k_words), ("V", sh.v_words),
                        ("S (two query tiles)", 2 * sh.rows * _s_stride(sh)),
                        ("e (two query tiles)", 2 * sh.seq * sh.qk.tile_rows),
                        ("Wo", sh.wo_words),
                        ("O (two query tiles)", 2 * sh.d * sh.qk.tile_rows if proj else 0)):
        if words > cap:
            raise ValueError(f"attention seq={seq} d={d}: {name} needs {words} words of PMU, "
                             f"a PMU holds {cap}")
    for name, buf, need in (("q", q, sh.q_words), ("kv", kv, sh.kv_words), ("o", o, sh.o_words)):
        if buf.words < need:
            raise ValueError(f"attention seq={seq} d={d}: buffer {name} has {buf.words} "
                             f"words, the layout needs {need}")
    pipes = plan[0] if pipes is None else pipes
    q_pmu = plan[1] if q_stationary is None else bool(q_stationary)
    if isinstance(pipes, bool) or not isinstance(pipes, int) or not 1 <= pipes <= sh.mt:
        raise ValueError(f"attention seq={seq} d={d}: pipes = {pipes!r} must be 1..{sh.mt} "
                         f"(the query tiles)")
    if 2 * pipes > max(2, params.agcus):
        raise ValueError(f"attention over {pipes} pipelines needs {2 * pipes} AGCUs (a Q load "
                         f"and an O store stream each), the array has {params.agcus}")
    if sh.pv_pcus > params.agcu_stores:
        raise ValueError(f"attention with {sh.pv_pcus} P V PCUs per pipeline needs as many "
                         f"store streams per AGCU, the array has {params.agcu_stores}")
    layout = _placed(params, sh, pipes, q_pmu)
    if isinstance(layout, PlacementError):
        raise layout
    vec, sca = layout.vec, layout.sca
    kv_acc = TensorAccess((sh.kv_words,), (1,))
    pipelines = [_pipe_parts(params, sh, i, t0, n, vec, q_pmu) for i, (t0, n) in
                 enumerate(sh.pipe_tiles(pipes))]
    loads = {1: (kv_acc, kv, sh.kv_words, "kv")}
    outs = []           # (AGCU, store stream, access, flow) of every storing PCU
    for pp in pipelines:
        qa, oa = pipe_agcus(pp["i"])
        loads[qa] = (pp["q_acc"], q, sh.q_words, pipe_name("q", pp["i"]))
        last = "y" if sh.proj else "o"
        outs += [(oa, stores(params)[j], acc, pipe_name(pv_name(last, j), pp["i"]))
                 for j, acc in enumerate(pp["o_accs"])]
    agcus = agcu_programs(params, layout, loads,
                          [(a, acc, o, sh.o_words, flow) for a, _, acc, flow in outs])
    parts = {"pcus": layout.configs("pcu", {n: c for pp in pipelines for n, c in pp["pcus"].items()}),
             "pmus": layout.configs("pmu", {n: c for pp in pipelines for n, c in pp["pmus"].items()}),
             "agcus": agcus, "vec": vec, "sca": sca, "layout": layout}

    def execute(mem, args):
        kvw = mem[stream_words(kv, args, (1, "load"), kv_acc)]
        for pp in pipelines:
            qa, oa = pipe_agcus(pp["i"])
            qv = mem[stream_words(q, args, (qa, "load"), pp["q_acc"])].reshape(-1, L)
            if q_pmu:       # the PMU's transpose: each query tile once per key tile
                qv = transposed_stream(params, qv, d, sh.qk.nt)
            parts_ = _pipeline(params, pp["shape"], pp["programs"], qv, kvw)
            for j, (rows, acc) in enumerate(zip(parts_, pp["o_accs"])):
                mem[stream_words(o, args, (oa, stores(params)[j]), acc)] = \
                    rows[:, :sh.out.cols].reshape(-1)
    keys = {"q": tuple((pipe_agcus(i)[0], "load") for i in range(pipes)), "kv": ((1, "load"),),
            "o": tuple((a, st) for a, st, _, _ in outs)}
    return Attention(sh, _programs(params, sh), kernel_program(params, "attention", **parts,
                                                                execute=execute), parts, keys,
                     q_pmu)


def _pipe_parts(params, sh, i, t0, n, vec, q_pmu=False):
    """Pipeline ``i`` of the fused kernel, query tiles ``t0 .. t0 + n``: its shape, PCU and
    PMU configs ({logical unit: config}), its Q load and the store access of each storing
    PCU (``q_pmu``: Q row-major, its tiles into the pipeline's query PMU)."""
    u = functools.partial(pipe_name, i=i)
    sub = dataclasses.replace(sh, tiles=n)
    programs = _programs(params, sub)
    for name, fid in (("s_exp", 0), ("s_max", 1)):
        if vec.headers[u(name)]["flow"] != fid:
            raise AssertionError(f"flow {u(name)} must leave the S PMU with id {fid}")
    k_pmu, *v_pmus = _kv_pmus(params, sub)
    v_pmus, wo_pmu = v_pmus[:sh.pv_pcus], v_pmus[sh.pv_pcus:]
    qk, pv, out = sh.qk, sh.pv, sh.out
    tile_a = qk.a_words // qk.mt
    q_acc = TensorAccess((n, qk.nt, tile_a), (tile_a, 0, 1), offset=t0 * tile_a)
    if q_pmu:
        TM = qk.tile_rows
        q_acc = TensorAccess((n * TM, sh.q_rows), (sh.q_rows, 1), offset=t0 * TM * sh.q_rows)
    share = out.nt // sh.pv_pcus if sh.proj is None else out.nt
    o_accs = [TensorAccess((n, share, out.rows, out.cols),
                           (out.rows * out.c_cols, out.cols, out.c_cols, 1),
                           offset=t0 * out.rows * out.c_cols + j * share * out.cols)
              for j in range(1 if sh.proj else sh.pv_pcus)]
    pcus = {u("qk"): pack_systolic(programs["qk"], params),
            u("max"): pack_simd(programs["max"], params),
            u("exp"): pack_simd(programs["exp"], params),
            **{u(pv_name("pv", j)): pack_systolic(programs["pv"], params)
               for j in range(sh.pv_pcus)}}
    # e is multicast to the P V PCUs: read once per column tile of a PCU's share.
    pmus = {u("k_pmu"): pack_pmu(k_pmu, params),
            **{u(pv_name("v_pmu", j)): pack_pmu(v, params) for j, v in enumerate(v_pmus)},
            u("s_pmu"): pack_pmu(_s_pmu(params, sub), params),
            u("e_pmu"): pack_pmu(a_transpose_pmu(params, n, sh.rows, sh.seq, sh.pv_share),
                                 params)}
    if q_pmu:
        pmus[u("q_pmu")] = pack_pmu(a_transpose_pmu(params, n, qk.tile_rows, sh.d, qk.nt),
                                    params)
    if sh.proj:
        pcus[u("proj")] = pack_systolic(programs["proj"], params)
        pmus[u("wo_pmu")] = pack_pmu(wo_pmu[0], params)
        pmus[u("o_pmu")] = pack_pmu(a_transpose_pmu(params, n, sh.rows, sh.d, out.nt,
                                                    col_tiles=pv.nt), params)
    return {"i": i, "shape": sub, "programs": programs, "pcus": pcus, "pmus": pmus,
            "q_acc": q_acc, "o_accs": o_accs}


# --- unfused: one kernel per op, intermediates through HBM ------------------------------

@dataclass(frozen=True)
class UnfusedAttention:
    """Three kernels run as one launch list: ``S = Q K^T`` (GEMM, on two PCUs when K^T's
    halves fit their PMUs), ``P = softmax(S / sqrt(d))`` (row-major, rows padded to whole
    vectors), ``O = P V`` (GEMM taking its A operand row-major through a transposing PMU,
    as it arrives from the softmax). Queries are padded to whole query tiles (``m``
    rows)."""
    shape: AttentionShape
    m: int
    kernels: tuple           # (gemm qk, softmax, gemm pv)

    @property
    def programs(self):
        return [k.program for k in self.kernels]

    def pack_q(self, params, q):
        q = np.asarray(q, np.uint32)
        qp = np.zeros((self.m, q.shape[1]), np.uint32)
        qp[:len(q)] = q
        return self.kernels[0].pack_a(params, qp)

    def pack_k(self, params, k):
        return self.kernels[0].pack_b(params, np.asarray(k, np.uint32).T)

    def pack_v(self, params, v):
        return self.kernels[2].pack_b(params, v)

    def unpack_o(self, words):
        return self.kernels[2].unpack_c(words)[:self.shape.seq]


def compile_attention_unfused(params, seq, d, *, q, k, v, s, p, o):
    """Buffers: ``q``, ``k``, ``v`` (inputs), ``s``, ``p`` (intermediates), ``o``; sizes
    from :func:`unfused_words`."""
    sh = AttentionShape.of(params, seq, d)
    words = unfused_words(params, seq, d)
    m, kp, pcus = words["m"], words["p_stride"], words["pcus"]
    g1 = compile_gemm(params, m, seq, d, a=q, b=k, c=s, pcus=pcus[0])
    sm = compile_softmax(params, m, seq, x=s, y=p, x_stride=g1.shape.c_cols, y_stride=kp,
                         scale=1 / math.sqrt(d))
    g2 = compile_gemm(params, m, d, seq, a=p, b=v, c=o, a_rows=kp, pcus=pcus[1])
    return UnfusedAttention(sh, m, (g1, sm, g2))


def unfused_words(params, seq, d):
    """Words of each buffer of the unfused attention (and ``m``, the padded query rows)."""
    tm = systolic_tile_rows(params)
    m = -(-seq // tm) * tm
    L = params.pcu_lanes
    # S = Q K^T and O = P V on as many PCUs as each can use (P row-major through a
    # transposing PMU that multicasts it).
    pcus = (gemm_pcus(params, m, seq, d), gemm_pcus(params, m, d, seq, False, True))
    g1 = GemmShape.of(params, m, seq, d, pcus=pcus[0])
    g2 = GemmShape.of(params, m, d, seq, pcus=pcus[1], a_pmu=True)
    kp = -(-seq // L) * L
    # The softmax reads whole vectors per row: the last row may run past C's end.
    return {"m": m, "p_stride": kp, "pcus": pcus, "q": g1.a_words, "k": g1.b_words, "s": g1.c_words + L,
            "p": m * kp, "v": g2.b_words, "o": g2.c_words}


@functools.lru_cache(maxsize=256)
def attention_fits(params, seq, d, proj=None):
    """Whether the fused kernel of ``seq`` x ``d`` (with a projection of ``proj`` columns)
    fits the array (PMU capacities, AGCUs, a placement with links of its own): compiled
    once against placeholder buffers."""
    sh = AttentionShape.of(params, seq, d, proj)
    try:
        compile_attention(params, seq, d, q=Buffer("hbm", 0, sh.q_words, "q"),
                          kv=Buffer("hbm", 0, sh.kv_words, "kv"),
                          o=Buffer("hbm", 0, sh.o_words, "o"), proj=proj)
    except (ValueError, PlacementError):
        return False
    return True
