"""Pipelined floating-point multiplier with an FP32 result."""

from amaranth import C, Cat, Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .pipeline import Stages, round_and_pack

__all__ = ["FpMul"]


class FpMul(wiring.Component):
    """``a * b`` rounded to FP32.

    Parameters
    ----------
    frac_bits : int
        Fraction bits of the inputs (sign, 8-bit exponent, fraction): 23 for FP32,
        7 for BF16. A BF16 product has 16 significant bits, so it is exact and the
        rounding logic vanishes; only overflow/underflow remain.

    Bit-exact with ``firmware.numerics.fp32_mul`` (on BF16 inputs: on the inputs
    widened with ``bf16_to_fp32``). ``LATENCY`` = 2: multiply | normalize, round, pack.
    """

    LATENCY = 2

    def __init__(self, frac_bits=23):
        self.frac_bits = frac_bits
        width = frac_bits + 9
        super().__init__({"en": In(1), "a": In(width), "b": In(width), "r": Out(32)})

    def elaborate(self, platform):
        m = Module()
        st = Stages(m, self.en, "mul")
        F = self.frac_bits
        W = 2 * (F + 1)                        # product width

        def unpack(x):
            e = x[F:F + 8]
            return x[F + 8], e, Mux(e == 0, 0, x[:F])

        sa, ea, fa = unpack(self.a)
        sb, eb, fb = unpack(self.b)
        a_nan, b_nan = (ea == 255) & (fa != 0), (eb == 255) & (fb != 0)
        a_inf, b_inf = (ea == 255) & (fa == 0), (eb == 255) & (fb == 0)
        a_zero, b_zero = ea == 0, eb == 0

        # Stage 0: the significand product and the exponent sum.
        s0_p = st.reg((Cat(fa, C(1, 1)) * Cat(fb, C(1, 1)))[:W])
        s0_e = st.reg((ea + eb - 127).as_signed())
        s0_s = st.reg(sa ^ sb)
        s0_nan = st.reg(a_nan | b_nan | (a_inf & b_zero) | (b_inf & a_zero))
        s0_inf = st.reg(a_inf | b_inf)
        s0_zero = st.reg(a_zero | b_zero)

        # Stage 1: normalize so the leading one is at bit W-1, round to 24 bits.
        hi = s0_p[W - 1]
        p_n = Mux(hi, s0_p, s0_p << 1)[:W]
        if W > 24:
            mant, rest = p_n[W - 24:W], p_n[:W - 24]
            half = 1 << (W - 25)
            up = (rest > half) | ((rest == half) & mant[0])
        else:
            mant, up = Cat(C(0, 24 - W), p_n), C(0, 1)
        result = round_and_pack(m, sign=s0_s, exp=s0_e + hi, mant=mant, up=up, nan=s0_nan,
                                inf=s0_inf, zero=s0_zero)
        m.d.comb += self.r.eq(st.reg(result, "mul_r"))
        return m
