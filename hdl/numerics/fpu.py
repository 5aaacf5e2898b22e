"""A stream-fed SIMD floating-point unit exercising every numerics block.

Each stream element carries one opcode and ``lanes`` operand triples (a SIMD vector, as
a PCU stage sees it); the element's result vector comes out after ``LATENCY`` cycles
of advance. The pipeline stalls as a whole under back-pressure
(``en = ~o.valid | o.ready``), so a result is never lost or duplicated.
"""

from amaranth import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .add import FpAdd
from .compare import FpCompare, cmp_op_for
from .convert import FromBf16, ToBf16
from .fma import FmaBf16
from .mul import FpMul
from .ops import FPU_OPS, Op, comparator_map, lane_results, lane_signature
from .pipeline import Stages, select_aligned
from .tail import Exp2, Rcp, Rsqrt

__all__ = ["fpu_layouts", "FpuLane", "Fpu"]


def fpu_layouts(lanes):
    """(input, output) payload layouts of an ``lanes``-wide :class:`Fpu`. Operands come
    first so that every 32-bit field is word aligned; the opcode is on top."""
    vec = data.ArrayLayout(32, lanes)
    return (data.StructLayout({"a": vec, "b": vec, "c": vec, "op": Op}),
            data.StructLayout({"r": vec, "op": Op}))



class FpuLane(wiring.Component):
    """One lane: every numerics unit on the same operands, the result of the ops
    :data:`hdl.numerics.ops.FPU_OPS` selected by ``op`` and aligned to the slowest unit
    (``LATENCY``)."""

    UNITS = (FpAdd, FpMul, FmaBf16, FpCompare, ToBf16, FromBf16, Exp2, Rcp, Rsqrt)
    LATENCY = max(u.LATENCY for u in UNITS)

    def __init__(self):
        super().__init__(lane_signature())

    def elaborate(self, platform):
        m = Module()
        st = Stages(m, self.en, "align")
        m.submodules.add = add = FpAdd()
        m.submodules.mul = mul = FpMul()
        m.submodules.fma = fma = FmaBf16()
        m.submodules.cmp = cmp = FpCompare()
        m.submodules.tobf = tobf = ToBf16()
        m.submodules.frombf = frombf = FromBf16()
        m.submodules.exp2 = exp2 = Exp2()
        m.submodules.rcp = rcp = Rcp()
        m.submodules.rsqrt = rsqrt = Rsqrt()

        cmp_op = cmp_op_for(m, self.op, comparator_map(FPU_OPS))
        m.d.comb += [
            add.a.eq(self.a), add.b.eq(self.b), add.sub.eq(self.op == Op.SUB),
            mul.a.eq(self.a), mul.b.eq(self.b),
            fma.a.eq(self.a[:16]), fma.b.eq(self.b[:16]), fma.c.eq(self.c),
            cmp.op.eq(cmp_op), cmp.a.eq(self.a), cmp.b.eq(self.b),
            tobf.a.eq(self.a), frombf.a.eq(self.a[:16]),
            exp2.a.eq(self.a), rcp.a.eq(self.a), rsqrt.a.eq(self.a),
        ]
        for unit in (add, mul, fma, cmp, tobf, frombf, exp2, rcp, rsqrt):
            m.d.comb += unit.en.eq(self.en)

        units = {"add": add, "mul": mul, "fma_bf16": fma, "cmp": cmp, "tobf": tobf,
                 "frombf": frombf, "exp2": exp2, "rcp": rcp, "rsqrt": rsqrt}
        results = lane_results(FPU_OPS, {n: (u.r, u.LATENCY) for n, u in units.items()})
        m.d.comb += self.r.eq(select_aligned(m, st, self.op, self.LATENCY, results))
        return m


class Fpu(wiring.Component):
    """``lanes`` :class:`FpuLane` behind one ready/valid stream, one opcode per element.

    Parameters
    ----------
    lanes : int
        SIMD width (the PCU's ``pcu_lanes`` in the demo).
    """

    LATENCY = FpuLane.LATENCY

    def __init__(self, lanes=1):
        self.lanes = lanes
        self.in_layout, self.out_layout = fpu_layouts(lanes)
        super().__init__({"i": In(stream.Signature(self.in_layout)),
                          "o": Out(stream.Signature(self.out_layout))})

    def elaborate(self, platform):
        m = Module()
        en = Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]
        st = Stages(m, en, "fpu")
        p = self.i.payload
        for k in range(self.lanes):
            lane = FpuLane()
            m.submodules[f"lane{k}"] = lane
            m.d.comb += [lane.en.eq(en), lane.op.eq(p.op), lane.a.eq(p.a[k]),
                         lane.b.eq(p.b[k]), lane.c.eq(p.c[k]), self.o.payload.r[k].eq(lane.r)]
        m.d.comb += [self.o.valid.eq(st.delay(self.i.valid, self.LATENCY, name="fpu_valid")),
                     self.o.payload.op.eq(st.delay(p.op, self.LATENCY, name="fpu_op"))]
        return m
