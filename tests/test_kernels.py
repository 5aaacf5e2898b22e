"""Tier 1: kernel compilation for the socket — bitstreams that write every config
register, launch records packed with the sequencer's layout, device memory, and the
error paths (memory overflow, a kernel that does not fit, bad launches)."""

import numpy as np
import pytest

from firmware.compiler.bitstream import BitstreamError
from firmware.compiler.pcu import PcuProgramError
from firmware.compiler.program import kernel_program
from firmware.kernels.elementwise import compile_scale_bias
from firmware.kernels.gemm import GemmShape, compile_gemm
from firmware.runtime.launch import Launch, LaunchError, launch_words, pack_launch
from firmware.runtime.memory import Allocator, OutOfMemory
from hdl.agcu.config import word_bits
from hdl.configbus import config_beat_layout, config_words
from hdl.memory.config import MAX_BURST, MemoryMap
from hdl.params import PRESETS
from hdl.sequencer import launch_layout, record_beats
from hdl.socket import socket_config_units

SMALL = PRESETS["small"]


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
    seen = {}
    for row in g.program.rows:
        b = config_beat_layout.from_bits(int(row[0]) | int(row[1]) << 32)
        key = (b.unit, b.index)
        assert key not in seen, f"config word {key} written twice"
        seen[key] = b.data
    units = socket_config_units(params)
    assert sorted(seen) == sorted((u.id, i) for u in units for i in range(config_words(u.layout)))
    assert g.program.beats == sum(config_words(u.layout) for u in units)
    # The PCU at (0, 0) is the only unit started; both AGCUs are.
    assert g.program.units == 1 and g.program.agcus == 0b11


def test_launch_records_use_the_sequencer_layout():
    p = SMALL
    launch = Launch(program=64 * MemoryMap(p).words, beats=778, units=0b101, agcus=0b10,
                    iterations=7, offsets={(1, "store"): 40, (0, "load"): 3},
                    strides={(1, "store"): -8})
    v = launch_layout(p).from_bits(pack_launch(p, launch))
    assert (v.program, v.beats, v.units, v.agcus, v.iterations) == (64, 778, 0b101, 0b10, 7)
    assert (v.args[1].store.offset, v.args[0].load.offset, v.args[0].store.offset) == (40, 3, 0)
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
    # A PMU position, or a reduction longer than the PCU's step counter.
    with pytest.raises(BitstreamError, match=r"\(0, 1\) holds no PCU"):
        _gemm(SMALL, 8, 8, 8, pcu=(0, 1))
    with pytest.raises(PcuProgramError, match="systolic.k"):
        from firmware.compiler.pcu import SystolicProgram, pack_systolic
        pack_systolic(SystolicProgram(k=1 << 40), SMALL)
    with pytest.raises(ValueError, match="m = 0"):
        GemmShape.of(SMALL, 0, 4, 4)


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


@pytest.mark.parametrize("m,n,k", [(40, 20, 33), (5, 3, 7), (60, 17, 24)])
def test_reference_device_gemm_streams_what_the_agcus_read(m, n, k):
    """The reference backend gathers the AGCU streams from memory; the result equals the
    GEMM reference computed from the operands directly (gemm_streams)."""
    from firmware.runtime.reference import ReferenceDevice
    dev = ReferenceDevice(SMALL)
    s = GemmShape.of(SMALL, m, n, k)
    bufs = {name: dev.alloc.alloc("hbm", w, name) for name, w in
            (("a", s.a_words), ("b", s.b_words), ("c", s.c_words))}
    g = compile_gemm(SMALL, m, n, k, relu=True, **bufs)
    rng = np.random.default_rng(m)
    a = rng.normal(0, 1, (m, k)).astype(np.float32).view(np.uint32) & 0xFFFF0000
    b = rng.normal(0, 1, (k, n)).astype(np.float32).view(np.uint32) & 0xFFFF0000

    async def go():
        await dev.write(bufs["a"], g.pack_a(SMALL, a))
        await dev.write(bufs["b"], g.pack_b(SMALL, b))
        prog = await dev.load(g.program)
        await dev.run([prog.launch()])
        return g.unpack_c(await dev.read(bufs["c"]))
    assert (_run(go()) == g.reference(SMALL, a, b)).all()


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
