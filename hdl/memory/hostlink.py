"""The host link: the slow path between the host and the top-level network."""

from amaranth import Module, Mux, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from .config import MAX_BURST, mem_port_signature, wdata_layout
from .delay import Delay

__all__ = ["HostLink"]

#: Host requests in flight on the link.
REQ_DEPTH = 16


def _pow2_at_least(n):
    return 1 << max(1, (n - 1).bit_length())


class HostLink(wiring.Component):
    """The host's port to memory, across a link of ``latency`` cycles each way that
    carries one data beat every ``interval`` cycles in each direction (requests are small
    and ride along at no bandwidth cost).

    Towards the network the link behaves: a write request leaves only once all its data
    beats have crossed (so it never holds a memory controller waiting on the slow link),
    and a request leaves only if the response path has room reserved for its responses
    (so the link never blocks a controller's response stream).

    Attributes
    ----------
    host : In(mem_port_signature)    the host side (a testbench).
    net : Out(mem_port_signature)    towards the top-level network.
    """

    def __init__(self, *, words, addr_bits, latency, interval):
        self.words, self.addr_bits, self.latency, self.interval = words, addr_bits, latency, interval
        sig = mem_port_signature(addr_bits, words)
        super().__init__({"host": In(sig), "net": Out(sig)})

    def elaborate(self, platform):
        m = Module()
        lat, iv = self.latency, self.interval
        wdepth = _pow2_at_least(lat // iv + 2 * MAX_BURST)
        rdepth = _pow2_at_least((2 * lat + 200) // iv + 2 * MAX_BURST)
        rq = m.submodules.rq = Delay(self.host.req.payload.shape(), latency=lat, depth=REQ_DEPTH)
        wd = m.submodules.wd = Delay(wdata_layout(self.words), latency=lat, depth=wdepth,
                                     interval=iv)
        rs = m.submodules.rs = Delay(self.host.resp.payload.shape(), latency=lat, depth=rdepth,
                                     interval=iv)
        stage = m.submodules.stage = fifo.SyncFIFOBuffered(width=len(wd.o.payload.as_value()),
                                                            depth=2 * MAX_BURST)
        wiring.connect(m, wiring.flipped(self.host.req), rq.i)
        wiring.connect(m, wiring.flipped(self.host.wdata), wd.i)
        wiring.connect(m, rs.o, wiring.flipped(self.host.resp))
        wiring.connect(m, wd.o, stage.w_stream)

        head = rq.o.payload
        beats = Signal(range(MAX_BURST + 1))
        cost = Signal(range(MAX_BURST + 1))
        m.d.comb += [beats.eq(head.len + 1), cost.eq(Mux(head.write, 1, beats))]
        owed = Signal(range(2 * MAX_BURST + 1))        # staged beats of writes already sent
        reserved = Signal(range(rdepth + 1))           # responses not yet delivered
        ok = Signal()
        m.d.comb += [
            ok.eq((reserved + cost <= rdepth) &
                  (~head.write | (stage.level >= owed + beats))),
            self.net.req.valid.eq(rq.o.valid & ok),
            self.net.req.payload.eq(head),
            rq.o.ready.eq(self.net.req.ready & ok),
            self.net.wdata.payload.eq(stage.r_data),
            self.net.wdata.valid.eq(stage.r_rdy),
            stage.r_en.eq(self.net.wdata.ready),
        ]
        wiring.connect(m, wiring.flipped(self.net.resp), rs.i)
        sent = self.net.req.valid & self.net.req.ready
        beat_out = self.net.wdata.valid & self.net.wdata.ready
        delivered = self.host.resp.valid & self.host.resp.ready
        m.d.sync += [
            owed.eq(owed + (sent & head.write) * beats - beat_out),
            reserved.eq(reserved + sent * cost - delivered),
        ]
        return m
