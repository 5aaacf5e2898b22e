"""PCU tail: per-lane function, cross-lane row reduction, scale, ReLU and BF16 rounding,
fused into one stall-able pipeline after the body."""

from amaranth import Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hdl.numerics.compare import CmpOp, FpCompare
from hdl.numerics.convert import ToBf16
from hdl.numerics.mul import FpMul
from hdl.numerics.pipeline import Stages
from hdl.numerics.tail import Exp2, Rcp, Rsqrt

from .config import ScaleSrc, TailConfig, TailFunc, side_layout
from .reduce import ReduceTree

__all__ = ["FuncUnit", "Tail"]

_ONE = 0x3F800000


class FuncUnit(wiring.Component):
    """``r = func(a)`` for a :class:`TailFunc` (``NONE`` passes ``a``), ``LATENCY`` = 5."""

    LATENCY = Exp2.LATENCY

    en: In(1)
    func: In(TailFunc)
    a: In(32)
    r: Out(32)

    def elaborate(self, platform):
        m = Module()
        st = Stages(m, self.en, "func")
        units = {TailFunc.EXP2: Exp2(), TailFunc.RCP: Rcp(), TailFunc.RSQRT: Rsqrt()}
        for f, unit in units.items():
            m.submodules[f.name.lower()] = unit
            m.d.comb += [unit.en.eq(self.en), unit.a.eq(self.a)]
        func = st.delay(self.func, self.LATENCY, name="func_sel")
        passed = st.delay(self.a, self.LATENCY, name="func_pass")
        with m.Switch(func):
            for f, unit in units.items():
                with m.Case(f):
                    m.d.comb += self.r.eq(unit.r)
            with m.Default():
                m.d.comb += self.r.eq(passed)
        return m


class Tail(wiring.Component):
    """The tail of :data:`~hdl.pcu.config.TailConfig`, one vector per enabled cycle.

    ``f = func(x)``; ``row`` = the tree reduction of ``f`` over the ``mask`` lanes
    (``red_op``, order of :class:`ReduceTree`); ``y = f * scale`` (``ScaleSrc``: 1, the
    immediate, ``row_fn(row)`` or ``row_fn(i_scalar)``, the scalar entering with the
    vector); ReLU ``max(y, +0)``; BF16 rounding. The vector leaves
    ``LATENCY`` enabled cycles after it enters, with its ``mask``/``last``/``wrap``;
    ``row`` leaves at the same time (``o_row``).
    """

    def __init__(self, lanes):
        self.lanes = lanes
        self.tree_latency = ReduceTree.latency(lanes)
        self.ROW_LATENCY = FuncUnit.LATENCY + self.tree_latency + FuncUnit.LATENCY
        self.LATENCY = self.latency(lanes)
        vec = data.ArrayLayout(32, lanes)
        super().__init__({
            "en": In(1), "config": In(TailConfig),
            "i_side": In(side_layout(lanes)), "i": In(vec), "i_scalar": In(32),
            "o_side": Out(side_layout(lanes)), "o": Out(vec), "o_row": Out(32),
        })

    @staticmethod
    def latency(lanes):
        return (FuncUnit.LATENCY + ReduceTree.latency(lanes) + FuncUnit.LATENCY +
                FpMul.LATENCY + FpCompare.LATENCY + ToBf16.LATENCY)

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        st = Stages(m, self.en, "tail")
        side = self.i_side

        f = Signal(data.ArrayLayout(32, self.lanes))
        for lane in range(self.lanes):
            fu = m.submodules[f"func{lane}"] = FuncUnit()
            m.d.comb += [fu.en.eq(self.en), fu.func.eq(cfg.func), fu.a.eq(self.i[lane]),
                         f[lane].eq(fu.r)]
        side = st.delay(side, FuncUnit.LATENCY, name="tail_f_side")

        m.submodules.tree = tree = ReduceTree(self.lanes)
        m.submodules.row_fn = row_fn = FuncUnit()
        wait = self.tree_latency + FuncUnit.LATENCY
        scalar = st.delay(self.i_scalar, wait, name="tail_scalar")
        m.d.comb += [tree.en.eq(self.en), tree.op.eq(cfg.red_op), tree.i.eq(f),
                     tree.mask.eq(side.mask),
                     row_fn.en.eq(self.en), row_fn.func.eq(cfg.row_fn),
                     row_fn.a.eq(Mux(cfg.scale == ScaleSrc.SIN, scalar, tree.r))]
        f = st.delay(f, wait, name="tail_fwait")
        row = st.delay(tree.r, FuncUnit.LATENCY, name="tail_row")
        side = st.delay(side, wait, name="tail_r_side")

        scale = Signal(32)
        with m.Switch(cfg.scale):
            with m.Case(ScaleSrc.IMM):
                m.d.comb += scale.eq(cfg.imm)
            with m.Case(ScaleSrc.ROW, ScaleSrc.SIN):
                m.d.comb += scale.eq(row_fn.r)
            with m.Default():
                m.d.comb += scale.eq(_ONE)
        # The configuration is static while a kernel runs: selects need no delay lines.
        relu, bf16, unscaled = cfg.relu, cfg.bf16, cfg.scale == ScaleSrc.NONE
        f_late = st.delay(f, FpMul.LATENCY, name="tail_fmul")
        out = Signal(data.ArrayLayout(32, self.lanes))
        for lane in range(self.lanes):
            mul = m.submodules[f"scale{lane}"] = FpMul()
            relu_u = m.submodules[f"relu{lane}"] = FpCompare()
            rnd = m.submodules[f"bf16_{lane}"] = ToBf16()
            # Unscaled values bypass the multiplier, so NaN payloads and -0 pass untouched.
            y = Mux(unscaled, f_late[lane], mul.r)
            y_late = st.delay(y, FpCompare.LATENCY, name=f"tail_y{lane}")
            r = Mux(relu, relu_u.r, y_late)
            r_late = st.delay(r, ToBf16.LATENCY, name=f"tail_r{lane}")
            m.d.comb += [
                mul.en.eq(self.en), mul.a.eq(f[lane]), mul.b.eq(scale),
                relu_u.en.eq(self.en), relu_u.op.eq(CmpOp.MAX), relu_u.a.eq(y), relu_u.b.eq(0),
                rnd.en.eq(self.en), rnd.a.eq(r),
                out[lane].eq(Mux(bf16, rnd.r << 16, r_late)),
            ]
        post = self.LATENCY - self.ROW_LATENCY
        m.d.comb += [self.o.eq(out), self.o_side.eq(st.delay(side, post, name="tail_o_side")),
                     self.o_row.eq(st.delay(row, post, name="tail_orow"))]
        return m
