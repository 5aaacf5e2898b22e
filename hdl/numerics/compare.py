"""FP32 max, min and comparisons."""

from amaranth import C, Cat, Module, Mux, Signal
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

from .pipeline import QNAN32, Stages

__all__ = ["CmpOp", "FpCompare", "cmp_op_for"]


class CmpOp(enum.Enum, shape=3):
    """Operation of :class:`FpCompare`."""
    EQ = 0
    LT = 1
    LE = 2
    MAX = 3
    MIN = 4


class FpCompare(wiring.Component):
    """FP32 max / min (-0 < +0) and comparisons (result 1.0 or +0.0, false on NaN).

    Bit-exact with ``fp32_max``, ``fp32_min`` and ``fp32_cmp``. ``LATENCY`` = 1.
    """

    LATENCY = 1

    en: In(1)
    op: In(CmpOp)
    a: In(32)
    b: In(32)
    r: Out(32)

    def elaborate(self, platform):
        m = Module()
        st = Stages(m, self.en, "cmp")

        def key(x):
            e = x[23:31]
            mag = Cat(Mux(e == 0, 0, x[:23]), e)              # DAZ magnitude, 31 bits
            nan = (e == 255) & (x[:23] != 0)
            daz = Cat(mag, x[31])
            smag = Cat(mag, C(0, 1)).as_signed()
            total = Mux(x[31], -smag - 1, smag)                 # -0 < +0
            ieee = Mux(x[31], -smag, smag)                      # -0 == +0
            return nan, daz, total, ieee

        na, da, ta, ia = key(self.a)
        nb, db, tb, ib = key(self.b)
        result = Signal(32)
        truth = Signal()
        with m.Switch(self.op):
            with m.Case(CmpOp.EQ):
                m.d.comb += truth.eq(ia == ib)
            with m.Case(CmpOp.LT):
                m.d.comb += truth.eq(ia < ib)
            with m.Default():        # LE; MAX and MIN do not use ``truth``
                m.d.comb += truth.eq(ia <= ib)
        with m.Switch(self.op):
            with m.Case(CmpOp.MAX):
                m.d.comb += result.eq(Mux(na | nb, QNAN32, Mux(tb > ta, db, da)))
            with m.Case(CmpOp.MIN):
                m.d.comb += result.eq(Mux(na | nb, QNAN32, Mux(tb < ta, db, da)))
            with m.Default():
                m.d.comb += result.eq(Mux(truth & ~(na | nb), 0x3F800000, 0))
        m.d.comb += self.r.eq(st.reg(result, "cmp_r"))
        return m


def cmp_op_for(m, op, mapping):
    """A ``CmpOp`` signal for the comparator of a multi-op lane: ``mapping`` takes the
    lane's opcodes to comparator ops; other opcodes do not use the comparator's result."""
    cmp_op = Signal(CmpOp)
    with m.Switch(op):
        for code, c in mapping.items():
            with m.Case(code):
                m.d.comb += cmp_op.eq(c)
        with m.Default():
            m.d.comb += cmp_op.eq(CmpOp.MAX)
    return cmp_op
