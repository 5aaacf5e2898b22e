"""One memory channel of the HBM or DDR controller stub."""

from amaranth import Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import MAX_BURST, TAG_BITS, req_layout, resp_layout, wdata_layout
from .delay import Delay, rate_slot

__all__ = ["dram_signature", "MemChannel", "BYTE_COUNTER_BITS"]

BYTE_COUNTER_BITS = 48
#: Response beats buffered in the channel (at least 2 for one beat per cycle).
RESP_DEPTH = 4


def dram_signature(addr_bits, words):
    """The channel's port to its backing store (off-chip DRAM, a testbench memory model):
    ``re`` returns the beat at ``addr`` on ``rdata`` one cycle later; ``we`` stores the
    words of ``wdata`` whose ``wmask`` bit is set."""
    return wiring.Signature({
        "addr": Out(addr_bits), "re": Out(1), "we": Out(1),
        "wdata": Out(32 * words), "wmask": Out(words), "rdata": In(32 * words),
    })


class MemChannel(wiring.Component):
    """A memory channel: at most ``outstanding`` requests queued, each served in order no
    earlier than ``latency`` cycles after it was accepted, one beat every ``interval``
    cycles. Write beats are taken into a write buffer as they come (room for the data
    of every queued request) and stored when their request is served.

    Parameters
    ----------
    words : int
        32-bit words per beat.
    addr_bits : int
        Beat-address width (the channel's capacity in beats).
    latency, outstanding : int
    jitter, seed : int
        Extra latency per request, pseudo-random 0 .. jitter (see Delay).
    interval : int
        Cycles per beat (bytes per cycle = 4 x words / interval).
    tag_bits : int

    Attributes
    ----------
    req, wdata : In(stream)      requests and write beats.
    resp : Out(stream)           read beats and write acknowledgements, in request order.
    dram : Out(dram_signature)   the backing store.
    read_bytes, write_bytes : Out(48)
    """

    def __init__(self, *, words, addr_bits, latency, outstanding, interval=1,
                 tag_bits=TAG_BITS, jitter=0, seed=1):
        if latency < 1 or outstanding < 1 or interval < 1:
            raise ValueError(f"latency {latency}, outstanding {outstanding} and interval "
                             f"{interval} must be >= 1")
        self.words, self.addr_bits, self.tag_bits = words, addr_bits, tag_bits
        self.latency, self.outstanding, self.interval = latency, outstanding, interval
        self.jitter, self.seed = jitter, seed
        super().__init__({
            "req": In(stream.Signature(req_layout(addr_bits, tag_bits))),
            "wdata": In(stream.Signature(wdata_layout(words))),
            "resp": Out(stream.Signature(resp_layout(words, tag_bits))),
            "dram": Out(dram_signature(addr_bits, words)),
            "read_bytes": Out(BYTE_COUNTER_BITS),
            "write_bytes": Out(BYTE_COUNTER_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        q = m.submodules.queue = Delay(req_layout(self.addr_bits, self.tag_bits),
                                       latency=self.latency, depth=self.outstanding,
                                       jitter=self.jitter, seed=self.seed)
        wiring.connect(m, wiring.flipped(self.req), q.i)
        wbuf = m.submodules.wbuf = fifo.SyncFIFOBuffered(
            width=wdata_layout(self.words).size, depth=self.outstanding * MAX_BURST)
        wiring.connect(m, wiring.flipped(self.wdata), wbuf.w_stream)
        wbeat = data.View(wdata_layout(self.words), wbuf.r_data)
        head = q.o.payload

        out = m.submodules.out = fifo.SyncFIFOBuffered(
            width=resp_layout(self.words, self.tag_bits).size, depth=RESP_DEPTH)
        pend = Signal(data.StructLayout({"valid": 1, "write": 1, "tag": self.tag_bits,
                                         "last": 1}))
        room = Signal()
        m.d.comb += room.eq(out.level + pend.valid < RESP_DEPTH)
        issue = Signal()
        slot = rate_slot(m, self.interval, issue)   # the channel may move a beat now

        beat = Signal(range(1 << len(head.len)))
        last = Signal()
        m.d.comb += [
            last.eq(beat == head.len),
            issue.eq(q.o.valid & slot & room & (~head.write | wbuf.r_rdy)),
            self.dram.addr.eq(head.addr + beat),
            self.dram.re.eq(issue & ~head.write),
            self.dram.we.eq(issue & head.write),
            self.dram.wdata.eq(wbeat.data),
            self.dram.wmask.eq(wbeat.mask),
            wbuf.r_en.eq(issue & head.write),
            q.o.ready.eq(issue & last),
        ]
        with m.If(issue):
            m.d.sync += beat.eq(Mux(last, 0, beat + 1))
        m.d.sync += [
            pend.valid.eq(issue & (~head.write | last)),
            pend.write.eq(head.write),
            pend.tag.eq(head.tag),
            pend.last.eq(last),
        ]
        resp = data.View(resp_layout(self.words, self.tag_bits), out.w_data)
        m.d.comb += [
            out.w_en.eq(pend.valid),
            resp.data.eq(Mux(pend.write, 0, self.dram.rdata)),
            resp.tag.eq(pend.tag),
            resp.write.eq(pend.write),
            resp.last.eq(pend.last),
            self.resp.payload.eq(out.r_data),
            self.resp.valid.eq(out.r_rdy),
            out.r_en.eq(self.resp.ready),
        ]
        nbytes = 4 * self.words
        m.d.sync += [
            self.read_bytes.eq(self.read_bytes + (self.dram.re * nbytes)),
            self.write_bytes.eq(self.write_bytes + (self.dram.we * nbytes)),
        ]
        return m
