"""Tier 1: kernel compilation for the socket — bitstreams that write every config
register, launch records packed with the sequencer's layout, device memory, and the
error paths (memory overflow, a kernel that does not fit, bad launches)."""

import numpy as np
import pytest

from firmware.compiler.bitstream import BitstreamError, check_beats
from firmware.compiler.pcu import PcuProgramError
from firmware.compiler.place import PlacementError
from firmware.compiler.program import kernel_program
from firmware.kernels.elementwise import compile_scale_bias
from firmware.kernels.gemm import GemmShape, compile_gemm, gemm_limits, share_groups
from firmware.runtime.launch import Copy, Launch, LaunchError, launch_words, pack_launch
from firmware.runtime.memory import Allocator, OutOfMemory
from hdl.agcu.config import word_bits
from hdl.configbus import CHECK_UNIT, config_beat_layout, config_words
from hdl.memory.config import MAX_BURST, MemoryMap
from hdl.params import PRESETS, RduParams
from hdl.sequencer import launch_layout, record_beats
from hdl.socket import socket_config_units

SMALL = PRESETS["small"]
PLASTICINE = PRESETS["plasticine"]


def _gemm(params, m, n, k, **kw):
    s = GemmShape.of(params, m, n, k)
    al = Allocator(params)
    bufs = {name: al.alloc("hbm", w, name) for name, w in
            (("a", s.a_words), ("b", s.b_words), ("c", s.c_words))}
    return compile_gemm(params, m, n, k, **bufs, **kw), bufs


@pytest.mark.parametrize("name", ["small", "plasticine"])
def test_bitstream_writes_every_config_register_once(name):
    params = PRESETS[name]
    g, _ = _gemm(params, 40, 20, 33)
    seen, beats = {}, []
    for row in g.program.rows:
        b = config_beat_layout.from_bits(int(row[0]) | int(row[1]) << 32)
        beats.append((int(b.unit), int(b.index), int(b.data)))
    # The last two beats are the program's checksum (CHECK_UNIT, index 0 and 1).
    assert beats[-2:] == check_beats(beats[:-2])
    for unit, index, word in beats[:-2]:
        assert (unit, index) not in seen, f"config word {(unit, index)} written twice"
        seen[unit, index] = word
    units = socket_config_units(params)
    assert sorted(seen) == sorted((u.id, i) for u in units for i in range(config_words(u.layout)))
    assert g.program.beats == sum(config_words(u.layout) for u in units) + 2
    # The PCU at (0, 0) is the only unit started; both AGCUs are.
    assert g.program.units == 1 and g.program.agcus == 0b11


def test_launch_records_use_the_sequencer_layout():
    p = SMALL
    launch = Launch(program=64 * MemoryMap(p).words, beats=778, units=0b101, agcus=0b10,
                    iterations=7, offsets={(1, "store"): 40, (0, "load"): 3, (0, "store3"): 9},
                    strides={(1, "store"): -8, (1, "store2"): 5})
    v = launch_layout(p).from_bits(pack_launch(p, launch))
    assert (v.program, v.beats, v.units, v.agcus, v.iterations) == (64, 778, 0b101, 0b10, 7)
    assert (v.args[1].store.offset, v.args[0].load.offset, v.args[0].store.offset) == (40, 3, 0)
    # Every store stream has an argument of its own.
    assert (v.args[0].store3.offset, v.args[1].store2.stride, v.args[1].store3.stride) == (9, 5, 0)
    # A negative stride wraps modulo the address width (the offset walks backwards).
    assert v.args[1].store.stride == (-8) % (1 << word_bits(p))
    words = launch_words(p, [launch, launch])
    assert len(words) == 2 * record_beats(p) * MemoryMap(p).words


def test_launch_errors_name_the_field():
    p = SMALL
    with pytest.raises(LaunchError, match="not beat aligned"):
        pack_launch(p, Launch(program=3, beats=1, units=1, agcus=1))
    with pytest.raises(LaunchError, match="iterations"):
        pack_launch(p, Launch(program=0, beats=1, units=1, agcus=1, iterations=0))
    with pytest.raises(LaunchError, match="key"):
        pack_launch(p, Launch(program=0, beats=1, units=1, agcus=1, offsets={(5, "load"): 1}))
    with pytest.raises(LaunchError, match="key"):
        pack_launch(p, Launch(program=0, beats=1, units=1, agcus=1, strides={(0, "read"): 1}))
    with pytest.raises(LaunchError, match="'load', 'load2', 'store', 'store2', 'store3'"):
        pack_launch(p, Launch(program=0, beats=1, units=1, agcus=1, offsets={(0, "store4"): 1}))
    end = MemoryMap(p).beats * MemoryMap(p).words
    with pytest.raises(LaunchError, match="runs past the end of memory"):
        pack_launch(p, Launch(program=end - 8, beats=9, units=1, agcus=1))
    pack_launch(p, Launch(program=end - 8, beats=4, units=1, agcus=1))     # the last beat


def test_copy_records_pack_a_dma_descriptor_and_refuse_what_the_engine_would():
    p = SMALL
    mm = MemoryMap(p)
    W, ddr, hbm = mm.words, mm.region("ddr").base * mm.words, 4 * MAX_BURST * mm.words
    v = launch_layout(p).from_bits(pack_launch(p, Copy(ddr, hbm, 3 * W + 1)))
    assert (v.copy, v.program, v.dst, v.count) == (1, ddr // W, hbm // W, 3 * W + 1)
    assert not launch_layout(p).from_bits(pack_launch(p, Launch(0, 1, 1, 1))).copy
    for bad, match in ((Copy(ddr + 1, hbm, 8), " src: word address .* is not aligned"),
                       (Copy(ddr, hbm, 0), " count: 0 must be a positive"),
                       (Copy(hbm, hbm + W, 4 * W), ": source .* overlap"),
                       (Copy(ddr, mm.beats * W - W, 2 * W), " dst: .* run past the end")):
        with pytest.raises(LaunchError, match="copy record: DMA" + match):
            pack_launch(p, bad)


def test_reference_device_copy_records_between_launches():
    """A copy record moves the words, and the program loaded before it stays loaded."""
    from firmware.runtime.reference import ReferenceDevice
    n = 40

    async def go():
        dev = ReferenceDevice(SMALL)
        src, x, y = (dev.alloc.alloc(r, n) for r in ("ddr", "hbm", "hbm"))
        xs = np.arange(n, dtype=np.float32).view(np.uint32)
        await dev.write(src, xs)
        p = await dev.load(compile_scale_bias(SMALL, n, x=x, y=y, scale=2.0).program)
        with pytest.raises(ValueError, match="copy of 41 words"):
            dev.copy(src, x, n + 1)
        await dev.run([p.launch(), dev.copy(src, x), p.launch(reload=False)])
        return xs, await dev.read(y)
    xs, y = _run(go())
    assert (y.view(np.float32) == 2 * xs.view(np.float32)).all()


def test_device_memory_is_block_aligned_and_overflow_names_the_region():
    al = Allocator(SMALL)
    mm = MemoryMap(SMALL)
    a = al.alloc("hbm", 5, "a")
    b = al.alloc("hbm", 5, "b")
    d = al.alloc("ddr", 1, "d")
    assert b.addr - a.addr == MAX_BURST * mm.words
    assert d.addr == mm.region("ddr").base * mm.words
    hbm_words = mm.region("hbm").beats * mm.words
    with pytest.raises(OutOfMemory, match=r"buffer 'huge' of \d+ words does not fit in hbm"):
        al.alloc("hbm", hbm_words, "huge")
    with pytest.raises(ValueError, match="no memory region 'sram'"):
        al.alloc("sram", 4)


def test_gemm_that_does_not_fit_names_what_ran_out():
    # Operands larger than HBM: the allocation says so.
    s = GemmShape.of(SMALL, 2048, 2048, 512)
    al = Allocator(SMALL)
    with pytest.raises(OutOfMemory, match="does not fit in hbm"):
        for name, w in (("a", s.a_words), ("b", s.b_words), ("c", s.c_words)):
            al.alloc("hbm", w, name)
    # A buffer smaller than the layout needs.
    al = Allocator(SMALL)
    small = {n: al.alloc("hbm", 16, n) for n in "abc"}
    with pytest.raises(ValueError, match="buffer a has 16 words"):
        compile_gemm(SMALL, 40, 20, 33, **small)
    # A reduction longer than the PCU's step counter.
    with pytest.raises(PcuProgramError, match="systolic.k"):
        from firmware.compiler.pcu import SystolicProgram, pack_systolic
        pack_systolic(SystolicProgram(k=1 << 40), SMALL)
    with pytest.raises(ValueError, match="m = 0"):
        GemmShape.of(SMALL, 0, 4, 4)
    # Several PCUs: a column tile of B that outgrows a PMU; more PCUs than the array and
    # its AGCUs' store streams.
    s = GemmShape.of(SMALL, 28, 64, 1100, pcus=5)
    al = Allocator(SMALL)
    bufs = {n: al.alloc("hbm", w, n) for n, w in (("a", s.a_words), ("b", s.b_words),
                                                  ("c", s.c_words))}
    with pytest.raises(ValueError, match="a column tile of B needs 8800 words of PMU, a PMU "
                                         "holds 8192"):
        compile_gemm(SMALL, 28, 64, 1100, pcus=2, **bufs)
    with pytest.raises(ValueError, match=r"gemm over 5 PCUs: 5 PCUs needed, the array has 4 PCUs"
                                         r".*5 AGCU needed, the array has 4 AGCU store streams "
                                         r"\(2 per AGCU, one per PCU\)"):
        compile_gemm(SMALL.replace(agcu_stores=2), 28, 64, 1100, pcus=5, **bufs)
    # As many as fit: K = 1100 leaves no column tile a PMU, so one PCU (B from HBM).
    assert compile_gemm(SMALL, 28, 64, 1100, pcus=None, **bufs).shape.pcus == 1
    # 256 x 256 x 256 on two PCUs: 16 column tiles of 2048 words each (a PMU holds 8192).
    # A streamed: groups of one tile, two buffers — every PCU waits only for the first
    # tile of B (512 vectors) and the next lands behind a group's compute (10 row tiles x
    # 1792 cycles).
    s = GemmShape.of(SMALL, 256, 256, 256, pcus=2)
    assert share_groups(SMALL, s) == (16, 1, 2)
    # A held by a PMU: small's transposing PMU has one buffer (a row tile is 7168 words), so
    # each group waits for every row tile's A (896 cycles): the fewest groups win — four
    # tiles, one buffer (the measured order: 356 168 cycles vs 420 461 with eight groups).
    assert share_groups(SMALL, s, a_stationary=True) == (4, 4, 1)
    # ... and each group waits for its first row tile of A: 112 x 64 x 64 on three PCUs
    # keeps its three column tiles in one group (measured 6 535 cycles, 7 151 in three).
    s = GemmShape.of(SMALL, 112, 64, 64, pcus=3)
    assert share_groups(SMALL, s, a_stationary=True)[0] == 1
    # Held by a PMU on three PCUs, 256^3's eleven column tiles per PCU would go in eleven
    # groups of one (a PMU holds four; eleven has no other divisor), A read eleven times:
    # the shares are padded to twelve, three groups of four (measured 269 338 cycles and
    # 1.48 MB of HBM, against 380 482 and 3.73 MB unpadded).
    s = GemmShape.of(SMALL, 256, 256, 256, pcus=3, a_pmu=True)
    assert s.nt == 36 and share_groups(SMALL, s, a_stationary=True) == (3, 4, 1)
    assert GemmShape.of(SMALL, 256, 256, 256, pcus=3).nt == 33      # streamed: no padding
    # plasticine 512^3 on 12 PCUs: the whole share (3 tiles) fits, but its B is 18 432
    # cycles through one AGCU; one tile per group leaves 6 144 to wait, A's row tile loads
    # (1344 cycles) hide behind 3584-cycle tiles in the transposing PMU's two buffers.
    s = GemmShape.of(PLASTICINE, 512, 512, 512, pcus=12)
    assert share_groups(PLASTICINE, s) == share_groups(PLASTICINE, s, True) == (3, 1, 2)
    # Row-major A through a transposing PMU: a row tile (28 rows x k) must fit one PMU.
    s = GemmShape.of(SMALL, 28, 64, 300, pcus=2)
    rows = -(-s.k // SMALL.pcu_lanes) * SMALL.pcu_lanes
    al = Allocator(SMALL)
    bufs = {n: al.alloc("hbm", w, n) for n, w in (("a", s.a_row_words(rows)),
                                                  ("b", s.b_words), ("c", s.c_words))}
    with pytest.raises(ValueError, match="gemm over 2 PCUs: a row tile of A needs 8400 words "
                                         "of PMU, a PMU holds 8192"):
        compile_gemm(SMALL, 28, 64, 300, pcus=2, a_rows=rows, **bufs)
    # On a 2 x 2 grid two PCUs leave no PMU for A.
    tiny = RduParams.from_mapping({"base": "small", "rows": 2, "cols": 2})
    assert gemm_limits(tiny, GemmShape.of(tiny, 28, 64, 30, pcus=2), a_pmu=True) == [
        "3 PMUs needed, the array has 2 PMUs (one per PCU holds its share of B, one A)"]
    assert gemm_limits(tiny, GemmShape.of(tiny, 28, 64, 30, pcus=2)) == []


def test_kernel_program_rejects_units_that_do_not_exist():
    with pytest.raises(BitstreamError, match="no PCU at row 0, column 1"):
        kernel_program(SMALL, "k", pcus={(0, 1): 0})
    with pytest.raises(BitstreamError, match="AGCU 2 does not exist"):
        kernel_program(SMALL, "k", agcus={2: 0})


def test_elementwise_reference_is_the_pcu_pipeline():
    al = Allocator(SMALL)
    x, y = al.alloc("hbm", 20), al.alloc("hbm", 20)
    k = compile_scale_bias(SMALL, 20, x=x, y=y, scale=2.0, bias=-1.0, relu=True)
    v = np.linspace(-3, 3, 20, dtype=np.float32)
    got = k.reference(SMALL, v.view(np.uint32)).view(np.float32)
    assert (got == np.maximum(v * np.float32(2) - np.float32(1), 0)).all()


def _run(coro):
    import asyncio
    return asyncio.run(coro)




_GEMM_CASES = [
    (SMALL, 40, 20, 33, 1), (SMALL, 5, 3, 7, 1), (SMALL, 60, 17, 24, 1),
    (SMALL, 40, 20, 33, 2), (SMALL, 5, 3, 7, 2), (SMALL, 60, 17, 24, 2),
    (PLASTICINE, 50, 70, 20, 3), (PLASTICINE, 43, 100, 9, 4), (PLASTICINE, 7, 5, 1, 4),
    # Shares of B larger than a PMU: in groups of column tiles, A streamed once per group.
    (SMALL, 30, 256, 200, 2), (SMALL, 60, 100, 600, 2), (PLASTICINE, 45, 600, 300, 4),
]


@pytest.mark.parametrize("params,m,n,k,pcus,a_rows", [
    *[c + (False,) for c in _GEMM_CASES],
    # A row-major through a transposing PMU that multicasts it to the PCUs (A-stationary).
    *[c + (True,) for c in _GEMM_CASES if c[3] < 600]], ids=str)
@pytest.mark.parametrize("c_tiles", [False, True], ids=["c_rows", "c_tiles"])
def test_reference_device_gemm_streams_what_the_agcus_read(params, m, n, k, pcus, a_rows,
                                                           c_tiles):
    """The reference backend gathers the AGCU streams from memory; the result equals the
    GEMM reference computed from the operands directly (gemm_streams) — also with the
    column tiles shared out over several PCUs (padded to a multiple of them), each PCU's
    C through its own AGCU, and with A row-major, transposed by a PMU; C row-major or tile
    by tile (``c_tiles``: every word of C written once either way)."""
    from firmware.compiler.pcu import gemm_reference
    from firmware.runtime.reference import ReferenceDevice
    dev = ReferenceDevice(params)
    s = GemmShape.of(params, m, n, k, pcus=pcus)
    assert s.nt % pcus == 0
    stride = -(-k // params.pcu_lanes) * params.pcu_lanes if a_rows else None
    bufs = {name: dev.alloc.alloc("hbm", w, name) for name, w in
            (("a", s.a_row_words(stride) if a_rows else s.a_words), ("b", s.b_words),
             ("c", s.c_words))}
    g = compile_gemm(params, m, n, k, relu=True, pcus=pcus, a_rows=stride, c_tiles=c_tiles,
                     **bufs)
    from hdl.tile import is_pcu
    started = [divmod(i, params.cols) for i in range(params.rows * params.cols)
               if g.program.units >> i & 1]
    assert sum(is_pcu(r, c) for r, c in started) == pcus
    assert sum(not is_pcu(r, c) for r, c in started) == (pcus if pcus > 1 else 0) + a_rows
    assert g.program.agcus == (1 << max(2, pcus)) - 1
    rng = np.random.default_rng(m)
    a = rng.normal(0, 1, (m, k)).astype(np.float32).view(np.uint32) & 0xFFFF0000
    b = rng.normal(0, 1, (k, n)).astype(np.float32).view(np.uint32) & 0xFFFF0000

    async def go():
        await dev.write(bufs["a"], g.pack_a(params, a))
        await dev.write(bufs["b"], g.pack_b(params, b))
        prog = await dev.load(g.program)
        await dev.run([prog.launch()])
        return g.unpack_c(await dev.read(bufs["c"]))
    got = _run(go())
    assert (got == g.reference(params, a, b)).all()
    from firmware import numerics as N
    assert (got == N.fp32_max(gemm_reference(a, b), np.zeros((m, n), np.uint32))).all()


def test_bias_epilogue_is_the_last_accumulation_step():
    """[A 1] @ [B; bias]: the bias is added after the sum, in FP32, once."""
    from firmware import numerics as N
    from firmware.compiler.pcu import gemm_reference
    m, n, k = 30, 11, 9
    s = GemmShape.of(SMALL, m, n, k, bias=True)
    assert s.k == k + 1
    al = Allocator(SMALL)
    bufs = {name: al.alloc("hbm", w, name) for name, w in
            (("a", s.a_words), ("b", s.b_words), ("c", s.c_words))}
    g = compile_gemm(SMALL, m, n, k, bias=True, **bufs)
    rng = np.random.default_rng(4)
    a = rng.normal(0, 1, (m, k)).astype(np.float32).view(np.uint32) & 0xFFFF0000
    b = rng.normal(0, 1, (k, n)).astype(np.float32).view(np.uint32) & 0xFFFF0000
    bias = rng.normal(0, 1, n).astype(np.float32).view(np.uint32) & 0xFFFF0000
    want = N.fp32_add(gemm_reference(a, b), np.broadcast_to(bias, (m, n)).copy())
    assert (g.reference(SMALL, a, b, bias) == want).all()
    with pytest.raises(ValueError, match="compiled with a bias"):
        g.pack_b(SMALL, b)


def test_reference_device_loops_like_separate_launches():
    from firmware.runtime.reference import ReferenceDevice
    n, iters = 30, 4

    async def go(looped):
        dev = ReferenceDevice(SMALL)
        x, y = dev.alloc.alloc("hbm", n * iters), dev.alloc.alloc("hbm", n * iters)
        xs = np.linspace(-2, 2, n * iters, dtype=np.float32).view(np.uint32)
        await dev.write(x, xs)
        k = compile_scale_bias(SMALL, n, x=x, y=y, scale=3.0, bias=0.5)
        p = await dev.load(k.program)
        args = lambda w: {(0, "load"): w, (1, "store"): w}    # noqa: E731
        if looped:
            await dev.run([p.launch(iterations=iters, strides=args(n))])
        else:
            await dev.run([p.launch(offsets=args(i * n), reload=i == 0) for i in range(iters)])
        return xs, await dev.read(y)
    xs, looped = _run(go(True))
    _, separate = _run(go(False))
    assert (looped == separate).all()
    want = (xs.view(np.float32) * np.float32(3) + np.float32(0.5)).view(np.uint32)
    assert (looped == want).all()


@pytest.mark.parametrize("iters,stride,offset,bad", [
    (4, 30, 0, None), (5, 30, 0, "iteration 4 of 5 touches words 120 .. 149"),
    (2, 30, 60, None), (2, 30, 61, "iteration 1 of 2 touches words 91 .. 120"),
    (1, 0, 91, "iteration 0 of 1 touches words 91 .. 120"),
    (3, -30, 60, None), (4, -30, 60, "iteration 3 of 4 touches words -30 .. -1")])
def test_kernel_looping_may_not_leave_a_buffer(iters, stride, offset, bad):
    """A launch whose offset or looping stride takes an AGCU stream outside its buffer in
    any iteration is refused before it reaches the device; one that stays inside is not."""
    from firmware.runtime.launch import LaunchError
    from firmware.runtime.reference import ReferenceDevice
    n = 30

    async def go():
        dev = ReferenceDevice(SMALL)
        x, y = dev.alloc.alloc("hbm", 4 * n), dev.alloc.alloc("hbm", 4 * n)
        p = await dev.load(compile_scale_bias(SMALL, n, x=x, y=y, scale=3.0, bias=0.5).program)
        return p.launch(iterations=iters, offsets={(0, "load"): offset},
                        strides={(0, "load"): stride, (1, "store"): n})
    if bad is None:
        assert _run(go()).iterations == iters
    else:
        with pytest.raises(LaunchError, match=f"AGCU 0 load: .*{bad} of a 120-word buffer"):
            _run(go())


# --- softmax and attention ------------------------------------------------------------

def _bf16(rng, shape, spread=1.0):
    return rng.normal(0, spread, shape).astype(np.float32).view(np.uint32) & 0xFFFF0000


@pytest.mark.parametrize("name,rows,n", [("small", 13, 29), ("small", 4, 8),
                                         ("plasticine", 9, 70)])
def test_softmax_reference_backend_equals_the_pcu_programs(name, rows, n):
    """The reference backend (AGCU streams gathered from memory, padding included) gives
    the kernel's reference, within softmax_bound of float64."""
    import math

    from firmware import numerics as N
    from firmware.kernels.softmax import compile_softmax, softmax_bound
    from firmware.runtime.reference import ReferenceDevice
    p = PRESETS[name]
    dev = ReferenceDevice(p)
    xs = -(-n // p.pcu_lanes) * p.pcu_lanes
    x, y = dev.alloc.alloc("hbm", rows * xs, "x"), dev.alloc.alloc("hbm", rows * n, "y")
    sm = compile_softmax(p, rows, n, x=x, y=y)
    v = np.random.default_rng(rows).normal(0, 4, (rows, n)).astype(np.float32)
    padded = np.full((rows, xs), N.QNAN32, np.uint32)
    padded[:, :n] = v.view(np.uint32)
    _run(dev.write(x, padded))
    _run(dev.run([_run(dev.load(sm.program)).launch()]))
    got = _run(dev.read(y)).reshape(rows, n)
    assert np.array_equal(got, sm.reference(p, v.view(np.uint32)))
    f = v.astype(np.float64)
    e = np.exp(f - f.max(axis=1, keepdims=True))
    exact = e / e.sum(axis=1, keepdims=True)
    rel = np.abs(N.from_bits(got) - exact) / exact
    t = float(np.max(np.abs(f - f.max(axis=1, keepdims=True)))) * math.log2(math.e)
    assert rel.max() <= softmax_bound(t, n, p.pcu_lanes)


def test_softmax_errors_name_the_problem():
    from firmware.compiler.agcu import TensorAccess
    from firmware.kernels.softmax import compile_softmax
    al = Allocator(SMALL)
    x, y = al.alloc("hbm", 4096, "x"), al.alloc("hbm", 4096, "y")
    with pytest.raises(ValueError, match="rows = 0 must be a positive integer"):
        compile_softmax(SMALL, 0, 8, x=x, y=y)
    with pytest.raises(ValueError, match="do not fit 4 row buffers of a 8192-word PMU"):
        compile_softmax(SMALL, 1, 2049, x=al.alloc("hbm", 2056), y=al.alloc("hbm", 2049))
    with pytest.raises(ValueError, match="buffer x has 4096 words, the layout needs 4112"):
        compile_softmax(SMALL, 257, 16, x=x, y=al.alloc("hbm", 257 * 16))
    with pytest.raises(ValueError, match="the store access visits 12 words, the result has"):
        compile_softmax(SMALL, 2, 8, x=x, y=y, store=TensorAccess((12,), (1,)))
    with pytest.raises(ValueError, match="scale -1.0 must be positive"):
        compile_softmax(SMALL, 2, 8, x=x, y=y, scale=-1.0)


@pytest.mark.parametrize("name,seq,d,pipes", [
    ("small", 40, 32, 1), ("small", 3, 8, 1), ("plasticine", 50, 64, 2),
    ("medium", 100, 16, 2),     # 4 query tiles over two pipelines
    ("plasticine", 128, 32, 2),
], ids=str)
def test_attention_reference_backends_fused_and_unfused(name, seq, d, pipes):
    """Fused (on as many pipelines as fit, each its share of the query tiles): the
    reference backend (from memory) equals the kernel's reference from the operands; both
    fused and unfused within attention_bound of float64."""
    from firmware import numerics as N
    from firmware.kernels.attention import (AttentionShape, attention_bound,
                                            compile_attention, compile_attention_unfused,
                                            exact_attention, unfused_words)
    from firmware.runtime.reference import ReferenceDevice
    p = PRESETS[name]
    rng = np.random.default_rng(seq + d)
    q, k, v = (_bf16(rng, (seq, d)) for _ in range(3))
    exact, bound = exact_attention(q, k, v), attention_bound(q, k, v, p.pcu_lanes)
    dev = ReferenceDevice(p)
    sh = AttentionShape.of(p, seq, d)
    b = {n: dev.alloc.alloc("hbm", w, n) for n, w in
         (("q", sh.q_words), ("kv", sh.kv_words), ("o", sh.o_words))}
    att = compile_attention(p, seq, d, **b)
    assert len(att.arg_keys["q"]) == pipes
    # Plasticine's PMUs to spare hold each pipeline's query tile (Q row-major in HBM).
    assert att.q_stationary == (name == "plasticine")
    assert sum(u.startswith("qk") for u in att.parts["layout"].at) == pipes
    _run(dev.write(b["q"], att.pack_q(p, q)))
    _run(dev.write(b["kv"], att.pack_kv(p, k, v)))
    _run(dev.run([_run(dev.load(att.program)).launch()]))
    fused = att.unpack_o(_run(dev.read(b["o"])))
    assert np.array_equal(fused, att.reference(p, q, k, v))
    w = unfused_words(p, seq, d)
    ub = {n: dev.alloc.alloc("hbm", w[n], n) for n in ("q", "k", "v", "s", "p", "o")}
    un = compile_attention_unfused(p, seq, d, **ub)
    for name_, data in (("q", un.pack_q(p, q)), ("k", un.pack_k(p, k)), ("v", un.pack_v(p, v))):
        _run(dev.write(ub[name_], data))
    _run(dev.run([_run(dev.load(prog)).launch() for prog in un.programs]))
    unfused = un.unpack_o(_run(dev.read(ub["o"])))
    for got in (fused, unfused):
        assert (np.abs(N.from_bits(got).astype(np.float64) - exact) <= bound).all()
    assert not np.array_equal(fused, unfused)     # normalised after P V vs before


def test_attention_errors_name_the_resource():
    from firmware.kernels.attention import AttentionShape, compile_attention
    al = Allocator(SMALL)
    big = {n: al.alloc("hbm", 1 << 16, n) for n in ("q", "kv", "o")}
    with pytest.raises(ValueError, match="K\\^T needs 16384 words of PMU, a PMU holds 8192"):
        compile_attention(SMALL, 256, 64, **big)
    sh = AttentionShape.of(SMALL, 40, 32)
    tiny = dict(big, o=al.alloc("hbm", 8, "o"))
    with pytest.raises(ValueError, match=f"buffer o has 8 words, the layout needs {sh.o_words}"):
        compile_attention(SMALL, 40, 32, **tiny)
    two_by_two = SMALL.replace(name="2x2", cols=2)
    with pytest.raises(PlacementError, match=r"needs 4 PCUs, the array has 2 \(2 x 2 grid\)"):
        compile_attention(two_by_two, 40, 32, **big)
    with pytest.raises(ValueError, match="d = 0"):
        AttentionShape.of(SMALL, 4, 0)
    # Pipelines: each needs a Q load and an O store stream, and a query tile of its own.
    with pytest.raises(ValueError, match="attention over 2 pipelines needs 4 AGCUs \\(a Q load "
                                         "and an O store stream each\\), the array has 2"):
        compile_attention(SMALL, 128, 32, pipes=2, **big)
    with pytest.raises(ValueError, match="pipes = 3 must be 1..2 \\(the query tiles\\)"):
        compile_attention(SMALL, 40, 32, pipes=3, **big)
    # No PMU is left on small for a query tile: the placement says so.
    with pytest.raises(PlacementError, match="needs 5 PMUs, the array has 4"):
        compile_attention(SMALL, 40, 32, q_stationary=True, **big)


# --- decode GEMV ----------------------------------------------------------------------

@pytest.mark.parametrize("name,n,k,shares,packed", [
    ("small", 20, 37, None, False), ("small", 5, 8, 1, False),
    ("plasticine", 70, 100, None, False), ("small", 21, 37, None, True),
    ("small", 6, 16, 2, True), ("plasticine", 45, 20, None, True)])
def test_gemv_on_the_reference_backend(name, n, k, shares, packed):
    """The GEMV kernel places one PCU, PMU and AGCU per share; on the reference backend
    its result is its own bit-exact reference and within the float64 bound."""
    from firmware.kernels.gemv import compile_gemv
    from firmware.runtime.reference import ReferenceDevice
    params = PRESETS[name]
    rng = np.random.default_rng(n + k)
    w = (rng.normal(0, 1, (n, k)).astype(np.float32).view(np.uint32) & 0xFFFF0000) \
        .view(np.float32)
    x = rng.normal(0, 1, k).astype(np.float32)

    async def go():
        dev = ReferenceDevice(params)
        kp = -(-k // params.pcu_lanes) * params.pcu_lanes
        bufs = {"w": dev.alloc.alloc("hbm", (n + 8) * kp), "x": dev.alloc.alloc("hbm", kp),
                "y": dev.alloc.alloc("hbm", n + 8)}
        g = compile_gemv(params, n, k, shares=shares, packed=packed, **bufs)
        await dev.write(bufs["w"], g.pack_w(w.view(np.uint32)))
        await dev.write(bufs["x"], g.pack_x(x.view(np.uint32)))
        await dev.run([(await dev.load(g.program)).launch()])
        return g, (await dev.read(bufs["y"]))[:n]
    g, y = _run(go())
    per = 2 if packed else 1
    assert g.shape.shares == (shares or min(params.agcus * per, -(-n // per) * per))
    want = g.reference(params, g.pack_w(w.view(np.uint32)), g.pack_x(x.view(np.uint32)))
    assert (y == want[:n]).all()
    m = 1 + params.pcu_lanes.bit_length() - 1 + -(-k // params.pcu_lanes)
    scale = np.abs(w.astype(np.float64)) @ np.abs(x.astype(np.float64))
    err = np.abs(y.view(np.float32) - w.astype(np.float64) @ x)
    assert (err <= m * 2.0 ** -24 * scale * (1 + 1e-6)).all()


@pytest.mark.parametrize("n,k,shares,message", [
    (0, 8, None, "n = 0 must be a positive integer"),
    (8, True, None, "k = True must be a positive integer"),
    (8, 8, 3, "3 shares; a number in 1 .. 2"), (1, 8, 2, "2 shares; a number in 1 .. 1"),
    (8, 5000, None, "does not fit a PMU of 8192 words")])
def test_gemv_refuses_what_it_cannot_run(n, k, shares, message):
    from firmware.kernels.gemv import GemvShape
    with pytest.raises(ValueError, match=message):
        GemvShape.of(SMALL, n, k, shares)


@pytest.mark.parametrize("n,shares,message", [
    (8, 3, "3 shares; an even number in 2 .. 4"), (3, 6, "6 shares; an even number in 2 .. 4"),
    (1, 4, "4 shares; an even number in 2 .. 2")])
def test_packed_gemv_takes_pcus_in_pairs(n, shares, message):
    from firmware.kernels.gemv import GemvShape
    with pytest.raises(ValueError, match=message):
        GemvShape.of(SMALL, n, 8, shares, packed=True)


def test_rows_out_needs_a_reduction():
    from firmware.compiler.counters import Counter
    from firmware.compiler.pcu import SimdProgram, pack_simd
    with pytest.raises(PcuProgramError, match="rows_out"):
        pack_simd(SimdProgram(counters=(Counter(0, 8),), stages=(), rows_out=True), SMALL)


def test_a_partial_bitstream_writes_only_the_kernels_units_and_switches():
    from amaranth.lib import data
    from firmware.kernels.router import compile_argmax
    al = Allocator(SMALL)
    k = compile_argmax(SMALL, 4, x=al.alloc("hbm", 4), y=al.alloc("hbm", 1)).program
    units = {u.id: u for u in socket_config_units(SMALL)}
    layout = data.Layout.cast(config_beat_layout)
    written = {int(layout.from_bits(sum(int(w) << (32 * i) for i, w in enumerate(row)))["unit"])
               for row in k.rows} - {CHECK_UNIT}
    kinds = sorted({units[u].name for u in written})
    assert kinds == ["agcu", "pcu", "vec_switch"], kinds
    assert sum(units[u].name == "pcu" for u in written) == 1
    assert bin(k.units).count("1") == 1 and k.agcus == 0b11
    full = sum(config_words(u.layout) for u in units.values())
    assert k.beats < full + 2, (k.beats, full)
