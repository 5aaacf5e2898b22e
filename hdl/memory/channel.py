"""One memory channel of the HBM or DDR controller stub."""

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import req_layout, resp_layout, wdata_layout

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
    earlier than ``latency`` cycles after it was accepted, one beat per cycle.

    Parameters
    ----------
    words : int
        32-bit words per beat (the channel's bytes per cycle / 4).
    addr_bits : int
        Beat-address width (the channel's capacity in beats).
    latency, outstanding : int

    Attributes
    ----------
    req, wdata : In(stream)      requests and write beats.
    resp : Out(stream)           read beats and write acknowledgements, in request order.
    dram : Out(dram_signature)   the backing store.
    read_bytes, write_bytes : Out(48)
    """

    def __init__(self, *, words, addr_bits, latency, outstanding):
        if latency < 1 or outstanding < 1:
            raise ValueError(f"latency {latency} and outstanding {outstanding} must be >= 1")
        self.words, self.addr_bits = words, addr_bits
        self.latency, self.outstanding = latency, outstanding
        super().__init__({
            "req": In(stream.Signature(req_layout(addr_bits))),
            "wdata": In(stream.Signature(wdata_layout(words))),
            "resp": Out(stream.Signature(resp_layout(words))),
            "dram": Out(dram_signature(addr_bits, words)),
            "read_bytes": Out(BYTE_COUNTER_BITS),
            "write_bytes": Out(BYTE_COUNTER_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        rl = req_layout(self.addr_bits)
        entry = data.StructLayout({"req": rl, "due": unsigned(32)})
        now = Signal(32)
        m.d.sync += now.eq(now + 1)

        q = m.submodules.queue = fifo.SyncFIFOBuffered(width=entry.size, depth=self.outstanding)
        m.d.comb += [
            q.w_data.eq(Cat(self.req.payload, now + self.latency)),
            q.w_en.eq(self.req.valid),
            self.req.ready.eq(q.w_rdy),
        ]
        head = data.View(entry, q.r_data)
        waited = Signal(32)
        m.d.comb += waited.eq(now - head.due)
        active = Signal()
        m.d.comb += active.eq(q.r_rdy & ~waited[31])

        out = m.submodules.out = fifo.SyncFIFOBuffered(width=resp_layout(self.words).size,
                                                        depth=RESP_DEPTH)
        pend = Signal(data.StructLayout({"valid": 1, "write": 1, "tag": rl["tag"].shape,
                                         "last": 1}))
        room = Signal()
        m.d.comb += room.eq(out.level + pend.valid < RESP_DEPTH)

        beat = Signal(range(1 << len(head.req.len)))
        last = Signal()
        issue = Signal()
        m.d.comb += [
            last.eq(beat == head.req.len),
            issue.eq(active & room & (~head.req.write | self.wdata.valid)),
            self.dram.addr.eq(head.req.addr + beat),
            self.dram.re.eq(issue & ~head.req.write),
            self.dram.we.eq(issue & head.req.write),
            self.dram.wdata.eq(self.wdata.payload.data),
            self.dram.wmask.eq(self.wdata.payload.mask),
            self.wdata.ready.eq(active & room & head.req.write),
            q.r_en.eq(issue & last),
        ]
        with m.If(issue):
            m.d.sync += beat.eq(Mux(last, 0, beat + 1))
        m.d.sync += [
            pend.valid.eq(issue & (~head.req.write | last)),
            pend.write.eq(head.req.write),
            pend.tag.eq(head.req.tag),
            pend.last.eq(last),
        ]
        resp = data.View(resp_layout(self.words), out.w_data)
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

