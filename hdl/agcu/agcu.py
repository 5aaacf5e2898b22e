"""Address generator and coalescing unit (AGCU): tensors in memory <-> vector packets."""

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.arbiter import RoundRobin
from hdl.counters import ITER_BITS, MAX_COUNTERS, CounterChain
from hdl.memory.config import BURST_BITS, MAX_BURST, MemoryMap, mem_port_signature
from hdl.memory.reader import BurstReader
from hdl.packet import vector_packet_layout

from .config import agcu_args_layout, agcu_config_layout, burst_layout, stores, streams
from .pack import Packer, Unpacker
from .splitter import BurstSplitter

__all__ = ["agcu_status_signature", "Agcu"]


def agcu_status_signature():
    """What an AGCU reports (the AGCU's ``status``, the memory system's ``agcu_status[k]``,
    read by the sequencer, the socket's registers and its counters): ``busy``, ``done``
    (finished starts), ``fault`` / ``fault_addr``, ``bursts``, ``cycles``, ``reordered``."""
    return wiring.Signature({
        "busy": Out(1), "done": Out(32), "fault": Out(1), "fault_addr": Out(signed(32)),
        "bursts": Out(32), "cycles": Out(32), "reordered": Out(32),
    })


class Agcu(wiring.Component):
    """One AGCU with a load and ``agcu_stores`` store streams that run at once, each a
    counter chain (the start of each run of its access) and a splitter (checks,
    translates and cuts runs into bursts):

    * load (``config.load``, and before it in every iteration ``config.load2``: see
      ``agcu_config_layout``): bursts are requested with tags (up to ``agcu_tags`` in
      flight, each with a reorder-buffer slot reserved, so responses are always
      accepted), responses land in their slot in whatever order they come, and slots
      drain in request order into the packer: dense vector packets with header
      ``config.hdr`` on ``vout``, the last one flagged ``last``;
    * store (``config.store``): vector packets from ``vin`` are unpacked into masked
      beats; a burst's write request goes out once all its beats are buffered, so it
      holds its memory controller only for those beats. Write requests go before read
      requests on the shared network port;
    * store2 .. (``config.store2`` .., ``params.agcu_stores`` store streams in all): the
      same for the packets arriving with flow id ``config.store2_flow`` .., so several
      producers' results share the AGCU (their write bursts take turns, round robin).

    ``offset.load`` / ``offset.store`` / ``offset.store2`` .. (the kernel's arguments, set
    by the kernel sequencer) move each stream's segment: its base is ``base + offset`` words.

    Kernel looping: ``iters`` (with ``start``) runs every enabled stream's access that many
    times back to back, iteration ``i`` at ``i * stride.<stream>`` words further into the
    segment (checked against it like every address). Each iteration's last load packet is
    flushed and flagged ``last`` as in a run of its own, so consumers see the same packets.
    ``stored``: the iterations whose stores are all acknowledged (all ones while idle or
    without a store stream). With ``chain`` (a launch whose iterations pass data through
    memory: iteration i's loads read what iteration i-1 stored), both loads start
    iteration i only once ``stored_min`` (the least ``stored`` of every AGCU) reaches i —
    so no read of the next iteration queues at a memory channel ahead of this one's last
    writes.

    ``start`` (while not ``busy``) begins the enabled streams; ``busy`` drops once every
    burst is answered (load: delivered; store: acknowledged); ``done`` counts finished
    starts.
    A segment violation raises ``fault`` / ``fault_addr`` (see :class:`BurstSplitter`): the
    access stops issuing, its bursts in flight complete, and it finishes with the fault
    flag up. ``bursts`` counts bursts requested, ``cycles`` busy cycles, ``reordered``
    read bursts that arrived while an older one was still missing.
    """

    def __init__(self, params):
        self.params = params
        self.map = mm = MemoryMap(params)
        self.tags = params.agcu_tags
        super().__init__({
            "config": In(agcu_config_layout(params)),
            "offset": In(agcu_args_layout(params)),
            "stride": In(agcu_args_layout(params)), "iters": In(ITER_BITS),
            "chain": In(1), "stored_min": In(ITER_BITS), "stored": Out(ITER_BITS),
            "start": In(1), "status": Out(agcu_status_signature()),
            "vout": Out(stream.Signature(vector_packet_layout(params))),
            "vin": In(stream.Signature(vector_packet_layout(params))),
            "net": Out(mem_port_signature(mm.addr_bits, mm.words)),
        })

    def elaborate(self, platform):
        m = Module()
        p, cfg = self.params, self.config
        W, T = self.map.words, self.tags
        bl = burst_layout(p)
        busy = Signal()
        begin = Signal()
        m.d.comb += [begin.eq(self.start & ~busy), self.status.busy.eq(busy)]

        bqs, parts = self._address_streams(m, begin, bl)
        splits = [split for split, _ in parts.values()]
        m.d.comb += self.status.fault.eq(Cat(sp.fault for sp in splits).any())
        fault_addr = splits[-1].fault_addr
        for sp in reversed(splits[:-1]):
            fault_addr = Mux(sp.fault, sp.fault_addr, fault_addr)
        m.d.comb += self.status.fault_addr.eq(fault_addr)

        net = self.net
        issued = Signal(32)
        finished = Signal(32)                   # bursts delivered (read) or acknowledged

        # ---- read: tagged bursts, reordered, into the packer ----
        reader = m.submodules.reader = BurstReader(words=W, addr_bits=self.map.addr_bits,
                                                   tags=T, info=bl)
        wiring.connect(m, wiring.flipped(net.resp), reader.resp)
        paths = {name: self._write_path(m, name, begin, bqs, bl) for name in stores(self.params)}
        self._steer(m, paths)
        write_req, wnext, wtake, wquiet, wlast = self._write_arbiter(m, paths, bl)
        self._stored(m, begin, busy, wtake, wlast, reader.acked)
        self._read_turns(m, begin, bqs, reader)

        with m.If(write_req):
            m.d.comb += [net.req.valid.eq(1), net.req.payload.addr.eq(wnext.addr),
                         net.req.payload.len.eq(wnext.len), net.req.payload.write.eq(1)]
        with m.Else():
            wiring.connect(m, reader.req, wiring.flipped(net.req))
        sent = net.req.valid & net.req.ready
        m.d.comb += wtake.eq(sent & write_req)
        with m.If(sent):
            m.d.sync += [issued.eq(issued + 1), self.status.bursts.eq(self.status.bursts + 1)]

        with m.If(reader.reordered):
            m.d.sync += self.status.reordered.eq(self.status.reordered + 1)
        # A load burst can drain in the cycle a store burst is acknowledged.
        m.d.sync += finished.eq(finished + reader.drained + reader.acked)

        packer = self._packer(m, reader, begin)

        # Access lifetime.
        with m.If(begin):
            m.d.sync += [busy.eq(1), issued.eq(0), finished.eq(0)]
        with m.Elif(busy):
            m.d.sync += self.status.cycles.eq(self.status.cycles + 1)
            # FIFO levels, not r_rdy: a buffered FIFO holds an entry a cycle before it
            # shows it.
            quiet = ((issued == finished) & ~packer.busy & wquiet &
                     Cat(~chain.busy & split.idle & ~split.o.valid & (bqs[name].level == 0)
                         for name, (split, chain) in parts.items()).all())
            with m.If(quiet):
                m.d.sync += [busy.eq(0), self.status.done.eq(self.status.done + 1)]
        return m

    def _address_streams(self, m, begin, bl):
        """Each stream (load, store, store2): its chain's (address-moving) counter values
        summed, plus the iteration's offset (``stride`` per kernel-looping iteration), give
        the start of each run; the splitter checks, translates and cuts runs into bursts,
        queued. Returns ({name: burst queue}, {name: (splitter, chain)})."""
        cfg = self.config
        bqs, parts = {}, {}
        for name in streams(self.params):
            acc = cfg[name]
            chain = m.submodules[f"{name}_chain"] = CounterChain(1)
            m.d.comb += [chain.config.eq(acc.chain), chain.start.eq(begin & acc.en),
                         chain.repeat.eq(self.iters)]
            split = m.submodules[f"{name}_split"] = BurstSplitter(self.params)
            step = chain.o.payload
            seg = cfg.segments[acc.segment]
            hold = self._fence(m, begin, chain, name) if name.startswith("load") else 0
            it_off = Signal(signed(32), name=f"{name}_iter_offset")
            with m.If(begin):
                m.d.sync += it_off.eq(0)
            with m.Elif(chain.o.valid & chain.o.ready & step.last):
                m.d.sync += it_off.eq(it_off + self.stride[name].as_signed())
            m.d.comb += [
                split.seg.base.eq(seg.base + self.offset[name]), split.seg.size.eq(seg.size),
                split.run.eq(acc.run), split.start.eq(begin),
                split.i.valid.eq(chain.o.valid & ~hold), chain.o.ready.eq(split.i.ready & ~hold),
                split.i.payload.offset.eq(it_off + sum(Mux(acc.addr_en[i], step.value[i], 0)
                                                       for i in range(MAX_COUNTERS))),
                split.i.payload.last.eq(step.last),
            ]
            bq = bqs[name] = m.submodules[f"{name}_bq"] = fifo.SyncFIFOBuffered(width=bl.size,
                                                                                depth=4)
            wiring.connect(m, split.o, bq.w_stream)
            parts[name] = (split, chain)
        return bqs, parts

    def _fence(self, m, begin, chain, name):
        """Whether load stream ``name``'s runs wait: with ``chain``, its iteration i
        (i >= 1) waits until every AGCU has stored iteration i-1 (``stored_min`` >= i)."""
        it = Signal(ITER_BITS, name=f"{name}_iteration")
        with m.If(begin):
            m.d.sync += it.eq(0)
        with m.Elif(chain.o.valid & chain.o.ready & chain.o.payload.last):
            m.d.sync += it.eq(it + 1)
        hold = Signal(name=f"{name}_fenced")
        m.d.comb += hold.eq(self.chain & (it != 0) & (self.stored_min < it))
        return hold

    def _write_path(self, m, name, begin, bqs, bl):
        """Store stream ``name``: the unpacker (vector packets -> masked beats per store
        burst), the beat buffer and the bursts whose beats are all buffered. Returns
        (unpacker, beat buffer, ready bursts); the unpacker's input is steered by
        :meth:`_steer`."""
        W, L = self.map.words, self.params.pcu_lanes
        unpack = m.submodules[f"{name}_unpack"] = Unpacker(W, L, bl)
        wbuf = m.submodules[f"{name}_wbuf"] = fifo.SyncFIFOBuffered(
            width=len(unpack.o.payload.as_value()), depth=2 * MAX_BURST)
        wq = m.submodules[f"{name}_wq"] = fifo.SyncFIFOBuffered(width=bl.size, depth=4)
        m.d.comb += [
            unpack.start.eq(begin),
            unpack.i.payload.eq(self.vin.payload.body),
            unpack.bursts.valid.eq(bqs[name].r_rdy),
            unpack.bursts.payload.eq(data.View(bl, bqs[name].r_data)),
            bqs[name].r_en.eq(unpack.bursts.ready),
        ]
        wiring.connect(m, unpack.o, wbuf.w_stream)
        wiring.connect(m, unpack.done, wq.w_stream)
        return unpack, wbuf, wq

    def _steer(self, m, paths):
        """``vin`` into the unpacker of ``store2`` .. for packets with its flow id (where
        that stream is on), into ``store``'s otherwise; only while busy and that stream is
        on. Every store stream drains into memory, so a packet waiting for its stream never
        waits on another."""
        cfg, vin = self.config, self.vin
        by_flow = list(paths)[1:]
        hit = {}
        for name in by_flow:
            hit[name] = Signal(name=f"{name}_hit")
            m.d.comb += hit[name].eq(vin.payload.hdr.flow == cfg[f"{name}_flow"])
        hit["store"] = ~Cat(hit[n] & cfg[n].en for n in by_flow).any() if by_flow else 1
        for name, (unpack, _, _) in paths.items():
            on = Signal(name=f"{name}_on")
            m.d.comb += [on.eq(hit[name] & cfg[name].en & self.status.busy),
                         unpack.i.valid.eq(vin.valid & on)]
            with m.If(on):
                m.d.comb += vin.ready.eq(unpack.i.ready)

    def _write_arbiter(self, m, paths, bl):
        """One write burst at a time on the network port, the store streams' ready bursts
        taken round robin; the write beats of the burst requested last (the next request
        may go with the last beat). Returns (a write request goes now, its burst, the
        request was taken (driven by the caller), nothing of the writes is left in
        flight)."""
        net = self.net
        wqs = [paths[n][2] for n in paths]
        wbufs = [paths[n][1] for n in paths]
        arb = m.submodules.warb = RoundRobin(len(wqs))
        wphase = Signal()
        wsel = Signal(range(len(wqs)))
        wleft = Signal(BURST_BITS)
        m.d.comb += arb.request.eq(Cat(q.r_rdy for q in wqs))
        wnext = data.View(bl, wqs[0].r_data)
        for i, q in enumerate(wqs[1:], 1):
            wnext = data.View(bl, Mux(arb.index == i, q.r_data, wnext.as_value()))
        rdy = Signal()
        cur = Signal.like(wbufs[0].r_data)
        with m.Switch(wsel):
            for i, wbuf in enumerate(wbufs):
                with m.Case(i):
                    m.d.comb += [cur.eq(wbuf.r_data), rdy.eq(wbuf.r_rdy),
                                 wbuf.r_en.eq(wphase & net.wdata.ready)]
        m.d.comb += [net.wdata.valid.eq(wphase & rdy), net.wdata.payload.eq(cur)]
        wfin = Signal()
        m.d.comb += wfin.eq(net.wdata.valid & net.wdata.ready & (wleft == 0))
        with m.If(net.wdata.valid & net.wdata.ready):
            m.d.sync += wleft.eq(wleft - 1)
            with m.If(wleft == 0):
                m.d.sync += wphase.eq(0)
        write_req, take = Signal(), Signal()
        m.d.comb += [write_req.eq(arb.grant.any() & (~wphase | wfin)), arb.take.eq(take)]
        with m.If(take):
            for i, wq in enumerate(wqs):
                m.d.comb += wq.r_en.eq(arb.grant[i])
            m.d.sync += [wphase.eq(1), wleft.eq(wnext.len), wsel.eq(arb.index)]
        quiet = Signal()
        m.d.comb += quiet.eq(~wphase & Cat(q.level == 0 for q in wqs).all())
        last = Signal(len(wqs))          # the burst taken ends an iteration of stream i
        m.d.comb += last.eq(Mux(take & wnext.last, arb.grant, 0))
        return write_req, wnext, take, quiet, last

    def _stored(self, m, begin, busy, take, last, acked):
        """``stored``: once every write issued is acknowledged, the least number of
        iteration ends issued by an enabled store stream."""
        cfg, names = self.config, stores(self.params)
        w_out = Signal(32)                  # write bursts issued, not yet acknowledged
        m.d.sync += w_out.eq(w_out + take - acked)
        ends = [Signal(ITER_BITS, name=f"{n}_ends") for n in names]
        done = Signal(ITER_BITS)
        top = (1 << ITER_BITS) - 1
        low = Const(top, ITER_BITS)
        for n, e, bit in zip(names, ends, last):
            m.d.sync += e.eq(e + bit)
            low = Mux(cfg[n].en & (e < low), e, low)
        with m.If(begin):
            m.d.sync += [w_out.eq(0), done.eq(0)] + [e.eq(0) for e in ends]
        with m.Elif(w_out == 0):
            m.d.sync += done.eq(low)
        m.d.comb += self.stored.eq(Mux(busy & Cat(cfg[n].en for n in names).any(), done, top))

    def _packer(self, m, reader, begin):
        """Read bursts, in request order, packed into vector packets with the configured
        RDN header."""
        W, L = self.map.words, self.params.pcu_lanes
        packer = m.submodules.packer = Packer(W, L)
        beat = reader.o.payload
        m.d.comb += [
            packer.start.eq(begin),
            packer.i.valid.eq(reader.o.valid), reader.o.ready.eq(packer.i.ready),
            packer.i.payload.data.eq(beat.data),
            packer.i.payload.lo.eq(Mux(beat.first, beat.info.lo, 0)),
            packer.i.payload.hi.eq(Mux(beat.last, beat.info.hi, W)),
            packer.i.payload.last.eq(beat.last & beat.info.last),
            self.vout.payload.body.eq(packer.o.payload),
            self.vout.valid.eq(packer.o.valid), packer.o.ready.eq(self.vout.ready),
        ]
        # Packets leave in the order of the read turns: load2's up to its `last`, then
        # load's, and so on; each with its stream's header.
        cfg = self.config
        second = self._turn(m, begin, self.vout.valid & self.vout.ready &
                            packer.o.payload.last, "vout_load2")
        m.d.comb += self.vout.payload.hdr.eq(Mux(second, cfg.hdr2, cfg.hdr))
        return packer

    def _turn(self, m, begin, turn_end, name):
        """Whose turn it is, ``load2``'s (1) or ``load``'s (0): ``load2``'s first in every
        iteration where it is on, then each ``turn_end`` passes the turn on."""
        on = self.config.load2.en
        second = Signal(name=name)
        with m.If(begin):
            m.d.sync += second.eq(on)
        with m.Elif(turn_end & on):
            m.d.sync += second.eq(~second)
        return second

    def _read_turns(self, m, begin, bqs, reader):
        """The read bursts of ``load2`` and ``load`` into the reader, by turns: each
        iteration's whole ``load2`` access (when on), then ``load``'s (a turn ends with the
        burst that carries ``last``)."""
        bl = burst_layout(self.params)
        q1, q2 = bqs["load"], bqs["load2"]
        taken = reader.bursts.valid & reader.bursts.ready
        second = Signal()
        head = data.View(bl, Mux(second, q2.r_data, q1.r_data))
        m.d.comb += second.eq(self._turn(m, begin, taken & head.last, "read_load2"))
        m.d.comb += [
            reader.bursts.valid.eq(Mux(second, q2.r_rdy, q1.r_rdy)),
            reader.bursts.payload.addr.eq(head.addr), reader.bursts.payload.len.eq(head.len),
            reader.bursts.payload.info.eq(head),
            q1.r_en.eq(~second & reader.bursts.ready), q2.r_en.eq(second & reader.bursts.ready),
        ]
