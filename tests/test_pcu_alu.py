"""The PCU body's functional unit in the Amaranth simulator: every op bit-exact against
``firmware.compiler.pcu.alu_reference``, with random pipeline stalls."""

import numpy as np
import pytest

from firmware import numerics as N
from firmware.compiler.pcu import alu_reference
from hdl.numerics.ops import ALU_OPS, Op
from hdl.pcu.alu import Alu
from tb.lib.fpu_vectors import SPECIAL_BITS
from tb.lib.pysim import run_pipeline

SEED = 11


def alu_vectors(rng, n):
    op = rng.choice(np.array([o.value for o in ALU_OPS], np.uint32), n)
    def operand():
        kind = rng.integers(0, 4, n)
        normal = (rng.integers(0, 2, n, dtype=np.uint32) << 31) | \
                 (rng.integers(100, 150, n, dtype=np.uint32) << 23) | \
                 rng.integers(0, 1 << 23, n, dtype=np.uint32)
        anybits = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
        small = rng.integers(0, 40, n).astype(np.uint32)              # shift amounts, ints
        special = SPECIAL_BITS[rng.integers(0, len(SPECIAL_BITS), n)]
        return np.where(kind == 0, normal, np.where(kind == 1, anybits,
                        np.where(kind == 2, small, special))).astype(np.uint32)
    a, b, c = operand(), operand(), operand()
    c[rng.random(n) < 0.3] = 0                                         # SELECT both ways
    return op, a, b, c


def test_reference_of_simple_ops():
    a, b = np.uint32(0xFFFFFFFE), np.uint32(3)
    ops = [Op.IADD, Op.IMUL, Op.ILT, Op.SHL, Op.SHR, Op.SELECT, Op.PASS]
    got = [int(alu_reference(o.value, a, b, 0)) for o in ops]
    assert got == [1, 0xFFFFFFFA, 1, 0xFFFFFFF0, 0x1FFFFFFF, 3, 0xFFFFFFFE]
    one, two = N.to_bits(np.float32(1.0)), N.to_bits(np.float32(2.0))
    # FMA rounds a and b to BF16 first: 1 + 2**-9 is not a BF16 value and rounds to 1.
    a = N.to_bits(np.float32(1 + 2 ** -9))
    assert alu_reference(Op.FMA.value, a, two, one) == N.to_bits(np.float32(3.0))


@pytest.mark.parametrize("stall", [0.0, 0.4])
def test_alu_every_op_bit_exact(stall):
    rng = np.random.default_rng(SEED)
    op, a, b, c = alu_vectors(rng, 600)
    got = np.array(run_pipeline(Alu(), {"op": op, "a": a, "b": b, "c": c}, seed=SEED,
                                stall=stall), dtype=np.uint32)
    want = alu_reference(op, a, b, c)
    bad = np.flatnonzero(got != want)
    if bad.size:
        i = bad[0]
        pytest.fail(f"{bad.size} mismatches (seed {SEED}); first: {Op(int(op[i])).name}"
                    f"({a[i]:#x}, {b[i]:#x}, {c[i]:#x}) = {got[i]:#x}, expected {want[i]:#x}")
    assert set(op.tolist()) == {o.value for o in ALU_OPS}


def test_one_op_table_serves_the_alu_the_fpu_and_the_references():
    """Every op of the one table has exactly one reference, belongs to a lane, and the
    reference dispatch picks each element's own op."""
    from hdl.numerics.ops import CMP_OF, FPU_OPS, OP_UNIT
    assert set(N.OP_REFERENCE) == {o.name for o in Op}, "one reference per op, no more"
    assert {o for o in ALU_OPS + FPU_OPS} == set(Op), "every op is some lane's"
    assert {o for o in OP_UNIT if OP_UNIT[o] == "cmp"} == set(CMP_OF)
    a = N.to_bits(np.float32([1.5, -2.0, 3.0]))
    b = N.to_bits(np.float32([0.5, 4.0, -1.0]))
    assert np.array_equal(N.op_reference(np.full(3, Op.ADD.value), a, b, a), N.fp32_add(a, b))
    assert np.array_equal(N.op_reference(np.array([Op.ADD.value, Op.MUL.value, Op.RCP.value]),
                                         a, b, a),
                          [N.fp32_add(a, b)[0], N.fp32_mul(a, b)[1], N.rcp(a)[2]])
