"""A kernel's configuration: every config register of the socket, as a bitstream.

A program load writes *every* register (units a kernel does not use get zeros and are
not started), so nothing of an earlier kernel's configuration survives into this one.
"""

from dataclasses import dataclass, field, replace

import numpy as np

from hdl.rdn.config import (IN_LOCAL, RATE_ONE, W, control_config_layout, switch_config_layout,
                            throttle_layout)
from hdl.socket import agcu_position, socket_config_units

from .agcu import access_words, stream_extents
from .bitstream import BitstreamError, bitstream_rows, unit_values
from .route import ControlRoutes, FabricRoutes, control_config, fabric_config

__all__ = ["KernelProgram", "kernel_program", "stream_words", "injection_ports", "throttled"]


def stream_words(buffer, args, key, access):
    """Global word addresses an AGCU stream visits, in order: its segment (``buffer``)
    moved by the argument ``args[key]``, then the access pattern."""
    return buffer.addr + args.get(key, 0) + access_words(access)


@dataclass(frozen=True)
class KernelProgram:
    """What the sequencer needs to run a kernel: the bitstream rows, the tile positions
    (``units``, a row-major bit mask) and the AGCUs (``agcus``) it starts; and for the
    reference backend ``execute(memory, args)``: the kernel applied to a memory image
    (uint32 words, global addresses) with AGCU arguments {(k, "load"/"store"): words}.
    ``layout``: where the compiler placed the kernel's units and how it routed its flows
    (a :class:`~firmware.compiler.place.Layout`; None for a hand-written bitstream).
    ``extents``: {(k, stream): (lo, hi, size)} — AGCU k's stream touches words
    ``lo .. hi - 1`` of its ``size``-word segment (``firmware.runtime.launch`` checks
    launch arguments and kernel-looping strides against them)."""
    name: str
    rows: np.ndarray = field(repr=False)
    units: int
    agcus: int
    execute: object = field(default=None, repr=False, compare=False)
    layout: object = field(default=None, repr=False, compare=False)
    extents: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def beats(self):
        """Config beats of the bitstream (= program-load cycles on the config bus)."""
        return len(self.rows)


def kernel_program(params, name, *, pcus=None, pmus=None, agcus=None, vec=None, sca=None,
                   ctl=None, execute=None, layout=None, partial=False):
    """Bitstream of a kernel. ``pcus`` / ``pmus``: {Coord: config value}; ``agcus``:
    {k: config value}; ``vec``, ``sca``: :class:`FabricRoutes`, ``ctl``:
    :class:`ControlRoutes` (nothing routed where missing); ``layout`` kept for reports.

    A whole bitstream writes every unit (those the kernel does not use get the idle
    config, 0). ``partial``: only the kernel's own units and the switches it routes
    through — fewer beats for a small kernel; the other units keep what the last program
    gave them, which is harmless: a launch starts only the program's units and AGCUs, and
    no flow of the kernel passes a switch it does not configure."""
    pcus, pmus, agcus = dict(pcus or {}), dict(pmus or {}), dict(agcus or {})
    units = socket_config_units(params)
    by_pos = {}
    for u in units:
        by_pos[u.name, u.row, u.col] = u
    values = {u.id: 0 for u in units}
    mask = 0
    for kind, table in (("pcu", pcus), ("pmu", pmus)):
        for (r, c), v in table.items():
            u = by_pos.get((kind, r, c))
            if u is None:
                raise BitstreamError(f"kernel {name!r}: there is no {kind.upper()} at row {r}, "
                                     f"column {c}")
            values[u.id] = v
            mask |= 1 << (r * params.cols + c)
    agcu_ids = [u.id for u in units if u.name == "agcu"]
    amask, extents = 0, {}
    for k, v in agcus.items():
        if not 0 <= k < len(agcu_ids):
            raise BitstreamError(f"kernel {name!r}: AGCU {k} does not exist "
                                 f"({len(agcu_ids)} AGCUs)")
        values[agcu_ids[k]] = v
        amask |= 1 << k
        extents.update({(k, name): e for name, e in stream_extents(params, v).items()})
    for kind, routes, conf, config_layout in (
            ("vec_switch", vec or FabricRoutes(), fabric_config, switch_config_layout(params)),
            ("sca_switch", sca or FabricRoutes(), fabric_config, switch_config_layout(params)),
            ("ctl_switch", ctl or ControlRoutes(), control_config,
             control_config_layout(params))):
        per_switch = conf(params, routes)
        for u in units:
            if u.name == kind:
                values[u.id] = config_layout.const(per_switch[u.row * params.cols + u.col]) \
                    .as_value().value
    own = {by_pos[kind, r, c].id for kind, t in (("pcu", pcus), ("pmu", pmus)) for r, c in t}
    own |= {agcu_ids[k] for k in agcus}
    keep = [u for u in units if not partial or u.id in own or
            (u.name.endswith("_switch") and values[u.id])]
    rows = bitstream_rows({u.id: (u.layout, values[u.id]) for u in keep})
    return KernelProgram(name, rows, mask, amask, execute, layout, extents)


def _switches(params, values):
    """{(fabric, col, row): unit id} of the switches among ``values`` ({unit id: config
    value}, a bitstream read back)."""
    by_id = {u.id: u for u in socket_config_units(params)}
    return {(by_id[uid].name[:3], by_id[uid].col, by_id[uid].row): uid for uid in values
            if by_id[uid].name in ("vec_switch", "sca_switch")}


def _edge_inputs(params):
    """{(col, row): input port} of the switch ports the AGCUs inject into."""
    return {(0 if side == W else params.cols - 1, row): side
            for side, row in (agcu_position(params, k) for k in range(params.agcus))}


def _injection_ports(params, values):
    layout, edges = switch_config_layout(params), _edge_inputs(params)
    ports = []
    for (fabric, x, y), uid in sorted(_switches(params, values).items()):
        conf = layout.from_bits(values[uid])
        for port in (IN_LOCAL, edges.get((x, y))):
            if port is not None and any(int(conf.table[port][f].out)
                                        for f in range(params.rdn_flows)):
                ports.append((fabric, x, y, port))
    return ports


def injection_ports(params, program):
    """(fabric, col, row, port) of every injection port (a unit's output, ``IN_LOCAL``, or an
    AGCU's edge port) ``program`` routes a flow from: where a token bucket can stall it."""
    return _injection_ports(params, unit_values(program.rows))


def throttled(params, program, throttles):
    """``program`` with token buckets on injection ports — a test's random stalls of the
    units and AGCUs that inject (the results must not change). ``throttles``: {(fabric,
    col, row, port): (rate, burst)}, ``rate`` in 1/RATE_ONE packets per cycle (a port the
    kernel already throttles keeps the lower rate)."""
    size = throttle_layout.size
    base = switch_config_layout(params)["throttle"].offset
    values = unit_values(program.rows)
    switches, legal = _switches(params, values), set(_injection_ports(params, values))
    for (fabric, x, y, port), (rate, burst) in throttles.items():
        if (fabric, x, y, port) not in legal:
            raise BitstreamError(f"throttle at {fabric} switch ({x},{y}) port {port}: not an "
                                 f"injection port of kernel {program.name!r}")
        if not (1 <= rate <= RATE_ONE and 1 <= burst < 1 << 8):
            raise BitstreamError(f"throttle rate {rate} / burst {burst}: 1 .. {RATE_ONE} / "
                                 f"1 .. 255")
        uid, at = switches[fabric, x, y], base + port * size
        old = throttle_layout.from_bits(values[uid] >> at & ((1 << size) - 1))
        if int(old.en):
            rate = min(rate, int(old.rate))
        bits = throttle_layout.const({"en": 1, "rate": rate, "burst": burst}).as_value().value
        values[uid] = values[uid] & ~(((1 << size) - 1) << at) | bits << at
    layouts = {u.id: u.layout for u in socket_config_units(params)}
    return replace(program, rows=bitstream_rows({uid: (layouts[uid], v)
                                                 for uid, v in values.items()}))
