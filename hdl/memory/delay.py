"""A stream delay line: fixed latency, limited rate, bounded occupancy."""

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Delay", "rate_slot"]

#: Width of the free-running cycle counter items are stamped with (wraps safely: an item
#: never waits 2**31 cycles).
TIME_BITS = 32


class Delay(wiring.Component):
    """Items leave in order, each no earlier than ``latency`` (plus a pseudo-random 0 ..
    ``jitter``, 2**k - 1) cycles after it entered and at most one every ``interval``
    cycles; at most ``depth`` items are inside. ``seed`` seeds the jitter's LFSR.

    A memory channel's request queue, and each direction of the host link.

    Attributes
    ----------
    i : In(stream)    items in.
    o : Out(stream)   the same items, delayed.
    level : Out       items inside.
    """

    def __init__(self, shape, *, latency, depth, interval=1, jitter=0, seed=1):
        if latency < 0 or depth < 1 or interval < 1 or jitter < 0 or jitter & (jitter + 1):
            raise ValueError(f"Delay: latency {latency}, depth {depth}, interval {interval} "
                             f"and jitter {jitter} must be >= 0, >= 1, >= 1, 2**k - 1")
        self.shape, self.latency, self.depth, self.interval = shape, latency, depth, interval
        self.jitter, self.seed = jitter, seed
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
            "level": Out(range(depth + 2)),
        })

    def elaborate(self, platform):
        m = Module()
        width = len(Cat(self.i.payload))
        entry = data.StructLayout({"item": unsigned(width), "due": unsigned(TIME_BITS)})
        now = Signal(TIME_BITS)
        m.d.sync += now.eq(now + 1)
        q = m.submodules.q = fifo.SyncFIFOBuffered(width=entry.size, depth=self.depth)
        due = now + self.latency
        if self.jitter:
            # 16-bit Galois LFSR (taps 16, 14, 13, 11), one step per cycle.
            lfsr = Signal(16, init=(self.seed * 0x9E37 & 0xFFFF) or 1)
            m.d.sync += lfsr.eq(Mux(lfsr[0], (lfsr >> 1) ^ 0xB400, lfsr >> 1))
            due = due + lfsr[:self.jitter.bit_length()]
        m.d.comb += [
            q.w_data.eq(Cat(self.i.payload, due)),
            q.w_en.eq(self.i.valid),
            self.i.ready.eq(q.w_rdy),
            self.level.eq(q.level),
        ]
        head = data.View(entry, q.r_data)
        waited = Signal(TIME_BITS)
        m.d.comb += waited.eq(now - head.due)
        ripe = Signal()
        m.d.comb += ripe.eq(q.r_rdy & ~waited[-1])
        slot = rate_slot(m, self.interval, self.o.valid & self.o.ready)
        m.d.comb += [self.o.valid.eq(ripe & slot), self.o.payload.eq(head.item),
                     q.r_en.eq(self.o.valid & self.o.ready)]
        return m


def rate_slot(m, interval, used):
    """A signal that is high when something may move this cycle, at most once every
    ``interval`` cycles: after a cycle with ``used`` high it stays low ``interval - 1``
    cycles."""
    slot = Signal()
    if interval > 1:
        gap = Signal(range(interval))
        with m.If(gap != 0):
            m.d.sync += gap.eq(gap - 1)
        with m.If(used):
            m.d.sync += gap.eq(interval - 1)
        m.d.comb += slot.eq(gap == 0)
    else:
        m.d.comb += slot.eq(1)
    return slot
