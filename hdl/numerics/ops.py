"""The one op table: every opcode of the PCU body ALU and of the FPU demo.

An op is written once here: its enum member (the encoding in a configuration word),
the numerics unit that computes it (and with it the op's latency, the unit's
``LATENCY``) and which lanes have it. :class:`hdl.pcu.alu.Alu` and
:class:`hdl.numerics.fpu.FpuLane` build their result selection from :data:`OP_UNIT`; the
bit-exact reference of each op is ``firmware.numerics.OP_REFERENCE[op.name]`` (the
firmware is above the hardware, so the table of functions lives there, keyed by these
names; a test checks that both name the same ops).
"""

from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

from .compare import CmpOp

__all__ = ["Op", "OP_UNIT", "ALU_OPS", "FPU_OPS", "CMP_OF", "INT", "comparator_map",
           "lane_results", "lane_signature"]


class Op(enum.Enum, shape=5):
    """Opcodes (ARCHITECTURE.md section 4). Comments give the reference semantics."""
    PASS = 0        # a
    FMA = 1         # simd_fma(a, b, c): a, b rounded to BF16, exact product, + c in FP32
    ADD = 2         # fp32_add(a, b)
    SUB = 3         # fp32_sub(a, b)
    MUL = 4         # fp32_mul(a, b)
    MAX = 5         # fp32_max(a, b)
    MIN = 6         # fp32_min(a, b)
    CMP_EQ = 7      # fp32_cmp(a, b, EQ): FP32 1.0 or +0.0
    CMP_LT = 8
    CMP_LE = 9
    SELECT = 10     # select(c, a, b): a if c != 0 else b
    AND = 11
    OR = 12
    XOR = 13
    SHL = 14        # shl(a, b): a << (b mod 32)
    SHR = 15        # shr(a, b): logical
    IADD = 16       # i32_add(a, b)
    IMUL = 17       # i32_mul(a, b): low 32 bits
    ILT = 18        # i32_lt(a, b): signed, integer 1 or 0
    FMA_BF16 = 19   # fp32_fma_bf16(a[15:0], b[15:0], c): operands already BF16
    TO_BF16 = 20    # fp32_to_bf16(a), result in bits [15:0]
    FROM_BF16 = 21  # bf16_to_fp32(a[15:0])
    EXP2 = 22       # the tail's functions
    RCP = 23
    RSQRT = 24


#: The one-cycle integer and bitwise path of the ALU (no numerics unit).
INT = "int"

#: op -> the unit computing it: a numerics unit name of the lanes (``fma``: BF16 rounding
#: of a and b, then the BF16 FMA; ``fma_bf16``: the FMA on BF16 operands) or :data:`INT`.
OP_UNIT = {
    Op.PASS: INT, Op.FMA: "fma", Op.ADD: "add", Op.SUB: "add", Op.MUL: "mul",
    Op.MAX: "cmp", Op.MIN: "cmp", Op.CMP_EQ: "cmp", Op.CMP_LT: "cmp", Op.CMP_LE: "cmp",
    Op.SELECT: INT, Op.AND: INT, Op.OR: INT, Op.XOR: INT, Op.SHL: INT, Op.SHR: INT,
    Op.IADD: INT, Op.IMUL: INT, Op.ILT: INT,
    Op.FMA_BF16: "fma_bf16", Op.TO_BF16: "tobf", Op.FROM_BF16: "frombf",
    Op.EXP2: "exp2", Op.RCP: "rcp", Op.RSQRT: "rsqrt",
}

#: The comparator op behind each op computed by the comparator.
CMP_OF = {Op.MAX: CmpOp.MAX, Op.MIN: CmpOp.MIN, Op.CMP_EQ: CmpOp.EQ, Op.CMP_LT: CmpOp.LT,
          Op.CMP_LE: CmpOp.LE}

#: The ops of a PCU body stage, and of the FPU demo lane (ARCHITECTURE.md section 4).
ALU_OPS = tuple(op for op in Op if op.value <= Op.ILT.value)
FPU_OPS = (Op.ADD, Op.SUB, Op.MUL, Op.FMA_BF16, Op.MAX, Op.MIN, Op.CMP_EQ, Op.CMP_LT,
           Op.CMP_LE, Op.TO_BF16, Op.FROM_BF16, Op.EXP2, Op.RCP, Op.RSQRT)

assert set(OP_UNIT) == set(Op) and all(OP_UNIT[op] == "cmp" for op in CMP_OF)


def comparator_map(ops):
    """{op: comparator op} for the ops of ``ops`` that the comparator computes."""
    return {op: CMP_OF[op] for op in ops if op in CMP_OF}


def lane_results(ops, outs):
    """The ``select_aligned`` table of a lane having ``ops``: ``outs`` maps each unit name
    of :data:`OP_UNIT` the lane has to (its output, its latency)."""
    missing = sorted({OP_UNIT[op] for op in ops} - set(outs))
    if missing:
        raise ValueError(f"the lane has ops computed by units it lacks: {missing}")
    return {op: outs[OP_UNIT[op]] for op in ops}


def lane_signature():
    """The ports of a one-lane multi-op unit: ``r = op(a, b, c)`` while ``en``."""
    return wiring.Signature({"en": In(1), "op": In(Op), "a": In(32), "b": In(32),
                             "c": In(32), "r": Out(32)})
