"""The pattern memory unit: write and read address pipelines around the banked
scratchpad, N-buffered so a producer fills one buffer while a consumer drains another."""

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.counters import COUNTER_BITS, ITER_BITS
from hdl.packet import vector_layout
from hdl.packet import flow_bits

from .address import AddressGen
from .banks import Banks
from .config import MAX_BUFFERS, pmu_config_layout

__all__ = ["Pmu"]


class Pmu(wiring.Component):
    """One PMU (:func:`~hdl.pmu.config.pmu_config_layout`).

    After ``start``, every write-pipeline step stores one vector from ``vin`` (lanes on
    in both the step's and the vector's mask) and every read-pipeline step emits one
    vector on ``vout`` (``last`` on the read pipeline's final step). ``wsin``/``rsin``
    carry the pipelines' per-window base offsets and bounds when configured. ``vout_flow``
    is the flow id of the vector on ``vout`` (``config.r_flow``). Full buffers are
    counted between the two sides (``full``); ``busy`` until the last read left.
    ``iters`` (with ``start``): kernel looping, both pipelines run their program that many
    times back to back; buffers and their counts carry on from one iteration to the next,
    so the writer fills the next iteration's buffer while the reader drains this one.
    """

    def __init__(self, params):
        self.params = params
        vec = vector_layout(params.pcu_lanes)
        super().__init__({
            "config": In(pmu_config_layout(params)),
            "start": In(1), "iters": In(ITER_BITS), "busy": Out(1),
            "vin": In(stream.Signature(vec)),
            "wsin": In(stream.Signature(32)), "rsin": In(stream.Signature(32)),
            "vout": Out(stream.Signature(vec)), "vout_flow": Out(flow_bits(params)),
            "w_conflicts": Out(COUNTER_BITS), "r_conflicts": Out(COUNTER_BITS),
            "full": Out(range(MAX_BUFFERS + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        p, cfg = self.params, self.config
        L = p.pcu_lanes
        m.submodules.wgen = wgen = AddressGen(p)
        m.submodules.rgen = rgen = AddressGen(p)
        m.submodules.banks = banks = Banks(p)
        m.d.comb += [wgen.config.eq(cfg.write), rgen.config.eq(cfg.read),
                     wgen.start.eq(self.start & ~self.busy),
                     rgen.start.eq(self.start & ~self.busy),
                     wgen.repeat.eq(self.iters), rgen.repeat.eq(self.iters),
                     banks.config.eq(cfg.banks), wgen.tag_level.eq(0), wgen.tag_shift.eq(0),
                     rgen.tag_level.eq(cfg.r_flow.level), rgen.tag_shift.eq(cfg.r_flow.shift),
                     self.w_conflicts.eq(banks.w_conflicts),
                     self.r_conflicts.eq(banks.r_conflicts)]

        wiring.connect(m, wiring.flipped(self.wsin), wgen.s)
        wiring.connect(m, wiring.flipped(self.rsin), rgen.s)
        full = self.full
        w_buf = Signal(range(MAX_BUFFERS))
        r_buf = Signal(range(MAX_BUFFERS))
        w_base = Signal(32)
        r_base = Signal(32)

        # Writes: one address step + one input vector per stored vector.
        ws, wv = wgen.o.payload, self.vin.payload
        w_room = full < cfg.nbuf
        m.d.comb += [
            banks.w.valid.eq(wgen.o.valid & self.vin.valid & w_room),
            banks.w.payload.mask.eq(ws.mask & wv.mask),
            banks.w.payload.data.eq(wv.data),
            wgen.o.ready.eq(banks.w.ready), self.vin.ready.eq(banks.w.ready),
        ]
        for l in range(L):
            m.d.comb += banks.w.payload.addr[l].eq(ws.addr[l] + w_base)
        w_done = banks.w.ready & ws.wrap.bit_select(cfg.w_level, 1)

        # Reads: one address step per request while a buffer is full (a step with no lane
        # on is dropped without a request under r_skip).
        rs = rgen.o.payload
        skip = cfg.r_skip & (rs.mask == 0)
        can = rgen.o.valid & (full != 0)
        taken = Mux(skip, can, banks.r.ready)
        m.d.comb += [
            banks.r.valid.eq(can & ~skip),
            banks.r.payload.mask.eq(rs.mask), banks.r.payload.last.eq(rs.last),
            banks.r.payload.tag.eq(Mux(cfg.r_flow.en, rs.tag, 0)),
            rgen.o.ready.eq(taken),
        ]
        for l in range(L):
            m.d.comb += banks.r.payload.addr[l].eq(rs.addr[l] + r_base)
        r_done = taken & rs.wrap.bit_select(cfg.r_level, 1)
        wiring.connect(m, banks.rd, wiring.flipped(self.vout))
        m.d.comb += self.vout_flow.eq(banks.rd_tag)

        m.d.sync += full.eq(full + w_done - r_done)
        for done, buf, base in ((w_done, w_buf, w_base), (r_done, r_buf, r_base)):
            with m.If(done):
                with m.If(buf == cfg.nbuf - 1):
                    m.d.sync += [buf.eq(0), base.eq(0)]
                with m.Else():
                    m.d.sync += [buf.eq(buf + 1), base.eq(base + cfg.buf_words)]

        # Running until the final read left (or, dropped, until the answers before it left).
        running, last_dropped = Signal(), Signal()
        with m.If(self.start & ~self.busy):
            m.d.sync += [running.eq(1), full.eq(0), w_buf.eq(0), r_buf.eq(0), w_base.eq(0),
                         r_base.eq(0), last_dropped.eq(0)]
        with m.Elif((self.vout.valid & self.vout.ready & self.vout.payload.last) |
                    (last_dropped & ~banks.rd.valid)):
            m.d.sync += [running.eq(0), last_dropped.eq(0)]
        with m.Elif(skip & can & rs.last):
            m.d.sync += last_dropped.eq(1)
        m.d.comb += self.busy.eq(running | wgen.busy | rgen.busy)
        return m
