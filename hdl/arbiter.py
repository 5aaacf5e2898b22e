"""Round-robin arbiter."""

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RoundRobin"]


class RoundRobin(wiring.Component):
    """Grants one of ``n`` requests, starting the search after the last one taken.

    ``grant`` is one-hot (or zero) and combinational from ``request``; the pointer moves
    only when ``take`` is set, so a grant that is not used keeps its priority.

    Parameters
    ----------
    n : int
        Number of requesters.
    """

    def __init__(self, n):
        self.n = n
        super().__init__({"request": In(n), "take": In(1), "grant": Out(n), "index": Out(range(n))})

    def elaborate(self, platform):
        m = Module()
        n = self.n
        last = Signal(range(n))
        after = Signal(n)            # requests strictly after the last grant
        with m.Switch(last):
            for k in range(n):
                # The last value as Default: a non-power-of-two n leaves patterns uncovered.
                with (m.Case(k) if k < n - 1 else m.Default()):
                    m.d.comb += after.eq(self.request & (((1 << n) - 1) ^ ((1 << (k + 1)) - 1)))
        pool = Signal(n)
        m.d.comb += pool.eq(after.any().replicate(n) & after | ~after.any().replicate(n) & self.request)
        m.d.comb += self.grant.eq(pool & (~pool + 1))
        for k in range(n):
            with m.If(self.grant[k]):
                m.d.comb += self.index.eq(k)
        with m.If(self.take & self.grant.any()):
            m.d.sync += last.eq(self.index)
        return m
