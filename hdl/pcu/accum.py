"""Stream accumulator of a PCU: folds one FP32 value per cycle over a window."""

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hdl.numerics.add import FpAdd
from hdl.numerics.compare import CmpOp, FpCompare

from .reduce import IDENTITY, ReduceOp

__all__ = ["Accumulator"]


class Accumulator(wiring.Component):
    """``acc = op(acc, x)`` for every valid element, in arrival order; the first element
    of a window is combined with the op's identity (so the result is exactly ``x``), and
    an element with ``end`` set closes the window: one enabled cycle later ``r_valid`` is
    high and ``r`` holds the window's result. Needs a one-cycle adder (``FpAdd(1)``) to take
    one element per cycle. ``LATENCY`` = 1.
    """

    LATENCY = 1

    en: In(1)
    op: In(ReduceOp)
    i_valid: In(1)
    x: In(32)
    end: In(1)
    r_valid: Out(1)
    r: Out(32)

    def elaborate(self, platform):
        m = Module()
        m.submodules.add = add = FpAdd(latency=1)
        m.submodules.max = mx = FpCompare()
        first = Signal(init=1)
        acc = Mux(self.op == ReduceOp.ADD, add.r, mx.r)
        identity = Mux(self.op == ReduceOp.ADD, IDENTITY[ReduceOp.ADD], IDENTITY[ReduceOp.MAX])
        a = Mux(first, identity, acc)
        step = self.en & self.i_valid
        m.d.comb += [add.en.eq(step), add.a.eq(a), add.b.eq(self.x), add.sub.eq(0),
                     mx.en.eq(step), mx.op.eq(CmpOp.MAX), mx.a.eq(a), mx.b.eq(self.x),
                     self.r.eq(acc)]
        with m.If(self.en):
            m.d.sync += self.r_valid.eq(self.i_valid & self.end)
            with m.If(self.i_valid):
                m.d.sync += first.eq(self.end)
        return m
