"""cocotb: one PCU in SIMD mode on Verilator, bit-exact against ``simd_reference``.

Arguments (the test's dataclass in :mod:`tb.lib.args`): ``config`` (preset or TOML) or ``params`` (a dict), ``case``
(``fma``, ``dot``, ``softmax``, ``normalize`` or ``random``), ``n`` iterations (vectors), ``seed``, ``idle``,
``backpressure``.
"""

import random

import cocotb
import numpy as np

import math

from firmware import numerics as N
from firmware.compiler.pcu import Counter, SimdProgram, Stage, Tail, pack_simd, simd_reference
from hdl.packet import scalar_layout, vector_layout
from tb.lib.args import PcuSimdArgs
from tb.lib.harness import TbHarness, write_outputs
from tb.lib.payload import pack, unpack

MIXING = ["IADD", "XOR", "FMA", "ADD", "SUB", "MUL", "SELECT", "IMUL", "MAX", "CMP_LT"]


def fma_program(n, lanes):
    """out = a * b + 1.5 elementwise over n vectors."""
    return SimdProgram((Counter(0, n * lanes),), (Stage("FMA", "VIN0", "VIN1", "IMM", 1.5),),
                       frozenset({"vin0", "vin1"}))


def dot_program(n, k, lanes):
    """One dot product of length k per row: multiply, add across lanes, accumulate the
    row (k need not be a multiple of the lanes: the last vector of a row is masked)."""
    rows = max(1, n // -(-k // lanes))
    return SimdProgram((Counter(0, rows), Counter(0, k)), (Stage("MUL", "VIN0", "VIN1"),),
                       frozenset({"vin0", "vin1"}), "ADD", ("ADD", 1))


def softmax_program(rows, n):
    """Softmax of each row of ``n`` values (one vector, ``n`` <= lanes) on one PCU:
    header max-reduce (RED), x - max, times log2(e), exp2, sum-reduce, rcp, scale."""
    return SimdProgram((Counter(0, rows), Counter(0, n)),
                       (Stage("SUB", "PREV", "RED"), Stage("MUL", "PREV", "IMM", imm=math.log2(math.e))),
                       red="MAX", tail=Tail(func="EXP2", reduce="ADD", scale="ROW", row_fn="RCP"))


def normalize_program(rows, width):
    """Each row of ``width`` values (several vectors) divided by its own scalar: the tail
    scales by rcp of sin0, one scalar held per row."""
    return SimdProgram((Counter(0, rows), Counter(0, width)), (),
                       frozenset({"vin0", "sin0"}), scalar_hold=1,
                       tail=Tail(scale="SIN", row_fn="RCP"))


def softmax_bound(t, lanes):
    """Relative error bound of the softmax vs float64, for exponent arguments ``t``:
    rounding x - max, log2(e) and the product perturbs t by at most 1.5 |t| 2^-23, which
    exp2 turns into a relative 1.5 |t| ln2 2^-23 (bounded here by 2 |t| ln2 2^-23); exp2
    and rcp add TAIL_ULP_BOUND ulp each and the final multiply 0.5 ulp; the tree sum of
    up to ``lanes`` positive terms log2(lanes) x 0.5 ulp. One ulp is at most 2^-23 of
    the value."""
    ulp_terms = 2 * N.TAIL_ULP_BOUND + 0.5 + 0.5 * math.log2(lanes)
    return 2.0 ** -23 * (2 * math.log(2) * float(np.max(np.abs(t))) + ulp_terms)


def random_program(rng, n, params):
    avail = ["VIN0", "VIN1", "SIN0", "CTR", "IMM"]
    stages = []
    for _ in range(params.pcu_stages):
        op = rng.choice(MIXING)
        x, y = rng.choice(avail), rng.choice(avail)
        a, b, c = ("PREV", x, y) if op != "SELECT" else (x, "PREV", y)
        stages.append(Stage(op, a, b, c, rng.choice([1.5, -0.25, 3, 0x7F800000])))
    outer = rng.randint(1, 4)
    inner = max(1, n // outer) * params.pcu_lanes - rng.randint(0, params.pcu_lanes - 1)
    return SimdProgram((Counter(0, outer), Counter(0, inner)), tuple(stages),
                       frozenset({"vin0", "vin1", "sin0"}))


def operands(nrng, shape):
    kind = nrng.integers(0, 3, shape)
    fp = nrng.normal(0, 8, shape).astype(np.float32).view(np.uint32)
    ints = nrng.integers(0, 1 << 32, shape, dtype=np.uint64).astype(np.uint32)
    return np.where(kind == 0, fp, np.where(kind == 1, ints, nrng.integers(0, 40, shape)))\
        .astype(np.uint32)


@cocotb.test()
async def pcu_simd(dut):
    args = PcuSimdArgs.from_env()
    params = args.machine()
    lanes, seed, n = params.pcu_lanes, args.seed, args.n
    idle, bp = args.idle, args.backpressure
    nrng = np.random.default_rng(seed)
    case = args.case
    bf16 = lambda shape: (nrng.normal(0, 2, shape).astype(np.float32).view(np.uint32)
                          & 0xFFFF0000)
    if case == "softmax":
        width = lanes - 1 if seed % 2 else lanes
        prog = softmax_program(n, width)
        inputs = {"vin0": nrng.normal(0, 3, (n, lanes)).astype(np.float32).view(np.uint32)}
        steps = n
    elif case == "normalize":
        width = 3 * lanes + 5
        rows = max(1, n // 4)
        prog = normalize_program(rows, width)
        steps = len(simd_reference(prog, params)["mask"])
        inputs = {"vin0": nrng.normal(0, 3, (steps, lanes)).astype(np.float32).view(np.uint32),
                  "sin0": nrng.uniform(0.5, 300, rows).astype(np.float32).view(np.uint32)}
    elif case in ("fma", "dot"):
        prog = fma_program(n, lanes) if case == "fma" else dot_program(n, 61, lanes)
        steps = len(simd_reference(prog, params)["mask"])
        inputs = {"vin0": bf16((steps, lanes)), "vin1": bf16((steps, lanes))}
    else:
        prog = random_program(random.Random(seed), n, params)
        steps = len(simd_reference(prog, params)["mask"])
        inputs = {"vin0": operands(nrng, (steps, lanes)), "vin1": operands(nrng, (steps, lanes)),
                  "sin0": operands(nrng, steps)}
    dut._log.info(f"pcu {case}: {steps} iterations x {lanes} lanes, "
                  f"seed {seed}, program {prog}")
    want = simd_reference(prog, params, **inputs)
    vec = vector_layout(lanes)
    scalar = prog.reduce is not None
    out_name, out_layout = ("sout", scalar_layout) if scalar else ("vout", vec)
    n_out = len(want["sdata"]) if scalar else steps

    tb = await TbHarness.started(dut, pack_simd(prog, params))
    for k, name in enumerate(("vin0", "vin1")):
        if name in inputs:
            tb.load(name, pack(vec, {"data": inputs[name]}), seed=seed + k,
                    valid_probability=1 - idle)
    if "sin0" in inputs:
        tb.load("sin0", inputs["sin0"][:, None], seed=seed + 7, valid_probability=1 - idle)
    tb.expect(out_name, n_out, seed=seed + 9, ready_probability=1 - bp)
    cycles, wall = await tb.run(timeout_cycles=40 * steps + 2000)
    assert not int(tb.port("busy").value), "PCU still busy after its last vector"
    got = unpack(out_layout, await tb.dump(out_name))
    if scalar:
        bad = np.flatnonzero(got["data"] != want["sdata"])
        write_outputs(steps=steps, lanes=lanes, cycles=cycles, wall_s=wall,
                      mismatches=int(bad.size), results=len(want["sdata"]))
        assert np.array_equal(got["last"], want["slast"]), f"last flags differ (seed {seed})"
        assert bad.size == 0, (f"{bad.size} of {n_out} reductions differ (seed {seed}); first "
                               f"#{bad[0]}: {got['data'][bad[0]]:#x}, expected "
                               f"{want['sdata'][bad[0]]:#x}")
        return
    for key in ("mask", "last"):
        assert np.array_equal(got[key], want[key]), f"{key} differs (seed {seed})"
    if case == "softmax":
        x = N.from_bits(inputs["vin0"]).astype(np.float64)[:, :width]
        e = np.exp(x - x.max(axis=1, keepdims=True))
        exact = e / e.sum(axis=1, keepdims=True)
        y = N.from_bits(got["data"][:, :width]).astype(np.float64)
        rel = np.abs(y - exact) / exact
        t = (x - x.max(axis=1, keepdims=True)) * math.log2(math.e)
        bound = softmax_bound(t, lanes)
        write_outputs(max_rel_err=float(rel.max()), rel_bound=bound)
        assert rel.max() <= bound, (f"softmax off float64 by {rel.max():.3g} > {bound:.3g} "
                                    f"(seed {seed})")
    if case == "normalize":
        # y = x * rcp(s): rcp within TAIL_ULP_BOUND ulp, the product rounded once.
        s = np.repeat(N.from_bits(inputs["sin0"]).astype(np.float64), steps // len(inputs["sin0"]))
        x = N.from_bits(inputs["vin0"]).astype(np.float64)
        y = N.from_bits(got["data"]).astype(np.float64)
        rel = np.abs(y - x / s[:, None]) / np.maximum(np.abs(x / s[:, None]), 1e-30)
        bound = 2.0 ** -23 * (N.TAIL_ULP_BOUND + 0.5) * 1.01
        write_outputs(max_rel_err=float(rel.max()), rel_bound=bound)
        assert rel.max() <= bound, f"normalize off float64 by {rel.max():.3g} (seed {seed})"
    valid = ((want["mask"][:, None] >> np.arange(lanes)) & 1).astype(bool)
    bad = np.argwhere(valid & (got["data"] != want["data"]))
    write_outputs(steps=steps, lanes=lanes, cycles=cycles, wall_s=wall, mismatches=len(bad),
                  results=int(valid.sum()))
    if len(bad):
        i, l = bad[0]
        raise AssertionError(f"{len(bad)} results differ (seed {seed}); first: iteration {i} "
                             f"lane {l}: {got['data'][i, l]:#x}, expected {want['data'][i, l]:#x}")
