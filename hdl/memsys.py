"""The memory system of a socket: HBM and DDR controller stubs (their channels), the host
link, the DMA engine, the AGCUs and the top-level network joining them.

Above both ``hdl.memory`` (channels, TLN, DMA, host link) and ``hdl.agcu``, which uses the
memory's request layouts: the composition lives here so neither imports the other back."""

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.agcu.agcu import Agcu, agcu_status_signature
from hdl.agcu.config import agcu_args_layout, agcu_config_layout
from hdl.counters import ITER_BITS
from hdl.memory.channel import BYTE_COUNTER_BITS, MemChannel, dram_signature
from hdl.memory.config import MemoryMap, beat_addr_bits, dma_desc_layout, mem_port_signature
from hdl.memory.dma import DmaEngine
from hdl.memory.hostlink import HostLink
from hdl.memory.tln import Tln, connect_channel
from hdl.packet import vector_packet_layout

__all__ = ["MemorySystem"]


class MemorySystem(wiring.Component):
    """Requesters on the network: the AGCUs ``0 .. agcus-1``, then the DMA engine, the
    host link and the kernel sequencer (see :meth:`requester`).

    Attributes
    ----------
    agcu_config[k], agcu_offset[k], agcu_start[k] : In   AGCU k's program, arguments
                                          (segment offsets of its load and store streams)
                                          and start pulse.
    agcu_stride[k], iters, chain : In    kernel looping: per-iteration stride of each
                                          stream, iterations and whether they pass data
                                          through memory (shared by every AGCU; each
                                          AGCU's loads then wait for every AGCU's stores
                                          of the iteration before).
    agcu_status[k] : Out(agcu_status_signature())   its status (see
                                              :class:`hdl.agcu.agcu.Agcu`).
    vout[k], vin[k] : stream                 its RDN side (vector packets).
    host : In(mem_port_signature)         the host's end of the host link.
    seq : In(mem_port_signature)          the kernel sequencer's port (launch records and
                                          bitstreams).
    dma : In(stream)                      DMA descriptors.
    dma_busy, dma_error : Out(1);  dma_done, dma_cycles : Out(32)   (see DmaEngine)
    hbm[c], ddr[0] : Out(dram_signature)  backing stores of every channel.
    hbm_read_bytes[c], hbm_write_bytes[c], ddr_read_bytes[0], ddr_write_bytes[0] : Out(48)
    decode_error : Out(1);  decode_addr : Out
    """

    def __init__(self, params):
        self.params = params
        self.map = mm = MemoryMap(params)
        port = mem_port_signature(mm.addr_bits, mm.words)
        a = params.agcus
        packets = stream.Signature(vector_packet_layout(params))
        members = {
            "agcu_config": In(agcu_config_layout(params)).array(a),
            "agcu_offset": In(agcu_args_layout(params)).array(a),
            "agcu_stride": In(agcu_args_layout(params)).array(a),
            "iters": In(ITER_BITS), "chain": In(1),
            "agcu_start": In(1).array(a),
            "vout": Out(packets).array(a),
            "vin": In(packets).array(a),
            "host": In(port),
            "seq": In(port),
            "dma": In(stream.Signature(dma_desc_layout(mm.addr_bits, mm.words))),
            "dma_busy": Out(1), "dma_error": Out(1), "dma_done": Out(32),
            "dma_cycles": Out(32),
            "decode_error": Out(1), "decode_addr": Out(mm.addr_bits),
        }
        members["agcu_status"] = Out(agcu_status_signature()).array(a)
        for r in mm.regions:
            members[r.name] = Out(dram_signature(beat_addr_bits(r.beats // r.channels),
                                                 mm.words)).array(r.channels)
            for kind in ("read", "write"):
                members[f"{r.name}_{kind}_bytes"] = Out(BYTE_COUNTER_BITS).array(r.channels)
        super().__init__(members)

    def requester(self, name):
        """Network port number of ``"agcu<k>"``, ``"dma"`` or ``"host"``."""
        a = self.params.agcus
        if name == "dma":
            return a
        if name == "host":
            return a + 1
        if name == "seq":
            return a + 2
        if name.startswith("agcu") and name[4:].isdigit() and int(name[4:]) < a:
            return int(name[4:])
        raise KeyError(f"no requester {name!r}")

    def elaborate(self, platform):
        m = Module()
        mm, p = self.map, self.params
        tln = m.submodules.tln = Tln(masters=p.agcus + 3, regions=mm.regions, words=mm.words,
                                     addr_bits=mm.addr_bits)
        agcus = []
        for k in range(p.agcus):
            u = m.submodules[f"agcu{k}"] = Agcu(p)
            agcus.append(u)
            wiring.connect(m, u.net, tln.m[k])
            wiring.connect(m, u.vout, wiring.flipped(self.vout[k]))
            wiring.connect(m, wiring.flipped(self.vin[k]), u.vin)
            m.d.comb += [u.config.eq(self.agcu_config[k]), u.offset.eq(self.agcu_offset[k]),
                         u.stride.eq(self.agcu_stride[k]), u.iters.eq(self.iters),
                         u.chain.eq(self.chain),
                         u.start.eq(self.agcu_start[k])]
            wiring.connect(m, u.status, wiring.flipped(self.agcu_status[k]))
        # The least `stored` of all AGCUs: what a chained launch's loads wait for.
        least = agcus[0].stored
        for u in agcus[1:]:
            least = Mux(u.stored < least, u.stored, least)
        stored_min = Signal(ITER_BITS)
        m.d.comb += stored_min.eq(least)
        for u in agcus:
            m.d.comb += u.stored_min.eq(stored_min)
        dma = m.submodules.dma = DmaEngine(words=mm.words, addr_bits=mm.addr_bits,
                                           beats=mm.beats, tags=p.dma_tags)
        wiring.connect(m, wiring.flipped(self.dma), dma.desc)
        wiring.connect(m, dma.net, tln.m[self.requester("dma")])
        m.d.comb += [self.dma_busy.eq(dma.busy), self.dma_error.eq(dma.error),
                     self.dma_done.eq(dma.done), self.dma_cycles.eq(dma.busy_cycles)]
        link = m.submodules.host_link = HostLink(words=mm.words, addr_bits=mm.addr_bits,
                                                 latency=mm.host_latency,
                                                 interval=mm.host_interval)
        wiring.connect(m, wiring.flipped(self.host), link.host)
        wiring.connect(m, link.net, tln.m[self.requester("host")])
        wiring.connect(m, wiring.flipped(self.seq), tln.m[self.requester("seq")])
        m.d.comb += [self.decode_error.eq(tln.decode_error), self.decode_addr.eq(tln.decode_addr)]

        for j, (r, c) in enumerate(tln.targets):
            ch = m.submodules[f"{r.name}{c}"] = MemChannel(
                words=mm.words, addr_bits=beat_addr_bits(r.beats // r.channels),
                latency=r.latency, outstanding=r.outstanding, interval=r.interval,
                tag_bits=len(tln.t[j].req.payload.tag), jitter=p.mem_jitter, seed=j + 1)
            connect_channel(m, tln.t[j], ch)
            wiring.connect(m, ch.dram, wiring.flipped(getattr(self, r.name)[c]))
            m.d.comb += [getattr(self, f"{r.name}_read_bytes")[c].eq(ch.read_bytes),
                         getattr(self, f"{r.name}_write_bytes")[c].eq(ch.write_bytes)]
        return m
