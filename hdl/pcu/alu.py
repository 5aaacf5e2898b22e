"""The functional unit of a PCU body stage: one lane, every SIMD op, fixed latency."""

from amaranth import DomainRenamer, Module, Mux, Signal
from amaranth.lib import wiring

from hdl.numerics.add import FpAdd
from hdl.numerics.compare import FpCompare, cmp_op_for
from hdl.numerics.convert import ToBf16
from hdl.numerics.fma import FmaBf16
from hdl.numerics.mul import FpMul
from hdl.numerics.ops import ALU_OPS, INT, OP_UNIT, Op, comparator_map, lane_signature
from hdl.numerics.pipeline import Stages

__all__ = ["Alu", "ALU_PATHS", "path_ops"]

#: The ALU's paths, each computing the ops :data:`OP_UNIT` gives its unit: the BF16 FMA
#: (BF16 rounding of a and b, then the FMA), the FP32 adder, multiplier, comparator and
#: the one-cycle integer / bitwise path. Each can run in a clock domain of its own.
ALU_PATHS = ("fma", "add", "mul", "cmp", INT)


def path_ops(path):
    """The ALU ops computed by ``path``."""
    return tuple(op for op in ALU_OPS if OP_UNIT[op] == path)


class _Path(wiring.Component):
    """One path of the ALU: ``r`` = its result ``Alu.LATENCY`` enabled cycles after
    ``op, a, b, c``. Except for the FMA (the slowest path), the operands are registered
    first (operand isolation: with the path in a gated clock domain, nothing of it is
    evaluated while it has no op) and the rest of the alignment delay follows the unit."""

    def __init__(self, path):
        self.path = path
        super().__init__(lane_signature())

    def elaborate(self, platform):
        m = Module()
        st = Stages(m, self.en, f"{self.path}_in")
        ins = {"op": self.op, "a": self.a, "b": self.b, "c": self.c}
        lead = 0 if self.path == "fma" else 1
        if lead:
            ins = {k: st.reg(v, name=f"{self.path}_in_{k}") for k, v in ins.items()}
        r, lat = getattr(self, f"_{self.path}")(m, **ins)
        m.d.comb += self.r.eq(st.delay(r, Alu.LATENCY - lead - lat, name=f"{self.path}_out"))
        return m

    def _unit(self, m, name, unit):
        m.submodules[name] = unit
        m.d.comb += unit.en.eq(self.en)
        return unit

    def _fma(self, m, op, a, b, c):
        st = Stages(m, self.en, "fma_c")
        rnd_a, rnd_b = self._unit(m, "rnd_a", ToBf16()), self._unit(m, "rnd_b", ToBf16())
        fma = self._unit(m, "fma", FmaBf16())
        m.d.comb += [rnd_a.a.eq(a), rnd_b.a.eq(b),
                     fma.a.eq(rnd_a.r), fma.b.eq(rnd_b.r),
                     fma.c.eq(st.delay(c, ToBf16.LATENCY))]
        return fma.r, ToBf16.LATENCY + FmaBf16.LATENCY

    def _add(self, m, op, a, b, c):
        add = self._unit(m, "add", FpAdd())
        m.d.comb += [add.a.eq(a), add.b.eq(b), add.sub.eq(op == Op.SUB)]
        return add.r, FpAdd.LATENCY

    def _mul(self, m, op, a, b, c):
        mul = self._unit(m, "mul", FpMul())
        m.d.comb += [mul.a.eq(a), mul.b.eq(b)]
        return mul.r, FpMul.LATENCY

    def _cmp(self, m, op, a, b, c):
        cmp = self._unit(m, "cmp", FpCompare())
        m.d.comb += [cmp.op.eq(cmp_op_for(m, op, comparator_map(ALU_OPS))),
                     cmp.a.eq(a), cmp.b.eq(b)]
        return cmp.r, FpCompare.LATENCY

    def _int(self, m, op, a, b, c):
        sh = b[:5]
        r = Signal(32)
        with m.Switch(op):
            with m.Case(Op.SELECT):
                m.d.comb += r.eq(Mux(c != 0, a, b))
            with m.Case(Op.AND):
                m.d.comb += r.eq(a & b)
            with m.Case(Op.OR):
                m.d.comb += r.eq(a | b)
            with m.Case(Op.XOR):
                m.d.comb += r.eq(a ^ b)
            with m.Case(Op.SHL):
                m.d.comb += r.eq((a << sh)[:32])
            with m.Case(Op.SHR):
                m.d.comb += r.eq(a >> sh)
            with m.Case(Op.IADD):
                m.d.comb += r.eq((a + b)[:32])
            with m.Case(Op.IMUL):
                m.d.comb += r.eq((a * b)[:32])
            with m.Case(Op.ILT):
                m.d.comb += r.eq(a.as_signed() < b.as_signed())
            with m.Default():        # PASS
                m.d.comb += r.eq(a)
        return Stages(m, self.en, "int").reg(r, "int_r"), 1


class Alu(wiring.Component):
    """``r = op(a, b, c)`` after ``LATENCY`` enabled cycles, one op per cycle, for the
    ops :data:`hdl.numerics.ops.ALU_OPS` (other opcodes give 0).

    The paths (:data:`ALU_PATHS`) run in parallel, each aligned to the slowest (fma:
    BF16 rounding of a and b, then the BF16 FMA). ``domains`` maps a path to the clock
    domain it runs in and its registers' enable (default: ``sync`` and ``en``): the body
    clocks a path only while an op of it is in flight (``hdl.clockgate``); the result is
    selected in ``sync``.
    """

    LATENCY = ToBf16.LATENCY + FmaBf16.LATENCY

    def __init__(self, domains=None):
        self.domains = domains or {}
        super().__init__(lane_signature())

    def elaborate(self, platform):
        m = Module()
        outs = {}
        for path in ALU_PATHS:
            unit = _Path(path)
            domain, en = self.domains.get(path, ("sync", self.en))
            m.submodules[path] = unit if domain == "sync" else DomainRenamer(domain)(unit)
            m.d.comb += [unit.en.eq(en), unit.op.eq(self.op), unit.a.eq(self.a),
                         unit.b.eq(self.b), unit.c.eq(self.c)]
            outs[path] = unit.r
        op_out = Stages(m, self.en, "alu").delay(self.op, self.LATENCY, name="alu_op")
        with m.Switch(op_out):
            for op in ALU_OPS:
                with m.Case(op):
                    m.d.comb += self.r.eq(outs[OP_UNIT[op]])
            with m.Default():
                m.d.comb += self.r.eq(0)
        return m
