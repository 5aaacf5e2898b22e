"""Burst-preserving round-robin merge of response streams."""

from amaranth import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.arbiter import RoundRobin

__all__ = ["BurstMerge"]


class BurstMerge(wiring.Component):
    """``n`` streams into one, round robin, never splitting a burst: once an input's
    first beat is taken, the output stays with it until a beat with ``last`` set.

    Parameters
    ----------
    n : int
    layout : data.Layout with a ``last`` field

    Attributes
    ----------
    i[k] : In(stream);  o : Out(stream)
    """

    def __init__(self, n, layout):
        self.n, self.layout = n, layout
        super().__init__({"i": In(stream.Signature(layout)).array(n),
                          "o": Out(stream.Signature(layout))})

    def elaborate(self, platform):
        m = Module()
        n = self.n
        arb = m.submodules.arb = RoundRobin(n)
        locked = Signal()
        owner = Signal(range(n))
        m.d.comb += arb.request.eq(Cat(s.valid for s in self.i))
        cur = Signal(range(n))
        m.d.comb += cur.eq(owner)
        with m.If(~locked):
            m.d.comb += cur.eq(arb.index)
        on = Signal()
        m.d.comb += on.eq(locked | arb.grant.any())
        for k, s in enumerate(self.i):
            with m.If(cur == k):
                m.d.comb += [self.o.payload.eq(s.payload),
                             self.o.valid.eq(s.valid & on),
                             s.ready.eq(self.o.ready & on)]
        fire = self.o.valid & self.o.ready
        m.d.comb += arb.take.eq(fire & ~locked)
        with m.If(fire):
            m.d.sync += [locked.eq(~self.o.payload.last), owner.eq(cur)]
        return m
