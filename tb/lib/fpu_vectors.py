"""Operand vectors for the :class:`hdl.numerics.fpu.Fpu` stream and their expected results."""

import numpy as np

from firmware import numerics as N
from hdl.numerics.fpu import FpuIn, FpuOp, FpuOut

__all__ = ["make_vectors", "expected", "pack_inputs", "unpack_outputs", "float64_errors",
           "SPECIAL_BITS"]

SPECIAL_BITS = np.array([
    0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001, 0x7F800001,
    0x00800000, 0x80800000, 0x7F7FFFFF, 0xFF7FFFFF, 0x00000001, 0x807FFFFF, 0x00400000,
    0x3F800000, 0xBF800000, 0x3F800001, 0x3F808000, 0x3F818000, 0x42FE0000, 0xC2FC0000,
    0x43000000, 0xC3000000, 0x33800000, 0x4B800000, 0x7E800000, 0x7F000000,
], dtype=np.uint32)


def _operands(rng, n, op):
    """FP32 operand bit patterns: normals over all binades, arbitrary bits, specials,
    and for exp2 values in its interesting range."""
    kind = rng.integers(0, 10, n)
    normal = (rng.integers(0, 2, n, dtype=np.uint32) << 31) | \
             (rng.integers(1, 255, n, dtype=np.uint32) << 23) | \
             rng.integers(0, 1 << 23, n, dtype=np.uint32)
    near_one = (rng.integers(0, 2, n, dtype=np.uint32) << 31) | \
               (rng.integers(100, 150, n, dtype=np.uint32) << 23) | \
               rng.integers(0, 1 << 23, n, dtype=np.uint32)
    anybits = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    special = SPECIAL_BITS[rng.integers(0, len(SPECIAL_BITS), n)]
    exp2_range = N.to_bits(rng.uniform(-140, 140, n).astype(np.float32))
    out = np.where(kind < 4, normal, np.where(kind < 7, near_one,
                   np.where(kind < 8, anybits, special)))
    return np.where((op == FpuOp.EXP2.value) & (kind < 6), exp2_range, out).astype(np.uint32)


def make_vectors(rng, n):
    """``n`` random FPU stream elements as a dict of uint32 arrays op, a, b, c."""
    op = rng.integers(0, len(FpuOp), n).astype(np.uint32)
    a, b, c = (_operands(rng, n, op) for _ in range(3))
    # Make close operands common so cancellation and ties are exercised.
    close = rng.random(n) < 0.2
    b = np.where(close, a ^ rng.integers(0, 8, n, dtype=np.uint32) ^
                 (rng.integers(0, 2, n, dtype=np.uint32) << 31), b)
    bf16 = np.isin(op, [FpuOp.FMA_BF16.value, FpuOp.FROM_BF16.value])
    a = np.where(bf16, a >> 16, a)
    b = np.where(op == FpuOp.FMA_BF16.value, b >> 16, b)
    return {"op": op, "a": a.astype(np.uint32), "b": b.astype(np.uint32), "c": c}


def expected(v):
    """Reference results (uint32) of the vectors ``v`` through ``firmware.numerics``."""
    op, a, b, c = v["op"], v["a"], v["b"], v["c"]
    a16, b16 = (a & 0xFFFF).astype(np.uint16), (b & 0xFFFF).astype(np.uint16)
    table = {
        FpuOp.ADD: lambda: N.fp32_add(a, b),
        FpuOp.SUB: lambda: N.fp32_sub(a, b),
        FpuOp.MUL: lambda: N.fp32_mul(a, b),
        FpuOp.FMA_BF16: lambda: N.fp32_fma_bf16(a16, b16, c),
        FpuOp.MAX: lambda: N.fp32_max(a, b),
        FpuOp.MIN: lambda: N.fp32_min(a, b),
        FpuOp.CMP_EQ: lambda: N.fp32_cmp(a, b, N.CmpOp.EQ),
        FpuOp.CMP_LT: lambda: N.fp32_cmp(a, b, N.CmpOp.LT),
        FpuOp.CMP_LE: lambda: N.fp32_cmp(a, b, N.CmpOp.LE),
        FpuOp.TO_BF16: lambda: N.fp32_to_bf16(a).astype(np.uint32),
        FpuOp.FROM_BF16: lambda: N.bf16_to_fp32(a16),
        FpuOp.EXP2: lambda: N.exp2(a),
        FpuOp.RCP: lambda: N.rcp(a),
        FpuOp.RSQRT: lambda: N.rsqrt(a),
    }
    out = np.zeros(len(op), dtype=np.uint32)
    for o, fn in table.items():
        sel = op == o.value
        out[sel] = fn()[sel]
    return out


def _field(layout, name):
    f = layout[name]
    return f.offset, f.width


def pack_inputs(v):
    """Stream payload integers laid out by ``FpuIn`` (bit positions from the layout)."""
    words = [0] * len(v["op"])
    for name in ("op", "a", "b", "c"):
        off, _ = _field(FpuIn, name)
        col = v[name].tolist()
        for i, x in enumerate(col):
            words[i] |= int(x) << off
    return words


def unpack_outputs(words):
    """(op, r) uint32 arrays from ``FpuOut`` payload integers."""
    (op_off, op_w), (r_off, r_w) = _field(FpuOut, "op"), _field(FpuOut, "r")
    op = np.array([(w >> op_off) & ((1 << op_w) - 1) for w in words], dtype=np.uint32)
    r = np.array([(w >> r_off) & ((1 << r_w) - 1) for w in words], dtype=np.uint32)
    return op, r


def float64_errors(v, r):
    """Max absolute and relative error of RTL results ``r`` against float64 math, over
    the arithmetic ops whose exact result is a finite FP32 normal number."""
    op = v["op"]
    with np.errstate(all="ignore"):
        a64 = N.from_bits(v["a"]).astype(np.float64)
        b64 = N.from_bits(v["b"]).astype(np.float64)
        c64 = N.from_bits(v["c"]).astype(np.float64)
        a16 = N.from_bits16((v["a"] & 0xFFFF).astype(np.uint16)).astype(np.float64)
        b16 = N.from_bits16((v["b"] & 0xFFFF).astype(np.uint16)).astype(np.float64)
        exact = np.full(len(op), np.nan)
        for o, val in ((FpuOp.ADD, a64 + b64), (FpuOp.SUB, a64 - b64), (FpuOp.MUL, a64 * b64),
                       (FpuOp.FMA_BF16, a16 * b16 + c64), (FpuOp.EXP2, np.exp2(a64)),
                       (FpuOp.RCP, 1.0 / a64), (FpuOp.RSQRT, 1.0 / np.sqrt(a64))):
            exact = np.where(op == o.value, val, exact)
        # A BF16 product outside the FP32 range is documented to saturate; leave it out.
        prod = np.abs(a16 * b16)
        valid_prod = (op != FpuOp.FMA_BF16.value) | (prod == 0) | \
            ((prod >= 2.0 ** -126) & (prod < 2.0 ** 128))
        # Inputs read as zero (subnormals) change the exact value; leave them out.
        def normal_or_zero(x):
            e = (x >> 23) & 0xFF
            return (e != 0) | ((x & 0x7FFFFFFF) == 0)
        ok = valid_prod & normal_or_zero(v["a"]) & normal_or_zero(v["b"]) & normal_or_zero(v["c"])
        # Exact values from (2 - 2**-24) * 2**127 up round to infinity under RNE.
        overflow = (2.0 - 2.0 ** -24) * 2.0 ** 127
        ok &= np.isfinite(exact) & (np.abs(exact) >= 2.0 ** -126) & (np.abs(exact) < overflow)
        got = N.from_bits(r).astype(np.float64)
        abs_err = np.abs(got - exact)[ok]
        rel_err = (np.abs(got - exact) / np.abs(exact))[ok]
    return {"max_abs_err": float(abs_err.max()) if abs_err.size else 0.0,
            "max_rel_err": float(rel_err.max()) if rel_err.size else 0.0,
            "checked_vs_float64": int(ok.sum())}
