"""The tile: a ROWS x COLS checkerboard of PCUs and PMUs on the RDN mesh, every config
register on the config bus, the AGCU attachment points (edge ports) as its own ports."""

from dataclasses import dataclass

from amaranth import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.counters import ITER_BITS
from hdl.grid import Coord, is_pcu
from hdl.packet import scalar_packet_layout, vector_packet_layout

from .configbus import ConfigTarget, config_beat_layout
from .pcu.config import pcu_config_layout
from .pcu.pcu import Pcu
from .pmu.config import pmu_config_layout
from .pmu.pmu import Pmu
from .rdn.config import (COUNTER_BITS, control_config_layout, switch_config_layout,
                         switch_counters_layout)
from .rdn.rdn import Rdn
from .shared import Shared, unit_module_name

__all__ = ["is_pcu", "TileUnit", "tile_units", "ConfigUnit", "config_units", "Tile"]


@dataclass(frozen=True)
class TileUnit:
    """A unit of the tile: ``name`` numbers each kind in row-major order (``pcu0``,
    ``pcu1``, ..., ``pmu0``, ...) — the name reports, pictures and waveform options use;
    ``instance`` is its submodule name in the tile."""
    name: str
    kind: str            # "pcu" | "pmu"
    row: int
    col: int

    @property
    def instance(self):
        return f"{self.kind}_{self.row}_{self.col}"

    @property
    def pos(self):
        return Coord(self.row, self.col)


def tile_units(params):
    """Every PCU and PMU of the tile, row-major."""
    seen = {"pcu": 0, "pmu": 0}
    out = []
    for r in range(params.rows):
        for c in range(params.cols):
            kind = "pcu" if is_pcu(r, c) else "pmu"
            out.append(TileUnit(f"{kind}{seen[kind]}", kind, r, c))
            seen[kind] += 1
    return out


@dataclass(frozen=True)
class ConfigUnit:
    """A config register on the bus: its id, what it configures, and its layout."""
    id: int
    name: str            # "pcu", "pmu", "vec_switch", "sca_switch", "ctl_switch"
    row: int
    col: int
    layout: object


def config_units(params):
    """Every config register of the tile, by bus id: unit (r, c) has id r x COLS + c,
    then the vector, scalar and control switches in the same order."""
    n = params.rows * params.cols
    out = []
    for k in range(n):
        r, c = divmod(k, params.cols)
        pcu = is_pcu(r, c)
        out.append(ConfigUnit(k, "pcu" if pcu else "pmu", r, c,
                              pcu_config_layout(params) if pcu else pmu_config_layout(params)))
    for base, name, layout in ((n, "vec_switch", switch_config_layout(params)),
                               (2 * n, "sca_switch", switch_config_layout(params)),
                               (3 * n, "ctl_switch", control_config_layout(params))):
        out += [ConfigUnit(base + k, name, *divmod(k, params.cols), layout) for k in range(n)]
    return out


class Tile(wiring.Component):
    """Units and network of one tile.

    Every PCU and PMU is one shared Verilog module per type (``hdl.shared``). Wiring per
    position: a PCU's ``vout`` / ``sout`` inject into the vector / scalar fabric, its
    ``vin0``, ``vin1`` take vector deliveries 0 and 1 and ``sin0`` scalar delivery 0; a
    PMU's ``vout`` injects, ``vin`` takes vector delivery 0, ``wsin`` / ``rsin`` scalar
    deliveries 0 / 1. Unused deliveries are never ready (firmware routes nothing there).
    A PCU's ``tok_out`` drives control wire 0 of its switch, ``tok_in`` takes wire 0.

    Attributes
    ----------
    cfg : In(stream(config_beat_layout))     the config bus (always ready).
    start : In(ROWS x COLS)                  starts the unit at each position.
    iters : In(ITER_BITS)                    kernel-looping iterations of what starts.
    busy, done : Out(ROWS x COLS)            per position (a PMU is done when not busy).
    vec_west_in[r], vec_west_out[r], vec_east_in[r], vec_east_out[r], and ``sca_*``:
        the edge streams of each row (AGCU attachment points).
    vec_counters[k], sca_counters[k], dropped, credit_error : the RDN's.
    """

    def __init__(self, params):
        self.params = params
        rows, n = params.rows, params.rows * params.cols
        members = {"cfg": In(stream.Signature(config_beat_layout)), "start": In(n),
                   "iters": In(ITER_BITS),
                   "busy": Out(n), "done": Out(n)}
        for fabric, layout in (("vec", vector_packet_layout(params)),
                               ("sca", scalar_packet_layout(params))):
            s = stream.Signature(layout)
            for side in ("west", "east"):
                members[f"{fabric}_{side}_in"] = In(s).array(rows)
                members[f"{fabric}_{side}_out"] = Out(s).array(rows)
            members[f"{fabric}_counters"] = Out(switch_counters_layout()).array(n)
        members["dropped"] = Out(COUNTER_BITS).array(2, n)
        members["credit_error"] = Out(2 * n)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        p = self.params
        n = p.rows * p.cols
        rdn = m.submodules.rdn = Rdn(p)

        # Config bus: registered once, then to every target.
        bus = Signal.like(self.cfg.payload)
        bus_valid = Signal()
        m.d.comb += self.cfg.ready.eq(1)
        m.d.sync += [bus.eq(self.cfg.payload), bus_valid.eq(self.cfg.valid)]
        regs = {}
        for u in config_units(p):
            t = m.submodules[f"cfg{u.id}"] = ConfigTarget(u.layout, u.id)
            m.d.comb += [t.bus.payload.eq(bus), t.bus.valid.eq(bus_valid)]
            regs[u.id] = t.config
        for k in range(n):
            m.d.comb += [rdn.config.vec[k].eq(regs[n + k]), rdn.config.sca[k].eq(regs[2 * n + k]),
                         rdn.config.ctl[k].eq(regs[3 * n + k])]

        pcu_name, pmu_name = unit_module_name("pcu", p), unit_module_name("pmu", p)
        busy, done = [], []
        for k in range(n):
            r, c = divmod(k, p.cols)
            vinj, sinj = rdn.vec.inj[r][c], rdn.sca.inj[r][c]
            vdlv, sdlv = rdn.vec.dlv[r][c], rdn.sca.dlv[r][c]
            if is_pcu(r, c):
                u = m.submodules[f"pcu_{r}_{c}"] = Shared(pcu_name, lambda: Pcu(p))
                _deliver(m, vdlv[0], u.vin0)
                _deliver(m, vdlv[1], u.vin1)
                _deliver(m, sdlv[0], u.sin0, body=False)
                m.d.comb += sdlv[1].ready.eq(0)
                _inject(m, u.vout, vinj)
                _inject(m, u.sout, sinj)
                m.d.comb += [rdn.tok_in[r][c].eq(u.tok_out), u.tok_in.eq(rdn.tok_out[r][c][0])]
                done.append(u.done)
            else:
                u = m.submodules[f"pmu_{r}_{c}"] = Shared(pmu_name, lambda: Pmu(p))
                _deliver(m, vdlv[0], u.vin)
                m.d.comb += vdlv[1].ready.eq(0)
                _deliver(m, sdlv[0], u.wsin, body=False)
                _deliver(m, sdlv[1], u.rsin, body=False)
                _inject(m, u.vout, vinj)
                # A PMU's reads may leave by several flows (config.r_flow).
                m.d.comb += [vinj.payload.hdr.flow.eq(u.vout_flow), sinj.valid.eq(0)]
                done.append(~u.busy)
            m.d.comb += [u.config.eq(regs[k]), u.start.eq(self.start[k]),
                         u.iters.eq(self.iters)]
            busy.append(u.busy)
        m.d.comb += [self.busy.eq(Cat(*busy)), self.done.eq(Cat(*done))]

        for fabric in ("vec", "sca"):
            f = getattr(rdn, fabric)
            for side in ("west", "east"):
                for r in range(p.rows):
                    wiring.connect(m, wiring.flipped(getattr(self, f"{fabric}_{side}_in")[r]),
                                   getattr(f, f"{side}_in")[r])
                    wiring.connect(m, getattr(f, f"{side}_out")[r],
                                   wiring.flipped(getattr(self, f"{fabric}_{side}_out")[r]))
        for k in range(n):
            m.d.comb += [self.vec_counters[k].eq(rdn.vec_counters[k]),
                         self.sca_counters[k].eq(rdn.sca_counters[k]),
                         self.dropped[0][k].eq(rdn.dropped[0][k]),
                         self.dropped[1][k].eq(rdn.dropped[1][k])]
        m.d.comb += self.credit_error.eq(rdn.credit_error)
        return m


def _deliver(m, dlv, port, body=True):
    """A delivered packet's body (or, for a scalar port of 32 bits, its data) to a unit
    input stream."""
    m.d.comb += [port.valid.eq(dlv.valid), dlv.ready.eq(port.ready),
                 port.payload.eq(dlv.payload.body if body else dlv.payload.body.data)]


def _inject(m, port, inj):
    """A unit output stream into the network; the header comes from the unit's switch
    (the injection port's flow table), so it is left zero here."""
    m.d.comb += [inj.valid.eq(port.valid), port.ready.eq(inj.ready),
                 inj.payload.body.eq(port.payload)]
