"""The control fabric: circuit-switched 1-bit token wires routed by configuration."""

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .config import (CTRL_LOCAL, LINKS, OPPOSITE, STEP, control_config_layout,
                     control_fabric_config_layout, ctrl_inputs, ctrl_outputs, ctrl_wire)

__all__ = ["ControlSwitch", "ControlFabric"]


class ControlSwitch(wiring.Component):
    """Every output wire carries, one cycle later, the input wire its ``sel`` names
    (``sel`` = 0: constant 0). A token is a one-cycle pulse; a registered hop keeps
    every pulse, so a token is never lost or duplicated on its way."""

    def __init__(self, params):
        self.params = params
        super().__init__({"config": In(control_config_layout(params)),
                          "t_in": In(ctrl_inputs(params)), "t_out": Out(ctrl_outputs(params))})

    def elaborate(self, platform):
        m = Module()
        for k in range(ctrl_outputs(self.params)):
            with m.Switch(self.config.sel[k]):
                for j in range(ctrl_inputs(self.params)):
                    with m.Case(j + 1):
                        m.d.sync += self.t_out[k].eq(self.t_in[j])
                with m.Default():
                    m.d.sync += self.t_out[k].eq(0)
        return m


class ControlFabric(wiring.Component):
    """Control switches on the grid; link tracks join neighbours, tracks leaving the grid
    are tied to 0. ``tok_in[r][c]`` are the unit's token outputs (into the fabric),
    ``tok_out[r][c]`` its token inputs."""

    def __init__(self, params):
        self.params = params
        rows, cols = params.rows, params.cols
        super().__init__({
            "config": In(control_fabric_config_layout(params)),
            "tok_in": In(CTRL_LOCAL).array(rows, cols),
            "tok_out": Out(CTRL_LOCAL).array(rows, cols),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        rows, cols, t = p.rows, p.cols, p.rdn_tracks
        sw = {}
        for r in range(rows):
            for c in range(cols):
                s = sw[r, c] = m.submodules[f"ctl_{r}_{c}"] = ControlSwitch(p)
                unit = ctrl_wire(p, LINKS, 0)
                m.d.comb += [s.config.eq(self.config[r * cols + c]),
                             s.t_in[unit:].eq(self.tok_in[r][c]),
                             self.tok_out[r][c].eq(s.t_out[unit:])]
        for (r, c), s in sw.items():
            for d, (dx, dy) in STEP.items():
                nb = sw.get((r + dy, c + dx))
                if nb is not None:
                    o = OPPOSITE[d]
                    m.d.comb += nb.t_in[ctrl_wire(p, o, 0):ctrl_wire(p, o, t)].eq(
                        s.t_out[ctrl_wire(p, d, 0):ctrl_wire(p, d, t)])
        return m
