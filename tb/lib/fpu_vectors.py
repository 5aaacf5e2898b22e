"""Operand vectors for the :class:`hdl.numerics.fpu.Fpu` stream and their expected results.

Vectors are dicts of numpy arrays: ``op`` (n,) and operands ``a, b, c`` (n, lanes)."""

import numpy as np

from firmware import numerics as N
from hdl.numerics.fpu import fpu_layouts
from hdl.numerics.ops import FPU_OPS, Op

from .payload import pack, unpack

__all__ = ["make_vectors", "expected", "pack_inputs", "unpack_outputs", "float64_errors",
           "SPECIAL_BITS"]

SPECIAL_BITS = np.array([
    0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001, 0x7F800001,
    0x00800000, 0x80800000, 0x7F7FFFFF, 0xFF7FFFFF, 0x00000001, 0x807FFFFF, 0x00400000,
    0x3F800000, 0xBF800000, 0x3F800001, 0x3F808000, 0x3F818000, 0x42FE0000, 0xC2FC0000,
    0x43000000, 0xC3000000, 0x33800000, 0x4B800000, 0x7E800000, 0x7F000000,
], dtype=np.uint32)


def _operands(rng, shape, op):
    """FP32 operand bit patterns: normals over all binades, arbitrary bits, specials,
    and for exp2 values in its interesting range."""
    kind = rng.integers(0, 10, shape)
    normal = (rng.integers(0, 2, shape, dtype=np.uint32) << 31) | \
             (rng.integers(1, 255, shape, dtype=np.uint32) << 23) | \
             rng.integers(0, 1 << 23, shape, dtype=np.uint32)
    near_one = (rng.integers(0, 2, shape, dtype=np.uint32) << 31) | \
               (rng.integers(100, 150, shape, dtype=np.uint32) << 23) | \
               rng.integers(0, 1 << 23, shape, dtype=np.uint32)
    anybits = rng.integers(0, 1 << 32, shape, dtype=np.uint64).astype(np.uint32)
    special = SPECIAL_BITS[rng.integers(0, len(SPECIAL_BITS), shape)]
    exp2_range = N.to_bits(rng.uniform(-140, 140, shape).astype(np.float32))
    out = np.where(kind < 4, normal, np.where(kind < 7, near_one,
                   np.where(kind < 8, anybits, special)))
    return np.where((op == Op.EXP2.value) & (kind < 6), exp2_range, out).astype(np.uint32)


def make_vectors(rng, n, lanes=1):
    """``n`` random FPU stream elements: ``op`` (n,) and operands ``a, b, c`` (n, lanes)."""
    op = rng.choice(np.array([o.value for o in FPU_OPS], np.uint32), n)
    shape = (n, lanes)
    opb = np.broadcast_to(op[:, None], shape)
    a, b, c = (_operands(rng, shape, opb) for _ in range(3))
    # Make close operands common so cancellation and ties are exercised.
    close = rng.random(shape) < 0.2
    b = np.where(close, a ^ rng.integers(0, 8, shape, dtype=np.uint32) ^
                 (rng.integers(0, 2, shape, dtype=np.uint32) << 31), b)
    bf16 = np.isin(opb, [Op.FMA_BF16.value, Op.FROM_BF16.value])
    a = np.where(bf16, a >> 16, a)
    b = np.where(opb == Op.FMA_BF16.value, b >> 16, b)
    return {"op": op, "a": a.astype(np.uint32), "b": b.astype(np.uint32), "c": c}


def _elementwise(v):
    """(op, a, b, c) as flat arrays, the opcode repeated across lanes."""
    a = v["a"]
    op = np.broadcast_to(np.asarray(v["op"]).reshape(len(a), *([1] * (a.ndim - 1))), a.shape)
    return op.ravel(), a.ravel(), v["b"].ravel(), v["c"].ravel()


def expected(v):
    """Reference results (uint32, shaped like the operands) through ``firmware.numerics``."""
    op, a, b, c = _elementwise(v)
    return N.op_reference(op, a, b, c).reshape(v["a"].shape)


def float64_errors(v, r):
    """Max absolute and relative error of RTL results ``r`` against float64 math, over
    the arithmetic ops whose exact result is a finite FP32 normal number."""
    op, a, b, c = _elementwise(v)
    r = np.asarray(r).ravel()
    with np.errstate(all="ignore"):
        a64 = N.from_bits(a).astype(np.float64)
        b64 = N.from_bits(b).astype(np.float64)
        c64 = N.from_bits(c).astype(np.float64)
        a16 = N.from_bits16((a & 0xFFFF).astype(np.uint16)).astype(np.float64)
        b16 = N.from_bits16((b & 0xFFFF).astype(np.uint16)).astype(np.float64)
        exact = np.full(len(op), np.nan)
        for o, val in ((Op.ADD, a64 + b64), (Op.SUB, a64 - b64), (Op.MUL, a64 * b64),
                       (Op.FMA_BF16, a16 * b16 + c64), (Op.EXP2, np.exp2(a64)),
                       (Op.RCP, 1.0 / a64), (Op.RSQRT, 1.0 / np.sqrt(a64))):
            exact = np.where(op == o.value, val, exact)
        # A BF16 product outside the FP32 range is documented to saturate; leave it out.
        prod = np.abs(a16 * b16)
        valid_prod = (op != Op.FMA_BF16.value) | (prod == 0) | \
            ((prod >= 2.0 ** -126) & (prod < 2.0 ** 128))
        # Inputs read as zero (subnormals) change the exact value; leave them out.
        def normal_or_zero(x):
            e = (x >> 23) & 0xFF
            return (e != 0) | ((x & 0x7FFFFFFF) == 0)
        ok = valid_prod & normal_or_zero(a) & normal_or_zero(b) & normal_or_zero(c)
        # Exact values from (2 - 2**-24) * 2**127 up round to infinity under RNE.
        overflow = (2.0 - 2.0 ** -24) * 2.0 ** 127
        ok &= np.isfinite(exact) & (np.abs(exact) >= 2.0 ** -126) & (np.abs(exact) < overflow)
        got = N.from_bits(r).astype(np.float64)
        abs_err = np.abs(got - exact)[ok]
        rel_err = (np.abs(got - exact) / np.abs(exact))[ok]
    return {"max_abs_err": float(abs_err.max()) if abs_err.size else 0.0,
            "max_rel_err": float(rel_err.max()) if rel_err.size else 0.0,
            "checked_vs_float64": int(ok.sum())}


def pack_inputs(v):
    """(n, words) payload rows laid out by the Fpu's input layout."""
    return pack(fpu_layouts(v["a"].shape[1])[0], v)


def unpack_outputs(rows, lanes):
    """(op (n,), r (n, lanes)) from output payload rows."""
    out = unpack(fpu_layouts(lanes)[1], rows)
    return out["op"], out["r"]
