"""In-order burst reader: tagged read bursts out, their beats back in request order."""

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import BURST_BITS, req_layout, resp_layout
from .slots import BurstSlots

__all__ = ["read_burst_layout", "BurstReader"]


def read_burst_layout(addr_bits, info):
    """A read burst: beats ``addr .. addr + len`` and what the requester keeps with it."""
    return data.StructLayout({"addr": unsigned(addr_bits), "len": unsigned(BURST_BITS),
                              "info": info})


class BurstReader(wiring.Component):
    """Requests each burst of ``bursts`` with the next free tag (up to ``tags`` in flight,
    a reorder slot reserved for each, so responses are always accepted) and delivers the
    beats on ``o`` in request order, whatever order they land in.

    Attributes
    ----------
    bursts : In(stream(read_burst_layout))
    req : Out(stream(req_layout))       read requests (the owner may share its port).
    resp : In(stream(resp_layout))
    o : Out(stream)                     ``data``, the burst's ``info``, ``first`` / ``last``
                                        beat of the burst.
    reordered : Out(1)                  a burst's last beat arrived while an older burst
                                        was still missing.
    drained : Out(1)                    a burst's last beat left on ``o``.
    acked : Out(1)                      a write acknowledgement came back on ``resp`` (the
                                        owner's writes share the port).
    """

    def __init__(self, *, words, addr_bits, tags, info):
        self.words, self.tags, self.info = words, tags, info
        super().__init__({
            "bursts": In(stream.Signature(read_burst_layout(addr_bits, info))),
            "req": Out(stream.Signature(req_layout(addr_bits))),
            "resp": In(stream.Signature(resp_layout(words))),
            "o": Out(stream.Signature(data.StructLayout({
                "data": unsigned(32 * words), "info": info, "first": unsigned(1),
                "last": unsigned(1)}))),
            "reordered": Out(1), "drained": Out(1), "acked": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        T = self.tags
        b = self.bursts.payload
        keep = data.StructLayout({"len": unsigned(BURST_BITS), "info": self.info})
        slots = m.submodules.slots = BurstSlots(words=self.words, tags=T, info=keep)
        wiring.connect(m, wiring.flipped(self.resp), slots.resp)
        m.d.comb += [
            self.req.valid.eq(self.bursts.valid & slots.free),
            self.req.payload.addr.eq(b.addr), self.req.payload.len.eq(b.len),
            self.req.payload.tag.eq(slots.next_tag),
            self.bursts.ready.eq(self.req.ready & slots.free),
            slots.alloc.eq(self.bursts.valid & self.bursts.ready),
            slots.alloc_info.len.eq(b.len), slots.alloc_info.info.eq(b.info),
            self.acked.eq(slots.acked),
        ]

        tbits = len(slots.next_tag)
        htag = Signal(tbits)                   # oldest burst not yet drained
        arrived = Signal(T)
        beat = Signal(BURST_BITS)
        set_arr, clr_arr = Signal(T), Signal(T)
        with m.If(slots.landed):
            m.d.comb += [set_arr.eq(1 << slots.landed_tag),
                         self.reordered.eq((slots.landed_tag != htag) &
                                           ~arrived.bit_select(htag, 1))]
        info = slots.read_info
        o = self.o
        m.d.comb += [slots.read_tag.eq(htag), slots.read_beat.eq(beat),
                     o.valid.eq(arrived.bit_select(htag, 1)),
                     o.payload.data.eq(slots.read_data), o.payload.info.eq(info.info),
                     o.payload.first.eq(beat == 0), o.payload.last.eq(beat == info.len)]
        with m.If(o.valid & o.ready):
            m.d.sync += beat.eq(Mux(o.payload.last, 0, beat + 1))
            with m.If(o.payload.last):
                m.d.sync += htag.eq(htag + 1)
                m.d.comb += [clr_arr.eq(1 << htag), slots.release.eq(1),
                             slots.release_tag.eq(htag), self.drained.eq(1)]
        m.d.sync += arrived.eq((arrived | set_arr) & ~clr_arr)
        return m
