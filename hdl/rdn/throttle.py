"""Token-bucket packet throttle for an injection port."""

from amaranth import Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .config import BURST_BITS, RATE_ONE, throttle_layout

__all__ = ["TokenBucket"]


class TokenBucket(wiring.Component):
    """Allows a packet while the bucket holds one whole token.

    The level (in 1/RATE_ONE tokens) gains ``rate`` every cycle, loses one token per
    packet taken and is capped at ``burst`` tokens, so over any W cycles at most
    ``rate/RATE_ONE * W + burst`` packets pass. Disabled (``en`` = 0), it always allows.

    Attributes
    ----------
    config : In(throttle_layout)
    take : In(1)
        A packet passes this cycle (only while ``allow``).
    allow : Out(1)
    """

    config: In(throttle_layout)
    take: In(1)
    allow: Out(1)

    def elaborate(self, platform):
        m = Module()
        one = RATE_ONE
        level = Signal(unsigned((one << BURST_BITS).bit_length()))
        gained = Signal(unsigned(len(level) + 1))
        after = Signal.like(gained)
        cap = Signal.like(level)
        # This cycle's gain counts before the take: the level never goes negative, and a
        # packet passes iff level + rate covers a whole token, so W cycles pass at most
        # (level at the start, <= burst) + rate x W tokens.
        m.d.comb += [
            cap.eq(self.config.burst * one),
            gained.eq(level + self.config.rate),
            self.allow.eq(~self.config.en | (gained >= one)),
            after.eq(gained - (self.take & self.config.en) * one),
        ]
        with m.If(after > cap):
            m.d.sync += level.eq(cap)
        with m.Else():
            m.d.sync += level.eq(after)
        return m
