"""AGCU run splitter: runs of words -> bounds-checked, translated bursts."""

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.memory.burst import block_room, cut
from hdl.memory.config import MAX_BURST, MemoryMap

from .config import RUN_BITS, burst_layout, segment_layout

__all__ = ["BurstSplitter", "run_layout"]

run_layout = data.StructLayout({"offset": signed(32), "last": unsigned(1)})


class BurstSplitter(wiring.Component):
    """Each run (``config.run`` words from segment-relative word ``offset``) is checked
    against the segment, translated by its base, and cut into bursts that end at a
    MAX_BURST-beat block boundary or at the end of the run, one per cycle.

    A run reaching outside the segment raises ``fault`` with ``fault_addr`` = its first
    word outside (segment-relative); that run and every later one is dropped, so nothing
    outside the segment is ever requested. ``start`` clears the fault.

    Attributes
    ----------
    seg : In(segment_layout);  run : In(RUN_BITS);  start : In(1)
    i : In(stream(run_layout));  o : Out(stream(burst_layout))
    idle : Out(1)            no run in progress.
    fault : Out(1);  fault_addr : Out(signed(32))
    """

    def __init__(self, params):
        self.params = params
        self.map = MemoryMap(params)
        super().__init__({
            "seg": In(segment_layout(params)), "run": In(RUN_BITS), "start": In(1),
            "i": In(stream.Signature(run_layout)),
            "o": Out(stream.Signature(burst_layout(params))),
            "idle": Out(1), "fault": Out(1), "fault_addr": Out(signed(32)),
        })

    def elaborate(self, platform):
        m = Module()
        W = self.map.words
        wb = (W - 1).bit_length()
        busy = Signal()
        word = Signal(len(self.seg.base))
        left = Signal(RUN_BITS)
        run_last = Signal()

        # The current burst.
        beat = Signal(len(word) - wb)
        lo = Signal(max(1, wb))
        m.d.comb += [beat.eq(word >> wb), lo.eq(word[:wb] if wb else 0)]
        room = Signal(range(MAX_BURST * W + 1))       # words to the block end
        m.d.comb += room.eq((block_room(m, beat, "room_beats") << wb) - lo)
        take = cut(m, left, room, "take", RUN_BITS)
        end = Signal(range(MAX_BURST * W + 1))
        nbeats = Signal(range(MAX_BURST + 1))
        m.d.comb += [
            end.eq(lo + take),
            nbeats.eq((end + W - 1) >> wb),
        ]
        final = Signal()
        m.d.comb += final.eq(take == left)
        p = self.o.payload
        m.d.comb += [
            self.o.valid.eq(busy),
            p.addr.eq(beat), p.len.eq(nbeats - 1), p.lo.eq(lo),
            p.hi.eq(end - ((nbeats - 1) << wb)),
            p.last.eq(run_last & final),
        ]
        emit = self.o.valid & self.o.ready
        with m.If(emit):
            m.d.sync += [word.eq(word + take), left.eq(left - take)]
            with m.If(final):
                m.d.sync += busy.eq(0)

        # The next run, taken as soon as the current one's final burst leaves.
        free = Signal()
        m.d.comb += [free.eq(~busy | (emit & final)), self.i.ready.eq(free),
                     self.idle.eq(~busy)]
        off = self.i.payload.offset
        stop = Signal(signed(34))
        m.d.comb += stop.eq(off + self.run)
        inside = Signal()
        m.d.comb += inside.eq((off >= 0) & (stop <= self.seg.size))
        with m.If(self.start):
            m.d.sync += [self.fault.eq(0), busy.eq(0)]
        with m.Elif(self.i.valid & free & ~self.fault):
            with m.If(inside):
                # A zero-word run (a malformed program) yields no burst.
                m.d.sync += [busy.eq(self.run != 0), word.eq(self.seg.base + off),
                             left.eq(self.run),
                             run_last.eq(self.i.payload.last)]
            with m.Else():
                m.d.sync += [self.fault.eq(1),
                             self.fault_addr.eq(Mux((off < 0) | (off >= self.seg.size), off,
                                                    self.seg.size))]
        return m
