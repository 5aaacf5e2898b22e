"""One socket: the tile, its AGCUs and the memory system (HBM and DDR stubs, DMA, host
link, top-level network), the kernel sequencer with its config controller, and the
host-visible registers and performance counters."""

from amaranth import Module, Mux, Signal, unsigned
from amaranth.hdl import ResetInserter
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.memsys import MemorySystem
from hdl.params import MAX_BURST, ParamError

from .agcu.config import agcu_config_layout
from .configbus import INDEX_BITS, ConfigTarget
from .memory.channel import BYTE_COUNTER_BITS
from .memory.config import MemoryMap, dma_desc_layout, mem_port_signature
from .rdn.config import COUNTER_BITS, E, W, switch_counters_layout
from .sequencer import KernelSequencer, SeqActivity, SeqError, SeqPhase, record_beats
from .tile import ConfigUnit, Tile, config_units

__all__ = ["agcu_position", "check_socket", "socket_config_units", "counters_layout",
           "host_registers", "host_port", "Socket"]


def agcu_position(params, k):
    """(side, row) where AGCU ``k`` attaches: even AGCUs on the west edge, odd ones on the
    east edge, spread over the rows."""
    return (W if k % 2 == 0 else E), k * params.rows // params.agcus


#: The fields each config register's size grows with (for :func:`check_socket`'s message).
_REGISTER_FIELDS = {"pcu": "pcu_lanes, pcu_stages", "pmu": "pmu_banks, pcu_lanes",
                    "vec_switch": "rdn_flows", "sca_switch": "rdn_flows",
                    "ctl_switch": "rdn_tracks", "agcu": "agcu_segments, agcu_stores"}


def check_socket(params):
    """The cross-field rules that need the HDL's layouts: every config register within
    the bus's 2**INDEX_BITS words, a launch record within one burst. Raises ParamError
    naming the fields (before anything is elaborated)."""
    seen = set()
    for u in socket_config_units(params):
        if u.name in seen:
            continue
        seen.add(u.name)
        words = -(-data.Layout.cast(u.layout).size // 32)
        if words > 1 << INDEX_BITS:
            raise ParamError(f"{_REGISTER_FIELDS[u.name]}: a {u.name} config register of "
                             f"{words} words; the config bus addresses {1 << INDEX_BITS} a unit")
    rb = record_beats(params)
    if rb > MAX_BURST:
        raise ParamError(f"agcus, rows x cols, hbm_bytes_per_cycle: a launch record of {rb} "
                         f"beats of {params.hbm_bytes_per_cycle} B (the AGCUs' arguments, the "
                         f"unit mask) does not fit one {MAX_BURST}-beat burst")


def socket_config_units(params):
    """Every config register of the socket, by bus id: the tile's, then AGCU k at id
    ``4 x ROWS x COLS + k`` (its row; column -1 on the west edge, COLS on the east)."""
    units = config_units(params)
    base = len(units)
    for k in range(params.agcus):
        side, row = agcu_position(params, k)
        units.append(ConfigUnit(base + k, "agcu", row, -1 if side == W else params.cols,
                                agcu_config_layout(params)))
    return units


def counters_layout(params):
    """The socket's counters the host reads after a run (one wide register; firmware
    decodes it with this layout); the switch ports' counters are the registers
    ``vec_counters[k]`` / ``sca_counters[k]`` (``switch_counters_layout``) beside it. A
    unit's stall / starve cycles are its switch's local-port counters: ``inp[4]`` (its
    output, ``stall`` = the network could not take a packet) and ``out[4..5]`` (its
    inputs, ``starve``)."""
    mm = MemoryMap(params)
    n = params.rows * params.cols
    bytes_ = data.StructLayout({"read": unsigned(BYTE_COUNTER_BITS),
                                "write": unsigned(BYTE_COUNTER_BITS)})
    fields = {
        "unit_busy": data.ArrayLayout(unsigned(COUNTER_BITS), n),
        "dropped": data.ArrayLayout(unsigned(COUNTER_BITS), 2 * n),
        "agcu": data.ArrayLayout(data.StructLayout({
            "done": unsigned(32), "bursts": unsigned(32), "cycles": unsigned(32),
            "reordered": unsigned(32)}), params.agcus),
        "dma": data.StructLayout({"done": unsigned(32), "cycles": unsigned(32)}),
        "seq": data.StructLayout({"launched": unsigned(32), "iterations": unsigned(32),
                                  "load_cycles": unsigned(48), "exec_cycles": unsigned(48),
                                  "copy_cycles": unsigned(48), "cycles": unsigned(48)}),
    }
    for r in mm.regions:
        fields[r.name] = data.ArrayLayout(bytes_, r.channels)
    return data.StructLayout(fields)


def host_registers(params):
    """The socket's registers as the host sees them: {name: wiring member} (``In`` the
    host writes, ``Out`` it reads; ``.array(k)`` one per unit). The socket's ports and the
    RTL device's accesses (:func:`host_port`) both come from here."""
    mm = MemoryMap(params)
    n, a = params.rows * params.cols, params.agcus
    return {
        "go": In(1), "launches": In(mm.addr_bits), "count": In(16), "timeout": In(32),
        "busy": Out(1), "error": Out(SeqError),
        "unit_busy": Out(n), "agcu_busy": Out(a),
        "fault": Out(a), "fault_addr": Out(32).array(a),
        "dma_busy": Out(1), "dma_error": Out(1),
        "counters": Out(counters_layout(params)),
        "vec_counters": Out(switch_counters_layout()).array(n),
        "sca_counters": Out(switch_counters_layout()).array(n),
        "decode_error": Out(1), "credit_error": Out(2 * n),
        "phase": Out(SeqPhase), "decode_addr": Out(mm.addr_bits),
        "activity": Out(SeqActivity),
    }


def host_port(params, name, index=None):
    """The flat port name of host register ``name`` (element ``index`` of an array):
    what the generated Verilog calls it (``fault_addr__1``)."""
    regs = host_registers(params)
    if name not in regs:
        raise KeyError(f"no host register {name!r}; the socket has {', '.join(regs)}")
    count = regs[name].dimensions[0] if regs[name].dimensions else None
    if (index is None) != (count is None) or (count is not None and not 0 <= index < count):
        raise IndexError(f"host register {name!r}: " + (f"index 0 .. {count - 1}, not {index!r}"
                                                          if count else "is not an array"))
    return name if index is None else f"{name}__{index}"


class Socket(wiring.Component):
    """The whole machine behind its host interface.

    Attributes
    ----------
    go, launches, count, timeout : In     start the kernel sequencer on ``count`` launch
                                          records from beat address ``launches``.
    busy : Out(1);  error : Out(SeqError)  the sequencer's state.
    unit_busy : Out(ROWS x COLS);  agcu_busy : Out(agcus)   who is busy now (after a
                                          TIMEOUT: who was still working).
    fault : Out(agcus);  fault_addr : Out(32) x agcus   AGCU segment faults.
    host : In(mem_port_signature)         the host's end of the host link.
    dma : In(stream);  dma_busy, dma_error : Out(1)
    hbm[c], ddr[0] : Out(dram_signature)  backing stores of the memory channels.
    counters : Out(counters_layout)       performance counters;
    vec_counters[k], sca_counters[k]      and those of the switch ports.
    decode_error, credit_error : Out      broken-address / broken-link flags (never
                                          expected); decode_addr : Out   the address.
    phase : Out(SeqPhase)                 where an error stopped the sequencer.
    activity : Out(SeqActivity)           what the sequencer is doing now.

    After an error the sequencer's ``clear`` resets the datapath (tile, AGCUs and their
    configs, memory network, DMA engine; not the memories' contents nor the sequencer's
    counters); what the host reads of the units' state (busy, faults, error flags) is held
    as it was when the error struck until the next ``go``.
    """

    def __init__(self, params):
        check_socket(params)
        self.params = params
        self.mem = MemorySystem(params)
        mm = self.map = MemoryMap(params)
        members = {}
        for name, member in host_registers(params).items():
            members[name] = member
            if name == "fault_addr":        # (port order as before the register map)
                members["host"] = In(mem_port_signature(mm.addr_bits, mm.words))
                members["dma"] = In(stream.Signature(dma_desc_layout(mm.addr_bits, mm.words)))
        for r in mm.regions:
            members[r.name] = self.mem.signature.members[r.name]
        super().__init__(members)

    def _dma_descriptors(self, m, seq, mem):
        """The DMA engine's descriptors: the sequencer's copy records first, else the
        host's (the engine takes one when idle; whoever is not chosen waits)."""
        host, own, to = self.dma, seq.dma, mem.dma
        m.d.comb += [to.valid.eq(own.valid | host.valid),
                     to.payload.eq(Mux(own.valid, own.payload, host.payload)),
                     own.ready.eq(to.ready), host.ready.eq(to.ready & ~own.valid)]

    @staticmethod
    def _held_status(m, seq):
        """``held(out, live)``: host register ``out`` shows ``live``, except while the
        sequencer clears the datapath after an error and until the next ``go``: then what
        ``live`` was when the error struck."""
        hold = Signal()
        m.d.comb += hold.eq(seq.clear | (~seq.busy & (seq.error != SeqError.NONE)))

        def held(out, live):
            kept = Signal(len(out))
            with m.If(~hold):
                m.d.sync += kept.eq(live)
            m.d.comb += out.eq(Mux(hold, kept, live))
        return held

    def elaborate(self, platform):
        m = Module()
        p = self.params
        n, a = p.rows * p.cols, p.agcus
        mem, tile = self.mem, Tile(p)
        seq = m.submodules.seq = KernelSequencer(p)
        m.submodules.mem = ResetInserter(seq.clear)(mem)
        m.submodules.tile = ResetInserter(seq.clear)(tile)
        ctr = self.counters

        # Host side.
        wiring.connect(m, wiring.flipped(self.host), mem.host)
        self._dma_descriptors(m, seq, mem)
        wiring.connect(m, seq.net, mem.seq)
        for r in self.map.regions:
            for c in range(r.channels):
                wiring.connect(m, getattr(mem, r.name)[c],
                               wiring.flipped(getattr(self, r.name)[c]))
                m.d.comb += [ctr[r.name][c].read.eq(getattr(mem, f"{r.name}_read_bytes")[c]),
                             ctr[r.name][c].write.eq(getattr(mem, f"{r.name}_write_bytes")[c])]
        m.d.comb += [
            seq.go.eq(self.go), seq.launches.eq(self.launches), seq.count.eq(self.count),
            seq.timeout.eq(self.timeout), self.busy.eq(seq.busy), self.error.eq(seq.error),
            self.phase.eq(seq.phase), self.activity.eq(seq.activity),
            self.dma_busy.eq(mem.dma_busy), self.dma_error.eq(mem.dma_error),
            seq.net_error.eq(mem.decode_error), seq.link_error.eq(tile.credit_error.any()),
            ctr.dma.done.eq(mem.dma_done), ctr.dma.cycles.eq(mem.dma_cycles),
            seq.dma_done.eq(mem.dma_done), seq.dma_error.eq(mem.dma_error),
        ]
        for name in ("launched", "iterations", "load_cycles", "exec_cycles", "copy_cycles",
                     "cycles"):
            m.d.comb += getattr(ctr.seq, name).eq(getattr(seq, name))

        # Config bus: the sequencer's config controller to the tile and the AGCUs.
        wiring.connect(m, seq.cfg, tile.cfg)
        agcu_units = [u for u in socket_config_units(p) if u.name == "agcu"]
        for k, u in enumerate(agcu_units):
            t = ConfigTarget(u.layout, u.id)
            m.submodules[f"agcu_cfg{k}"] = ResetInserter(seq.clear)(t)
            m.d.comb += [t.bus.payload.eq(seq.cfg.payload),
                         t.bus.valid.eq(seq.cfg.valid & seq.cfg.ready),
                         mem.agcu_config[k].eq(t.config)]

        # Kernel control.
        m.d.comb += [tile.start.eq(seq.tile_start), tile.iters.eq(seq.iters),
                     mem.iters.eq(seq.iters), mem.chain.eq(seq.chain),
                     seq.tile_busy.eq(tile.busy)]
        held = self._held_status(m, seq)
        held(self.unit_busy, tile.busy)
        held(self.decode_error, mem.decode_error)
        held(self.decode_addr, mem.decode_addr)
        held(self.credit_error, tile.credit_error)
        for k in range(a):
            status = mem.agcu_status[k]
            m.d.comb += [mem.agcu_start[k].eq(seq.agcu_start[k]),
                         mem.agcu_offset[k].eq(seq.agcu_offset[k]),
                         mem.agcu_stride[k].eq(seq.agcu_stride[k]),
                         seq.agcu_busy[k].eq(status.busy),
                         seq.agcu_fault[k].eq(status.fault)]
            held(self.agcu_busy[k], status.busy)
            held(self.fault[k], status.fault)
            held(self.fault_addr[k], status.fault_addr)
            for name in ("done", "bursts", "cycles", "reordered"):
                m.d.comb += getattr(ctr.agcu[k], name).eq(getattr(status, name))

        # AGCUs on the edge ports of the vector fabric; other edge ports are closed.
        attached = {agcu_position(p, k): k for k in range(a)}
        for fabric in ("vec", "sca"):
            for side, side_name in ((W, "west"), (E, "east")):
                for r in range(p.rows):
                    i = getattr(tile, f"{fabric}_{side_name}_in")[r]
                    o = getattr(tile, f"{fabric}_{side_name}_out")[r]
                    k = attached.get((side, r)) if fabric == "vec" else None
                    if k is None:
                        m.d.comb += [i.valid.eq(0), o.ready.eq(0)]
                    else:
                        wiring.connect(m, mem.vout[k], i)
                        wiring.connect(m, o, mem.vin[k])

        # Counters.
        for k in range(n):
            busy_cycles = Signal(COUNTER_BITS, name=f"busy_cycles{k}")
            m.d.sync += busy_cycles.eq(busy_cycles + tile.busy[k])
            m.d.comb += [ctr.unit_busy[k].eq(busy_cycles),
                         self.vec_counters[k].eq(tile.vec_counters[k]),
                         self.sca_counters[k].eq(tile.sca_counters[k]),
                         ctr.dropped[k].eq(tile.dropped[0][k]),
                         ctr.dropped[n + k].eq(tile.dropped[1][k])]
        return m
