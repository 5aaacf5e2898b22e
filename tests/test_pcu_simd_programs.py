"""PCU in SIMD mode: program errors (tier 1) and the RTL in the Amaranth simulator on a
small instance against ``simd_reference`` with idle inputs and back-pressure (tier 2)."""

import random
import re

import numpy as np
import pytest

from firmware.compiler.pcu import (Counter, PcuProgramError, SimdProgram, Stage, pack_simd,
                                   simd_reference)
from hdl.params import PRESETS
from tb.lib.pcu_pysim import TINY, run_pcu, simd_job

SMALL = PRESETS["small"]
SEED = 5


@pytest.mark.parametrize("stages,inputs,message", [
    ([Stage("FMA")] * 5, {"vin0"}, "stages: 5 stages, the PCU has 4"),
    ([Stage("FOO")], {"vin0"}, "stage 0: unknown op 'FOO'"),
    ([Stage("EXP2")], {"vin0"}, "stage 0: unknown op 'EXP2'"),     # a tail function, not a body op
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
    cases = []
    for prog in programs:
        disabled = next((k for k in ("vin1", "sin0") if k not in prog.inputs), None)
        cases.append((prog, program_inputs(prog, nrng), disabled))
    jobs = [simd_job(*case, TINY) for case in cases]
    lanes = TINY.pcu_lanes
    for k, ((prog, inputs, _), got) in enumerate(zip(cases, run_pcu(TINY, jobs, seed))):
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
    cases = []
    for prog in programs:
        steps = len(simd_reference(prog, TINY)["mask"])
        fp = lambda: nrng.normal(0, 4, (steps, TINY.pcu_lanes)).astype(np.float32).view(np.uint32)
        inputs = {"vin0": fp()}
        if "vin1" in prog.inputs:
            inputs["vin1"] = fp()
        cases.append((prog, inputs))
    jobs = [simd_job(prog, inputs, None, TINY) for prog, inputs in cases]
    for k, ((prog, inputs), got) in enumerate(zip(cases, run_pcu(TINY, jobs, SEED + 200))):
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
