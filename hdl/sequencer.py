"""Kernel sequencer: runs a list of kernel launches from memory without the host.

A *launch record* (``launch_layout``, packed by ``firmware/runtime`` with the same
layout) says which program to load (``program``: beat address of its bitstream,
``beats`` config beats; 0 = keep the program already loaded), which AGCUs the kernel
uses (``units``: tile positions, row-major; ``agcus``), the arguments of each AGCU stream
(``args[k].load.offset``: words added to its segment base) and how many times to run it
(``iterations``: kernel looping).

A *copy record* (``copy`` = 1) runs no kernel: the sequencer hands the DMA engine the
descriptor ``program`` -> ``dst`` (beat addresses), ``count`` words, and goes on when
the copy is done (every write acknowledged; counted in ``copy_cycles``) — e.g. an expert's
weights switched from DDR into an HBM slot before the launch that uses them, without the
host. The program loaded stays loaded. A refused descriptor stops the sequencer with
``DMA``.

Kernel looping is one pipelined dataflow, not a loop of launches: the units are started
once with ``iters`` = the record's iterations, and every unit repeats its program that
many times back to back (the loop is an outer counter of each unit's chains); each AGCU
steps its streams by ``args[k].<stream>.stride`` words per iteration itself. So iteration
i+1's loads start as soon as the AGCUs have issued iteration i's, while iteration i still
computes and drains: there is no synchronization boundary between iterations — except
where the record says ``chained`` (iteration i reads through ``load2`` what iteration i-1
stored: each AGCU's loads of iteration i then wait until every AGCU's stores of
iteration i-1 are acknowledged, while the units run on). (Its
baselines are records of one iteration each: with ``beats`` = 0, the program stays
resident; with the program, it reloads.)

For every record: fetch it, load the program (config controller: the bitstream streams
from HBM/DDR onto the config bus, one config beat per cycle, counted in
``load_cycles``), load the arguments, start the kernel's tile units and AGCUs, and wait
until those AGCUs are idle and no tile unit is busy (counted in ``exec_cycles``). An
AGCU fault, a request outside memory (``net_error``), a broken link (``link_error``), a
program whose checksum fails, or a record fetch, program load, launch or copy running
longer than ``timeout`` cycles (if not 0) stops the sequencer with ``error`` set and
``phase`` saying where; it never hangs. It then asserts ``clear`` for a few cycles (the
socket resets its datapath with it: units, switches, AGCUs, DMA engine, memory network;
their programs too) so that the next list starts from a clean machine.
"""

import contextlib

from amaranth import Cat, Module, Signal, unsigned
from amaranth.hdl import ResetInserter
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.agcu.config import agcu_args_layout, streams, word_bits
from hdl.counters import ITER_BITS
from hdl.memory.config import MAX_BURST, MemoryMap, dma_desc_layout, mem_port_signature
from hdl.memory.burst import block_room, cut
from hdl.memory.reader import BurstReader

from .configbus import BEAT_WORDS, COUNT_BITS, ConfigLoader, config_beat_layout

__all__ = ["SeqActivity", "SeqError", "SeqPhase", "launch_layout", "record_beats", "KernelSequencer"]


class SeqError(enum.Enum, shape=3):
    NONE = 0
    FAULT = 1        # an AGCU raised a segment fault
    TIMEOUT = 2      # a record fetch, program load, launch or copy ran over ``timeout`` cycles
    DMA = 3          # the DMA engine refused a copy record's descriptor
    MEMORY = 4       # a request outside memory (the network's decode error; its address)
    CHECKSUM = 5     # the program's check beats do not match its beats
    LINK = 6         # a switch input overran its buffer (a broken credit loop)


class SeqPhase(enum.Enum, shape=2):
    """Where the sequencer was when it stopped with an error."""
    RECORD = 0       # fetching a launch record
    PROGRAM = 1      # loading a program
    KERNEL = 2       # running a kernel
    COPY = 3         # a copy record's DMA copy


class SeqActivity(enum.Enum, shape=3):
    """What the sequencer is doing now (a status register: a timeline's slices)."""
    IDLE = 0
    RECORD = 1       # fetching and decoding a launch record
    PROGRAM = 2      # loading a program (the cycles of ``load_cycles``)
    ARGS = 3         # handing the record's arguments to the AGCUs, starting the units
    KERNEL = 4       # a kernel running (the cycles of ``exec_cycles``)
    COPY = 5         # a copy record's DMA copy (the cycles of ``copy_cycles``)
    CLEAR = 6        # clearing the datapath after an error


#: Cycles the sequencer holds ``clear`` after an error.
CLEAR_CYCLES = 4


def launch_layout(params):
    mm = MemoryMap(params)
    wb = word_bits(params)
    dma = dma_desc_layout(mm.addr_bits, mm.words)
    return data.StructLayout({
        "program": unsigned(mm.addr_bits),
        "beats": unsigned(COUNT_BITS),
        "iterations": unsigned(ITER_BITS),
        "chained": unsigned(1),
        "units": unsigned(params.rows * params.cols),
        "agcus": unsigned(params.agcus),
        "args": data.ArrayLayout(data.StructLayout({
            name: data.StructLayout({"offset": unsigned(wb), "stride": unsigned(wb)})
            for name in streams(params)}), params.agcus),
        "copy": unsigned(1),                 # a copy record: program -> dst, count words
        "dst": dma["dst"].shape,
        "count": dma["count"].shape,
    })


def record_beats(params):
    """Memory beats of one launch record (records are beat-aligned)."""
    mm = MemoryMap(params)
    return -(-launch_layout(params).size // (32 * mm.words))


class KernelSequencer(wiring.Component):
    """See the module docstring.

    Attributes
    ----------
    go : In(1)                 start the list: ``count`` records from beat ``launches``.
    launches : In(addr_bits);  count : In(16);  timeout : In(32)
    busy : Out(1);  error : Out(SeqError)
    net : Out(mem_port_signature)       reads records and bitstreams.
    cfg : Out(stream(config_beat_layout))   the config bus.
    tile_start, tile_busy : per tile position;  iters, chain : Out   iterations of what
                               starts, and whether they pass data through memory
    agcu_start, agcu_busy, agcu_fault : per AGCU;  agcu_offset, agcu_stride : Out per AGCU.
    dma : Out(stream(dma_desc_layout))  copy records' descriptors;  dma_done : In(32),
    dma_error : In(1)                   the engine's finished descriptors and refusal flag.
    launched, iterations : Out(32)      records and iterations finished.
    net_error, link_error : In(1)       the memory network's decode error, any switch's
                                        credit error (sticky: a rise stops the list).
    phase : Out(SeqPhase);  clear : Out(1)   where an error stopped it; the datapath reset.
    activity : Out(SeqActivity)         what it is doing now.
    load_cycles, exec_cycles, copy_cycles, cycles : Out(48)
        program loading, kernel execution, copies, and everything from ``go`` to idle.
    """

    def __init__(self, params):
        self.params = params
        self.map = mm = MemoryMap(params)
        n, a = params.rows * params.cols, params.agcus
        rb = record_beats(params)
        if rb > MAX_BURST:
            raise ValueError(f"a launch record of {rb} beats does not fit one burst")
        super().__init__({
            "go": In(1), "launches": In(mm.addr_bits), "count": In(16), "timeout": In(32),
            "busy": Out(1), "error": Out(SeqError),
            "net": Out(mem_port_signature(mm.addr_bits, mm.words)),
            "cfg": Out(stream.Signature(config_beat_layout)),
            "tile_start": Out(n), "tile_busy": In(n),
            "agcu_start": Out(a), "agcu_busy": In(a), "agcu_fault": In(a),
            "agcu_offset": Out(agcu_args_layout(params)).array(a),
            "agcu_stride": Out(agcu_args_layout(params)).array(a), "iters": Out(ITER_BITS),
            "chain": Out(1),
            "dma": Out(stream.Signature(dma_desc_layout(mm.addr_bits, mm.words))),
            "dma_done": In(32), "dma_error": In(1),
            "launched": Out(32), "iterations": Out(32),
            "load_cycles": Out(48), "exec_cycles": Out(48), "copy_cycles": Out(48),
            "cycles": Out(48),
            "net_error": In(1), "link_error": In(1), "phase": Out(SeqPhase), "clear": Out(1),
            "activity": Out(SeqActivity),
        })

    def elaborate(self, platform):
        m = Module()
        p, mm = self.params, self.map
        W = mm.words
        rb = record_beats(p)
        lay = launch_layout(p)

        # The record/bitstream reader and the config loader restart with the datapath.
        reader = BurstReader(words=W, addr_bits=mm.addr_bits, tags=4, info=unsigned(1))
        m.submodules.reader = ResetInserter(self.clear)(reader)
        wiring.connect(m, reader.req, wiring.flipped(self.net.req))
        wiring.connect(m, wiring.flipped(self.net.resp), reader.resp)
        m.d.comb += self.net.wdata.valid.eq(0)

        # Read bursts of `rd_left` beats from `rd_addr`, cut at MAX_BURST blocks.
        rd_addr = Signal(mm.addr_bits)
        rd_left = Signal(COUNT_BITS)
        n = cut(m, rd_left, block_room(m, rd_addr, "room"), "n")
        m.d.comb += [reader.bursts.valid.eq(rd_left != 0),
                     reader.bursts.payload.addr.eq(rd_addr),
                     reader.bursts.payload.len.eq(n - 1)]
        with m.If(reader.bursts.valid & reader.bursts.ready):
            m.d.sync += [rd_addr.eq(rd_addr + n), rd_left.eq(rd_left - n)]

        loader = ConfigLoader(W)
        m.submodules.loader = ResetInserter(self.clear)(loader)
        wiring.connect(m, loader.bus, wiring.flipped(self.cfg))

        record = Signal(32 * W * rb)
        rec = data.View(lay, record[:lay.size])
        nrec = Signal(16)
        next_rec = Signal(mm.addr_bits)
        fetched = Signal(range(rb + 1))
        elapsed = Signal(32)
        per = W // BEAT_WORDS
        stop = self._stop_conditions(m, elapsed)

        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.go):
                    m.d.sync += [self.error.eq(SeqError.NONE), nrec.eq(self.count),
                                 next_rec.eq(self.launches)]
                    m.next = "NEXT_RECORD"
            with m.State("NEXT_RECORD"):
                with m.If(nrec == 0):
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [rd_addr.eq(next_rec), rd_left.eq(rb), elapsed.eq(0),
                                 next_rec.eq(next_rec + rb), nrec.eq(nrec - 1)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                with self._guarded(m, stop, SeqPhase.RECORD, elapsed):
                    m.d.comb += reader.o.ready.eq(1)
                    with m.If(reader.o.valid):
                        # A record crossing a MAX_BURST block comes in two bursts.
                        m.d.sync += [record.eq(Cat(record[32 * W:], reader.o.payload.data)),
                                     fetched.eq(fetched + 1)]
                        with m.If(fetched == rb - 1):
                            m.d.sync += fetched.eq(0)
                            m.next = "DECODE"
            with m.State("DECODE"):
                m.d.sync += [self.iters.eq(rec.iterations), self.chain.eq(rec.chained),
                             elapsed.eq(0)]
                with m.If(rec.copy):
                    m.next = "COPY"
                with m.Elif(rec.beats != 0):
                    m.d.sync += [rd_addr.eq(rec.program),
                                 rd_left.eq((rec.beats + per - 1) // per)]
                    m.d.comb += [loader.start.eq(1), loader.count.eq(rec.beats)]
                    m.next = "LOAD"
                with m.Else():
                    m.next = "ARGS"
            self._copy_states(m, rec, elapsed, stop)
            with m.State("LOAD"):
                m.d.sync += self.load_cycles.eq(self.load_cycles + 1)
                with self._guarded(m, stop, SeqPhase.PROGRAM, elapsed):
                    m.d.comb += [loader.beats.payload.eq(reader.o.payload.data),
                                 loader.beats.valid.eq(reader.o.valid),
                                 reader.o.ready.eq(loader.beats.ready)]
                    with m.If(~loader.busy & loader.sum_error):
                        self._fail(m, SeqError.CHECKSUM, SeqPhase.PROGRAM)
                    with m.Elif(~loader.busy):
                        m.next = "ARGS"
            self._kernel_states(m, rec, elapsed, stop)
            self._clear_state(m, rd_left, fetched)
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        self._activity(m, fsm)
        return m

    def _activity(self, m, fsm):
        """``activity`` from the FSM's state."""
        states = {SeqActivity.RECORD: ("NEXT_RECORD", "FETCH", "DECODE"),
                  SeqActivity.PROGRAM: ("LOAD",), SeqActivity.ARGS: ("ARGS", "START"),
                  SeqActivity.KERNEL: ("RUN",), SeqActivity.COPY: ("COPY", "COPY_WAIT"),
                  SeqActivity.CLEAR: ("CLEAR",)}
        for act, names in states.items():
            with m.If(Cat(*(fsm.ongoing(n) for n in names)).any()):
                m.d.comb += self.activity.eq(act)

    def _stop_conditions(self, m, elapsed):
        """The error a guarded state stops with (NONE: go on): a request outside memory or
        a broken link since ``go`` (the flags are sticky: their rises count), else the
        watchdog (``elapsed`` >= ``timeout``, if not 0)."""
        stop = Signal(SeqError)
        hit = {}
        for name in ("net_error", "link_error"):
            flag, prev, hit[name] = getattr(self, name), Signal(), Signal(name=f"{name}_hit")
            m.d.sync += prev.eq(flag)
            with m.If(self.go & ~self.busy):
                m.d.sync += hit[name].eq(0)
            with m.Elif(flag & ~prev):
                m.d.sync += hit[name].eq(1)
        with m.If(hit["net_error"]):
            m.d.comb += stop.eq(SeqError.MEMORY)
        with m.Elif(hit["link_error"]):
            m.d.comb += stop.eq(SeqError.LINK)
        with m.Elif((self.timeout != 0) & (elapsed >= self.timeout)):
            m.d.comb += stop.eq(SeqError.TIMEOUT)
        return stop

    def _fail(self, m, error, phase):
        """Stop the list with ``error`` in ``phase``: clear the datapath, then idle."""
        m.d.sync += [self.error.eq(error), self.phase.eq(phase)]
        m.next = "CLEAR"

    @contextlib.contextmanager
    def _guarded(self, m, stop, phase, elapsed):
        """A state's body that runs only while ``stop`` says NONE (the watchdog counting
        ``elapsed``); else the list stops with ``stop``'s error."""
        m.d.sync += elapsed.eq(elapsed + 1)
        with m.If(stop != SeqError.NONE):
            self._fail(m, stop, phase)
        with m.Else():
            yield

    def _clear_state(self, m, rd_left, fetched):
        """CLEAR: ``clear`` for CLEAR_CYCLES cycles (the datapath's synchronous reset), then
        IDLE with ``error`` kept. The reads not yet issued (``rd_left``) are dropped: issued
        after the clear, their answers would hold the reader's tags."""
        left = Signal(range(CLEAR_CYCLES + 1))
        with m.State("CLEAR"):
            m.d.comb += self.clear.eq(1)
            m.d.sync += [left.eq(left + 1), rd_left.eq(0), fetched.eq(0)]
            with m.If(left == CLEAR_CYCLES - 1):
                m.d.sync += left.eq(0)
                m.next = "IDLE"

    def _kernel_states(self, m, rec, elapsed, stop):
        """ARGS, START, RUN: the record's arguments to the AGCUs, the start of its units
        (``iters`` iterations), and the wait until they are done."""
        p = self.params
        args = [(self.agcu_offset[k][name], self.agcu_stride[k][name], rec.args[k][name])
                for k in range(p.agcus) for name in streams(p)]
        settle = Signal(2)
        agcus = Signal(p.agcus)
        units = Signal(len(self.tile_start))
        with m.State("ARGS"):
            m.d.sync += [o.eq(arg.offset) for o, _, arg in args]
            m.d.sync += [st.eq(arg.stride) for _, st, arg in args]
            m.d.sync += [agcus.eq(rec.agcus), units.eq(rec.units)]
            m.next = "START"
        with m.State("START"):
            with m.If(self.iters == 0):
                m.d.sync += self.launched.eq(self.launched + 1)
                m.next = "NEXT_RECORD"
            with m.Else():
                m.d.comb += [self.tile_start.eq(units), self.agcu_start.eq(agcus)]
                m.d.sync += [settle.eq(3), elapsed.eq(0)]
                m.next = "RUN"
        with m.State("RUN"):
            m.d.sync += self.exec_cycles.eq(self.exec_cycles + 1)
            with m.If(settle != 0):
                m.d.sync += settle.eq(settle - 1)
            with m.If((self.agcu_fault & agcus).any()):
                self._fail(m, SeqError.FAULT, SeqPhase.KERNEL)
            with m.Else():
                with self._guarded(m, stop, SeqPhase.KERNEL, elapsed):
                    with m.If((settle == 0) & ~(self.agcu_busy & agcus).any() &
                              ~self.tile_busy.any()):
                        m.d.sync += [self.iters.eq(0),
                                     self.iterations.eq(self.iterations + self.iters)]
                        m.next = "START"

    def _copy_states(self, m, rec, elapsed, stop):
        """COPY: hand the DMA engine the copy record's descriptor. COPY_WAIT: it is done
        when the engine's count of finished descriptors moves on from its value at the
        handshake (the engine takes one descriptor at a time, so a host copy finishes
        before ours starts)."""
        d = self.dma
        copies_done = Signal(32)
        with m.State("COPY"):
            with self._guarded(m, stop, SeqPhase.COPY, elapsed):
                m.d.comb += [d.valid.eq(1), d.payload.src.eq(rec.program),
                             d.payload.dst.eq(rec.dst), d.payload.count.eq(rec.count)]
                with m.If(d.ready):
                    m.d.sync += [copies_done.eq(self.dma_done), elapsed.eq(0),
                                 self.copy_cycles.eq(self.copy_cycles + 1)]
                    m.next = "COPY_WAIT"
        with m.State("COPY_WAIT"):
            m.d.sync += self.copy_cycles.eq(self.copy_cycles + 1)
            with self._guarded(m, stop, SeqPhase.COPY, elapsed):
                with m.If(self.dma_done != copies_done):
                    m.d.sync += self.launched.eq(self.launched + 1)
                    m.next = "NEXT_RECORD"
                with m.Elif(self.dma_error):
                    self._fail(m, SeqError.DMA, SeqPhase.COPY)
