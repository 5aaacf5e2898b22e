"""PCU tail, header reduction, scalar rates, control tokens and systolic mode: program
errors (tier 1) and the RTL in the Amaranth simulator on a small instance against the
firmware references, with idle inputs and back-pressure (tier 2)."""

import re

import numpy as np
import pytest
from amaranth import Value

from firmware import numerics as N
from firmware.compiler.pcu import (Counter, PcuProgramError, SimdProgram, Stage,
                                   SystolicProgram, Tail, gemm_reference, gemm_result,
                                   gemm_streams, pack_simd, pack_systolic, simd_reference,
                                   systolic_reference, systolic_tile_rows)
from hdl.packet import vector_layout
from hdl.params import PRESETS
from hdl.pcu.pcu import Pcu
from tb.lib.payload import pack, to_ints
from tb.lib.pcu_pysim import TINY, run_pcu, simd_job
from tb.lib.pysim import simulator

SMALL = PRESETS["small"]
SEED = 11


def fp(nrng, shape, scale=4.0):
    return nrng.normal(0, scale, shape).astype(np.float32).view(np.uint32)


def check(got, want, lanes, what):
    for key in ("mask", "last"):
        assert np.array_equal(got[key], want[key]), f"{what}: {key}"
    valid = ((want["mask"][:, None] >> np.arange(lanes)) & 1).astype(bool)
    bad = np.argwhere(valid & (got["data"] != want["data"]))
    assert not len(bad), (f"{what}: {len(bad)} results differ; first {bad[0]}: "
                          f"{got['data'][tuple(bad[0])]:#x} != {want['data'][tuple(bad[0])]:#x}")


# --- tier 1: programs ---------------------------------------------------------------------

@pytest.mark.parametrize("tail,message", [
    (Tail(func="LOG"), "tail.func: unknown function 'LOG'"),
    (Tail(scale="ROW"), "tail.scale: ROW scales by row_fn(reduce(...)) and needs tail.reduce"),
    (Tail(scale="SUM"), "tail.scale: expected None, a number, 'ROW' or 'SIN'"),
    (Tail(scale="SIN"), "tail.scale: SIN scales by the scalar input, and input sin0 is not"),
    (Tail(scale=1e40), "tail.scale: imm 1e+40 overflows FP32"),
    (Tail(row_fn="RCP"), "tail.row_fn: only used with scale='ROW' or 'SIN'"),
    (Tail(reduce="MIN"), "tail.reduce: unknown reduction 'MIN'"),
    (Tail(relu=1), "tail.relu: expected True or False"),
])
def test_bad_tails(tail, message):
    prog = SimdProgram((Counter(0, 8),), (Stage("PASS"),), tail=tail)
    with pytest.raises(PcuProgramError, match=re.escape(message)):
        pack_simd(prog, SMALL)


@pytest.mark.parametrize("kwargs,message", [
    ({"reduce": "MAX", "tail": Tail(reduce="ADD", scale="ROW")},
     "tail.reduce: ADD differs from the program's reduce MAX"),
    ({"red": "MEAN"}, "red: unknown reduction 'MEAN'"),
    ({"scalar_hold": 0}, "scalar_hold: input sin0 is not enabled"),
    ({"scalar_hold": 2, "inputs": frozenset({"vin0", "sin0"})},
     "scalar_hold: level 2 is not a counter of this program (0..1)"),
    ({"tokens": -1}, "tokens: level -1 is not a counter"),
    ({"vector_out": False}, "vector_out: a program with no reduce must emit vectors"),
    ({"stages": (Stage("ADD", "VIN1", "RED"),), "inputs": frozenset({"vin1"})},
     "stage 0.b: source RED is not available: input vin0 is not enabled"),
])
def test_bad_simd_options(kwargs, message):
    fields = {"counters": (Counter(0, 2), Counter(0, 8)), "stages": (Stage("PASS"),)}
    fields.update(kwargs)
    with pytest.raises(PcuProgramError, match=re.escape(message)):
        pack_simd(SimdProgram(**fields), SMALL)


@pytest.mark.parametrize("kwargs,message", [
    ({"k": 0}, "systolic.k: 0 must be an integer in 1.."),
    ({"k": 4, "tiles": 1 << 16}, "systolic.tiles: 65536 must be an integer in 1..65535"),
    ({"k": 4, "rows": 29}, "systolic.rows: 29 must be an integer in 1..28"),
    ({"k": 4, "cols": 9}, "systolic.cols: 9 must be an integer in 1..8"),
    ({"k": 4, "tiles": 6, "scale_tiles": 4},
     "systolic.scale_tiles: 6 tiles are not whole groups of 4"),
    ({"k": 4, "scale_tiles": 0}, "systolic.scale_tiles: 0 must be an integer in 1.."),
    ({"k": 4, "tail": Tail(func="SIN")}, "tail.func: unknown function 'SIN'"),
])
def test_bad_systolic_programs(kwargs, message):
    with pytest.raises(PcuProgramError, match=re.escape(message)):
        pack_systolic(SystolicProgram(**kwargs), SMALL)


def test_gemm_layout_round_trips_and_reference_matches_float64():
    """gemm_streams/systolic_reference/gemm_result compose to gemm_reference, which is
    within FP32 rounding of float64 (BF16 inputs, exact products, one rounding per add)."""
    nrng = np.random.default_rng(SEED)
    for m, n, k in ((5, 3, 1), (28, 8, 37), (40, 13, 19)):
        a = fp(nrng, (m, k), 1) & 0xFFFF0000
        b = fp(nrng, (k, n), 1) & 0xFFFF0000
        prog, vin0, vin1 = gemm_streams(a, b, SMALL)
        out = systolic_reference(prog, SMALL, vin0, vin1)
        c = gemm_result(out["data"], m, n, SMALL)
        assert np.array_equal(c, gemm_reference(a, b)), (m, n, k)
        exact = N.from_bits(a).astype(np.float64) @ N.from_bits(b).astype(np.float64)
        bound = k * 2.0 ** -24 * (np.abs(N.from_bits(a)) @ np.abs(N.from_bits(b)))
        assert np.all(np.abs(N.from_bits(c) - exact) <= bound + 1e-30), (m, n, k)


# --- tier 2: RTL in the Amaranth simulator ------------------------------------------------

def test_tail_functions_and_header_reduction():
    """Every tail option and the RED operand source, on ragged rows."""
    nrng = np.random.default_rng(SEED)
    rows = (Counter(0, 2), Counter(0, 3))
    cases = [
        SimdProgram(rows, (Stage("PASS"),), tail=Tail(func="EXP2")),
        SimdProgram(rows, (Stage("PASS"),), tail=Tail(func="RCP", scale=-3.0, relu=True)),
        SimdProgram(rows, (Stage("MUL", "PREV", "PREV"),), tail=Tail(func="RSQRT")),
        SimdProgram(rows, (Stage("PASS"),), tail=Tail(reduce="MAX", scale="ROW",
                                                      row_fn="RCP", bf16=True)),
        SimdProgram(rows, (Stage("SUB", "PREV", "RED"),), red="MAX", tail=Tail(relu=True)),
        SimdProgram(rows, (Stage("ADD", "RED", "ZERO"),), red="ADD", tail=Tail(func="EXP2")),
        SimdProgram(rows, (Stage("FMA", "VIN0", "SIN0", "ZERO"),),
                    frozenset({"vin0", "sin0"}), scalar_hold=1),
    ]
    jobs, feeds = [], []
    for prog in cases:
        steps = len(simd_reference(prog, TINY)["mask"])
        inputs = {"vin0": fp(nrng, (steps, TINY.pcu_lanes))}
        if "sin0" in prog.inputs:
            inputs["sin0"] = fp(nrng, 2)       # one per row (scalar_hold=1)
        feeds.append(inputs)
        jobs.append(simd_job(prog, inputs, None, TINY))
    for k, (prog, inputs, got) in enumerate(zip(cases, feeds, run_pcu(TINY, jobs, SEED))):
        check(got, simd_reference(prog, TINY, **inputs), TINY.pcu_lanes, f"case {k}: {prog}")


def test_row_sums_with_vectors():
    """A program can emit its vectors and their row reductions at once; each output
    stream is back-pressured on its own."""
    nrng = np.random.default_rng(SEED + 1)
    prog = SimdProgram((Counter(0, 3), Counter(0, 5)), (Stage("PASS"),), reduce="ADD",
                       vector_out=True, accumulate=("ADD", 1),
                       tail=Tail(func="EXP2", reduce="ADD", scale="ROW", row_fn="RCP"))
    inputs = {"vin0": fp(nrng, (9, TINY.pcu_lanes), 2)}
    want = simd_reference(prog, TINY, **inputs)
    job = dict(simd_job(prog, inputs, None, TINY), outs={"vout": 9, "sout": 3})
    (got,) = run_pcu(TINY, [job], SEED + 1)
    check(got["vout"], want, TINY.pcu_lanes, "vectors")
    assert np.array_equal(got["sout"]["data"], want["sdata"]) and \
        np.array_equal(got["sout"]["last"], want["slast"])


@pytest.mark.parametrize("m,n,k", [(3, 1, 1), (14, 2, 9), (20, 3, 5), (29, 3, 1)])
def test_systolic_gemm(m, n, k):
    """C = A x B in systolic mode: M and N smaller than, equal to and larger than a tile,
    K from 1 (shorter than the array's minimum tile period) to odd lengths."""
    nrng = np.random.default_rng(SEED + m * 100 + k)
    a = fp(nrng, (m, k), 1) & 0xFFFF0000
    b = fp(nrng, (k, n), 1) & 0xFFFF0000
    prog, vin0, vin1 = gemm_streams(a, b, TINY)
    vec = vector_layout(TINY.pcu_lanes)
    want = systolic_reference(prog, TINY, vin0, vin1)
    job = {"config": pack_systolic(prog, TINY), "idle_input": "sin0", "out": "vout",
           "n_out": len(want["mask"]),
           "feeds": {"vin0": to_ints(pack(vec, {"data": vin0})),
                     "vin1": to_ints(pack(vec, {"data": vin1}))}}
    (got,) = run_pcu(TINY, [job], SEED + k)
    check(got, want, TINY.pcu_lanes, f"gemm {m}x{n}x{k}")
    c = gemm_result(got["data"], m, n, TINY)
    assert np.array_equal(c, gemm_reference(a, b))


def test_systolic_tail_and_tile_shapes():
    """Tiles back to back through a tail (scale, ReLU, BF16), with fewer rows/cols."""
    nrng = np.random.default_rng(SEED + 5)
    L, TM = TINY.pcu_lanes, systolic_tile_rows(TINY)
    prog = SystolicProgram(k=3, tiles=3, rows=TM - 3, cols=1,
                           tail=Tail(scale=0.5, relu=True, bf16=True))
    vin0 = fp(nrng, (3 * 3 * 7, L))
    vin1 = fp(nrng, (3 * 3, L))
    vec = vector_layout(L)
    want = systolic_reference(prog, TINY, vin0, vin1)
    job = {"config": pack_systolic(prog, TINY), "idle_input": None, "out": "vout",
           "n_out": len(want["mask"]),
           "feeds": {"vin0": to_ints(pack(vec, {"data": vin0})),
                     "vin1": to_ints(pack(vec, {"data": vin1}))}}
    (got,) = run_pcu(TINY, [job], SEED + 5, idle=0.5, backpressure=0.6)
    check(got, want, L, "systolic tail")


def test_control_tokens():
    """With ``tokens = 1`` each run of the inner counter (a row) waits for a token on
    ``tok_in``; ``tok_out`` pulses once per row; ``done`` pulses once at the end."""
    prog = SimdProgram((Counter(0, 3), Counter(0, 4)), (Stage("PASS"),), tokens=1)
    dut = Pcu(TINY)
    per_window = 2                                   # 4 elements over 2 lanes
    log = {"out": [], "tok_out": 0, "done": 0}

    async def bench(ctx):
        ctx.set(Value.cast(dut.config), pack_simd(prog, TINY))
        ctx.set(dut.vout.ready, 1)
        await ctx.tick()
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for window in range(3):
            for _ in range(40):       # without a token nothing more comes out
                await ctx.tick()
            assert len(log["out"]) == window * per_window, (window, log)
            ctx.set(dut.tok_in, 1)
            await ctx.tick()
            ctx.set(dut.tok_in, 0)
        for _ in range(60):
            await ctx.tick()
        assert len(log["out"]) == 3 * per_window and log["out"][-1] == 1, log
        assert log["tok_out"] == 3 and log["done"] == 1, log
        assert not ctx.get(dut.busy)

    async def feed(ctx):
        vec = vector_layout(TINY.pcu_lanes)
        for i in range(3 * per_window):
            ctx.set(dut.vin0.valid, 1)
            ctx.set(Value.cast(dut.vin0.payload),
                    to_ints(pack(vec, {"data": np.full((1, 2), i)}))[0])
            await ctx.tick().until(dut.vin0.ready)
        ctx.set(dut.vin0.valid, 0)

    async def monitor(ctx):
        async for clk, _, valid, last, tok, done in ctx.tick().sample(
                dut.vout.valid, dut.vout.payload.last, dut.tok_out, dut.done):
            if valid:
                log["out"].append(last)
            log["tok_out"] += tok
            log["done"] += done

    sim = simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.add_process(feed)
    sim.add_process(monitor)
    sim.run_until(1e-8 * 400)
