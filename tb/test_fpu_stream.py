"""cocotb: random operand vectors through the FPU stream, bit-exact against the reference.

Arguments (``test_args``): ``n`` vectors, ``seed``, ``idle`` (probability that the
source holds back a cycle) and ``backpressure`` (probability the sink is not ready).
"""

import cocotb
import numpy as np

from tb.lib.fpu_vectors import (expected, float64_errors, make_vectors, pack_inputs,
                                unpack_outputs)
from tb.lib.harness import TbHarness, test_args, write_outputs
from firmware.numerics import TAIL_ULP_BOUND
from hdl.numerics.fpu import FpuOp


@cocotb.test()
async def fpu_random_stream(dut):
    args = test_args()
    n, seed = int(args.get("n", 10_000)), int(args.get("seed", 1))
    idle, bp = float(args.get("idle", 0.2)), float(args.get("backpressure", 0.3))
    dut._log.info(f"fpu stream: {n} vectors, seed {seed}, idle {idle}, backpressure {bp}")
    v = make_vectors(np.random.default_rng(seed), n)
    tb = TbHarness(dut)
    await tb.reset()
    tb.load("i", pack_inputs(v), seed=seed, valid_probability=1.0 - idle)
    tb.expect("o", n, seed=seed * 7 + 1, ready_probability=1.0 - bp)
    cycles, wall = await tb.run(timeout_cycles=50 * n + 1000)
    op, r = unpack_outputs(await tb.dump("o"))
    assert np.array_equal(op, v["op"]), f"results reordered, lost or duplicated (seed {seed})"
    want = expected(v)
    bad = np.flatnonzero(r != want)
    errors = float64_errors(v, r)
    per_op = {o.name: int(np.sum(v["op"] == o.value)) for o in FpuOp}
    write_outputs(n=n, seed=seed, cycles=cycles, wall_s=wall, mismatches=int(bad.size),
                  per_op=per_op, **errors)
    if bad.size:
        i = bad[0]
        raise AssertionError(
            f"{bad.size} of {n} results differ from firmware.numerics (seed {seed}); first: "
            f"#{i} {FpuOp(int(v['op'][i])).name}({v['a'][i]:#x}, {v['b'][i]:#x}, "
            f"{v['c'][i]:#x}) = {r[i]:#x}, expected {want[i]:#x}")
    # Every arithmetic result is within the documented bound of the exact value
    # (1 ulp <= 2**-23 relative for a normal result).
    bound = TAIL_ULP_BOUND * 2.0 ** -23
    assert errors["max_rel_err"] <= bound, (
        f"relative error {errors['max_rel_err']:.3g} vs float64 exceeds {bound:.3g} (seed {seed})")
