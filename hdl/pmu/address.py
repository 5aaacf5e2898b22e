"""PMU address pipeline: a counter chain turned into LANES affine addresses per step,
predicated by an address range."""

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.pcu.config import MAX_COUNTERS
from hdl.pcu.counters import CounterChain

from .config import address_config_layout, address_layout

__all__ = ["AddressGen"]


class AddressGen(wiring.Component):
    """Addresses of :func:`~hdl.pmu.config.address_config_layout`, one vector per
    step while ``o.ready``; ``start`` begins a run (``busy`` until its last step left)."""

    def __init__(self, params):
        self.params = params
        super().__init__({
            "config": In(address_config_layout(params)),
            "start": In(1), "busy": Out(1),
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
        p = self.o.payload
        for l in range(lanes):
            a = Signal(signed(32), name=f"addr{l}")
            m.d.comb += [a.eq(cfg.base + outer + step.lane[l] + cfg.lane_offset[l]),
                         p.addr[l].eq(a),
                         p.mask[l].eq(step.mask[l] & (a >= cfg.lo) & (a < cfg.hi))]
        m.d.comb += [chain.config.eq(cfg.chain), chain.start.eq(self.start),
                     p.wrap.eq(step.wrap), p.last.eq(step.last),
                     self.o.valid.eq(chain.o.valid), chain.o.ready.eq(self.o.ready),
                     self.busy.eq(chain.busy)]
        return m
