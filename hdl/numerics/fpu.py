"""A stream-fed floating-point unit exercising every numerics block.

Each stream element carries an opcode and up to three operands; the element's result
comes out after ``LATENCY`` cycles of advance. The pipeline stalls as a whole under
back-pressure (``en = ~o.valid | o.ready``), so a result is never lost or duplicated.
"""

from amaranth import Module, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from .add import FpAdd
from .compare import CmpOp, FpCompare
from .convert import FromBf16, ToBf16
from .fma import FmaBf16
from .mul import FpMul
from .pipeline import Stages
from .tail import Exp2, Rcp, Rsqrt

__all__ = ["FpuOp", "FpuIn", "FpuOut", "Fpu"]


class FpuOp(enum.Enum, shape=4):
    ADD = 0
    SUB = 1
    MUL = 2
    FMA_BF16 = 3     # a, b: BF16 in bits [15:0]; c: FP32
    MAX = 4
    MIN = 5
    CMP_EQ = 6
    CMP_LT = 7
    CMP_LE = 8
    TO_BF16 = 9      # result in bits [15:0]
    FROM_BF16 = 10   # a: BF16 in bits [15:0]
    EXP2 = 11
    RCP = 12
    RSQRT = 13


FpuIn = data.StructLayout({"op": FpuOp, "a": 32, "b": 32, "c": 32})
FpuOut = data.StructLayout({"op": FpuOp, "r": 32})

_CMP = {FpuOp.MAX: CmpOp.MAX, FpuOp.MIN: CmpOp.MIN, FpuOp.CMP_EQ: CmpOp.EQ,
        FpuOp.CMP_LT: CmpOp.LT, FpuOp.CMP_LE: CmpOp.LE}


class Fpu(wiring.Component):
    """Every numerics unit behind one ready/valid stream, selected per element."""

    UNITS = (FpAdd, FpMul, FmaBf16, FpCompare, ToBf16, FromBf16, Exp2, Rcp, Rsqrt)
    LATENCY = max(u.LATENCY for u in UNITS)

    i: In(stream.Signature(FpuIn))
    o: Out(stream.Signature(FpuOut))

    def elaborate(self, platform):
        m = Module()
        en = Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]
        st = Stages(m, en, "fpu")
        p = self.i.payload

        m.submodules.add = add = FpAdd()
        m.submodules.mul = mul = FpMul()
        m.submodules.fma = fma = FmaBf16()
        m.submodules.cmp = cmp = FpCompare()
        m.submodules.tobf = tobf = ToBf16()
        m.submodules.frombf = frombf = FromBf16()
        m.submodules.exp2 = exp2 = Exp2()
        m.submodules.rcp = rcp = Rcp()
        m.submodules.rsqrt = rsqrt = Rsqrt()

        cmp_op = Signal(CmpOp)
        with m.Switch(p.op):
            for op, c in _CMP.items():
                with m.Case(op):
                    m.d.comb += cmp_op.eq(c)
            with m.Default():        # the comparator's result is not selected
                m.d.comb += cmp_op.eq(CmpOp.MAX)
        m.d.comb += [
            add.a.eq(p.a), add.b.eq(p.b), add.sub.eq(p.op == FpuOp.SUB),
            mul.a.eq(p.a), mul.b.eq(p.b),
            fma.a.eq(p.a[:16]), fma.b.eq(p.b[:16]), fma.c.eq(p.c),
            cmp.op.eq(cmp_op), cmp.a.eq(p.a), cmp.b.eq(p.b),
            tobf.a.eq(p.a), frombf.a.eq(p.a[:16]),
            exp2.a.eq(p.a), rcp.a.eq(p.a), rsqrt.a.eq(p.a),
        ]
        for unit in (add, mul, fma, cmp, tobf, frombf, exp2, rcp, rsqrt):
            m.d.comb += unit.en.eq(en)

        def aligned(unit):
            return st.delay(unit.r, self.LATENCY - unit.LATENCY)

        results = {
            FpuOp.ADD: aligned(add), FpuOp.SUB: aligned(add), FpuOp.MUL: aligned(mul),
            FpuOp.FMA_BF16: aligned(fma), FpuOp.TO_BF16: aligned(tobf),
            FpuOp.FROM_BF16: aligned(frombf), FpuOp.EXP2: aligned(exp2),
            FpuOp.RCP: aligned(rcp), FpuOp.RSQRT: aligned(rsqrt),
        }
        cmp_r = aligned(cmp)
        results.update({op: cmp_r for op in _CMP})

        op_out = st.delay(p.op, self.LATENCY, name="fpu_op")
        valid = st.delay(self.i.valid, self.LATENCY, name="fpu_valid")
        m.d.comb += [self.o.valid.eq(valid), self.o.payload.op.eq(op_out)]
        with m.Switch(op_out):
            for op, r in results.items():
                with m.Case(op):
                    m.d.comb += self.o.payload.r.eq(r)
            with m.Default():        # opcodes 14 and 15 are unassigned
                m.d.comb += self.o.payload.r.eq(0)
        return m
