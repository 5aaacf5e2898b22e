"""The numerics reference against numpy float32, ml_dtypes bfloat16 and float64."""

import ml_dtypes
import numpy as np
import pytest

from firmware import numerics as N

SEED = 20261122
PAIRS = 1_000_000

F32 = lambda *v: N.to_bits(np.array(v, dtype=np.float32))
MIN_NORMAL, MAX_NORMAL = 0x00800000, 0x7F7FFFFF
SPECIALS = np.array([
    0x00000000, 0x80000000,                 # signed zeros
    0x7F800000, 0xFF800000,                 # infinities
    0x7FC00000, 0xFFC00001, 0x7F800001,     # quiet / signalling NaNs
    MIN_NORMAL, MIN_NORMAL | 0x80000000, MAX_NORMAL, MAX_NORMAL | 0x80000000,
    0x00000001, 0x807FFFFF, 0x00400000,     # subnormals (read as zero)
    0x3F800000, 0xBF800000, 0x3F800001, 0x4B800000, 0x33800000, 0x33800001,
], dtype=np.uint32)


def random_normals(rng, n, emin=1, emax=254):
    s = rng.integers(0, 2, n, dtype=np.uint32) << 31
    e = rng.integers(emin, emax + 1, n, dtype=np.uint32) << 23
    f = rng.integers(0, 1 << 23, n, dtype=np.uint32)
    return s | e | f


def ftz_oracle(values32):
    """numpy float32 results with subnormals flushed and NaN canonicalized."""
    b = N.to_bits(values32).copy()
    e = (b >> 23) & 0xFF
    b = np.where(e == 0, b & 0x80000000, b)
    b = np.where(np.isnan(values32), N.QNAN32, b)
    return b.astype(np.uint32)


def round_f64_unbounded(x):
    """float64 (exact) -> FP32 with 24-bit rounding at any exponent, then FTZ/overflow."""
    x = np.asarray(x, np.float64)
    with np.errstate(all="ignore"):
        tiny = np.abs(x) < 2.0 ** -126
        scaled = (x * 2.0 ** 64).astype(np.float32)       # exact scale, RNE to 24 bits
        out = N.to_bits(x.astype(np.float32)).copy()
        up = np.abs(scaled.astype(np.float64)) >= 2.0 ** -62   # rounded up to 2**-126
        flushed = np.where(np.signbit(x), 0x80000000, 0).astype(np.uint32)
        out = np.where(tiny, np.where(up, N.to_bits(np.copysign(np.float32(2.0 ** -126), x.astype(np.float32))), flushed), out)
    return np.where(np.isnan(x), N.QNAN32, out).astype(np.uint32)


def all_pairs(values):
    a, b = np.meshgrid(values, values)
    return a.ravel(), b.ravel()


def check(name, got, want, *inputs):
    bad = np.flatnonzero(got != want)
    if bad.size:
        i = bad[0]
        ins = ", ".join(f"{np.asarray(x).ravel()[i]:#x}" for x in inputs)
        pytest.fail(f"{name}: {bad.size} mismatches (seed {SEED}); first: {name}({ins}) = "
                    f"{got[i]:#x}, expected {want[i]:#x}")


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(SEED)
    return random_normals(rng, PAIRS), random_normals(rng, PAIRS)


# --- add / sub / mul ----------------------------------------------------------------

def test_add_matches_numpy_on_random_normals(pairs):
    a, b = pairs
    with np.errstate(all="ignore"):
        want = ftz_oracle(N.from_bits(a) + N.from_bits(b))
    check("fp32_add", N.fp32_add(a, b), want, a, b)


def test_add_close_exponents_and_cancellation():
    # Random pairs often differ by many binades; stress alignment and cancellation.
    rng = np.random.default_rng(SEED + 1)
    a = random_normals(rng, PAIRS)
    delta = rng.integers(-30, 31, PAIRS)
    e = np.clip(((a >> 23) & 0xFF).astype(np.int64) + delta, 1, 254).astype(np.uint32)
    b = (rng.integers(0, 2, PAIRS, dtype=np.uint32) << 31) | (e << 23) | \
        rng.integers(0, 1 << 23, PAIRS, dtype=np.uint32)
    b[: PAIRS // 8] = a[: PAIRS // 8] ^ 0x80000000 ^ rng.integers(0, 4, PAIRS // 8, dtype=np.uint32)
    with np.errstate(all="ignore"):
        want = ftz_oracle(N.from_bits(a) + N.from_bits(b))
        want_sub = ftz_oracle(N.from_bits(a) - N.from_bits(b))
    check("fp32_add", N.fp32_add(a, b), want, a, b)
    check("fp32_sub", N.fp32_sub(a, b), want_sub, a, b)


def test_add_underflow_region():
    rng = np.random.default_rng(SEED + 2)
    a = random_normals(rng, 200_000, 1, 4)
    b = random_normals(rng, 200_000, 1, 4)
    with np.errstate(all="ignore"):
        want = ftz_oracle(N.from_bits(a) + N.from_bits(b))
    got = N.fp32_add(a, b)
    check("fp32_add", got, want, a, b)
    assert np.any((got & 0x7FFFFFFF) == 0), "the test set must contain flushed results"


def test_add_special_cases():
    a, b = all_pairs(SPECIALS)
    with np.errstate(all="ignore"):
        fa = N.from_bits(np.where(((a >> 23) & 0xFF) == 0, a & 0x80000000, a))
        fb = N.from_bits(np.where(((b >> 23) & 0xFF) == 0, b & 0x80000000, b))
        want = ftz_oracle(fa + fb)
    check("fp32_add", N.fp32_add(a, b), want, a, b)
    assert N.fp32_add(F32(1.0), F32(-1.0))[0] == 0x00000000          # x - x = +0
    assert N.fp32_add(0x80000000, 0x80000000) == 0x80000000          # -0 + -0 = -0
    assert N.fp32_add(0x7F800000, 0xFF800000) == N.QNAN32            # inf - inf
    # Ties to even: 1 + 2**-24 is halfway between 1 and 1 + 2**-23 -> 1.
    assert N.fp32_add(F32(1.0), F32(2.0 ** -24))[0] == 0x3F800000
    assert N.fp32_add(0x3F800001, F32(2.0 ** -24))[0] == 0x3F800002
    assert N.fp32_add(MAX_NORMAL, 0x73000000) == 0x7F800000          # rounds to overflow


def test_mul_matches_float64_on_random_normals(pairs):
    a, b = pairs
    exact = N.from_bits(a).astype(np.float64) * N.from_bits(b).astype(np.float64)
    check("fp32_mul", N.fp32_mul(a, b), round_f64_unbounded(exact), a, b)


def test_mul_underflow_boundary():
    # Products straddling 2**-126: rounding with an unbounded exponent decides FTZ.
    rng = np.random.default_rng(SEED + 3)
    a = random_normals(rng, 300_000, 40, 80)
    eb = 127 - 126 - (((a >> 23) & 0xFF).astype(np.int64) - 127) + rng.integers(-2, 2, 300_000)
    b = (rng.integers(0, 2, 300_000, dtype=np.uint32) << 31) | \
        (np.clip(eb, 1, 254).astype(np.uint32) << 23) | \
        np.where(rng.random(300_000) < 0.5, 0x7FFFFF, rng.integers(0, 1 << 23, 300_000)).astype(np.uint32)
    exact = N.from_bits(a).astype(np.float64) * N.from_bits(b).astype(np.float64)
    got = N.fp32_mul(a, b)
    check("fp32_mul", got, round_f64_unbounded(exact), a, b)
    assert np.any((got & 0x7FFFFFFF) == 0) and np.any(((got >> 23) & 0xFF) == 1)
    # (1 - 2**-23) * 2**-126 * (1 + 2**-23) = 2**-126 * (1 - 2**-46): rounding with an
    # unbounded exponent gives exactly 2**-126, which is normal and kept.
    assert N.fp32_mul(0x3F7FFFFE, 0x00800001) == MIN_NORMAL
    assert N.fp32_mul(0x3F7FFFFF, 0x00800000) == 0                     # exact, tiny: flushed


def test_mul_special_cases():
    a, b = all_pairs(SPECIALS)
    with np.errstate(all="ignore"):
        fa = N.from_bits(np.where(((a >> 23) & 0xFF) == 0, a & 0x80000000, a)).astype(np.float64)
        fb = N.from_bits(np.where(((b >> 23) & 0xFF) == 0, b & 0x80000000, b)).astype(np.float64)
        want = round_f64_unbounded(fa * fb)
    check("fp32_mul", N.fp32_mul(a, b), want, a, b)
    assert N.fp32_mul(0x7F800000, 0x00000000) == N.QNAN32
    assert N.fp32_mul(0x00000001, 0x3F800000) == 0                   # DAZ input
    assert N.fp32_mul(0x80000000, 0x3F800000) == 0x80000000


def test_fma_bf16_matches_float32(pairs):
    rng = np.random.default_rng(SEED + 4)
    a = (random_normals(rng, PAIRS, 64, 190) >> 16).astype(np.uint16)
    b = (random_normals(rng, PAIRS, 64, 190) >> 16).astype(np.uint16)
    c = pairs[0]
    c = (c & ~np.uint32(0x7F800000)) | (rng.integers(60, 200, PAIRS).astype(np.uint32) << 23)
    with np.errstate(all="ignore"):
        prod = N.from_bits16(a).astype(np.float32) * N.from_bits16(b).astype(np.float32)
        want = ftz_oracle(prod + N.from_bits(c))
    check("fp32_fma_bf16", N.fp32_fma_bf16(a, b, c), want, a, b, c)


def test_fma_bf16_product_out_of_range():
    # Documented: a product beyond the FP32 range becomes inf / zero before the add.
    big, tiny = np.uint16(0x7F00), np.uint16(0x0100)       # 2**127, 2**-125
    assert N.fp32_fma_bf16(big, big, F32(1.0))[0] == 0x7F800000
    assert N.fp32_fma_bf16(tiny, tiny, F32(1.0))[0] == 0x3F800000
    assert N.fp32_fma_bf16(0x7FC0, 0x3F80, F32(1.0))[0] == N.QNAN32


# --- min / max / compare ------------------------------------------------------------

def test_minmax_cmp_match_numpy(pairs):
    a, b = pairs
    b = b.copy()
    b[::7] = a[::7]                                  # plenty of equal operands
    fa, fb = N.from_bits(a), N.from_bits(b)
    check("fp32_max", N.fp32_max(a, b), N.to_bits(np.maximum(fa, fb)), a, b)
    check("fp32_min", N.fp32_min(a, b), N.to_bits(np.minimum(fa, fb)), a, b)
    for op, ref in ((N.CmpOp.EQ, fa == fb), (N.CmpOp.LT, fa < fb), (N.CmpOp.LE, fa <= fb)):
        check(f"fp32_cmp[{op.name}]", N.fp32_cmp(a, b, op), np.where(ref, N.ONE32, 0), a, b)


def test_minmax_cmp_special_cases():
    pz, nz = 0x00000000, 0x80000000
    assert N.fp32_max(pz, nz) == pz and N.fp32_max(nz, pz) == pz
    assert N.fp32_min(pz, nz) == nz and N.fp32_min(nz, pz) == nz
    assert N.fp32_max(0x00000001, nz) == pz                           # DAZ: subnormal -> +0
    assert N.fp32_max(N.QNAN32, F32(1.0)) == N.QNAN32
    assert N.fp32_min(F32(1.0), 0xFFC00001) == N.QNAN32
    assert N.fp32_cmp(pz, nz, N.CmpOp.EQ) == N.ONE32
    assert N.fp32_cmp(nz, pz, N.CmpOp.LT) == 0
    for op in N.CmpOp:
        assert N.fp32_cmp(N.QNAN32, N.QNAN32, op) == 0
        assert N.fp32_cmp(F32(1.0), N.QNAN32, op) == 0
    assert N.fp32_cmp(0xFF800000, MAX_NORMAL | 0x80000000, N.CmpOp.LT) == N.ONE32


# --- conversions --------------------------------------------------------------------

def test_fp32_to_bf16_matches_ml_dtypes(pairs):
    a = pairs[0]
    want = N.from_bits(a).astype(ml_dtypes.bfloat16).view(np.uint16)
    check("fp32_to_bf16", N.fp32_to_bf16(a), want, a)


def test_fp32_to_bf16_special_cases():
    specials = SPECIALS[((SPECIALS >> 23) & 0xFF) != 0]
    nan = np.isnan(N.from_bits(specials))
    want = N.from_bits(specials[~nan]).astype(ml_dtypes.bfloat16).view(np.uint16)
    check("fp32_to_bf16", N.fp32_to_bf16(specials[~nan]), want, specials[~nan])
    assert np.all(N.fp32_to_bf16(specials[nan]) == N.QNAN16)
    assert N.fp32_to_bf16(0x3F808000) == 0x3F80                        # tie -> even
    assert N.fp32_to_bf16(0x3F818000) == 0x3F82                        # tie -> even (up)
    assert N.fp32_to_bf16(0x3F808001) == 0x3F81
    assert N.fp32_to_bf16(MAX_NORMAL) == 0x7F80                        # rounds to inf
    assert N.fp32_to_bf16(0x807FFFFF) == 0x8000                        # DAZ


def test_bf16_to_fp32_exhaustive():
    x = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    got = N.bf16_to_fp32(x)
    f = N.from_bits16(x).astype(np.float32)
    e = (x >> 7) & 0xFF
    want = np.where(e == 0, (x.astype(np.uint32) & 0x8000) << 16, N.to_bits(f))
    want = np.where(np.isnan(f), N.QNAN32, want).astype(np.uint32)
    check("bf16_to_fp32", got, want, x)


# --- tail functions -----------------------------------------------------------------

def ulp_error(got_bits, exact):
    """|got - exact| in FP32 ulps of the exact (normal) result."""
    _, k = np.frexp(exact)
    ulp = np.ldexp(1.0, k - 24)
    return np.abs(N.from_bits(got_bits).astype(np.float64) - exact) / ulp


def assert_bound(name, got, exact, inputs):
    err = ulp_error(got, exact)
    worst = int(np.argmax(err))
    assert err[worst] <= N.TAIL_ULP_BOUND, (
        f"{name}({inputs[worst]:#x}) = {got[worst]:#x} is {err[worst]:.3f} ulp from "
        f"{exact[worst]!r}; documented bound {N.TAIL_ULP_BOUND} ulp")


def test_table_coefficients_fit_documented_widths():
    for t in N.TABLES.values():
        c0, c1, c2 = t.widths()
        assert c0 <= t.FRAC + 1 and c1 <= 26 and c2 <= 20, t.name


def test_rcp_exhaustive_mantissas_within_bound():
    f = np.arange(1 << 23, dtype=np.uint32)
    for e in (127, 1, 200, 252):
        x = (np.uint32(e) << 23) | f
        assert_bound("rcp", N.rcp(x), 1.0 / N.from_bits(x).astype(np.float64), x)
    neg = 0xC0400000                                                   # -3
    assert N.from_bits(N.rcp(neg)) == np.float32(-1 / 3)


def test_rcp_special_cases():
    assert N.rcp(F32(2.0 ** 100))[0] == N.to_bits(np.float32(2.0 ** -100))
    assert N.rcp(0x00000000) == 0x7F800000 and N.rcp(0x80000000) == 0xFF800000
    assert N.rcp(0x00000123) == 0x7F800000                              # DAZ
    assert N.rcp(0x7F800000) == 0 and N.rcp(0xFF800000) == 0x80000000
    assert N.rcp(N.QNAN32) == N.QNAN32
    assert N.rcp(F32(2.0 ** 127))[0] == 0                              # 2**-127 flushed
    assert N.rcp(F32(2.0 ** 126))[0] == MIN_NORMAL
    assert N.rcp(0x7E800001) == 0                                       # just below 2**-126


def test_rsqrt_exhaustive_mantissas_within_bound():
    f = np.arange(1 << 23, dtype=np.uint32)
    for e in (127, 128, 1, 2, 253, 254):
        x = (np.uint32(e) << 23) | f
        assert_bound("rsqrt", N.rsqrt(x), 1.0 / np.sqrt(N.from_bits(x).astype(np.float64)), x)
    for k in range(-63, 64):
        assert N.rsqrt(F32(4.0 ** k))[0] == N.to_bits(np.float32(2.0 ** -k))


def test_rsqrt_special_cases():
    assert N.rsqrt(0x00000000) == 0x7F800000 and N.rsqrt(0x80000000) == 0xFF800000
    assert N.rsqrt(0x7F800000) == 0
    assert N.rsqrt(F32(-4.0))[0] == N.QNAN32 and N.rsqrt(0xFF800000) == N.QNAN32
    assert N.rsqrt(N.QNAN32) == N.QNAN32


def test_exp2_within_bound_over_whole_range():
    rng = np.random.default_rng(SEED + 5)
    # Every FP32 in [1, 2) and [-2, -1) with stride 3, a uniform sweep of (-126, 128), and
    # random values across all the binades whose result is a normal number.
    dense = np.arange(0x3F800000, 0x40000000, 3, dtype=np.uint32)
    sweep = N.to_bits(np.linspace(-125.999, 127.999, 2_000_003, dtype=np.float32))
    rand = random_normals(rng, 2_000_000, 1, 133)
    x = np.concatenate([dense, dense | 0x80000000, sweep, rand])
    fx = N.from_bits(x).astype(np.float64)
    exact = np.exp2(fx)
    keep = (exact >= 2.0 ** -126) & (exact < 2.0 ** 128)
    assert_bound("exp2", N.exp2(x[keep]), exact[keep], x[keep])


def test_exp2_special_cases():
    ints = np.arange(-126, 128)
    # Exact powers of two (numpy's own float32 exp2 is 1 ulp off at 127; use float64).
    assert np.all(N.exp2(F32(*ints)) == N.to_bits(np.exp2(ints.astype(np.float64)).astype(np.float32)))
    assert N.exp2(0x00000000) == N.ONE32 and N.exp2(0x80000001) == N.ONE32
    assert N.exp2(0x7F800000) == 0x7F800000 and N.exp2(0xFF800000) == 0
    assert N.exp2(F32(128.0))[0] == 0x7F800000 and N.exp2(F32(-127.0))[0] == 0
    assert N.exp2(F32(-126.5))[0] == 0                                 # below 2**-126
    assert N.exp2(N.QNAN32) == N.QNAN32


def test_reference_within_bound_of_float64_on_fpu_vectors():
    """The FPU stream's float64 check (the same one the RTL run asserts) holds for the
    reference on many seeds, so an RTL failure of it is an RTL bug."""
    from tb.lib.fpu_vectors import expected, float64_errors, make_vectors
    for seed in range(40):
        v = make_vectors(np.random.default_rng(seed), 50_000)
        err = float64_errors(v, expected(v))
        assert err["checked_vs_float64"] > 10_000
        assert err["max_rel_err"] <= N.TAIL_ULP_BOUND * 2.0 ** -23, f"seed {seed}: {err}"
