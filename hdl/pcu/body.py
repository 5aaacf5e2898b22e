"""PCU body: a ``stages`` x ``lanes`` grid of :class:`~hdl.pcu.alu.Alu` functional units,
used as a SIMD pipeline or, with operands from :mod:`hdl.pcu.systolic`, as a systolic array."""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hdl.clockgate import activity_domain
from hdl.counters import COUNTER_BITS
from hdl.numerics.ops import Op
from hdl.numerics.pipeline import Stages

from .alu import ALU_PATHS, Alu, path_ops
from .config import Src, StageConfig, side_layout

__all__ = ["Body"]


class Body(wiring.Component):
    """A stall-able grid of ``stages`` x ``lanes`` functional units.

    SIMD (``sys`` low): stage ``s`` applies ``config[s].op`` to all lanes; its operands
    come from the previous stage, the iteration's vector/scalar inputs, lane counter or
    header reduction ``red`` (carried down the pipeline beside the data), or the stage
    immediate (see :class:`Src`). An element entering with ``i_side.valid`` leaves
    ``LATENCY = stages * Alu.LATENCY`` enabled cycles later with its side band
    (:func:`~hdl.pcu.config.side_layout`) in ``o_side``.

    Systolic (``sys`` high): every unit computes ``fma(sys_a, sys_b, sys_c)`` of its own
    grid position; ``fu_r`` exposes every unit's result; ``sys_live`` is high while the
    array has tiles in flight.

    Each path of a stage's ALUs (:data:`~hdl.pcu.alu.ALU_PATHS`) runs in a gated clock
    domain that ticks only while an op of the path is in flight in the stage: an enabled
    cycle whose element is valid (SIMD) or whose array is live (systolic) issues the
    stage's op, and its path stays clocked for ``Alu.LATENCY`` enabled cycles. An op of
    another path, a bubble or a stall leaves the path's registers as they are, as a clock
    enable would. The SIMD operands' delay lines tick while a valid element is in the
    body.
    """

    def __init__(self, lanes, stages):
        self.lanes, self.stages = lanes, stages
        self.LATENCY = stages * Alu.LATENCY
        vec = data.ArrayLayout(32, lanes)
        grid = data.ArrayLayout(vec, stages)
        super().__init__({
            "en": In(1),
            "config": In(data.ArrayLayout(StageConfig, stages)),
            "sys": In(1), "sys_live": In(1),
            "sys_a": In(grid), "sys_b": In(grid), "sys_c": In(grid),
            "fu_r": Out(grid),
            "i_side": In(side_layout(lanes)),
            "vin0": In(vec), "vin1": In(vec), "sin0": In(32), "red": In(32),
            "ctr": In(data.ArrayLayout(COUNTER_BITS, lanes)),
            "o_side": Out(side_layout(lanes)), "o_data": Out(vec),
        })

    def elaborate(self, platform):
        m = Module()
        L = Alu.LATENCY
        side = {"vin0": self.vin0, "vin1": self.vin1, "sin0": self.sin0, "ctr": self.ctr,
                "red": self.red, "side": self.i_side}
        prev = self.vin0
        # The SIMD operands' delay lines beside the stages tick while an element is in the
        # body (never in systolic mode).
        lines, lines_en = activity_domain(m, "body_side", self.en,
                                          ~self.sys & self.i_side.valid, self.LATENCY)
        for s in range(self.stages):
            st = Stages(m, lines_en, f"st{s}", domain=lines)
            cfg = self.config[s]
            domains = self._gates(m, s, Mux(self.sys, Op.FMA, cfg.op),
                                  Mux(self.sys, self.sys_live, side["side"].valid))
            result = Signal(data.ArrayLayout(32, self.lanes), name=f"stage{s}_r")
            for lane in range(self.lanes):
                sources = {Src.PREV: prev[lane], Src.VIN0: side["vin0"][lane],
                           Src.VIN1: side["vin1"][lane], Src.SIN0: side["sin0"],
                           Src.CTR: side["ctr"][lane], Src.IMM: cfg.imm, Src.RED: side["red"]}
                alu = Alu(domains)
                m.submodules[f"s{s}_l{lane}"] = alu
                operands = {}
                for port in ("a", "b", "c"):
                    v = Signal(32, name=f"s{s}_l{lane}_{port}")
                    with m.Switch(getattr(cfg, port)):
                        for src, value in sources.items():
                            with m.Case(src):
                                m.d.comb += v.eq(value)
                        with m.Default():        # Src.ZERO
                            m.d.comb += v.eq(0)
                    operands[port] = Mux(self.sys, getattr(self, f"sys_{port}")[s][lane], v)
                m.d.comb += [alu.en.eq(self.en), alu.op.eq(Mux(self.sys, Op.FMA, cfg.op)),
                             alu.a.eq(operands["a"]), alu.b.eq(operands["b"]),
                             alu.c.eq(operands["c"]), result[lane].eq(alu.r),
                             self.fu_r[s][lane].eq(alu.r)]
            last_stage = s == self.stages - 1
            side = {k: st.delay(v, L, name=f"st{s}_{k}") for k, v in side.items()
                    if not last_stage or k == "side"}
            prev = result
        m.d.comb += [self.o_side.eq(side["side"]), self.o_data.eq(prev)]
        return m

    def _gates(self, m, s, op, live):
        """{path: (its gated clock domain, its registers' enable)} for stage ``s`` issuing
        ``op`` in the enabled cycles with ``live`` high."""
        domains = {}
        for path in ALU_PATHS:
            issue = Signal(name=f"s{s}_{path}_issue")
            m.d.comb += issue.eq(live & Cat(*(op == o for o in path_ops(path))).any())
            domains[path] = activity_domain(m, f"s{s}_{path}", self.en, issue, Alu.LATENCY)
        return domains
