"""Tier 2: the numerics RTL in the Amaranth simulator, bit-exact against the reference."""

import numpy as np
import pytest

from firmware import numerics as N
from hdl.numerics.add import FpAdd
from hdl.numerics.fpu import Fpu
from hdl.numerics.mul import FpMul
from hdl.numerics.ops import FPU_OPS, Op
from tb.lib.fpu_vectors import SPECIAL_BITS, expected, make_vectors, pack_inputs, unpack_outputs
from tb.lib.payload import from_ints, to_ints, words_of
from tb.lib.pysim import run_pipeline, run_stream

SEED = 7


def run_unit(unit, inputs):
    return np.array(run_pipeline(unit, inputs, seed=SEED, stall=0.25), dtype=np.uint32)


@pytest.mark.parametrize("latency", [4, 3, 2, 1])
def test_fp_add_sub_unit(latency):
    rng = np.random.default_rng(SEED)
    a = np.concatenate([np.repeat(SPECIAL_BITS, len(SPECIAL_BITS)),
                        rng.integers(0, 1 << 32, 300, dtype=np.uint64).astype(np.uint32)])
    b = np.concatenate([np.tile(SPECIAL_BITS, len(SPECIAL_BITS)),
                        a[-300:] ^ rng.integers(0, 1 << 24, 300, dtype=np.uint32)])
    sub = rng.integers(0, 2, len(a))
    got = run_unit(FpAdd(latency), {"a": a, "b": b, "sub": sub})
    want = np.where(sub == 1, N.fp32_sub(a, b), N.fp32_add(a, b))
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, f"latency {latency}: {a[bad[0]]:#x} {'-' if sub[bad[0]] else '+'} {b[bad[0]]:#x}: " \
                          f"{got[bad[0]]:#x} != {want[bad[0]]:#x}"


@pytest.mark.parametrize("frac_bits", [23, 7])
def test_fp_mul_unit(frac_bits):
    rng = np.random.default_rng(SEED + frac_bits)
    a = rng.integers(0, 1 << 32, 400, dtype=np.uint64).astype(np.uint32)
    b = rng.integers(0, 1 << 32, 400, dtype=np.uint64).astype(np.uint32)
    a[:len(SPECIAL_BITS)] = SPECIAL_BITS
    if frac_bits == 7:
        a, b = a >> 16, b >> 16
        want = N.fp32_mul(N.bf16_to_fp32(a.astype(np.uint16)), N.bf16_to_fp32(b.astype(np.uint16)))
    else:
        want = N.fp32_mul(a, b)
    got = run_unit(FpMul(frac_bits), {"a": a, "b": b})
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, f"{a[bad[0]]:#x} * {b[bad[0]]:#x}: {got[bad[0]]:#x} != {want[bad[0]]:#x}"


@pytest.mark.parametrize("lanes,n", [(1, 400), (2, 150)])
def test_fpu_stream_every_op_with_backpressure(lanes, n):
    rng = np.random.default_rng(SEED)
    v = make_vectors(rng, n, lanes)
    fpu = Fpu(lanes)
    got = run_stream(fpu, to_ints(pack_inputs(v)), n, seed=SEED, idle=0.3, backpressure=0.4)
    op, r = unpack_outputs(from_ints(got, words_of(fpu.out_layout)), lanes)
    assert np.array_equal(op, v["op"]), "results out of order, lost or duplicated"
    want = expected(v)
    bad = np.argwhere(r != want)
    if len(bad):
        i, k = bad[0]
        pytest.fail(f"{len(bad)} mismatches (seed {SEED}); first: vector {i} lane {k} "
                    f"{Op(int(v['op'][i])).name}({v['a'][i, k]:#x}, {v['b'][i, k]:#x}, "
                    f"{v['c'][i, k]:#x}) = {r[i, k]:#x}, expected {want[i, k]:#x}")
    assert set(op.tolist()) == {o.value for o in FPU_OPS}, "every op must be exercised"


def test_fp_add_rejects_bad_latency():
    with pytest.raises(ValueError, match="latency must be 1..4"):
        FpAdd(5)
