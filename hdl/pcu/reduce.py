"""Cross-lane reduction network of a PCU: log2(LANES) levels of pairwise FP ops."""

from amaranth import Module, Mux
from amaranth.lib import data, enum, wiring
from amaranth.lib.wiring import In, Out

from hdl.numerics.add import FpAdd
from hdl.numerics.compare import CmpOp, FpCompare
from hdl.numerics.pipeline import Stages, select_aligned

__all__ = ["ReduceOp", "ReduceTree", "IDENTITY"]


class ReduceOp(enum.Enum, shape=1):
    ADD = 0
    MAX = 1


#: What a masked-off lane contributes: the op's identity (-0 + x = x for every x,
#: including +0; max(-inf, x) = x).
IDENTITY = {ReduceOp.ADD: 0x80000000, ReduceOp.MAX: 0xFF800000}


class ReduceTree(wiring.Component):
    """``r`` = the reduction of the lanes of ``i`` whose ``mask`` bit is set.

    The order is fixed and documented (the reference follows it): level 0 combines lanes
    (0,1), (2,3), ...; level k combines the results of level k-1 pairwise in the same way.
    ``LATENCY`` = log2(lanes) x ``add_latency`` (max is delayed to match); the header's
    operand tree uses one-cycle adders so it adds little to the pipeline.
    """

    def __init__(self, lanes, add_latency=FpAdd.LATENCY):
        if lanes < 2 or lanes & (lanes - 1):
            raise ValueError(f"lanes must be a power of two >= 2, got {lanes}")
        self.lanes = lanes
        self.levels = lanes.bit_length() - 1
        self.add_latency = add_latency
        self.LATENCY = self.latency(lanes, add_latency)
        super().__init__({
            "en": In(1), "op": In(ReduceOp),
            "i": In(data.ArrayLayout(32, lanes)), "mask": In(lanes), "r": Out(32),
        })

    @staticmethod
    def latency(lanes, add_latency=FpAdd.LATENCY):
        return (lanes.bit_length() - 1) * add_latency

    def elaborate(self, platform):
        m = Module()
        identity = Mux(self.op == ReduceOp.ADD, IDENTITY[ReduceOp.ADD], IDENTITY[ReduceOp.MAX])
        values = [Mux(self.mask[k], self.i[k], identity) for k in range(self.lanes)]
        op = self.op
        for level in range(self.levels):
            st = Stages(m, self.en, f"red{level}")
            nxt = []
            for pair in range(len(values) // 2):
                a, b = values[2 * pair], values[2 * pair + 1]
                add, cmp = FpAdd(self.add_latency), FpCompare()
                m.submodules[f"add_{level}_{pair}"] = add
                m.submodules[f"max_{level}_{pair}"] = cmp
                m.d.comb += [add.en.eq(self.en), add.a.eq(a), add.b.eq(b), add.sub.eq(0),
                             cmp.en.eq(self.en), cmp.op.eq(CmpOp.MAX), cmp.a.eq(a),
                             cmp.b.eq(b)]
                nxt.append(select_aligned(
                    m, Stages(m, self.en, f"red{level}_{pair}"), op, self.add_latency,
                    {ReduceOp.ADD: (add.r, self.add_latency), ReduceOp.MAX: (cmp.r, 1)}))
            values = nxt
            op = st.delay(op, self.add_latency, name=f"red{level}_op")
        m.d.comb += self.r.eq(values[0])
        return m
