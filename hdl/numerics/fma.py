"""Pipelined BF16 x BF16 + FP32 fused multiply-add."""

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .add import FpAdd
from .mul import FpMul
from .pipeline import Stages

__all__ = ["FmaBf16"]


class FmaBf16(wiring.Component):
    """``a * b + c`` with BF16 ``a``, ``b`` and FP32 ``c``, ``r`` in FP32.

    The BF16 product (8 x 8 significand bits) is exact, so the only rounding is the
    FP32 add: bit-exact with ``firmware.numerics.fp32_fma_bf16``.
    ``LATENCY`` = multiplier + adder latency.
    """

    LATENCY = FpMul.LATENCY + FpAdd.LATENCY

    en: In(1)
    a: In(16)
    b: In(16)
    c: In(32)
    r: Out(32)

    def elaborate(self, platform):
        m = Module()
        st = Stages(m, self.en, "fma")
        m.submodules.mul = mul = FpMul(frac_bits=7)
        m.submodules.add = add = FpAdd()
        m.d.comb += [
            mul.en.eq(self.en), mul.a.eq(self.a), mul.b.eq(self.b),
            add.en.eq(self.en), add.a.eq(mul.r), add.b.eq(st.delay(self.c, FpMul.LATENCY)),
            add.sub.eq(0),
            self.r.eq(add.r),
        ]
        return m
