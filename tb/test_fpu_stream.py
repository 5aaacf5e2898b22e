"""cocotb: random operand vectors through the FPU stream, bit-exact against the reference.

Arguments (the test's dataclass in :mod:`tb.lib.args`): ``n`` vectors of ``lanes`` operand triples, ``seed``, ``idle`` (probability that the
source holds back a cycle) and ``backpressure`` (probability the sink is not ready).
"""

import cocotb
import numpy as np

from tb.lib.fpu_vectors import (expected, float64_errors, make_vectors, pack_inputs,
                                unpack_outputs)
from tb.lib.args import FpuArgs
from tb.lib.harness import TbHarness, write_outputs
from firmware.numerics import TAIL_ULP_BOUND
from hdl.numerics.ops import FPU_OPS, Op


@cocotb.test()
async def fpu_random_stream(dut):
    args = FpuArgs.from_env()
    n, seed = args.n, args.seed
    lanes = args.lanes or args.machine().pcu_lanes
    idle, bp = args.idle, args.backpressure
    dut._log.info(f"fpu stream: {n} vectors x {lanes} lanes, seed {seed}, idle {idle}, "
                  f"backpressure {bp}")
    v = make_vectors(np.random.default_rng(seed), n, lanes)
    tb = TbHarness(dut)
    await tb.reset()
    tb.load("i", pack_inputs(v), seed=seed, valid_probability=1.0 - idle)
    tb.expect("o", n, seed=seed * 7 + 1, ready_probability=1.0 - bp)
    cycles, wall = await tb.run(timeout_cycles=50 * n + 1000)
    op, r = unpack_outputs(await tb.dump("o"), lanes)
    assert np.array_equal(op, v["op"]), f"results reordered, lost or duplicated (seed {seed})"
    want = expected(v)
    bad = np.argwhere(r != want)
    errors = float64_errors(v, r)
    per_op = {o.name: int(np.sum(v["op"] == o.value)) for o in FPU_OPS}
    write_outputs(n=n, lanes=lanes, seed=seed, cycles=cycles, wall_s=wall,
                  mismatches=len(bad), per_op=per_op, **errors)
    if len(bad):
        i, k = bad[0]
        raise AssertionError(
            f"{len(bad)} of {n * lanes} results differ from firmware.numerics (seed {seed}); "
            f"first: vector {i} lane {k}: {Op(int(v['op'][i])).name}({v['a'][i, k]:#x}, "
            f"{v['b'][i, k]:#x}, {v['c'][i, k]:#x}) = {r[i, k]:#x}, expected {want[i, k]:#x}")
    # Every arithmetic result is within the documented bound of the exact value
    # (1 ulp <= 2**-23 relative for a normal result).
    bound = TAIL_ULP_BOUND * 2.0 ** -23
    assert errors["max_rel_err"] <= bound, (
        f"relative error {errors['max_rel_err']:.3g} vs float64 exceeds {bound:.3g} (seed {seed})")
