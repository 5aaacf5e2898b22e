"""The PCU body's functional unit in the Amaranth simulator: every op bit-exact against
``firmware.compiler.pcu.alu_reference``, with random pipeline stalls."""

import numpy as np
import pytest

from firmware import numerics as N
from firmware.compiler.pcu import alu_reference
from hdl.pcu.alu import Alu, AluOp
from tb.lib.fpu_vectors import SPECIAL_BITS
from tb.lib.pysim import run_pipeline

SEED = 11


def alu_vectors(rng, n):
    op = rng.integers(0, len(AluOp), n).astype(np.uint32)
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
    ops = [AluOp.IADD, AluOp.IMUL, AluOp.ILT, AluOp.SHL, AluOp.SHR, AluOp.SELECT, AluOp.PASS]
    got = [int(alu_reference(o.value, a, b, 0)) for o in ops]
    assert got == [1, 0xFFFFFFFA, 1, 0xFFFFFFF0, 0x1FFFFFFF, 3, 0xFFFFFFFE]
    one, two = N.to_bits(np.float32(1.0)), N.to_bits(np.float32(2.0))
    # FMA rounds a and b to BF16 first: 1 + 2**-9 is not a BF16 value and rounds to 1.
    a = N.to_bits(np.float32(1 + 2 ** -9))
    assert alu_reference(AluOp.FMA.value, a, two, one) == N.to_bits(np.float32(3.0))


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
        pytest.fail(f"{bad.size} mismatches (seed {SEED}); first: {AluOp(int(op[i])).name}"
                    f"({a[i]:#x}, {b[i]:#x}, {c[i]:#x}) = {got[i]:#x}, expected {want[i]:#x}")
    assert set(op.tolist()) == {o.value for o in AluOp}


def test_one_reference_and_comparator_table_serve_every_op_enum():
    """Each opcode of the PCU ALU and of the FPU demo is dispatched through the one
    name-keyed reference table, and shared names mean the same comparator op."""
    import numpy as np

    import firmware.numerics as N
    from hdl.numerics.compare import CMP_BY_NAME, comparator_ops
    from hdl.numerics.fpu import FpuOp
    from hdl.pcu.alu import AluOp
    for enum_cls in (AluOp, FpuOp):
        missing = [m.name for m in enum_cls if m.name not in N.OP_REFERENCE]
        assert not missing, f"{enum_cls.__name__}: no reference for {missing}"
        cmp = comparator_ops(enum_cls)
        assert {m.name for m in cmp} == set(CMP_BY_NAME), enum_cls
    a = N.to_bits(np.float32([1.5, -2.0, 3.0]))
    b = N.to_bits(np.float32([0.5, 4.0, -1.0]))
    for name in ("ADD", "SUB", "MUL", "MAX", "MIN", "CMP_LT"):
        got_alu = N.op_reference(AluOp, np.full(3, AluOp[name].value), a, b, a)
        got_fpu = N.op_reference(FpuOp, np.full(3, FpuOp[name].value), a, b, a)
        assert np.array_equal(got_alu, got_fpu), name
    assert np.array_equal(N.op_reference(AluOp, np.full(3, AluOp.ADD.value), a, b, a),
                          N.fp32_add(a, b))
