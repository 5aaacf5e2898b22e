"""Bit-exact reference of OpenRDU hardware arithmetic.

Every function takes and returns bit patterns (``uint32`` for FP32, ``uint16`` for
BF16), is vectorized over numpy arrays, and computes with integer algorithms that the
RTL in ``hdl/numerics`` implements exactly. The tests check these algorithms against
numpy float32, ml_dtypes bfloat16 and float64 math.

Conventions (ARCHITECTURE.md section 3):

* IEEE-754 binary32 add/mul with round-to-nearest-even.
* Subnormal inputs are read as zero of the same sign (DAZ). A result whose magnitude,
  after rounding to 24 significant bits with an unbounded exponent, is below the
  smallest normal 2**-126 is flushed to zero of the result's sign (FTZ).
* Any NaN input, and every invalid operation (inf - inf, 0 x inf, rsqrt of a negative
  number), gives the canonical quiet NaN ``0x7FC00000`` (BF16: ``0x7FC0``).
* ``fp32_fma_bf16(a, b, c)`` is ``fp32_add(a*b, c)`` where the BF16 x BF16 product is
  exact (16 significant bits); a product outside the FP32 normal range becomes
  infinity (overflow) or zero (underflow) before the add.
* ``exp2``, ``rcp`` and ``rsqrt`` use a 128-segment table with quadratic
  interpolation evaluated in fixed point (:class:`InterpTable`). Their documented
  error bound is :data:`TAIL_ULP_BOUND` FP32 ulp of the exact result on every normal
  result; ``exp2`` results that are exact powers of two (integer inputs) are exact.
"""

import enum

import numpy as np

# The canonical NaNs and the tail tables are the hardware's (one definition, in hdl).
from hdl.numerics.ops import Op
from hdl.numerics.tables import EXP2_FRAC, INF32, ONE32, QNAN16, QNAN32, TABLES, InterpTable

__all__ = [
    "QNAN32", "QNAN16", "ONE32", "TAIL_ULP_BOUND", "CmpOp",
    "fp32_add", "fp32_sub", "fp32_mul", "fp32_fma_bf16", "simd_fma", "fp32_max", "fp32_min",
    "i32_add", "i32_mul", "i32_lt", "shl", "shr", "select",
    "fp32_cmp", "fp32_to_bf16", "bf16_to_fp32", "exp2", "rcp", "rsqrt",
    "InterpTable", "TABLES", "to_bits", "from_bits", "to_bits16", "from_bits16",
    "OP_REFERENCE", "op_reference",
]

#: Documented worst-case error of exp2, rcp and rsqrt, in FP32 ulp of the exact result.
#: Interpolation error <= 0.25 ulp (Chebyshev-node quadratic on 128 segments),
#: fixed-point evaluation < 0.1 ulp, final rounding 0.5 ulp.
TAIL_ULP_BOUND = 1.0


class CmpOp(enum.IntEnum):
    """Comparison selector of :func:`fp32_cmp`; result is FP32 1.0 (true) or +0.0."""
    EQ = 0
    LT = 1
    LE = 2


# --- bit-pattern helpers ----------------------------------------------------------------

def to_bits(x):
    """float32 values -> uint32 bit patterns."""
    return np.asarray(x, dtype=np.float32).view(np.uint32)


def from_bits(b):
    """uint32 bit patterns -> float32 values."""
    return np.asarray(b, dtype=np.uint32).view(np.float32)


def to_bits16(x):
    """Values -> BF16 bit patterns (ml_dtypes rounding)."""
    import ml_dtypes
    return np.asarray(x, dtype=ml_dtypes.bfloat16).view(np.uint16)


def from_bits16(b):
    import ml_dtypes
    return np.asarray(b, dtype=np.uint16).view(ml_dtypes.bfloat16)


def _split32(x):
    x = np.asarray(x, dtype=np.uint32).astype(np.int64)
    return x >> 31, (x >> 23) & 0xFF, x & 0x7FFFFF


def _pack32(s, e, f):
    return ((s << 31) | (e << 23) | f).astype(np.uint32)


def _bitlength(v):
    """Bit length of non-negative int64 values below 2**53."""
    return np.frexp(v.astype(np.float64))[1].astype(np.int64)


def _round_pack(s, e, mant, rest, half):
    """Round ``mant`` (24 bits, leading one at bit 23) to nearest even given the
    discarded bits ``rest`` compared against ``half``; apply overflow and FTZ."""
    up = (rest > half) | ((rest == half) & ((mant & 1) == 1))
    mant = mant + up
    carry = (mant >> 24) != 0
    mant = np.where(carry, mant >> 1, mant)
    e = e + carry
    out = _pack32(s, np.clip(e, 0, 255), mant & 0x7FFFFF)
    out = np.where(e >= 255, _pack32(s, 255, 0), out)
    out = np.where(e <= 0, _pack32(s, 0, 0), out)
    return out


# --- add / sub ------------------------------------------------------------------------

def fp32_add(a, b):
    """a + b."""
    a, b = np.broadcast_arrays(np.asarray(a, np.uint32), np.asarray(b, np.uint32))
    sa, ea, fa = _split32(a)
    sb, eb, fb = _split32(b)
    fa = np.where(ea == 0, 0, fa)
    fb = np.where(eb == 0, 0, fb)
    nan = ((ea == 255) & (fa != 0)) | ((eb == 255) & (fb != 0)) | \
          ((ea == 255) & (eb == 255) & (sa != sb))
    # Order by magnitude so that |x| >= |y|.
    swap = ((eb << 23) | fb) > ((ea << 23) | fa)
    sx, ex, fx = np.where(swap, sb, sa), np.where(swap, eb, ea), np.where(swap, fb, fa)
    sy, ey, fy = np.where(swap, sa, sb), np.where(swap, ea, eb), np.where(swap, fa, fb)
    mx = np.where(ex == 0, 0, fx | (1 << 23)) << 3        # 3 guard/round/sticky bits
    my = np.where(ey == 0, 0, fy | (1 << 23)) << 3
    d = np.minimum(ex - ey, 27)
    my_al = (my >> d) | ((my & ((np.int64(1) << d) - 1)) != 0)
    sub = sx != sy
    s = np.where(sub, mx - my_al, mx + my_al)              # < 2**28, >= 0
    carry = (s >> 27) != 0
    s = np.where(carry, (s >> 1) | (s & 1), s)
    e = ex + carry
    lz = np.where(s == 0, 0, 27 - _bitlength(s))
    s = s << lz
    e = e - lz
    out = _round_pack(sx, e, s >> 3, s & 7, 4)
    zero_sign = np.where(sub, 0, sx)                       # x + (-x) = +0 under RNE
    out = np.where(s == 0, _pack32(zero_sign, 0, 0), out)
    out = np.where(ex == 255, _pack32(sx, 255, 0), out)
    out = np.where(nan, QNAN32, out)
    return out.astype(np.uint32)


def fp32_sub(a, b):
    """a - b (the sign of b flipped, NaN payloads irrelevant as NaN is canonicalized)."""
    return fp32_add(a, np.asarray(b, np.uint32) ^ np.uint32(0x80000000))


# --- mul / fma ------------------------------------------------------------------------

def fp32_mul(a, b):
    """a * b."""
    a, b = np.broadcast_arrays(np.asarray(a, np.uint32), np.asarray(b, np.uint32))
    sa, ea, fa = _split32(a)
    sb, eb, fb = _split32(b)
    s = sa ^ sb
    a_nan = (ea == 255) & (fa != 0)
    b_nan = (eb == 255) & (fb != 0)
    a_inf = (ea == 255) & (fa == 0)
    b_inf = (eb == 255) & (fb == 0)
    a_zero, b_zero = ea == 0, eb == 0
    p = ((fa | (1 << 23)) * (fb | (1 << 23)))              # < 2**48
    hi = (p >> 47) & 1
    sh = 23 + hi
    mant = p >> sh
    rest = p & ((np.int64(1) << sh) - 1)
    half = np.int64(1) << (sh - 1)
    out = _round_pack(s, ea + eb - 127 + hi, mant, rest, half)
    out = np.where(a_zero | b_zero, _pack32(s, 0, 0), out)
    out = np.where(a_inf | b_inf, _pack32(s, 255, 0), out)
    nan = a_nan | b_nan | (a_inf & b_zero) | (b_inf & a_zero)
    return np.where(nan, QNAN32, out).astype(np.uint32)


def fp32_fma_bf16(a, b, c):
    """a * b + c with BF16 a, b (exact product) and FP32 c, one rounding."""
    return fp32_add(fp32_mul(bf16_to_fp32(a), bf16_to_fp32(b)), c)


def simd_fma(a, b, c):
    """The SIMD pipeline's fma on FP32 registers: ``a`` and ``b`` rounded to BF16 (nearest
    even), exact product, one rounded FP32 add. Exact for operands loaded from BF16."""
    return fp32_fma_bf16(fp32_to_bf16(a), fp32_to_bf16(b), c)


# --- integer and bitwise ops (INT32 two's complement on the same 32-bit registers) ----

def _u32(x):
    return np.asarray(x, np.uint32)


def i32_add(a, b):
    return (_u32(a).astype(np.uint64) + _u32(b)).astype(np.uint32)


def i32_mul(a, b):
    """Low 32 bits of the product (same for signed and unsigned)."""
    return ((_u32(a).astype(np.uint64) * _u32(b)) & 0xFFFFFFFF).astype(np.uint32)


def i32_lt(a, b):
    """Signed a < b as integer 1 or 0."""
    return (_u32(a).view(np.int32) < _u32(b).view(np.int32)).astype(np.uint32)


def shl(a, b):
    """a << (b mod 32)."""
    return (_u32(a).astype(np.uint64) << (_u32(b) & 31).astype(np.uint64)).astype(np.uint32)


def shr(a, b):
    """Logical a >> (b mod 32)."""
    return (_u32(a) >> (_u32(b) & 31)).astype(np.uint32)


def select(c, a, b):
    """a where c is non-zero (any bit set), else b; bits pass unchanged."""
    return np.where(_u32(c) != 0, _u32(a), _u32(b)).astype(np.uint32)


# --- min / max / compare --------------------------------------------------------------

def _daz_key(x):
    """(is_nan, DAZ'd bits, total-order key with -0 < +0, key with -0 == +0)."""
    s, e, f = _split32(x)
    f = np.where(e == 0, 0, f)
    nan = (e == 255) & (f != 0)
    mag = (e << 23) | f
    return nan, _pack32(s, e, f), np.where(s == 1, -mag - 1, mag), np.where(s == 1, -mag, mag)


def fp32_max(a, b):
    """max(a, b); -0 < +0; NaN if either is NaN."""
    na, ba, ka, _ = _daz_key(a)
    nb, bb, kb, _ = _daz_key(b)
    return np.where(na | nb, QNAN32, np.where(kb > ka, bb, ba)).astype(np.uint32)


def fp32_min(a, b):
    """min(a, b); -0 < +0; NaN if either is NaN."""
    na, ba, ka, _ = _daz_key(a)
    nb, bb, kb, _ = _daz_key(b)
    return np.where(na | nb, QNAN32, np.where(kb < ka, bb, ba)).astype(np.uint32)


def fp32_cmp(a, b, op):
    """IEEE comparison a OP b as FP32 1.0 or +0.0; false whenever a NaN is involved."""
    na, _, _, ka = _daz_key(a)
    nb, _, _, kb = _daz_key(b)
    op = np.asarray(op)
    res = np.where(op == CmpOp.EQ, ka == kb, np.where(op == CmpOp.LT, ka < kb, ka <= kb))
    return np.where(res & ~(na | nb), ONE32, 0).astype(np.uint32)


# --- conversions ----------------------------------------------------------------------

def fp32_to_bf16(x):
    """FP32 -> BF16, round to nearest even; overflow rounds to infinity."""
    x = np.asarray(x, np.uint32).astype(np.int64)
    s, e, f = x >> 31, (x >> 23) & 0xFF, x & 0x7FFFFF
    low = x & 0xFFFF
    up = (low > 0x8000) | ((low == 0x8000) & (((x >> 16) & 1) == 1))
    out = (x >> 16) + up
    out = np.where(e == 255, x >> 16, out)                 # infinities are not rounded
    out = np.where(e == 0, s << 15, out)
    out = np.where((e == 255) & (f != 0), QNAN16, out)
    return out.astype(np.uint16)


def bf16_to_fp32(x):
    """BF16 -> FP32 (exact)."""
    x = np.asarray(x, np.uint16).astype(np.int64)
    s, e, f = x >> 15, (x >> 7) & 0xFF, x & 0x7F
    out = np.where(e == 0, s << 31, x << 16)
    out = np.where((e == 255) & (f != 0), QNAN32, out)
    return out.astype(np.uint32)


# --- tail functions: table + quadratic interpolation (tables in hdl.numerics.tables) --

def rcp(x):
    """1 / x."""
    s, e, f = _split32(x)
    t = TABLES["rcp"]
    frac = t.evaluate(f >> 16, f & 0xFFFF)
    field = np.where(f == 0, 254 - e, 253 - e)
    frac = np.where(f == 0, 0, frac)
    out = np.where(field <= 0, _pack32(s, 0, 0), _pack32(s, np.maximum(field, 0), frac))
    out = np.where(e == 0, _pack32(s, 255, 0), out)
    out = np.where(e == 255, np.where(f != 0, QNAN32, _pack32(s, 0, 0)), out)
    return out.astype(np.uint32)


def rsqrt(x):
    """1 / sqrt(x); negative non-zero inputs give NaN, -0 gives -inf."""
    s, e, f = _split32(x)
    t = TABLES["rsqrt"]
    big_e = e - 127
    odd = big_e & 1
    frac = t.evaluate((odd << 7) | (f >> 16), f & 0xFFFF)
    exact = (odd == 0) & (f == 0)
    field = np.where(exact, 127, 126) - (big_e >> 1)
    out = _pack32(0, field, np.where(exact, 0, frac))
    out = np.where(s == 1, QNAN32, out)
    out = np.where(e == 0, _pack32(s, 255, 0), out)
    out = np.where(e == 255, np.where((f != 0) | (s == 1), QNAN32, 0), out)
    return out.astype(np.uint32)


def exp2(x):
    """2 ** x."""
    s, e, f = _split32(x)
    t = TABLES["exp2"]
    mant = f | (1 << 23)
    shift = e - (127 + 23 - EXP2_FRAC)                     # X = mant * 2**shift
    mag = np.where(shift >= 0, mant << np.clip(shift, 0, 13), mant >> np.clip(-shift, 0, 63))
    mag = np.where(e == 0, 0, mag)
    fixed = np.where(s == 1, -mag, mag)
    n = fixed >> EXP2_FRAC
    fr = fixed & ((1 << EXP2_FRAC) - 1)
    frac = t.evaluate(fr >> 23, fr & ((1 << 23) - 1))
    field = n + 127
    out = np.where(field <= 0, 0, np.where(field >= 255, INF32,
                                           _pack32(0, np.clip(field, 0, 255), frac)))
    big = e >= 127 + 7                                     # |x| >= 128
    out = np.where(big, np.where(s == 1, 0, INF32), out)
    out = np.where((e == 255) & (f != 0), QNAN32, out)
    return out.astype(np.uint32)


# --- one reference per opcode name ------------------------------------------------------

def _lo16(x):
    return (np.asarray(x, np.uint32) & 0xFFFF).astype(np.uint16)


#: The reference of every opcode of the op table (``hdl.numerics.ops.Op``: the PCU body
#: ALU and the FPU demo): name -> f(a, b, c) on uint32 arrays. Written once;
#: :func:`op_reference` dispatches through it.
OP_REFERENCE = {
    "PASS": lambda a, b, c: a,
    "FMA": lambda a, b, c: simd_fma(a, b, c),
    "FMA_BF16": lambda a, b, c: fp32_fma_bf16(_lo16(a), _lo16(b), c),
    "ADD": lambda a, b, c: fp32_add(a, b),
    "SUB": lambda a, b, c: fp32_sub(a, b),
    "MUL": lambda a, b, c: fp32_mul(a, b),
    "MAX": lambda a, b, c: fp32_max(a, b),
    "MIN": lambda a, b, c: fp32_min(a, b),
    "CMP_EQ": lambda a, b, c: fp32_cmp(a, b, CmpOp.EQ),
    "CMP_LT": lambda a, b, c: fp32_cmp(a, b, CmpOp.LT),
    "CMP_LE": lambda a, b, c: fp32_cmp(a, b, CmpOp.LE),
    "SELECT": lambda a, b, c: select(c, a, b),
    "AND": lambda a, b, c: a & b,
    "OR": lambda a, b, c: a | b,
    "XOR": lambda a, b, c: a ^ b,
    "SHL": lambda a, b, c: shl(a, b),
    "SHR": lambda a, b, c: shr(a, b),
    "IADD": lambda a, b, c: i32_add(a, b),
    "IMUL": lambda a, b, c: i32_mul(a, b),
    "ILT": lambda a, b, c: i32_lt(a, b),
    "TO_BF16": lambda a, b, c: fp32_to_bf16(a).astype(np.uint32),
    "FROM_BF16": lambda a, b, c: bf16_to_fp32(_lo16(a)),
    "EXP2": lambda a, b, c: exp2(a),
    "RCP": lambda a, b, c: rcp(a),
    "RSQRT": lambda a, b, c: rsqrt(a),
}


def op_reference(op, a, b, c):
    """Bit-exact results of opcodes ``op`` (an array of ``hdl.numerics.ops.Op`` values)
    on uint32 operands, each through its :data:`OP_REFERENCE` entry."""
    op, a, b, c = (np.asarray(x, np.uint32) for x in (op, a, b, c))
    a, b, c = (np.broadcast_to(x, op.shape) for x in (a, b, c))
    out = np.zeros(op.shape, dtype=np.uint32)
    for member in Op:
        sel = op == member.value
        if sel.any():
            out[sel] = OP_REFERENCE[member.name](a[sel], b[sel], c[sel])
    return out
