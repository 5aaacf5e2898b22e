"""PCU in SIMD mode: program errors (tier 1) and the RTL in the Amaranth simulator on a
small instance against ``simd_reference`` with idle inputs and back-pressure (tier 2)."""

import random
import re

import numpy as np
import pytest
from amaranth import Value
from amaranth.sim import Simulator

from firmware.compiler.pcu import (Counter, PcuProgramError, SimdProgram, Stage, pack_simd,
                                   simd_reference)
from hdl.params import PRESETS
from hdl.pcu.alu import AluOp
from hdl.pcu.config import Src, scalar_layout, vector_layout
from hdl.pcu.pcu import Pcu
from tb.lib.payload import from_ints, pack, to_ints, unpack, words_of
from tb.lib.pysim import collect, drive

SMALL = PRESETS["small"]
TINY = SMALL.replace(pcu_lanes=2, pcu_stages=2)
SEED = 5


@pytest.mark.parametrize("stages,inputs,message", [
    ([Stage("FMA")] * 5, {"vin0"}, "stages: 5 stages, the PCU has 4"),
    ([Stage("FOO")], {"vin0"}, "stage 0: unknown op 'FOO'"),
    ([Stage("ADD", b="VIN2")], {"vin0"}, "stage 0.b: unknown source 'VIN2'"),
    ([Stage("ADD", b="VIN1")], {"vin0"}, "stage 0.b: source VIN1 is not available"),
    ([Stage("PASS"), Stage("ADD", "PREV", "SIN0")], {"vin0"}, "stage 1.b: source SIN0"),
    ([Stage("PASS", a="PREV")], {"vin1"}, "PREV of stage 0 is vector input 0"),
    ([Stage("ADD", imm=1e39)], {"vin0"}, "stage 0.imm: imm 1e+39 overflows FP32"),
    ([Stage("ADD", imm=1 << 33)], {"vin0"}, "does not fit 32 bits"),
    ([Stage("ADD")], {"vin3"}, "inputs: unknown input 'vin3'"),
])
def test_bad_programs_name_stage_and_field(stages, inputs, message):
    prog = SimdProgram((Counter(0, 8),), tuple(stages), frozenset(inputs))
    with pytest.raises(PcuProgramError, match=re.escape(message)):
        pack_simd(prog, SMALL)
    with pytest.raises(PcuProgramError, match="needs at least one counter"):
        pack_simd(SimdProgram((), (Stage("PASS"),)), SMALL)


MIXING = ["IADD", "XOR", "FMA", "ADD", "SUB", "MUL", "SELECT", "IMUL"]


def random_program(rng, params):
    """Stages that chain PREV with other sources through ops that keep information, so
    every source the program names shows in the output."""
    inputs = {"vin0"} | {k for k in ("vin1", "sin0") if rng.random() < 0.7}
    avail = ["VIN0", "CTR", "IMM"] + [s for s, k in (("VIN1", "vin1"), ("SIN0", "sin0"))
                                        if k in inputs]
    stages = []
    for _ in range(rng.randint(1, params.pcu_stages)):
        op = rng.choice(MIXING)
        other = [rng.choice(avail), rng.choice(avail)]
        a, b, c = ("PREV", *other) if op != "SELECT" else (other[0], "PREV", other[1])
        stages.append(Stage(op, a, b, c, rng.choice([1.5, -0.25, 3, 0x7F800000, 0])))
    counters = (Counter(0, rng.randint(1, 3)),
                Counter(0, rng.randint(1, 4 * params.pcu_lanes), rng.choice([1, 2])))
    return SimdProgram(counters, tuple(stages), frozenset(inputs))


def directed_programs():
    """Each source alone decides the result of some stage."""
    two = (Counter(0, 2), Counter(0, 5))
    both = frozenset({"vin0", "vin1", "sin0"})
    return [
        SimdProgram(two, (Stage("PASS", "VIN1"),), both),
        SimdProgram(two, (Stage("PASS", "SIN0"),), both),
        SimdProgram(two, (Stage("PASS", "CTR"),), both),
        SimdProgram(two, (Stage("PASS", "IMM", imm=-2.5),), both),
        SimdProgram(two, (Stage("IADD", "VIN0", "VIN1"), Stage("XOR", "PREV", "SIN0")), both),
        SimdProgram(two, (Stage("PASS", "ZERO"), Stage("PASS", "VIN1")), both),
    ]


def run_pcu(params, jobs, seed, idle=0.3, backpressure=0.3):
    """Run ``jobs`` — (program, inputs, idle_input) — one after another on one Pcu in one
    Amaranth simulator (compiled once; ``reset`` between jobs). Returns the output rows
    of each job. ``idle_input`` names an input the program does not enable: it is offered
    more elements than its FIFO holds and must not be drained."""
    dut = Pcu(params)
    vec = vector_layout(params.pcu_lanes)
    state = {}

    async def control(ctx):
        ctx.set(Value.cast(dut.config), pack_simd(state["program"], params))
        await ctx.tick()
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)

    def feeder(name):
        async def run(ctx):
            payloads = state["feeds"].get(name)
            if payloads:
                await drive(ctx, getattr(dut, name), payloads,
                            random.Random(state["seed"] + len(name) * 31 + ord(name[-1])), idle)
        return run

    async def unused(ctx):
        name = state["idle_input"]
        if name is None:
            return
        port = getattr(dut, name)
        ctx.set(port.valid, 1)
        while len(state["accepted"]) < params.pcu_fifo_depth + 3:
            ctx.set(Value.cast(port.payload), len(state["accepted"]))
            _, _, ready = await ctx.tick().sample(port.ready)
            if ready:
                state["accepted"].append(1)
        ctx.set(port.valid, 0)

    async def sink(ctx):
        n, port = state["n_out"], state["out_port"]
        await collect(ctx, port, n, random.Random(state["seed"]), backpressure,
                      max_cycles=60 * n + 400, seed=state["seed"], out=state["got"])
        assert not ctx.get(dut.busy), "busy after the last vector"
        if state["idle_input"]:
            assert len(state["accepted"]) <= params.pcu_fifo_depth + 1, \
                f"the disabled input {state['idle_input']} was drained"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for tb in (control, feeder("vin0"), feeder("vin1"), feeder("sin0"), sink):
        sim.add_testbench(tb)
    sim.add_testbench(unused, background=True)
    results = []
    for k, (program, inputs, idle_input) in enumerate(jobs):
        ref = simd_reference(program, params, **inputs)
        scalar = program.reduce is not None
        feeds = {name: to_ints(pack(vec, {"data": inputs[name]}))
                 for name in ("vin0", "vin1") if name in inputs}
        if "sin0" in inputs:
            feeds["sin0"] = [int(x) for x in inputs["sin0"]]
        state.update(program=program, feeds=feeds, seed=seed + k, got=[], accepted=[],
                     idle_input=idle_input, out_port=dut.sout if scalar else dut.vout,
                     n_out=len(ref["sdata"]) if scalar else len(ref["mask"]))
        if k:
            sim.reset()
        sim.run()
        layout = scalar_layout if scalar else vec
        results.append(unpack(layout, from_ints(state["got"], words_of(layout))))
    return results


def program_inputs(prog, nrng):
    lanes = TINY.pcu_lanes
    steps = len(simd_reference(prog, TINY)["mask"])
    def vals(shape):
        kind = nrng.integers(0, 3, shape)
        fp = nrng.normal(0, 4, shape).astype(np.float32).view(np.uint32)
        ints = nrng.integers(0, 1 << 32, shape, dtype=np.uint64).astype(np.uint32)
        return np.where(kind == 0, fp, np.where(kind == 1, ints, nrng.integers(0, 40, shape)))\
            .astype(np.uint32)
    inputs = {"vin0": vals((steps, lanes))}
    if "vin1" in prog.inputs:
        inputs["vin1"] = vals((steps, lanes))
    if "sin0" in prog.inputs:
        inputs["sin0"] = vals(steps)
    return inputs


def check_programs(programs, nrng, seed):
    jobs = []
    for prog in programs:
        disabled = next((k for k in ("vin1", "sin0") if k not in prog.inputs), None)
        jobs.append((prog, program_inputs(prog, nrng), disabled))
    lanes = TINY.pcu_lanes
    for k, ((prog, inputs, _), got) in enumerate(zip(jobs, run_pcu(TINY, jobs, seed))):
        want = simd_reference(prog, TINY, **inputs)
        for key in ("mask", "last"):
            assert np.array_equal(got[key], want[key]), f"job {k} {key} (seed {seed}): {prog}"
        # Lanes outside the mask carry don't-care values; compare the valid ones.
        valid = ((want["mask"][:, None] >> np.arange(lanes)) & 1).astype(bool)
        assert np.array_equal(got["data"][valid], want["data"][valid]), \
            f"job {k} (seed {seed}): {prog}"


def test_pcu_simd_directed_sources():
    check_programs(directed_programs(), np.random.default_rng(SEED), SEED)


def test_pcu_simd_random_programs_match_reference():
    rng = random.Random(SEED)
    check_programs([random_program(rng, TINY) for _ in range(8)], np.random.default_rng(SEED),
                   SEED + 100)


def test_pcu_reductions():
    """Dot products per row (multiply, add across lanes, accumulate over the row), row
    maxima, and per-iteration lane sums; ragged rows exercise the lane mask."""
    nrng = np.random.default_rng(SEED)
    rows = (Counter(0, 3), Counter(0, 7))
    both = frozenset({"vin0", "vin1"})
    programs = [
        SimdProgram(rows, (Stage("MUL", "VIN0", "VIN1"),), both, "ADD", ("ADD", 1)),
        SimdProgram(rows, (Stage("PASS", "VIN0"),), frozenset({"vin0"}), "MAX", ("MAX", 1)),
        SimdProgram(rows, (Stage("ADD", "VIN0", "IMM", imm=0.5),), frozenset({"vin0"}), "ADD"),
        SimdProgram((Counter(0, 2), Counter(0, 2), Counter(0, 5)),
                    (Stage("FMA", "VIN0", "VIN1", "IMM", imm=-1.0),), both, "ADD", ("ADD", 1)),
    ]
    jobs = []
    for prog in programs:
        steps = len(simd_reference(prog, TINY)["mask"])
        fp = lambda: nrng.normal(0, 4, (steps, TINY.pcu_lanes)).astype(np.float32).view(np.uint32)
        inputs = {"vin0": fp()}
        if "vin1" in prog.inputs:
            inputs["vin1"] = fp()
        jobs.append((prog, inputs, None))
    for k, ((prog, inputs, _), got) in enumerate(zip(jobs, run_pcu(TINY, jobs, SEED + 200))):
        want = simd_reference(prog, TINY, **inputs)
        assert np.array_equal(got["data"], want["sdata"]), f"program {k}: {prog}"
        assert np.array_equal(got["last"], want["slast"]), f"program {k}: {prog}"


@pytest.mark.parametrize("reduce,accumulate,message", [
    ("SUM", None, "reduce: unknown reduction 'SUM'"),
    (None, ("ADD", 0), "accumulate: needs reduce"),
    ("ADD", ("ADD", 2), "accumulate: level 2 is not a counter of this program"),
    ("ADD", ("MIN", 0), "accumulate: unknown reduction 'MIN'"),
    ("ADD", "ADD", "accumulate: expected (op, level)"),
])
def test_bad_reductions(reduce, accumulate, message):
    prog = SimdProgram((Counter(0, 2), Counter(0, 8)), (Stage("PASS"),), frozenset({"vin0"}),
                       reduce, accumulate)
    with pytest.raises(PcuProgramError, match=re.escape(message)):
        pack_simd(prog, SMALL)
