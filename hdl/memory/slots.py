"""Tagged burst slots: where a requester's read bursts land, in whatever order they come."""

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import BURST_BITS, MAX_BURST, resp_layout

__all__ = ["BurstSlots"]


class BurstSlots(wiring.Component):
    """``tags`` slots of MAX_BURST beats; a burst's tag is its slot.

    A requester takes the next tag in turn (``free`` says it is not in use) with
    ``alloc``, storing ``alloc_info`` with it; responses on ``resp`` are always accepted —
    read beats land in their slot and ``landed`` / ``landed_tag`` pulse on a burst's last
    beat; ``acked`` pulses on a write acknowledgement. ``read_tag`` / ``read_beat`` read a
    slot (combinationally, with its info); ``release`` frees ``release_tag``. ``idle``: no
    slot in use. (The DMA engine and the AGCU reorder buffer.)
    """

    def __init__(self, *, words, tags, info):
        if tags & (tags - 1) or tags < 2:
            raise ValueError(f"tags must be a power of two >= 2, got {tags}")
        self.words, self.tags, self.info = words, tags, info
        tb = (tags - 1).bit_length()
        super().__init__({
            "free": Out(1), "next_tag": Out(tb), "alloc": In(1), "alloc_info": In(info),
            "resp": In(stream.Signature(resp_layout(words))),
            "landed": Out(1), "landed_tag": Out(tb), "acked": Out(1),
            "read_tag": In(tb), "read_beat": In(BURST_BITS),
            "read_data": Out(32 * words), "read_info": Out(info),
            "release": In(1), "release_tag": In(tb), "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        T = self.tags
        tb = len(self.next_tag)
        info = m.submodules.info = Memory(shape=self.info, depth=T, init=[])
        buf = m.submodules.buf = Memory(shape=unsigned(32 * self.words), depth=T * MAX_BURST,
                                        init=[])
        info_w, info_r = info.write_port(), info.read_port(domain="comb")
        buf_w, buf_r = buf.write_port(), buf.read_port(domain="comb")
        inuse = Signal(T)
        m.d.comb += [self.free.eq(~inuse.bit_select(self.next_tag, 1)), self.idle.eq(inuse == 0),
                     info_w.addr.eq(self.next_tag), info_w.data.eq(self.alloc_info),
                     info_w.en.eq(self.alloc),
                     info_r.addr.eq(self.read_tag), self.read_info.eq(info_r.data),
                     buf_r.addr.eq(Cat(self.read_beat, self.read_tag)),
                     self.read_data.eq(buf_r.data)]
        with m.If(self.alloc):
            m.d.sync += self.next_tag.eq(self.next_tag + 1)
        m.d.sync += inuse.eq((inuse | Mux(self.alloc, 1 << self.next_tag, 0)) &
                             ~Mux(self.release, 1 << self.release_tag, 0))

        resp = self.resp
        rbeat = Signal(BURST_BITS)
        beat_in = resp.valid & ~resp.payload.write
        m.d.comb += [resp.ready.eq(1), self.landed_tag.eq(resp.payload.tag[:tb]),
                     buf_w.addr.eq(Cat(rbeat, resp.payload.tag[:tb])),
                     buf_w.data.eq(resp.payload.data), buf_w.en.eq(beat_in),
                     self.landed.eq(beat_in & resp.payload.last),
                     self.acked.eq(resp.valid & resp.payload.write)]
        with m.If(beat_in):
            m.d.sync += rbeat.eq(Mux(resp.payload.last, 0, rbeat + 1))
        return m
