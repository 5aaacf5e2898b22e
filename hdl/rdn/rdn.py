"""The reconfigurable dataflow network: vector, scalar and control fabrics."""

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hdl.packet import scalar_packet_layout, vector_packet_layout
from hdl.shared import forward

from .config import COUNTER_BITS, CTRL_LOCAL, rdn_config_layout, switch_counters_layout
from .control import ControlFabric
from .fabric import Fabric, fabric_ports_signature

__all__ = ["Rdn"]


class Rdn(wiring.Component):
    """All three fabrics of one tile behind one configuration record.

    Attributes
    ----------
    config : In(rdn_config_layout)
    vec, sca : Out(fabric_ports_signature)
        Unit-side and edge streams of the vector and scalar fabrics.
    tok_in, tok_out : control-token wires of each grid position.
    vec_counters, sca_counters, dropped, credit_error :
        Performance counters of every switch port, dropped-packet counts and credit-error
        flags (``dropped[0]`` vector, ``dropped[1]`` scalar fabric).
    """

    def __init__(self, params):
        self.params = params
        rows, cols = params.rows, params.cols
        n = rows * cols
        self.vec_fabric = Fabric(params, vector_packet_layout(params))
        self.sca_fabric = Fabric(params, scalar_packet_layout(params))
        self.ctl_fabric = ControlFabric(params)
        super().__init__({
            "config": In(rdn_config_layout(params)),
            "vec": Out(fabric_ports_signature(params, vector_packet_layout(params))),
            "sca": Out(fabric_ports_signature(params, scalar_packet_layout(params))),
            "tok_in": In(CTRL_LOCAL).array(rows, cols),
            "tok_out": Out(CTRL_LOCAL).array(rows, cols),
            "vec_counters": Out(switch_counters_layout()).array(n),
            "sca_counters": Out(switch_counters_layout()).array(n),
            "dropped": Out(COUNTER_BITS).array(2, n),
            "credit_error": Out(2 * n),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.params.rows * self.params.cols
        m.submodules.vec = v = self.vec_fabric
        m.submodules.sca = s = self.sca_fabric
        m.submodules.ctl = c = self.ctl_fabric
        for outer, inner in ((self.vec, v.ports), (self.sca, s.ports)):
            forward(m, outer, inner)
        m.d.comb += [v.config.eq(self.config.vec), s.config.eq(self.config.sca),
                     c.config.eq(self.config.ctl),
                     self.credit_error.eq(v.credit_error | (s.credit_error << n))]
        for k in range(n):
            m.d.comb += [self.vec_counters[k].eq(v.counters[k]),
                         self.sca_counters[k].eq(s.counters[k]),
                         self.dropped[0][k].eq(v.dropped[k]), self.dropped[1][k].eq(s.dropped[k])]
        for r in range(self.params.rows):
            for col in range(self.params.cols):
                m.d.comb += [c.tok_in[r][col].eq(self.tok_in[r][col]),
                             self.tok_out[r][col].eq(c.tok_out[r][col])]
        return m
