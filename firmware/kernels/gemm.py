"""GEMM on the socket: ``C = A @ B`` (BF16 values in FP32 words, FP32 accumulation) in one
PCU's systolic array or several sharing the column tiles (:func:`_parallel_gemm`), with an
optional fused epilogue of the PCU tail (ReLU, BF16 convert).

Dataflow on one PCU: AGCU 0's load stream feeds A to the PCU's ``vin0`` (one vector per
cycle), AGCU 1's load stream feeds B to ``vin1`` (one vector per accumulation step), and
the result rows come back to AGCU 1's store stream (AGCU 0's when A is row-major). The
whole product is one kernel: output tiles of ``systolic_tile_rows`` x LANES in row-major
tile order, A re-read for every column tile and B for every row tile by repeated
(stride-0) AGCU dimensions.

Operand layouts in device memory (``pack_a`` / ``pack_b`` write them, as weights are
packed ahead of time): A as the systolic array takes it, per row tile and step the
``interleave`` vectors of STAGES rows (LANES words each, the upper lanes unused); B per
column tile and step one LANES-word row; both zero padded. C is row-major with
``c_cols`` columns (N, or N rounded up to LANES when N > LANES) and ``c_rows`` rows.
"""

import dataclasses
import functools
import itertools
from dataclasses import dataclass

import numpy as np

from firmware.numerics import QNAN32
from firmware.compiler.agcu import TensorAccess
from firmware.compiler.counters import Counter
from firmware.compiler.pcu import (SystolicProgram, Tail, gemm_streams, pack_systolic,
                                   systolic_reference, systolic_tile_rows)
from firmware.compiler.pmu import (AccessPattern, PmuProgram, access_reference,
                                   choose_bank_bits, pack_pmu)
from firmware.compiler.place import (PlacementError, VFlow, agcu, place_and_route, port,
                                    try_place)
from firmware.compiler.program import kernel_program, stream_words
from hdl.agcu.config import stores
from hdl.grid import grid_coords

from .pipelines import agcu_programs

__all__ = ["GemmShape", "Gemm", "compile_gemm", "gemm_pcus", "gemm_limits", "share_groups",
           "with_ones_column", "pack_a", "pack_b", "pack_rows", "transposed_stream",
           "a_transpose_pmu", "a_transpose_buffers", "c_assignments", "parallel_flows"]


@dataclass(frozen=True)
class GemmShape:
    """Tiling of an M x K by K x N product on the array of ``params``."""
    m: int
    n: int
    k: int
    lanes: int
    stages: int
    tile_rows: int

    pcus: int = 1
    share_multiple: int = 1     # each PCU's column tiles padded to a multiple of it

    @classmethod
    def of(cls, params, m, n, k, bias=False, pcus=1, a_pmu=False):
        """With ``bias`` the array runs one more step (``k`` is then K + 1). ``pcus``: the
        column tiles are shared by that many PCUs (padded to a multiple of it). ``a_pmu``:
        A is held by a PMU (A-stationary, read from HBM once per group of column tiles):
        each PCU's share is padded to the multiple that :func:`_stationary_multiple` says
        is fastest (fewer, fuller groups)."""
        for name, v in (("m", m), ("n", n), ("k", k), ("pcus", pcus)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"gemm: {name} = {v!r} must be a positive integer")
        s = cls(m, n, k + bool(bias), params.pcu_lanes, params.pcu_stages,
                systolic_tile_rows(params), pcus)
        if a_pmu and pcus > 1:
            s = dataclasses.replace(s, share_multiple=_stationary_multiple(params, s))
        return s

    @property
    def mt(self):
        return -(-self.m // self.tile_rows)

    @property
    def nt(self):
        """Column tiles (a multiple of ``pcus`` x ``share_multiple``; padding tiles compute
        zeros)."""
        per = self.pcus * self.share_multiple
        return -(-self.n // (self.lanes * per)) * per

    @property
    def part_words(self):
        """Words of B one PCU's share of the column tiles takes."""
        return self.nt // self.pcus * self.k * self.lanes

    @property
    def rows(self):
        """Result rows each tile emits."""
        return min(self.m, self.tile_rows)

    @property
    def cols(self):
        """Result lanes each tile emits (the packet mask)."""
        return min(self.n, self.lanes)

    @property
    def c_rows(self):
        return self.mt * self.rows

    @property
    def c_cols(self):
        return self.nt * self.cols

    @property
    def a_words(self):
        return self.mt * self.k * (self.tile_rows // self.stages) * self.lanes

    @property
    def k_vectors(self):
        """Words of a row of A read as whole vectors: the least row stride of row-major A."""
        return -(-self.k // self.lanes) * self.lanes

    def a_row_words(self, a_rows):
        """Words of A row-major with row stride ``a_rows``, rows to whole row tiles, each
        read as whole vectors."""
        return (self.mt * self.tile_rows - 1) * a_rows + self.k_vectors

    @property
    def b_words(self):
        return self.nt * self.k * self.lanes

    @property
    def c_words(self):
        return self.c_rows * self.c_cols

    def a_access(self):
        """A's load stream: each row tile's layout once per column tile of a PCU (with
        ``pcus``, every PCU takes the same A)."""
        tile_a = self.k * (self.tile_rows // self.stages) * self.lanes
        return TensorAccess((self.mt, self.nt // self.pcus, tile_a), (tile_a, 0, 1))

    def c_access(self, part=0, tiled=False):
        """C's store stream of PCU ``part`` of ``pcus`` (its share of the column tiles):
        per tile, its rows' valid lanes, into row-major C (``tiled``: each tile's rows x
        valid lanes contiguous, tiles in row-major order)."""
        nt = self.nt // self.pcus
        if tiled:
            rc = self.rows * self.cols
            return TensorAccess((self.mt, nt, rc), (self.nt * rc, rc, 1), offset=part * nt * rc)
        return TensorAccess((self.mt, nt, self.rows, self.cols),
                            (self.rows * self.c_cols, self.cols, self.c_cols, 1),
                            offset=part * nt * self.cols)

    @property
    def macs(self):
        """MACs the array performs (padded tiles included)."""
        return self.mt * self.nt * self.tile_rows * self.lanes * self.k


@dataclass(frozen=True)
class Gemm:
    """A compiled GEMM. With a bias epilogue the array computes ``[A 1] @ [B; bias]``: the
    bias is the last accumulation step, ``c + 1 x bias`` with an exact product and one
    FP32 rounding — the same result as adding it after the sum (the bias is BF16 data, as
    all stored operands)."""
    shape: GemmShape
    systolic: SystolicProgram
    program: object
    parts: dict
    bias: bool = False
    c_streams: tuple = ((1, "store"),)    # the AGCU store streams that write C
    a_rows: int | None = None   # A row-major with this row stride (else the systolic layout)
    c_tiles: bool = False       # C tile by tile (else row-major)

    def _a(self, a):
        return with_ones_column(a) if self.bias else np.asarray(a, np.uint32)

    def _b(self, b, bias):
        b = np.asarray(b, np.uint32)
        if self.bias != (bias is not None):
            raise ValueError("the kernel was compiled " + ("with" if self.bias else "without")
                             + " a bias epilogue")
        if self.bias:
            b = np.vstack([b, np.asarray(bias, np.uint32).reshape(1, -1)])
        pad = self.shape.nt * self.shape.lanes - b.shape[1]     # whole (shared) column tiles
        return np.hstack([b, np.zeros((b.shape[0], pad), np.uint32)])

    def pack_a(self, params, a):
        """A (M x K FP32 words) in the device layout: the systolic one, or row-major (row
        stride ``a_rows``, rows to whole row tiles: zeros; the pad of each row: NaNs, never
        read into a product)."""
        if self.a_rows is None:
            return pack_a(params, self._a(a))
        return pack_rows(self._a(a), self.shape.mt * self.shape.tile_rows, self.a_rows)

    def pack_b(self, params, b, bias=None):
        """B (K x N FP32 words), and the bias (N,) if compiled with one, in the device
        layout."""
        return pack_b(params, self._b(b, bias))

    def unpack_c(self, words):
        s = self.shape
        if self.c_tiles:
            t = np.asarray(words, np.uint32)[:s.c_words].reshape(s.mt, s.nt, s.rows, s.cols)
            return t.transpose(0, 2, 1, 3).reshape(s.c_rows, s.c_cols)[:s.m, :s.n]
        return np.asarray(words, np.uint32).reshape(s.c_rows, s.c_cols)[:s.m, :s.n]

    def reference(self, params, a, b, bias=None):
        """C bit-exactly as the PCU computes it (bias and tail included)."""
        s = self.shape
        _, vin0, vin1 = gemm_streams(self._a(a), self._b(b, bias), params)
        whole = dataclasses.replace(self.systolic, tiles=s.mt * s.nt)    # every PCU's tiles
        out = systolic_reference(whole, params, vin0, vin1)["data"]
        tiles = out.reshape(s.mt, s.nt, s.rows, s.lanes)[..., :s.cols]
        return tiles.transpose(0, 2, 1, 3).reshape(s.c_rows, s.c_cols)[:s.m, :s.n]


def with_ones_column(a):
    """``[A 1]``: A (FP32 words) with a column of 1.0 — the A side of a bias epilogue (the
    bias is the last accumulation step)."""
    a = np.asarray(a, np.uint32)
    return np.hstack([a, np.full((a.shape[0], 1), 0x3F800000, np.uint32)])


def pack_a(params, a):
    """An M x K operand (FP32 words) in the systolic A layout: per row tile (zero padded)
    and step, the ``interleave`` vectors of STAGES rows."""
    a = np.asarray(a, np.uint32)
    _, vin0, _ = gemm_streams(a, np.zeros((a.shape[1], 1), np.uint32), params)  # 1 col tile
    return vin0.reshape(-1)


def pack_rows(a, rows, stride):
    """An operand (FP32 words) row-major with row stride ``stride``, ``rows`` rows (the
    rows past it zeros; the pad of each row NaNs, never read into a product)."""
    a = np.asarray(a, np.uint32)
    out = np.full((rows, stride), QNAN32, np.uint32)
    out[:, :a.shape[1]] = 0
    out[:len(a), :a.shape[1]] = a
    return out.reshape(-1)


def transposed_stream(params, words, k, col_tiles):
    """The systolic A stream a transposing PMU (:func:`a_transpose_pmu`) makes of the
    row-major words it loads (whole row tiles of ``k``-word rows read as whole vectors):
    each row tile once per column tile, ``col_tiles`` of them."""
    L = params.pcu_lanes
    rows = np.asarray(words, np.uint32).reshape(-1, -(-k // L) * L)[:, :k]
    return gemm_streams(rows, np.zeros((k, col_tiles * L), np.uint32), params)[1]


def pack_b(params, b):
    """A K x N operand (FP32 words) in the systolic B layout: per column tile (zero
    padded) and step, one LANES-word row."""
    b = np.asarray(b, np.uint32)
    _, _, vin1 = gemm_streams(np.zeros((1, b.shape[0]), np.uint32), b, params)
    return vin1.reshape(-1)


def a_transpose_pmu(params, tiles, rows, k, repeat, col_tiles=None):
    """A PMU that turns rows into the systolic A operand: per tile (a buffer; two, so the
    next tile lands while this one is read) it stores ``rows`` rows of ``k`` words arriving
    as row vectors (lanes = columns) column-major (word ``col * TM + row``), and reads the
    tile ``repeat`` times as the array takes A: per step and slot the STAGES rows of one
    column. Rows of a tile past ``rows`` read as whatever the buffer held (never drained).
    ``col_tiles``: the rows arrive as another GEMM emits them — per column tile of LANES
    columns, its ``rows`` rows (``col_tiles`` x LANES columns stored, the first ``k`` read)."""
    TM, S, L = systolic_tile_rows(params), params.pcu_stages, params.pcu_lanes
    cap = params.pmu_banks * params.pmu_bank_words
    cols = k if col_tiles is None else max(k, col_tiles * L)
    nbuf = a_transpose_buffers(params, cols)
    if not nbuf:
        raise ValueError(f"a tile of {TM} rows x {cols} in a PMU buffer needs "
                         f"{cols * TM} words, a PMU holds {cap}")
    if col_tiles is None:
        write = AccessPattern((Counter(0, tiles), Counter(0, rows), Counter(0, k * TM, TM)),
                              repeat=(0,))
    else:
        write = AccessPattern((Counter(0, tiles), Counter(0, col_tiles * L * TM, L * TM),
                               Counter(0, rows), Counter(0, L * TM, TM)), repeat=(0,))
    read = AccessPattern((Counter(0, tiles), Counter(0, repeat), Counter(0, k * TM, S),
                          Counter(0, S)), repeat=(0, 1))
    # One tile of each pattern is enough to choose conflict-free bank bits.
    bits = choose_bank_bits([
        access_reference(AccessPattern((Counter(0, 1),) + write.counters[1:]), params),
        access_reference(AccessPattern((Counter(0, 1), Counter(0, 1)) + read.counters[2:]),
                         params)], params)
    return PmuProgram(write, read, bits, nbuf=nbuf, buf_words=cols * TM, w_level=1, r_level=1)


def a_transpose_buffers(params, cols):
    """Buffers of :func:`a_transpose_pmu` for tiles of ``cols`` columns: two where they fit
    (the next tile lands while this one is read), else one (the next waits), else 0."""
    cap = params.pmu_banks * params.pmu_bank_words
    tile = cols * systolic_tile_rows(params)
    return 2 if 2 * tile <= cap else 1 if tile <= cap else 0


def compile_gemm(params, m, n, k, *, a, b, c, bias=False, relu=False, bf16=False,
                 a_rows=None, pcus=1, c_tiles=False):
    """The GEMM kernel for buffers ``a``, ``b``, ``c`` (``firmware.runtime.memory.Buffer``
    of at least ``GemmShape.of(params, m, n, k, bias).a_words`` ... words); epilogue:
    ``bias`` (added per output column), then ReLU, then BF16 convert.

    ``a_rows``: A is row-major with this row stride (words; rows padded to whole query
    tiles, ``GemmShape.mt * tile_rows`` rows) instead of the systolic layout: AGCU 0 loads
    each row tile once into the PMU right of the PCU, which transposes it
    (:func:`a_transpose_pmu`) and feeds it once per column tile — the layout another
    kernel's row-major output is already in.

    ``pcus`` > 1: that many PCUs share the column tiles (:func:`_parallel_gemm`; with
    ``a_rows`` the transposing PMU multicasts A to all of them); None: as many as this array
    and shape allow (:func:`gemm_pcus`).

    ``c_tiles``: C is stored tile by tile (each output tile's rows x valid lanes
    contiguous; ``Gemm.unpack_c`` reads it back) — a few long bursts per tile instead of a
    one-row burst per row, which would hold HBM request slots for a whole latency each;
    for results the host reads (a later kernel reading C row-major needs the default)."""
    if pcus is None:
        pcus = gemm_pcus(params, m, n, k, bias, a_rows is not None)
    s = GemmShape.of(params, m, n, k, bias, pcus, a_pmu=a_rows is not None)
    k = s.k
    if params.agcus < 2:
        raise ValueError("the GEMM kernel needs two AGCUs")
    a_words = s.a_words
    if a_rows is not None:
        # Each row is read as whole vectors (k_vectors words): with a stride under that,
        # the reads overlap the next row, whose words land in lanes >= k, which no
        # product takes.
        if isinstance(a_rows, bool) or not isinstance(a_rows, int) or a_rows < k:
            raise ValueError(f"gemm: a_rows = {a_rows!r}: the row stride must hold a row's "
                             f"k = {k} words")
        a_words = s.a_row_words(a_rows)
    for name, buf, need in (("a", a, a_words), ("b", b, s.b_words), ("c", c, s.c_words)):
        if buf.words < need:
            raise ValueError(f"gemm {m}x{n}x{k - bool(bias)}: buffer {name} has "
                             f"{buf.words} words, the layout needs {need}")
    systolic = SystolicProgram(k=k, tiles=s.mt * s.nt // pcus, rows=s.rows, cols=s.cols,
                               tail=Tail(relu=relu, bf16=bf16))
    if pcus > 1:
        return _parallel_gemm(params, s, systolic, a, b, c, bool(bias), a_rows, c_tiles)
    interleave = s.tile_rows // s.stages
    # C leaves by AGCU 1, whose port only loads B at a low rate (AGCU 0's port streams A
    # at one vector per cycle, and a store there would take beats from it); with A
    # through a PMU (loaded once per row tile) by AGCU 0, whose links are then free.
    c_agcu = 0 if a_rows is not None else 1
    units, pmus, a_flows = {"pcu": "pcu"}, {}, [VFlow("a", agcu(0), (port("pcu", 0),))]
    a_acc, c_acc = s.a_access(), s.c_access(tiled=c_tiles)
    if a_rows is not None:
        units["a_pmu"] = "pmu"
        pmus["a_pmu"] = pack_pmu(a_transpose_pmu(params, s.mt, s.tile_rows, k, s.nt), params)
        a_flows = [VFlow("a", agcu(0), (port("a_pmu"),)),
                   VFlow("a_cols", port("a_pmu"), (port("pcu", 0),))]
        a_acc = TensorAccess((s.mt * s.tile_rows, s.k_vectors), (a_rows, 1))
    layout = place_and_route(params, "gemm", units, vec=[
        *a_flows,
        VFlow("b", agcu(1), (port("pcu", 1),), rate=1 / interleave),
        VFlow("c", port("pcu"), (agcu(c_agcu),), rate=1 / interleave),
    ])
    vec = layout.vec
    if vec.headers["c"]["flow"] != 0 or vec.headers["c"]["dyn"]:
        raise AssertionError("a unit's output flow must have id 0 at its switch")
    b_acc = TensorAccess((s.mt, s.nt, k * s.lanes), (0, k * s.lanes, 1))
    agcus = agcu_programs(params, layout, {0: (a_acc, a, a_words, "a"),
                                           1: (b_acc, b, s.b_words, "b")},
                          [(c_agcu, c_acc, c, s.c_words, "c")])
    parts = {"pcus": layout.configs("pcu", {"pcu": pack_systolic(systolic, params)}),
             "pmus": layout.configs("pmu", pmus), "agcus": agcus, "vec": vec, "layout": layout}

    def execute(mem, args):
        # The streams as the AGCUs deliver them, the array's reference, the rows' valid
        # lanes stored as the store stream unpacks them.
        va = mem[stream_words(a, args, (0, "load"), a_acc)].reshape(-1, s.lanes)
        if a_rows is not None:      # the PMU's transpose: the systolic A stream
            va = transposed_stream(params, va, k, s.nt)
        vb = mem[stream_words(b, args, (1, "load"), b_acc)].reshape(-1, s.lanes)
        rows = systolic_reference(systolic, params, va, vb)["data"][:, :s.cols]
        mem[stream_words(c, args, (c_agcu, "store"), c_acc)] = rows.reshape(-1)
    return Gemm(s, systolic, kernel_program(params, "gemm", **parts, execute=execute), parts,
                bool(bias), ((c_agcu, "store"),), a_rows, c_tiles)


def gemm_limits(params, shape, a_pmu=False):
    """Why ``shape`` cannot run on ``shape.pcus`` PCUs here: a list of reasons (empty: it
    can, as far as resources go; placement may still refuse). ``a_pmu``: A comes row-major
    through a transposing PMU (one more PMU, a row tile of A in it)."""
    n, cap = shape.pcus, params.pmu_banks * params.pmu_bank_words
    pcus, pmus = len(grid_coords(params, "pcu")), len(grid_coords(params, "pmu"))
    out = []
    if n > 1:
        pmu_what = "PMUs (one per PCU holds its share of B" + (", one A)" if a_pmu else ")")
        for need, what, have in ((n, "PCUs", pcus), (n + bool(a_pmu), pmu_what, pmus),
                                 (n, f"AGCU store streams ({params.agcu_stores} per AGCU, "
                                     f"one per PCU)", params.agcu_stores * params.agcus)):
            if need > have:
                out.append(f"{need} {what.split(' ')[0]} needed, the array has {have} {what}")
        if share_groups(params, shape) is None:
            out.append(f"a column tile of B needs {shape.k * shape.lanes} words of PMU, a PMU "
                       f"holds {cap}")
    if a_pmu and not a_transpose_buffers(params, shape.k):
        out.append(f"a row tile of A needs {shape.k * shape.tile_rows} words of PMU, a PMU "
                   f"holds {cap}")
    return out


def share_groups(params, s, a_stationary=False):
    """How each PCU's share of B (``s.nt / s.pcus`` column tiles) passes through its PMU:
    (groups, tiles per group, PMU buffers), the split :func:`_share_cycles` expects to be
    fastest (the fewer groups on a tie: A crosses HBM once per group where a PMU holds it,
    ``a_stationary``); None if a single column tile does not fit a PMU. Groups in two
    buffers let the next group land while this one is read; the first group's B is what
    every PCU waits for before it starts (plasticine, 512^3 on 12 PCUs: three groups of one
    tile, 147 644 cycles, instead of the whole share at once, 161 255)."""
    cap = params.pmu_banks * params.pmu_bank_words
    tile, share = s.k * s.lanes, s.nt // s.pcus
    if tile > cap:
        return None
    splits = [(share // t, t, 2 if 2 * t * tile <= cap else 1)
              for t in range(1, share + 1) if share % t == 0 and t * tile <= cap]
    return min(splits, key=lambda g: (_share_cycles(params, s, a_stationary, *g), g[0]))


def _stationary_multiple(params, s):
    """The multiple each PCU's share of column tiles is padded to with A held by a PMU: the
    one whose best split into groups (:func:`share_groups`) :func:`_share_cycles` expects
    to be fastest, padding tiles' work included (small, 256^3 on three PCUs: eleven tiles
    each would take eleven groups of one, A read eleven times; padded to twelve, three
    groups of four)."""
    cap = params.pmu_banks * params.pmu_bank_words
    best = (None, 1)
    for t in range(1, max(1, cap // (s.k * s.lanes)) + 1):
        sh = dataclasses.replace(s, share_multiple=t)
        split = share_groups(params, sh, True)
        if split is not None:
            est = _share_cycles(params, sh, True, *split)
            if best[0] is None or est < best[0]:
                best = (est, t)
    return best[1]


def _share_cycles(params, s, a_stationary, groups, t, nbuf):
    """Estimated cycles of the GEMM with B in ``groups`` groups of ``t`` column tiles per
    PCU (``nbuf`` PMU buffers): the array's steps, plus what it waits for — the first
    group's B (every PCU's share of it through one AGCU load stream, a vector per cycle),
    each later group's B where it is not double-buffered or outlasts a group's compute, and
    (``a_stationary``) each group's first row tile of A, and each later one where its load
    into the transposing PMU is not hidden behind the row tile's compute (measured on
    small, 112 x 64 x 64 on three PCUs: 6 535 cycles in one group, 7 151 in three)."""
    tile_cycles = s.k * (s.tile_rows // s.stages)
    group = s.mt * t * tile_cycles
    b_load = s.pcus * t * s.k
    wait_b = b_load if nbuf == 1 else max(0, b_load - group)
    wait_a = 0
    if a_stationary:
        a_load = s.tile_rows * s.k_vectors // s.lanes
        hidden = t * tile_cycles if a_transpose_buffers(params, s.k) == 2 else 0
        wait_a = groups * (a_load + (s.mt - 1) * max(0, a_load - hidden))
    return b_load + groups * group + (groups - 1) * wait_b + wait_a


@functools.lru_cache(maxsize=256)
def gemm_pcus(params, m, n, k, bias=False, a_pmu=False):
    """The most PCUs an M x N x K GEMM can share out here: no more than its column tiles,
    the array's PCUs, PMUs and AGCUs, a share of B that fits a PMU, and a placement with
    links of its own for every flow (``a_pmu``: A row-major through a transposing PMU)."""
    lanes = params.pcu_lanes
    for pcus in range(min(params.agcu_stores * params.agcus, -(-n // lanes)), 1, -1):
        s = GemmShape.of(params, m, n, k, bias, pcus, a_pmu)
        if not gemm_limits(params, s, a_pmu) and \
                _parallel_layout(params, s, a_pmu, try_only=True):
            return pcus
    return 1


def c_assignments(params, n):
    """Ways to store the results of ``n`` PCUs through the AGCUs' store streams: tuples
    of (AGCU, stream) per PCU, the most even spread over the AGCUs first (AGCU 0 takes
    the extra ones before AGCU 1, ...). Which PCU position feeds which AGCU is left to
    placement; only how many each AGCU takes matters."""
    A, names = params.agcus, stores(params)
    out = []
    for counts in itertools.product(range(len(names) + 1), repeat=A):
        if sum(counts) == n:
            out.append(counts)
    out.sort(key=lambda c: (max(c) - min(c), [-x for x in c]))
    return [tuple((k, names[j]) for k, c in enumerate(counts) for j in range(c))
            for counts in out]


def _parallel_flows(params, s, a_pmu, streams):
    """Units ({name: kind}) and flows of the GEMM over ``s.pcus`` PCUs (see
    :func:`_parallel_gemm`); ``streams``: each PCU's (AGCU, store stream)."""
    pcus = tuple(f"pcu{i}" for i in range(s.pcus))
    pmus = tuple(f"b_pmu{i}" for i in range(s.pcus))
    units = {**{u: "pcu" for u in pcus}, **{u: "pmu" for u in pmus}}
    interleave = s.tile_rows // s.stages
    to_pcus = tuple(port(u, 0) for u in pcus)
    if a_pmu:
        units["a_pmu"] = "pmu"
        # A row tile (tile_rows x k words, k x tile_rows / lanes vectors) per share of
        # column tiles the PCUs compute from it.
        flows = [VFlow("a", agcu(0), (port("a_pmu"),),
                       rate=s.tile_rows / (s.lanes * interleave * (s.nt // s.pcus))),
                 VFlow("a_cols", port("a_pmu"), to_pcus)]
    else:
        flows = [VFlow("a", agcu(0), to_pcus)]
    flows.append(VFlow("b", agcu(1), tuple(port(u, 0) for u in pmus)))
    for i, (pc, pm) in enumerate(zip(pcus, pmus)):
        flows += [VFlow(f"b{i}", port(pm), (port(pc, 1),), rate=1 / interleave),
                  VFlow(f"c{i}", port(pc), (agcu(streams[i][0]),), rate=1 / interleave,
                        shares="c")]
    return pcus, pmus, units, flows


def parallel_flows(params, s, a_pmu=False):
    """(units, flows) of the GEMM over ``s.pcus`` PCUs with the first spread of results
    over the AGCUs that places (:func:`_parallel_layout`)."""
    _, streams = _parallel_layout(params, s, a_pmu)
    _, _, units, flows = _parallel_flows(params, s, a_pmu, streams)
    return units, flows


#: Spreads of the results over the AGCUs (:func:`c_assignments`) tried in placement.
SPREADS = 4


def _parallel_layout(params, s, a_pmu=False, try_only=False):
    """The placed GEMM over ``s.pcus`` PCUs and each PCU's (AGCU, store stream): the first
    spread of the results over the AGCUs that places (None with ``try_only`` if none)."""
    placed = _placed(params, s, a_pmu)
    if isinstance(placed, PlacementError):
        if try_only:
            return None
        raise placed
    return placed


@functools.lru_cache(maxsize=64)
def _placed(params, s, a_pmu):
    """:func:`_parallel_layout`'s search, once per shape (the PCU count search and the
    compile ask for the same one): (layout, streams), or the first spread's error."""
    first = None
    for streams in c_assignments(params, s.pcus)[:SPREADS]:
        _, _, units, flows = _parallel_flows(params, s, a_pmu, streams)
        layout = try_place(params, f"gemm over {s.pcus} PCUs", units, vec=flows)
        if not isinstance(layout, PlacementError):
            return layout, streams
        first = first or layout
    return first or PlacementError(f"gemm over {s.pcus} PCUs: more PCUs than the AGCUs' "
                                   f"{params.agcus * params.agcu_stores} store streams")


def _share_pmu(s, i, G, t, nbuf):
    """PCU i's B PMU: from the multicast B stream (column tiles in order; per group, each
    PCU's ``t`` tiles in turn) it keeps its tiles of each group (a buffer per group) and
    reads each group once per row tile."""
    part = t * s.k * s.lanes
    if G == 1:
        return PmuProgram(AccessPattern((Counter(0, s.b_words),), base=-i * part, lo=0, hi=part),
                          AccessPattern((Counter(0, s.mt), Counter(0, part)), repeat=(0,)))
    write = AccessPattern((Counter(0, G), Counter(0, s.pcus * part)), repeat=(0,),
                          base=-i * part, lo=0, hi=part)
    read = AccessPattern((Counter(0, G), Counter(0, s.mt), Counter(0, part)), repeat=(0, 1))
    return PmuProgram(write, read, nbuf=nbuf, buf_words=part, w_level=1, r_level=1)


def _parallel_gemm(params, s, systolic, a, b, c, bias, a_rows=None, c_tiles=False):
    """C = A B on ``s.pcus`` PCUs, each computing its share of the column tiles: A (AGCU
    0) is multicast to all; B (AGCU 1, loaded once) is multicast to one PMU per PCU whose
    write predicates keep that PCU's share and which feeds it once per row tile — in
    groups of column tiles where a share outgrows a PMU (:func:`share_groups`; A is then
    streamed once per group); PCU i's rows leave by AGCU i's store stream; every flow has
    links of its own. ``a_rows``: A is row-major (that row stride) and each row tile is
    loaded once per group into a transposing PMU that multicasts it to the PCUs once per
    column tile of their shares (A-stationary: A crosses HBM once per group)."""
    L, k, N = s.lanes, s.k, s.pcus
    limits = gemm_limits(params, s, a_rows is not None)
    if limits:
        raise ValueError(f"gemm over {N} PCUs: " + "; ".join(limits))
    G, t, nbuf = share_groups(params, s, a_rows is not None)
    part = t * k * L                                # words of B one group of a share holds
    layout, streams = _parallel_layout(params, s, a_rows is not None)
    pcus, pmus, _, _ = _parallel_flows(params, s, a_rows is not None, streams)
    vec = layout.vec
    tile_a = k * (s.tile_rows // s.stages) * L
    # A: per group, each row tile once per column tile of the share; C of PCU i: per group,
    # row tile, its tiles of the group, rows and their valid lanes (row-major C).
    if G == 1:
        a_acc, c_accs = s.a_access(), [s.c_access(i, c_tiles) for i in range(N)]
    else:
        a_acc = TensorAccess((G, s.mt, t, tile_a), (0, tile_a, 0, 1))
        rc = s.rows * s.cols
        c_accs = [TensorAccess((G, s.mt, t, rc), (N * t * rc, s.nt * rc, rc, 1), offset=i * t * rc)
                  if c_tiles else
                  TensorAccess((G, s.mt, t, s.rows, s.cols),
                               (N * t * s.cols, s.rows * s.c_cols, s.cols, s.c_cols, 1),
                               offset=i * t * s.cols) for i in range(N)]
    if a_rows is not None:
        kp = s.k_vectors
        a_acc = TensorAccess((G, s.mt * s.tile_rows, kp), (0, a_rows, 1))
    b_acc = TensorAccess((s.b_words,), (1,))
    a_words = s.a_words if a_rows is None else s.a_row_words(a_rows)
    agcus = agcu_programs(params, layout, {0: (a_acc, a, a_words, "a"),
                                           1: (b_acc, b, s.b_words, "b")},
                          [(ag, c_accs[i], c, s.c_words, f"c{i}")
                           for i, (ag, _) in enumerate(streams)])
    pmu_cfg = {u: pack_pmu(_share_pmu(s, i, G, t, nbuf), params) for i, u in enumerate(pmus)}
    if a_rows is not None:
        pmu_cfg["a_pmu"] = pack_pmu(a_transpose_pmu(params, G * s.mt, s.tile_rows, k, t),
                                    params)
    parts = {"pcus": layout.configs("pcu", {u: pack_systolic(systolic, params) for u in pcus}),
             "pmus": layout.configs("pmu", pmu_cfg), "agcus": agcus, "vec": vec,
             "layout": layout}

    def execute(mem, args):
        va = mem[stream_words(a, args, (0, "load"), a_acc)].reshape(-1, L)
        if a_rows is not None:      # the PMU's transpose, per group: t column tiles each
            va = transposed_stream(params, va, k, t)
        vb = mem[stream_words(b, args, (1, "load"), b_acc)].reshape(G, N, part)
        for i in range(N):
            vbi = np.repeat(vb[:, i][:, None], s.mt, axis=1).reshape(-1, L)
            rows = systolic_reference(systolic, params, va, vbi)["data"][:, :s.cols]
            mem[stream_words(c, args, streams[i], c_accs[i])] = rows.reshape(-1)
    return Gemm(s, systolic, kernel_program(params, "gemm", **parts, execute=execute), parts,
                bias, streams, a_rows, c_tiles)
