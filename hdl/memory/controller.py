"""HBM / DDR controller stub: several channels behind one request port."""

from amaranth import Cat, Module, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.rdn.arbiter import RoundRobin

from .channel import BYTE_COUNTER_BITS, MemChannel, dram_signature
from .config import (BURST_BITS, MAX_BURST, beat_addr_bits, beat_words, req_layout,
                     resp_layout, wdata_layout)

__all__ = ["MemController"]


class MemController(wiring.Component):
    """``channels`` memory channels interleaved by blocks of MAX_BURST beats.

    A request must stay inside one block (the AGCU and DMA split bursts there); it goes
    to channel ``(addr // MAX_BURST) % channels``, and a write's data beats follow it
    there in request order. Each channel answers in order; responses of different
    channels are merged round robin, so they return out of request order — the tag
    says whose they are.

    Parameters
    ----------
    channels, bytes_per_cycle, latency, outstanding : int
        Per channel: beat size, latency, queued requests.
    capacity : int
        Bytes over all channels.

    Attributes
    ----------
    req, wdata : In(stream);  resp : Out(stream)
    dram[c] : Out(dram_signature)   backing store of channel c.
    read_bytes[c], write_bytes[c] : Out(48)
    """

    def __init__(self, *, channels, bytes_per_cycle, latency, outstanding, capacity):
        self.channels = channels
        self.words = beat_words(bytes_per_cycle)
        beats = capacity // bytes_per_cycle
        if channels & (channels - 1) or beats % (channels * MAX_BURST):
            raise ValueError(f"{channels} channels cannot interleave {beats} beats in blocks "
                             f"of {MAX_BURST}")
        self.addr_bits = beat_addr_bits(capacity, bytes_per_cycle)
        self.chan_addr_bits = beat_addr_bits(capacity // channels, bytes_per_cycle)
        self.latency, self.outstanding = latency, outstanding
        super().__init__({
            "req": In(stream.Signature(req_layout(self.addr_bits))),
            "wdata": In(stream.Signature(wdata_layout(self.words))),
            "resp": Out(stream.Signature(resp_layout(self.words))),
            "dram": Out(dram_signature(self.chan_addr_bits, self.words)).array(channels),
            "read_bytes": Out(BYTE_COUNTER_BITS).array(channels),
            "write_bytes": Out(BYTE_COUNTER_BITS).array(channels),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.channels
        sel_bits = max(1, (n - 1).bit_length())
        chans = [MemChannel(words=self.words, addr_bits=self.chan_addr_bits,
                            latency=self.latency, outstanding=self.outstanding)
                 for _ in range(n)]
        for c, ch in enumerate(chans):
            m.submodules[f"ch{c}"] = ch
            wiring.connect(m, ch.dram, wiring.flipped(self.dram[c]))
            m.d.comb += [self.read_bytes[c].eq(ch.read_bytes),
                         self.write_bytes[c].eq(ch.write_bytes)]

        # Requests: block-interleaved address split into (channel, address in channel).
        addr = self.req.payload.addr
        chan = Signal(sel_bits)
        m.d.comb += chan.eq(addr[BURST_BITS:BURST_BITS + sel_bits] if n > 1 else 0)
        local = Cat(addr[:BURST_BITS], addr[BURST_BITS + (sel_bits if n > 1 else 0):])
        # Write beats follow their request: (channel, beats) of every accepted write.
        order = m.submodules.order = fifo.SyncFIFOBuffered(
            width=sel_bits + BURST_BITS, depth=max(2, n * self.outstanding))
        is_write = self.req.payload.write
        ready = Signal()
        for c, ch in enumerate(chans):
            m.d.comb += [ch.req.payload.addr.eq(local),
                         ch.req.payload.len.eq(self.req.payload.len),
                         ch.req.payload.write.eq(self.req.payload.write),
                         ch.req.payload.tag.eq(self.req.payload.tag),
                         ch.req.valid.eq(self.req.valid & (chan == c) &
                                         (~is_write | order.w_rdy))]
            with m.If(chan == c):
                m.d.comb += ready.eq(ch.req.ready & (~is_write | order.w_rdy))
        m.d.comb += [self.req.ready.eq(ready),
                     order.w_en.eq(self.req.valid & ready & is_write),
                     order.w_data.eq(Cat(chan, self.req.payload.len))]
        head = data.View(data.StructLayout({"chan": sel_bits, "len": BURST_BITS}), order.r_data)
        beat = Signal(BURST_BITS)
        wready = Signal()
        for c, ch in enumerate(chans):
            m.d.comb += [ch.wdata.payload.eq(self.wdata.payload),
                         ch.wdata.valid.eq(self.wdata.valid & order.r_rdy & (head.chan == c))]
            with m.If(head.chan == c):
                m.d.comb += wready.eq(order.r_rdy & ch.wdata.ready)
        m.d.comb += self.wdata.ready.eq(wready)
        with m.If(self.wdata.valid & wready):
            with m.If(beat == head.len):
                m.d.sync += beat.eq(0)
                m.d.comb += order.r_en.eq(1)
            with m.Else():
                m.d.sync += beat.eq(beat + 1)

        # Responses: round robin among channels, a whole read burst at a time.
        arb = m.submodules.arb = RoundRobin(n)
        locked = Signal()
        owner = Signal(range(n))
        m.d.comb += arb.request.eq(Cat(ch.resp.valid for ch in chans))
        cur = Signal(range(n))
        m.d.comb += cur.eq(owner)
        with m.If(~locked):
            m.d.comb += cur.eq(arb.index)
        for c, ch in enumerate(chans):
            with m.If(cur == c):
                m.d.comb += [self.resp.payload.eq(ch.resp.payload),
                             self.resp.valid.eq(ch.resp.valid & (locked | arb.grant.any())),
                             ch.resp.ready.eq(self.resp.ready & (locked | arb.grant.any()))]
        fire = self.resp.valid & self.resp.ready
        m.d.comb += arb.take.eq(fire & ~locked)
        with m.If(fire):
            m.d.sync += [locked.eq(~self.resp.payload.last), owner.eq(cur)]
        return m
