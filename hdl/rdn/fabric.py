"""A ROWS x COLS mesh of packet switches: one fabric (vector or scalar) of the RDN."""

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .config import (COUNTER_BITS, E, LOCAL_OUT, N, S, W, fabric_config_layout,
                     switch_counters_layout)
from .switch import EDGE, LINK, NONE, Switch

__all__ = ["fabric_ports_signature", "Fabric"]


def fabric_ports_signature(params, packet):
    """The unit-side and edge-side streams of one fabric.

    ``inj[r][c]`` carries packets from the unit at row r, column c into the network,
    ``dlv[r][c][k]`` delivers to its local output k; ``west_in[r]``/``west_out[r]`` and
    ``east_in[r]``/``east_out[r]`` are the AGCU attachment points of row r.
    """
    s = stream.Signature(packet)
    rows, cols = params.rows, params.cols
    return wiring.Signature({
        "inj": In(s).array(rows, cols),
        "dlv": Out(s).array(rows, cols, LOCAL_OUT),
        "west_in": In(s).array(rows),
        "west_out": Out(s).array(rows),
        "east_in": In(s).array(rows),
        "east_out": Out(s).array(rows),
    })


class Fabric(wiring.Component):
    """Switches at every grid position, neighbours joined by credit links.

    Attributes
    ----------
    config : In(fabric_config_layout)
        ``config[r * cols + c]`` configures the switch at row r, column c.
    ports : Out(fabric_ports_signature)
    counters, dropped, credit_error :
        Per switch (row-major) port counters, dropped packets, credit-error flags.
    """

    def __init__(self, params, packet):
        self.params, self.packet = params, packet
        n = params.rows * params.cols
        super().__init__({
            "config": In(fabric_config_layout(params)),
            "ports": Out(fabric_ports_signature(params, packet)),
            "counters": Out(switch_counters_layout()).array(n),
            "dropped": Out(COUNTER_BITS).array(n),
            "credit_error": Out(n),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        rows, cols = p.rows, p.cols
        sw = {}
        for r in range(rows):
            for c in range(cols):
                kinds = {N: LINK if r > 0 else NONE, S: LINK if r < rows - 1 else NONE,
                         W: LINK if c > 0 else EDGE, E: LINK if c < cols - 1 else EDGE}
                s = sw[r, c] = m.submodules[f"sw_{r}_{c}"] = Switch(p, self.packet, c, r, kinds)
                k = r * cols + c
                m.d.comb += [s.config.eq(self.config[k]), self.counters[k].eq(s.counters),
                             self.dropped[k].eq(s.dropped), self.credit_error[k].eq(s.credit_error)]
                wiring.connect(m, wiring.flipped(self.ports.inj[r][c]), s.l_in)
                for j in range(LOCAL_OUT):
                    wiring.connect(m, s.l_out[j], wiring.flipped(self.ports.dlv[r][c][j]))
        for r in range(rows):
            for c in range(cols):
                s = sw[r, c]
                if c + 1 < cols:
                    wiring.connect(m, s.link_out[E], sw[r, c + 1].link_in[W])
                    wiring.connect(m, sw[r, c + 1].link_out[W], s.link_in[E])
                if r + 1 < rows:
                    wiring.connect(m, s.link_out[S], sw[r + 1, c].link_in[N])
                    wiring.connect(m, sw[r + 1, c].link_out[N], s.link_in[S])
            wiring.connect(m, wiring.flipped(self.ports.west_in[r]), sw[r, 0].edge_in[W])
            wiring.connect(m, sw[r, 0].edge_out[W], wiring.flipped(self.ports.west_out[r]))
            wiring.connect(m, wiring.flipped(self.ports.east_in[r]), sw[r, cols - 1].edge_in[E])
            wiring.connect(m, sw[r, cols - 1].edge_out[E], wiring.flipped(self.ports.east_out[r]))
        return m
