"""Top-level network (TLN): requesters (AGCUs, DMA engine, host link) to memory
controllers."""

from amaranth import Cat, Const, Module, Signal
from amaranth.lib import data, fifo, wiring
from amaranth.lib.wiring import In, Out

from hdl.arbiter import RoundRobin

from .config import BURST_BITS, MAX_BURST, TAG_BITS, mem_port_signature, resp_layout
from .merge import BurstMerge

__all__ = ["Tln", "connect_channel"]


class Tln(wiring.Component):
    """A crossbar from ``masters`` requester ports to one target port per memory channel
    (every channel of every region, in region order).

    A request goes to the channel holding its (global beat) address — the region by
    address range, the channel by the interleave of :meth:`Region.channel_of` (blocks of
    MAX_BURST beats round robin) — with the address made channel-relative and the tag
    extended by the requester's number; requesters keep a request inside one block.
    Each target arbitrates round robin among the requesters; a write holds its target
    until its last data beat has passed (channels buffer write data, so that is
    ``len + 1`` cycles), and its requester sends nothing else meanwhile. Responses go back
    to the requester named in their tag through a burst-deep queue per (target,
    requester), so one busy requester does not block a target for the others (no
    head-of-line blocking), merged round robin a whole burst at a time.

    A request outside every region is consumed and dropped, and raises the sticky
    ``decode_error`` with its address in ``decode_addr`` (requesters check their
    addresses first; this is the last guard).

    Attributes
    ----------
    m[i] : In(mem_port_signature)          requester i.
    t[j] : Out(mem_port_signature)         channel j (tags TAG_BITS + requester bits).
    decode_error : Out(1);  decode_addr : Out(addr_bits)
    """

    def __init__(self, *, masters, regions, words, addr_bits):
        self.masters, self.regions = masters, tuple(regions)
        self.words, self.addr_bits = words, addr_bits
        self.mbits = max(1, (masters - 1).bit_length())
        #: (region, channel) of each target port.
        self.targets = [(r, c) for r in self.regions for c in range(r.channels)]
        super().__init__({
            "m": In(mem_port_signature(addr_bits, words)).array(masters),
            "t": Out(mem_port_signature(addr_bits, words, TAG_BITS + self.mbits))
            .array(len(self.targets)),
            "decode_error": Out(1),
            "decode_addr": Out(addr_bits),
        })

    def elaborate(self, platform):
        m = Module()
        nm, nt = self.masters, len(self.targets)
        top = 1 << self.addr_bits

        # Address decode per requester: region, then channel and channel-local address.
        sel = [Signal(range(max(2, nt)), name=f"sel{i}") for i in range(nm)]
        hit = [Signal(name=f"hit{i}") for i in range(nm)]
        local = [Signal(self.addr_bits, name=f"local{i}") for i in range(nm)]
        first = 0
        for r in self.regions:
            cbits = (r.channels - 1).bit_length()
            for i, port in enumerate(self.m):
                a = port.req.payload.addr
                inside = []
                if r.base > 0:
                    inside.append(a >= r.base)
                if r.end < top:
                    inside.append(a < r.end)
                cond = inside[0] if len(inside) == 1 else (
                    inside[0] & inside[1] if inside else 1)
                rel = Signal(self.addr_bits, name=f"rel{i}_{r.name}")
                m.d.comb += rel.eq(a - r.base)
                with m.If(cond):
                    m.d.comb += [hit[i].eq(1),
                                 sel[i].eq(first + (rel[BURST_BITS:BURST_BITS + cbits]
                                                    if cbits else 0)),
                                 local[i].eq(Cat(rel[:BURST_BITS], rel[BURST_BITS + cbits:]))]
            first += r.channels

        # Per target: arbitration, and the write that holds it. A write's last beat and
        # the next request (of any requester, the holder included) may pass together.
        lock = [Signal(name=f"lock{j}") for j in range(nt)]
        owner = [Signal(range(max(2, nm)), name=f"owner{j}") for j in range(nt)]
        left = [Signal(BURST_BITS, name=f"left{j}") for j in range(nt)]
        fin = [Signal(name=f"fin{j}") for j in range(nt)]
        busy = [Signal(name=f"busy{i}") for i in range(nm)]
        for j, t in enumerate(self.t):
            for i, p in enumerate(self.m):
                with m.If(owner[j] == i):
                    m.d.comb += [t.wdata.payload.eq(p.wdata.payload),
                                 t.wdata.valid.eq(lock[j] & p.wdata.valid)]
            m.d.comb += fin[j].eq(t.wdata.valid & t.wdata.ready & (left[j] == 0))
            with m.If(t.wdata.valid & t.wdata.ready):
                m.d.sync += left[j].eq(left[j] - 1)
                with m.If(left[j] == 0):
                    m.d.sync += lock[j].eq(0)
        for i in range(nm):
            m.d.comb += busy[i].eq(Cat(lock[j] & ~fin[j] & (owner[j] == i)
                                       for j in range(nt)).any())
        granted = [[None] * nt for _ in range(nm)]
        for j, t in enumerate(self.t):
            arb = m.submodules[f"arb{j}"] = RoundRobin(nm)
            m.d.comb += arb.request.eq(Cat(p.req.valid & hit[i] & (sel[i] == j) & ~busy[i]
                                           for i, p in enumerate(self.m)))
            free = ~lock[j] | fin[j]
            m.d.comb += t.req.valid.eq(arb.grant.any() & free)
            for i, p in enumerate(self.m):
                with m.If(arb.index == i):
                    m.d.comb += [t.req.payload.addr.eq(local[i]),
                                 t.req.payload.len.eq(p.req.payload.len),
                                 t.req.payload.write.eq(p.req.payload.write),
                                 t.req.payload.tag.eq(Cat(p.req.payload.tag,
                                                              Const(i, self.mbits)))]
                granted[i][j] = arb.grant[i] & free & t.req.ready
            take = t.req.valid & t.req.ready
            m.d.comb += arb.take.eq(take)
            with m.If(take & t.req.payload.write):
                m.d.sync += [lock[j].eq(1), owner[j].eq(arb.index),
                             left[j].eq(t.req.payload.len)]
        for i, p in enumerate(self.m):
            drop = p.req.valid & ~hit[i]
            m.d.comb += [
                p.req.ready.eq(Cat(*granted[i], drop).any()),
                p.wdata.ready.eq(Cat(lock[j] & (owner[j] == i) & self.t[j].wdata.ready
                                     for j in range(nt)).any()),
            ]
            with m.If(drop & ~self.decode_error):
                m.d.sync += [self.decode_error.eq(1), self.decode_addr.eq(p.req.payload.addr)]

        # Responses: each target's into a queue per requester (named by the tag's high
        # bits) that holds a whole burst, so a requester busy with another target's burst
        # does not stall this target for the others (no head-of-line blocking); each
        # requester merges its queues a burst at a time.
        rl = resp_layout(self.words)
        merges = [BurstMerge(nt, rl) for _ in range(nm)]
        for i, merge in enumerate(merges):
            m.submodules[f"merge{i}"] = merge
            wiring.connect(m, merge.o, wiring.flipped(self.m[i].resp))
        for j, t in enumerate(self.t):
            who = t.resp.payload.tag[TAG_BITS:]
            readies = []
            for i, merge in enumerate(merges):
                q = m.submodules[f"rq{j}_{i}"] = fifo.SyncFIFOBuffered(width=rl.size,
                                                                       depth=MAX_BURST)
                mine = Signal(name=f"resp{j}_to{i}")
                item = data.View(rl, q.w_data)
                m.d.comb += [
                    mine.eq(who == i),
                    q.w_en.eq(t.resp.valid & mine),
                    item.data.eq(t.resp.payload.data),
                    item.tag.eq(t.resp.payload.tag[:TAG_BITS]),
                    item.write.eq(t.resp.payload.write),
                    item.last.eq(t.resp.payload.last),
                ]
                wiring.connect(m, q.r_stream, merge.i[j])
                readies.append(mine & q.w_rdy)
            m.d.comb += t.resp.ready.eq(Cat(*readies).any())
        return m


def connect_channel(m, target, channel):
    """Wire a TLN target port to a MemChannel (the port's address is wider than the
    channel's; a channel-relative address fits)."""
    m.d.comb += [channel.req.payload.addr.eq(target.req.payload.addr),
                 channel.req.payload.len.eq(target.req.payload.len),
                 channel.req.payload.write.eq(target.req.payload.write),
                 channel.req.payload.tag.eq(target.req.payload.tag),
                 channel.req.valid.eq(target.req.valid), target.req.ready.eq(channel.req.ready)]
    wiring.connect(m, target.wdata, channel.wdata)
    wiring.connect(m, channel.resp, target.resp)
