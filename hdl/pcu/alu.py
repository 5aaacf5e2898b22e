"""The functional unit of a PCU body stage: one lane, every SIMD op, fixed latency."""

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hdl.numerics.add import FpAdd
from hdl.numerics.compare import FpCompare, cmp_op_for
from hdl.numerics.convert import ToBf16
from hdl.numerics.fma import FmaBf16
from hdl.numerics.mul import FpMul
from hdl.numerics.ops import ALU_OPS, INT, Op, comparator_map, lane_results
from hdl.numerics.pipeline import Stages, select_aligned

__all__ = ["Alu"]


class Alu(wiring.Component):
    """``r = op(a, b, c)`` after ``LATENCY`` enabled cycles, one op per cycle, for the
    ops :data:`hdl.numerics.ops.ALU_OPS` (other opcodes give 0).

    The FP units run in parallel and the result is aligned to the slowest path
    (fma: BF16 rounding of a and b, then the BF16 FMA). Integer and bitwise ops take
    one cycle and are delayed to match.
    """

    LATENCY = ToBf16.LATENCY + FmaBf16.LATENCY

    en: In(1)
    op: In(Op)
    a: In(32)
    b: In(32)
    c: In(32)
    r: Out(32)

    def elaborate(self, platform):
        m = Module()
        st = Stages(m, self.en, "alu")
        a, b, c = self.a, self.b, self.c

        m.submodules.rnd_a = rnd_a = ToBf16()
        m.submodules.rnd_b = rnd_b = ToBf16()
        m.submodules.fma = fma = FmaBf16()
        m.submodules.add = add = FpAdd()
        m.submodules.mul = mul = FpMul()
        m.submodules.cmp = cmp = FpCompare()
        for unit in (rnd_a, rnd_b, fma, add, mul, cmp):
            m.d.comb += unit.en.eq(self.en)

        cmp_op = cmp_op_for(m, self.op, comparator_map(ALU_OPS))
        m.d.comb += [
            rnd_a.a.eq(a), rnd_b.a.eq(b),
            fma.a.eq(rnd_a.r), fma.b.eq(rnd_b.r), fma.c.eq(st.delay(c, ToBf16.LATENCY)),
            add.a.eq(a), add.b.eq(b), add.sub.eq(self.op == Op.SUB),
            mul.a.eq(a), mul.b.eq(b),
            cmp.op.eq(cmp_op), cmp.a.eq(a), cmp.b.eq(b),
        ]

        sh = b[:5]
        int_r = Signal(32)
        with m.Switch(self.op):
            with m.Case(Op.SELECT):
                m.d.comb += int_r.eq(Mux(c != 0, a, b))
            with m.Case(Op.AND):
                m.d.comb += int_r.eq(a & b)
            with m.Case(Op.OR):
                m.d.comb += int_r.eq(a | b)
            with m.Case(Op.XOR):
                m.d.comb += int_r.eq(a ^ b)
            with m.Case(Op.SHL):
                m.d.comb += int_r.eq((a << sh)[:32])
            with m.Case(Op.SHR):
                m.d.comb += int_r.eq(a >> sh)
            with m.Case(Op.IADD):
                m.d.comb += int_r.eq((a + b)[:32])
            with m.Case(Op.IMUL):
                m.d.comb += int_r.eq((a * b)[:32])
            with m.Case(Op.ILT):
                m.d.comb += int_r.eq(a.as_signed() < b.as_signed())
            with m.Default():        # PASS
                m.d.comb += int_r.eq(a)
        outs = {INT: (st.reg(int_r, "alu_int"), 1), "fma": (fma.r, self.LATENCY),
                "add": (add.r, FpAdd.LATENCY), "mul": (mul.r, FpMul.LATENCY),
                "cmp": (cmp.r, FpCompare.LATENCY)}
        results = lane_results(ALU_OPS, outs)
        m.d.comb += self.r.eq(select_aligned(m, st, self.op, self.LATENCY, results))
        return m
