"""FP32 <-> BF16 conversion."""

from amaranth import C, Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .pipeline import QNAN16, QNAN32, Stages

__all__ = ["ToBf16", "FromBf16"]


class ToBf16(wiring.Component):
    """FP32 -> BF16, round to nearest even (overflow rounds to infinity), DAZ, canonical
    NaN. Bit-exact with ``fp32_to_bf16``. ``LATENCY`` = 1."""

    LATENCY = 1

    en: In(1)
    a: In(32)
    r: Out(16)

    def elaborate(self, platform):
        m = Module()
        x = self.a
        e, f = x[23:31], x[:23]
        low = x[:16]
        up = (low > 0x8000) | ((low == 0x8000) & x[16])
        result = Signal(16)
        with m.If((e == 255) & (f != 0)):
            m.d.comb += result.eq(QNAN16)
        with m.Elif(e == 255):
            m.d.comb += result.eq(x[16:32])
        with m.Elif(e == 0):
            m.d.comb += result.eq(Cat(C(0, 15), x[31]))
        with m.Else():
            m.d.comb += result.eq(x[16:32] + up)
        m.d.comb += self.r.eq(Stages(m, self.en, "tobf").reg(result, "tobf_r"))
        return m


class FromBf16(wiring.Component):
    """BF16 -> FP32 (exact), DAZ, canonical NaN. Bit-exact with ``bf16_to_fp32``.
    ``LATENCY`` = 1."""

    LATENCY = 1

    en: In(1)
    a: In(16)
    r: Out(32)

    def elaborate(self, platform):
        m = Module()
        x = self.a
        e, f = x[7:15], x[:7]
        result = Mux((e == 255) & (f != 0), QNAN32,
                     Mux(e == 0, Cat(C(0, 31), x[15]), Cat(C(0, 16), x)))
        m.d.comb += self.r.eq(Stages(m, self.en, "frombf").reg(result, "frombf_r"))
        return m
