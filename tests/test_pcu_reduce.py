"""The PCU's cross-lane reduction tree in the Amaranth simulator against
``reduce_reference`` (which follows the tree order), with random stalls."""

import numpy as np
import pytest

from firmware import numerics as N
from firmware.compiler.pcu import reduce_reference
from hdl.pcu.reduce import ReduceOp, ReduceTree
from tb.lib.fpu_vectors import SPECIAL_BITS
from tb.lib.payload import to_ints
from tb.lib.pysim import run_pipeline, simulator

SEED = 13


def test_reference_order_and_identity():
    x = N.to_bits(np.array([[1e8, 1.0, -1e8, 1.0]], np.float32))
    # Tree order: (1e8 + 1) + (-1e8 + 1) = 1e8 + -1e8 = 0 in FP32 (1 is absorbed twice).
    assert reduce_reference(ReduceOp.ADD.value, x, [0b1111])[0] == 0
    assert N.from_bits(reduce_reference(ReduceOp.ADD.value, x, [0b1010]))[0] == 2.0
    assert reduce_reference(ReduceOp.ADD.value, x, [0])[0] == 0x80000000      # -0
    assert reduce_reference(ReduceOp.MAX.value, x, [0])[0] == 0xFF800000      # -inf
    assert N.from_bits(reduce_reference(ReduceOp.MAX.value, x, [0b0110]))[0] == 1.0


@pytest.mark.parametrize("lanes", [4, 8])
def test_reduce_tree_matches_reference(lanes):
    rng = np.random.default_rng(SEED + lanes)
    n = 200
    kind = rng.integers(0, 6, (n, lanes))
    vals = np.where(kind < 5, rng.normal(0, 100, (n, lanes)).astype(np.float32).view(np.uint32),
                    SPECIAL_BITS[rng.integers(0, len(SPECIAL_BITS), (n, lanes))]).astype(np.uint32)
    mask = rng.integers(0, 1 << lanes, n).astype(np.uint32)
    mask[: n // 4] = (1 << lanes) - 1
    op = rng.integers(0, 2, n).astype(np.uint32)
    got = np.array(run_pipeline(ReduceTree(lanes), {"op": op, "i": to_ints(vals), "mask": mask},
                                seed=SEED, stall=0.3), dtype=np.uint32)
    want = np.array([reduce_reference(o, v[None, :], [mk])[0]
                     for o, v, mk in zip(op, vals, mask)], dtype=np.uint32)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, (f"{bad.size} mismatches (seed {SEED}); first row {bad[0]}: "
                           f"{ReduceOp(int(op[bad[0]])).name} mask {mask[bad[0]]:#x} -> "
                           f"{got[bad[0]]:#x}, expected {want[bad[0]]:#x}")


def run_accumulator(op, values, ends, seed, stall=0.3, gap=0.3):
    """Feed (value, end) elements with random bubbles and stalls; collect window results."""
    import random
    from hdl.pcu.accum import Accumulator
    dut = Accumulator()
    rng = random.Random(seed)
    out = []

    async def tb(ctx):
        ctx.set(dut.op, ReduceOp(op))
        k = 0
        while k < len(values) or len(out) < sum(ends):
            en = rng.random() >= stall
            valid = k < len(values) and rng.random() >= gap
            ctx.set(dut.en, en)
            ctx.set(dut.i_valid, valid)
            ctx.set(dut.x, int(values[k]) if valid else rng.getrandbits(32))
            ctx.set(dut.end, int(ends[k]) if valid else rng.getrandbits(1))
            _, _, r_valid, r = await ctx.tick().sample(dut.r_valid, dut.r)
            if en and r_valid:        # a result is consumed on an enabled cycle
                out.append(r)
            if en and valid:
                k += 1
    sim = simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return np.array(out, dtype=np.uint32)


@pytest.mark.parametrize("op", [ReduceOp.ADD, ReduceOp.MAX])
def test_accumulator_matches_reference(op):
    from firmware.compiler.pcu import accumulate_reference
    rng = np.random.default_rng(SEED)
    n = 300
    values = rng.normal(0, 10, n).astype(np.float32).view(np.uint32)
    values[rng.random(n) < 0.05] = SPECIAL_BITS[rng.integers(0, len(SPECIAL_BITS), 1)]
    ends = rng.random(n) < 0.2
    ends[-1] = True
    ends[10:13] = True                                        # one-element windows
    got = run_accumulator(op.value, values, ends, SEED)
    want = accumulate_reference(op.value, values, ends)
    assert len(got) == len(want), f"{len(got)} windows, expected {len(want)}"
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, f"{op.name}: window {bad[0]}: {got[bad[0]]:#x} != {want[bad[0]]:#x}"
