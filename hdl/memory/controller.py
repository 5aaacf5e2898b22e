"""HBM / DDR controller stub: several channels behind one request port."""

from amaranth import Cat, Module, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .channel import BYTE_COUNTER_BITS, MemChannel, dram_signature
from .config import (BURST_BITS, MAX_BURST, TAG_BITS, beat_addr_bits, req_layout,
                     resp_layout, wdata_layout)
from .merge import BurstMerge

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
    channels, words, latency, outstanding, interval : int
        Per channel: 32-bit words per beat, latency, queued requests, cycles per beat.
    beats : int
        Capacity over all channels, in beats.
    tag_bits, jitter, seed : int      (see MemChannel; each channel seeded apart)

    Attributes
    ----------
    req, wdata : In(stream);  resp : Out(stream)
    dram[c] : Out(dram_signature)   backing store of channel c.
    read_bytes[c], write_bytes[c] : Out(48)
    """

    def __init__(self, *, channels, words, latency, outstanding, beats, interval=1,
                 tag_bits=TAG_BITS, jitter=0, seed=1):
        self.channels, self.words, self.tag_bits = channels, words, tag_bits
        if channels & (channels - 1) or beats % (channels * MAX_BURST):
            raise ValueError(f"{channels} channels cannot interleave {beats} beats in blocks "
                             f"of {MAX_BURST}")
        self.beats = beats
        self.addr_bits = beat_addr_bits(beats)
        self.chan_addr_bits = beat_addr_bits(beats // channels)
        self.latency, self.outstanding, self.interval = latency, outstanding, interval
        self.jitter, self.seed = jitter, seed
        super().__init__({
            "req": In(stream.Signature(req_layout(self.addr_bits, tag_bits))),
            "wdata": In(stream.Signature(wdata_layout(self.words))),
            "resp": Out(stream.Signature(resp_layout(self.words, tag_bits))),
            "dram": Out(dram_signature(self.chan_addr_bits, self.words)).array(channels),
            "read_bytes": Out(BYTE_COUNTER_BITS).array(channels),
            "write_bytes": Out(BYTE_COUNTER_BITS).array(channels),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.channels
        sel_bits = max(1, (n - 1).bit_length())
        chans = [MemChannel(words=self.words, addr_bits=self.chan_addr_bits,
                            latency=self.latency, outstanding=self.outstanding,
                            interval=self.interval, tag_bits=self.tag_bits,
                            jitter=self.jitter, seed=self.seed * 31 + c)
                 for c in range(n)]
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
        merge = m.submodules.merge = BurstMerge(n, resp_layout(self.words, self.tag_bits))
        for c, ch in enumerate(chans):
            wiring.connect(m, ch.resp, merge.i[c])
        wiring.connect(m, merge.o, wiring.flipped(self.resp))
        return m
