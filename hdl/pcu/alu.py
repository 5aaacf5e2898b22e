"""The functional unit of a PCU body stage: one lane, every SIMD op, fixed latency."""

from amaranth import Module, Mux, Signal
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

from hdl.numerics.add import FpAdd
from hdl.numerics.compare import FpCompare, cmp_op_for, comparator_ops
from hdl.numerics.convert import ToBf16
from hdl.numerics.fma import FmaBf16
from hdl.numerics.mul import FpMul
from hdl.numerics.pipeline import Stages, select_aligned

__all__ = ["AluOp", "Alu"]


class AluOp(enum.Enum, shape=5):
    """Body ops (ARCHITECTURE.md section 4); reference in ``firmware.numerics``."""
    PASS = 0      # a
    FMA = 1       # simd_fma(a, b, c): a, b rounded to BF16, exact product, + c in FP32
    ADD = 2       # fp32_add(a, b)
    SUB = 3       # fp32_sub(a, b)
    MUL = 4       # fp32_mul(a, b)
    MAX = 5       # fp32_max(a, b)
    MIN = 6       # fp32_min(a, b)
    CMP_EQ = 7    # fp32_cmp(a, b, EQ): FP32 1.0 or +0.0
    CMP_LT = 8
    CMP_LE = 9
    SELECT = 10   # select(c, a, b): a if c != 0 else b
    AND = 11
    OR = 12
    XOR = 13
    SHL = 14      # shl(a, b): a << (b mod 32)
    SHR = 15      # shr(a, b): logical
    IADD = 16     # i32_add(a, b)
    IMUL = 17     # i32_mul(a, b): low 32 bits
    ILT = 18      # i32_lt(a, b): signed, integer 1 or 0


_CMP = comparator_ops(AluOp)
_INT = (AluOp.PASS, AluOp.SELECT, AluOp.AND, AluOp.OR, AluOp.XOR, AluOp.SHL, AluOp.SHR,
        AluOp.IADD, AluOp.IMUL, AluOp.ILT)


class Alu(wiring.Component):
    """``r = op(a, b, c)`` after ``LATENCY`` enabled cycles, one op per cycle.

    The FP units run in parallel and the result is aligned to the slowest path
    (fma: BF16 rounding of a and b, then the BF16 FMA). Integer and bitwise ops take
    one cycle and are delayed to match.
    """

    LATENCY = ToBf16.LATENCY + FmaBf16.LATENCY

    en: In(1)
    op: In(AluOp)
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

        cmp_op = cmp_op_for(m, self.op, _CMP)
        m.d.comb += [
            rnd_a.a.eq(a), rnd_b.a.eq(b),
            fma.a.eq(rnd_a.r), fma.b.eq(rnd_b.r), fma.c.eq(st.delay(c, ToBf16.LATENCY)),
            add.a.eq(a), add.b.eq(b), add.sub.eq(self.op == AluOp.SUB),
            mul.a.eq(a), mul.b.eq(b),
            cmp.op.eq(cmp_op), cmp.a.eq(a), cmp.b.eq(b),
        ]

        sh = b[:5]
        int_r = Signal(32)
        with m.Switch(self.op):
            with m.Case(AluOp.SELECT):
                m.d.comb += int_r.eq(Mux(c != 0, a, b))
            with m.Case(AluOp.AND):
                m.d.comb += int_r.eq(a & b)
            with m.Case(AluOp.OR):
                m.d.comb += int_r.eq(a | b)
            with m.Case(AluOp.XOR):
                m.d.comb += int_r.eq(a ^ b)
            with m.Case(AluOp.SHL):
                m.d.comb += int_r.eq((a << sh)[:32])
            with m.Case(AluOp.SHR):
                m.d.comb += int_r.eq(a >> sh)
            with m.Case(AluOp.IADD):
                m.d.comb += int_r.eq((a + b)[:32])
            with m.Case(AluOp.IMUL):
                m.d.comb += int_r.eq((a * b)[:32])
            with m.Case(AluOp.ILT):
                m.d.comb += int_r.eq(a.as_signed() < b.as_signed())
            with m.Default():        # PASS
                m.d.comb += int_r.eq(a)
        int_out = (st.reg(int_r, "alu_int"), 1)

        fma_out = (fma.r, self.LATENCY)
        results = {AluOp.FMA: fma_out, AluOp.ADD: (add.r, FpAdd.LATENCY),
                   AluOp.SUB: (add.r, FpAdd.LATENCY), AluOp.MUL: (mul.r, FpMul.LATENCY)}
        results.update({op: (cmp.r, FpCompare.LATENCY) for op in _CMP})
        results.update({op: int_out for op in _INT})
        m.d.comb += self.r.eq(select_aligned(m, st, self.op, self.LATENCY, results))
        return m
