"""PMU address pipeline: a counter chain turned into LANES affine addresses per step,
predicated by an address range."""

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.counters import ITER_BITS, MAX_COUNTERS, CounterChain

from .config import address_config_layout, address_layout

__all__ = ["AddressGen"]


class AddressGen(wiring.Component):
    """Addresses of :func:`~hdl.pmu.config.address_config_layout`, one vector per
    step while ``o.ready``; ``start`` begins ``repeat`` runs back to back (kernel looping;
    ``busy`` until the final step left, the only one with ``last``).
    ``tag_level`` picks the counter whose value, shifted right by ``tag_shift``, goes out
    (low bits) as ``tag``."""

    def __init__(self, params):
        self.params = params
        super().__init__({
            "config": In(address_config_layout(params)),
            "start": In(1), "repeat": In(ITER_BITS), "busy": Out(1),
            "tag_level": In(range(MAX_COUNTERS)),
            "tag_shift": In(range(32)),
            "s": In(stream.Signature(32)),
            "o": Out(stream.Signature(address_layout(params))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, lanes = self.config, self.params.pcu_lanes
        m.submodules.chain = chain = CounterChain(lanes)
        step = chain.o.payload
        outer = Signal(signed(32))
        m.d.comb += outer.eq(sum(Mux((cfg.chain.depth > i + 1) & cfg.ctr_en[i],
                                     step.value[i], 0)
                                 for i in range(MAX_COUNTERS - 1)))
        # Window operands from the scalar input: base offset, then hi, per window.
        dyn = cfg.dyn
        need_base, need_hi = Signal(), Signal()
        base_off = Signal(signed(32))
        hi_dyn = Signal(signed(32))
        m.d.comb += self.s.ready.eq(need_base | need_hi)
        with m.If(self.start & ~self.busy):
            m.d.sync += [need_base.eq(dyn.base), need_hi.eq(dyn.hi), base_off.eq(0)]
        with m.Elif(self.s.valid & need_base):
            m.d.sync += [base_off.eq(self.s.payload), need_base.eq(0)]
        with m.Elif(self.s.valid & need_hi):
            m.d.sync += [hi_dyn.eq(self.s.payload), need_hi.eq(0)]
        with m.Elif(self.o.valid & self.o.ready & step.wrap.bit_select(dyn.level, 1) &
                    ~step.final):
            m.d.sync += [need_base.eq(dyn.base), need_hi.eq(dyn.hi)]
        hi = Mux(dyn.hi, hi_dyn, cfg.hi)
        loaded = ~need_base & ~need_hi

        p = self.o.payload
        for l in range(lanes):
            a = Signal(signed(32), name=f"addr{l}")
            m.d.comb += [a.eq(cfg.base + base_off + outer + step.lane[l] + cfg.lane_offset[l]),
                         p.addr[l].eq(a),
                         p.mask[l].eq(step.mask[l] & (a >= cfg.lo) & (a < hi))]
        m.d.comb += [chain.config.eq(cfg.chain), chain.start.eq(self.start),
                     chain.repeat.eq(self.repeat), p.wrap.eq(step.wrap), p.last.eq(step.final),
                     p.tag.eq(step.value[self.tag_level].as_unsigned() >> self.tag_shift),
                     self.o.valid.eq(chain.o.valid & loaded),
                     chain.o.ready.eq(self.o.ready & loaded),
                     self.busy.eq(chain.busy)]
        return m
