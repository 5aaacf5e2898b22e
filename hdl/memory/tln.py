"""Top-level network (TLN): requesters (AGCUs, DMA engine, host link) to memory
controllers."""

from amaranth import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hdl.rdn.arbiter import RoundRobin

from .config import BURST_BITS, TAG_BITS, mem_port_signature, resp_layout
from .merge import BurstMerge

__all__ = ["Tln"]


class Tln(wiring.Component):
    """A crossbar from ``masters`` requester ports to one target port per memory region.

    A request goes to the region holding its (global beat) address, with the address
    made region-relative and the tag extended by the requester's number. Each target
    arbitrates round robin among the requesters; a write holds its target until its
    last data beat has passed (controllers buffer write data, so that is ``len + 1``
    cycles), and a requester sends nothing else meanwhile. Responses go back to the
    requester named in their tag, merged round robin a whole burst at a time.

    A request outside every region is consumed and dropped, and raises the sticky
    ``decode_error`` with its address in ``decode_addr`` (requesters check their
    addresses first; this is the last guard).

    Attributes
    ----------
    m[i] : In(mem_port_signature)          requester i.
    t[j] : Out(mem_port_signature)         region j (tags TAG_BITS + requester bits).
    decode_error : Out(1);  decode_addr : Out(addr_bits)
    """

    def __init__(self, *, masters, regions, words, addr_bits):
        self.masters, self.regions = masters, tuple(regions)
        self.words, self.addr_bits = words, addr_bits
        self.mbits = max(1, (masters - 1).bit_length())
        super().__init__({
            "m": In(mem_port_signature(addr_bits, words)).array(masters),
            "t": Out(mem_port_signature(addr_bits, words, TAG_BITS + self.mbits))
            .array(len(self.regions)),
            "decode_error": Out(1),
            "decode_addr": Out(addr_bits),
        })

    def elaborate(self, platform):
        m = Module()
        nm, nt = self.masters, len(self.regions)
        top = 1 << self.addr_bits

        # Address decode per requester.
        sel = [Signal(range(max(2, nt)), name=f"sel{i}") for i in range(nm)]
        hit = [Signal(name=f"hit{i}") for i in range(nm)]
        for i, port in enumerate(self.m):
            a = port.req.payload.addr
            for j, r in enumerate(self.regions):
                inside = []
                if r.base > 0:
                    inside.append(a >= r.base)
                if r.end < top:
                    inside.append(a < r.end)
                cond = inside[0] if len(inside) == 1 else (
                    inside[0] & inside[1] if inside else 1)
                with m.If(cond):
                    m.d.comb += [sel[i].eq(j), hit[i].eq(1)]

        # Per target: arbitration, and the write that holds it.
        lock = [Signal(name=f"lock{j}") for j in range(nt)]
        owner = [Signal(range(max(2, nm)), name=f"owner{j}") for j in range(nt)]
        left = [Signal(BURST_BITS, name=f"left{j}") for j in range(nt)]
        busy = [Signal(name=f"busy{i}") for i in range(nm)]
        for i in range(nm):
            m.d.comb += busy[i].eq(Cat(lock[j] & (owner[j] == i) for j in range(nt)).any())
        granted = [[None] * nt for _ in range(nm)]
        for j, (t, r) in enumerate(zip(self.t, self.regions)):
            arb = m.submodules[f"arb{j}"] = RoundRobin(nm)
            m.d.comb += arb.request.eq(Cat(p.req.valid & hit[i] & (sel[i] == j) & ~busy[i]
                                           for i, p in enumerate(self.m)))
            m.d.comb += t.req.valid.eq(arb.grant.any() & ~lock[j])
            for i, p in enumerate(self.m):
                with m.If(arb.index == i):
                    m.d.comb += [t.req.payload.addr.eq(p.req.payload.addr - r.base),
                                 t.req.payload.len.eq(p.req.payload.len),
                                 t.req.payload.write.eq(p.req.payload.write),
                                 t.req.payload.tag.eq(Cat(p.req.payload.tag,
                                                              Const(i, self.mbits)))]
                granted[i][j] = arb.grant[i] & ~lock[j] & t.req.ready
            take = t.req.valid & t.req.ready
            m.d.comb += arb.take.eq(take)
            with m.If(take & t.req.payload.write):
                m.d.sync += [lock[j].eq(1), owner[j].eq(arb.index),
                             left[j].eq(t.req.payload.len)]
            # Write beats of the holder.
            for i, p in enumerate(self.m):
                with m.If(owner[j] == i):
                    m.d.comb += [t.wdata.payload.eq(p.wdata.payload),
                                 t.wdata.valid.eq(lock[j] & p.wdata.valid)]
            with m.If(t.wdata.valid & t.wdata.ready):
                m.d.sync += left[j].eq(left[j] - 1)
                with m.If(left[j] == 0):
                    m.d.sync += lock[j].eq(0)
        for i, p in enumerate(self.m):
            drop = p.req.valid & ~hit[i]
            m.d.comb += [
                p.req.ready.eq(Cat(*granted[i], drop).any()),
                p.wdata.ready.eq(Cat(lock[j] & (owner[j] == i) & self.t[j].wdata.ready
                                     for j in range(nt)).any()),
            ]
            with m.If(drop & ~self.decode_error):
                m.d.sync += [self.decode_error.eq(1), self.decode_addr.eq(p.req.payload.addr)]

        # Responses: back to the requester in the tag's high bits.
        rl = resp_layout(self.words)
        ready_from = [[] for _ in range(nt)]
        for i, p in enumerate(self.m):
            merge = m.submodules[f"merge{i}"] = BurstMerge(nt, rl)
            for j, t in enumerate(self.t):
                mine = Signal(name=f"resp{j}_to{i}")
                m.d.comb += [
                    mine.eq(t.resp.payload.tag[TAG_BITS:] == i),
                    merge.i[j].valid.eq(t.resp.valid & mine),
                    merge.i[j].payload.data.eq(t.resp.payload.data),
                    merge.i[j].payload.tag.eq(t.resp.payload.tag[:TAG_BITS]),
                    merge.i[j].payload.write.eq(t.resp.payload.write),
                    merge.i[j].payload.last.eq(t.resp.payload.last),
                ]
                ready_from[j].append(merge.i[j].ready & mine)
            wiring.connect(m, merge.o, wiring.flipped(p.resp))
        for j, t in enumerate(self.t):
            m.d.comb += t.resp.ready.eq(Cat(*ready_from[j]).any())
        return m
