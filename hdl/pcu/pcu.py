"""The pattern compute unit (SIMD mode so far): header FIFOs and counter chain, body,
vector output."""

from amaranth import Module, Signal

from hdl.numerics.pipeline import Stages
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.params import RduParams

from .accum import Accumulator
from .config import pcu_config_layout, scalar_layout, vector_layout
from .counters import CounterChain
from .reduce import ReduceTree
from .simd import SimdBody

__all__ = ["Pcu"]


class Pcu(wiring.Component):
    """One PCU.

    After ``start``, every step of the counter chain is one iteration: it takes one
    element from each enabled input (``config.vin_en``, ``config.sin_en``), runs it
    through the body, and emits one vector on ``vout`` with the chain's lane mask; the
    final vector carries ``last`` (the ``done`` token). With ``config.reduce`` the result
    vector is reduced across its (masked) lanes and emitted on ``sout`` instead; with
    ``config.acc`` as well, those values are folded and one value per window (closed by
    counter ``acc.level`` wrapping) goes to ``sout``. An iteration fires only when
    every enabled input has data and the output can advance, so nothing is lost or
    duplicated under back-pressure. ``busy`` is high from ``start`` until the last
    vector has left.
    """

    def __init__(self, params: RduParams):
        self.params = params
        lanes = params.pcu_lanes
        vec = vector_layout(lanes)
        super().__init__({
            "config": In(pcu_config_layout(params)),
            "start": In(1),
            "busy": Out(1),
            "vin0": In(stream.Signature(vec)),
            "vin1": In(stream.Signature(vec)),
            "sin0": In(stream.Signature(32)),
            "vout": Out(stream.Signature(vec)),
            "sout": Out(stream.Signature(scalar_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        cfg = self.config
        vec = vector_layout(p.pcu_lanes)

        fifos = {}
        for name, port, width in (("vin0", self.vin0, vec.size), ("vin1", self.vin1, vec.size),
                                  ("sin0", self.sin0, 32)):
            f = fifo.SyncFIFOBuffered(width=width, depth=p.pcu_fifo_depth)
            m.submodules[f"{name}_fifo"] = f
            m.d.comb += [f.w_data.eq(port.payload), f.w_en.eq(port.valid),
                         port.ready.eq(f.w_rdy)]
            fifos[name] = f

        m.submodules.chain = chain = CounterChain(p.pcu_lanes)
        m.submodules.body = body = SimdBody(p.pcu_lanes, p.pcu_stages)
        m.d.comb += [chain.config.eq(cfg.chain), chain.start.eq(self.start),
                     body.config.eq(cfg.stage)]

        m.submodules.tree = tree = ReduceTree(p.pcu_lanes)
        m.submodules.acc = acc = Accumulator()

        en = Signal()
        fire = Signal()
        need = {"vin0": cfg.vin_en[0], "vin1": cfg.vin_en[1], "sin0": cfg.sin_en[0]}
        inputs_ready = [~need[k] | fifos[k].r_rdy for k in fifos]
        m.d.comb += [
            en.eq((~self.vout.valid | self.vout.ready) & (~self.sout.valid | self.sout.ready)),
            fire.eq(en & chain.o.valid & inputs_ready[0] & inputs_ready[1] & inputs_ready[2]),
            chain.o.ready.eq(fire),
        ]
        for k, f in fifos.items():
            m.d.comb += f.r_en.eq(fire & need[k])

        vin0 = data.View(vec, fifos["vin0"].r_data)
        vin1 = data.View(vec, fifos["vin1"].r_data)
        step = chain.o.payload
        m.d.comb += [
            body.en.eq(en), body.i_valid.eq(fire),
            body.vin0.eq(vin0.data), body.vin1.eq(vin1.data), body.sin0.eq(fifos["sin0"].r_data),
            body.ctr.eq(step.lane), body.i_mask.eq(step.mask), body.i_last.eq(step.last),
            body.i_wrap.eq(step.wrap),
            self.vout.valid.eq(body.o_valid & ~cfg.reduce.en),
            self.vout.payload.data.eq(body.o_data),
            self.vout.payload.mask.eq(body.o_mask),
            self.vout.payload.last.eq(body.o_last),
        ]

        # Cross-lane reduction and the stream accumulator, after the body.
        st = Stages(m, en, "red")
        t_valid = st.delay(body.o_valid & cfg.reduce.en, tree.LATENCY, name="tree_valid")
        t_last = st.delay(body.o_last, tree.LATENCY, name="tree_last")
        t_wrap = st.delay(body.o_wrap, tree.LATENCY, name="tree_wrap")
        end = Signal()
        m.d.comb += [
            tree.en.eq(en), tree.op.eq(cfg.reduce.op), tree.i.eq(body.o_data),
            tree.mask.eq(body.o_mask),
            end.eq(t_wrap.bit_select(cfg.acc.level, 1)),
            acc.en.eq(en), acc.op.eq(cfg.acc.op), acc.i_valid.eq(t_valid & cfg.acc.en),
            acc.x.eq(tree.r), acc.end.eq(end),
        ]
        acc_last = Signal()
        with m.If(en & t_valid & end):
            m.d.sync += acc_last.eq(t_last)
        with m.If(cfg.acc.en):
            m.d.comb += [self.sout.valid.eq(acc.r_valid), self.sout.payload.data.eq(acc.r),
                         self.sout.payload.last.eq(acc_last)]
        with m.Else():
            m.d.comb += [self.sout.valid.eq(t_valid), self.sout.payload.data.eq(tree.r),
                         self.sout.payload.last.eq(t_last)]

        # Busy from start until the element carrying `last` has been accepted downstream.
        running = Signal()
        with m.If(self.start & ~running):
            m.d.sync += running.eq(cfg.chain.depth != 0)   # firmware never loads depth 0
        with m.Elif((self.vout.valid & self.vout.ready & self.vout.payload.last) |
                    (self.sout.valid & self.sout.ready & self.sout.payload.last)):
            m.d.sync += running.eq(0)
        m.d.comb += self.busy.eq(running | chain.busy)
        return m
