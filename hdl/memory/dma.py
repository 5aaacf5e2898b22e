"""DMA engine: bulk copies between memory regions (DDR -> HBM, HBM -> DDR) by descriptor."""

from amaranth import Const, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .burst import block_room, cut
from .config import BURST_BITS, dma_desc_layout, mem_port_signature
from .slots import BurstSlots

__all__ = ["DmaEngine"]


class DmaEngine(wiring.Component):
    """Copies ``count`` words from ``src`` to ``dst`` (beat addresses) on its own.

    Reads go out in bursts that stay inside one MAX_BURST block of both the source and
    the destination, up to ``tags`` at a time; each response burst lands in a buffer slot
    reserved when it was requested (so responses are always accepted), and a completed
    burst is written out as soon as the port is free — in whatever order the bursts
    came back. A descriptor is done when every write is acknowledged; ``done`` counts
    finished descriptors.

    A descriptor whose source or destination runs past ``beats`` is refused: ``error``
    is set and nothing is read or written.

    Attributes
    ----------
    desc : In(stream)                 descriptors (taken when idle).
    net : Out(mem_port_signature)     towards the top-level network.
    busy, error : Out(1);  done : Out(32)
    busy_cycles : Out(32)             cycles spent on descriptors (taken to done).
    """

    def __init__(self, *, words, addr_bits, beats, tags):
        if tags & (tags - 1) or tags < 2:
            raise ValueError(f"DMA tags must be a power of two >= 2, got {tags}")
        self.words, self.addr_bits, self.beats, self.tags = words, addr_bits, beats, tags
        super().__init__({
            "desc": In(stream.Signature(dma_desc_layout(addr_bits, words))),
            "net": Out(mem_port_signature(addr_bits, words)),
            "busy": Out(1), "error": Out(1), "done": Out(32), "busy_cycles": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        W, T = self.words, self.tags
        tbits = (T - 1).bit_length()
        wbits = (W - 1).bit_length()
        d = self.desc.payload
        # Descriptor -> beats and the mask of the last beat.
        nbeats = Signal(len(d.count) - wbits + 1)
        tail = Signal(W)
        m.d.comb += nbeats.eq((d.count + W - 1) >> wbits)
        if wbits:
            rem = d.count[:wbits]
            m.d.comb += tail.eq(Mux(rem == 0, (1 << W) - 1, (Const(1, W + 1) << rem) - 1))
        else:
            m.d.comb += tail.eq(1)
        fits = Signal()
        m.d.comb += fits.eq((d.src + nbeats <= self.beats) & (d.dst + nbeats <= self.beats))

        active = Signal()
        src = Signal(self.addr_bits)
        dst = Signal(self.addr_bits)
        left = Signal.like(nbeats)
        last_mask = Signal(W)
        issued = Signal(32)
        acked = Signal(32)
        m.d.comb += [self.desc.ready.eq(~active), self.busy.eq(active)]
        with m.If(active):
            m.d.sync += self.busy_cycles.eq(self.busy_cycles + 1)
        with m.If(self.desc.valid & ~active):
            with m.If(fits):
                m.d.sync += [active.eq(1), src.eq(d.src), dst.eq(d.dst), left.eq(nbeats),
                             last_mask.eq(tail), issued.eq(0), acked.eq(0)]
            with m.Else():
                m.d.sync += self.error.eq(1)

        # Burst slots: read bursts land there, completed ones queue for writing.
        info_l = data.StructLayout({"dst": self.addr_bits, "len": BURST_BITS, "mask": W})
        slots = m.submodules.slots = BurstSlots(words=W, tags=T, info=info_l)
        wiring.connect(m, wiring.flipped(self.net.resp), slots.resp)
        ready_q = m.submodules.ready_q = fifo.SyncFIFOBuffered(width=tbits, depth=T)
        m.d.comb += [ready_q.w_data.eq(slots.landed_tag), ready_q.w_en.eq(slots.landed)]

        # Read burst: up to the next block boundary of source and destination.
        room = cut(m, block_room(m, src, "room_s"), block_room(m, dst, "room_d"), "room")
        n = cut(m, left, room, "n")
        want_read = Signal()
        m.d.comb += want_read.eq(active & (left != 0) & slots.free)

        # Write side: a completed burst, its request then its beats.
        wphase = Signal()
        wbeat = Signal(BURST_BITS)
        wtag = Signal(tbits)
        winfo = slots.read_info
        m.d.comb += [wtag.eq(ready_q.r_data), slots.read_tag.eq(wtag),
                     slots.read_beat.eq(wbeat)]
        want_write = Signal()
        m.d.comb += want_write.eq(ready_q.r_rdy & ~wphase)

        req = self.net.req
        with m.If(want_write):
            m.d.comb += [req.valid.eq(1), req.payload.addr.eq(winfo.dst),
                         req.payload.len.eq(winfo.len), req.payload.write.eq(1),
                         req.payload.tag.eq(wtag)]
            with m.If(req.ready):
                m.d.sync += [wphase.eq(1), wbeat.eq(0)]
        with m.Elif(want_read):
            m.d.comb += [req.valid.eq(1), req.payload.addr.eq(src),
                         req.payload.len.eq(n - 1), req.payload.tag.eq(slots.next_tag),
                         slots.alloc.eq(req.ready),
                         slots.alloc_info.dst.eq(dst), slots.alloc_info.len.eq(n - 1),
                         slots.alloc_info.mask.eq(Mux(left == n, last_mask, (1 << W) - 1))]
            with m.If(req.ready):
                m.d.sync += [src.eq(src + n), dst.eq(dst + n), left.eq(left - n),
                             issued.eq(issued + 1)]

        wd = self.net.wdata
        wlast = Signal()
        m.d.comb += [
            wlast.eq(wbeat == winfo.len),
            wd.valid.eq(wphase),
            wd.payload.data.eq(slots.read_data),
            wd.payload.mask.eq(Mux(wlast, winfo.mask, (1 << W) - 1)),
        ]
        with m.If(wd.valid & wd.ready):
            m.d.sync += wbeat.eq(wbeat + 1)
            with m.If(wlast):
                m.d.sync += wphase.eq(0)
                m.d.comb += [ready_q.r_en.eq(1), slots.release.eq(1),
                             slots.release_tag.eq(wtag)]
        with m.If(slots.acked):
            m.d.sync += acked.eq(acked + 1)
        with m.If(active & (left == 0) & (acked == issued) & ~want_write & ~wphase
                  & ~ready_q.r_rdy & slots.idle):
            m.d.sync += [active.eq(0), self.done.eq(self.done + 1)]
        return m
