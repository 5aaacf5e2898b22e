"""Routing flows through the RDN and packing the switch tables.

A *flow* is a stream of packets from one injection port (a unit's output, or an AGCU
edge port) to one or more delivery ports (a unit's local outputs, or edge ports).
Static flows follow dimension-order (X then Y) paths, or paths of their own (``moves``,
chosen by placement where dimension order would make flows share links); a multicast
flow is the tree of its paths, copied where branches part. Every hop has a flow-table
entry at the switch input it arrives on, and a flow id that is unique at that input; the
router allocates the ids. Dynamic flows carry their destination in the header and need no
table entry; both kinds count against link capacity.

Control flows route token wires through the control fabric the same way, one track per
link.

Bits are packed with the layouts of ``hdl/rdn/config.py``.
"""

from dataclasses import dataclass, field
from typing import NamedTuple

from hdl.grid import Coord
from hdl.rdn.config import (BURST_BITS, CTRL_LOCAL, E, IN_LOCAL, LINKS, LOCAL_OUT, N, N_OUT,
                            OPPOSITE, OUT_L0, PORT_NAMES_IN, PORT_NAMES_OUT, RATE_ONE, S, STEP,
                            W, ctrl_outputs, ctrl_wire, fabric_config_layout,
                            rdn_config_layout)

__all__ = ["RouteError", "Endpoint", "unit_src", "unit_dst", "edge_src", "edge_dst", "Flow",
           "FabricRoutes", "route", "flow_path", "check_tables", "fabric_config", "pack_fabric",
           "Token", "ControlFlow", "ControlRoutes", "route_control", "control_config", "pack_rdn",
           "xy_path"]

_EXIT = 16          # ids_used key offset of delivery ports (output port + _EXIT)


class RouteError(ValueError):
    """A flow that cannot be routed, an over-subscribed link, or a bad table; the
    message names the flow and the link."""


@dataclass(frozen=True)
class Endpoint:
    """A port at the switch of grid position ``pos`` (a :class:`~hdl.grid.Coord`): for a
    source, the input port packets enter by (``IN_LOCAL`` for the unit, W/E for an edge
    port); for a destination, the output port they leave by (``OUT_L0 + k`` for the unit's
    local output k, or W/E). Names and tables use (x, y) = (col, row)."""
    pos: Coord
    port: int

    def __post_init__(self):
        object.__setattr__(self, "pos", Coord(*self.pos))

    @property
    def x(self):
        return self.pos.col

    @property
    def y(self):
        return self.pos.row

    def name(self, output):
        names = PORT_NAMES_OUT if output else PORT_NAMES_IN
        return f"({self.x},{self.y}).{names[self.port]}"


def unit_src(pos):
    """The injection port of the unit at ``pos``."""
    return Endpoint(pos, IN_LOCAL)


def unit_dst(pos, k=0):
    """Delivery port ``k`` of the unit at ``pos`` (a PCU's vin0/vin1, a PMU's vin, ...)."""
    if not 0 <= k < LOCAL_OUT:
        raise RouteError(f"unit output {k} does not exist (a switch has {LOCAL_OUT})")
    return Endpoint(pos, OUT_L0 + k)


def _edge(params, side, row):
    if side not in ("W", "E"):
        raise RouteError(f"edge side {side!r}: must be 'W' or 'E'")
    return Endpoint(Coord(row, 0 if side == "W" else params.cols - 1), W if side == "W" else E)


def edge_src(params, side, row):
    """The AGCU attachment on the ``side`` ('W' or 'E') edge of ``row`` as a source."""
    return _edge(params, side, row)


edge_dst = edge_src


@dataclass(frozen=True)
class Flow:
    """A flow to route.

    Attributes
    ----------
    name : str
    src : Endpoint
    dsts : tuple of Endpoint
        More than one is multicast (static flows only).
    rate : float
        Packets per cycle the flow needs on every link it uses (at most 1).
    dynamic : bool
        Dimension-order routed by the header instead of flow tables.
    moves : tuple or None
        Static flows: per destination, the directions (N/E/S/W) of its path's links from
        the source switch (None: dimension order). Paths to several destinations must
        form a tree (where two meet on a link they came by the same links).
    """
    name: str
    src: Endpoint
    dsts: tuple
    rate: float = 1.0
    dynamic: bool = False
    moves: tuple | None = None


def _is_edge(params, x, port):
    return (port == W and x == 0) or (port == E and x == params.cols - 1)


def _check_endpoint(params, flow, ep, output):
    what = "destination" if output else "source"
    if not (0 <= ep.x < params.cols and 0 <= ep.y < params.rows):
        raise RouteError(f"flow {flow.name!r}: {what} switch ({ep.x},{ep.y}) is outside the "
                         f"{params.rows} x {params.cols} grid")
    if output:
        ok = OUT_L0 <= ep.port < N_OUT or _is_edge(params, ep.x, ep.port)
    else:
        ok = ep.port == IN_LOCAL or _is_edge(params, ep.x, ep.port)
    if not ok:
        raise RouteError(f"flow {flow.name!r}: {what} {ep.name(output)} is neither a unit port "
                         f"nor an edge port")


def xy_path(src, dst):
    """Hops of the dimension-order path: a list of (x, y, in_port, out_port)."""
    hops = []
    x, y, inp = src.x, src.y, src.port
    while True:
        if dst.x != x:
            out = E if dst.x > x else W
        elif dst.y != y:
            out = S if dst.y > y else N
        else:
            hops.append((x, y, inp, dst.port))
            return hops
        hops.append((x, y, inp, out))
        dx, dy = STEP[out]
        x, y, inp = x + dx, y + dy, OPPOSITE[out]


def flow_path(src, dst, moves=None):
    """Hops (x, y, in_port, out_port) from ``src`` to ``dst``: the dimension-order path, or
    the links of ``moves`` (directions from the source switch) then the delivery port."""
    if moves is None:
        return xy_path(src, dst)
    hops = []
    x, y, inp = src.x, src.y, src.port
    for out in moves:
        hops.append((x, y, inp, out))
        dx, dy = STEP[out]
        x, y, inp = x + dx, y + dy, OPPOSITE[out]
    if (x, y) != (dst.x, dst.y):
        raise RouteError(f"path {moves} from {src.name(False)} ends at switch ({x},{y}), "
                         f"not at {dst.name(True)}")
    hops.append((x, y, inp, dst.port))
    return hops


def _link_name(x, y, out):
    if out < LINKS:
        dx, dy = STEP[out]
        return f"({x},{y})->{PORT_NAMES_OUT[out]}->({x + dx},{y + dy})"
    return f"({x},{y})->{PORT_NAMES_OUT[out]}"


@dataclass
class FabricRoutes:
    """The routed flows of one fabric.

    Attributes
    ----------
    tables : dict
        (x, y) -> {in_port: {flow_id: (out_mask, new_flow_id)}}.
    throttles : dict
        (x, y) -> {in_port: (rate, burst)}; rate in 1/RATE_ONE packets per cycle.
    headers : dict
        Flow name -> the header fields its packets are injected with.
    arrivals : dict
        Flow name -> {destination Endpoint: flow id of the packets delivered there}.
    load : dict
        (x, y, out_port) -> [(flow name, rate)] for every directed link and port used.
    ids_used : dict
        (x, y, in_port) -> flow ids allocated there.
    """
    tables: dict = field(default_factory=dict)
    throttles: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)
    arrivals: dict = field(default_factory=dict)
    load: dict = field(default_factory=dict)
    ids_used: dict = field(default_factory=dict)

    def shared_links(self):
        """Links and delivery ports more than one flow uses: [(link name, flow names)].
        Flows that share a link's buffers can block each other."""
        return [(_link_name(x, y, port[0]), [n for n, _ in users])
                for (x, y, *port), users in sorted(self.load.items(), key=str)
                if port[0] != "inject" and len(users) > 1]

    def require_own_links(self, what, shares=None):
        """RouteError (naming ``what``, the flows and the link) if two flows share a link:
        a pipeline whose stages wait on each other can deadlock when a stalled consumer's
        packets hold up another flow's behind them in a shared link buffer. ``shares``:
        flow name -> tag; flows with one (non-None) tag may share links with each other."""
        shares = shares or {}
        for link, names in self.shared_links():
            if len({shares.get(n) or ("own", n) for n in names}) == 1:
                continue
            raise RouteError(f"{what}: flows {', '.join(names)} share link {link}; each "
                             f"needs links of its own (a stalled consumer of one would hold "
                             f"up the other and can deadlock the pipeline)")

    def throttle(self, params, ep, rate, burst):
        """Throttle injection port ``ep`` to ``rate`` packets per cycle (a float; rounded to
        1/RATE_ONE) with bursts of up to ``burst`` packets."""
        if not (ep.port == IN_LOCAL or _is_edge(params, ep.x, ep.port)):
            raise RouteError(f"throttle at {ep.name(False)}: only unit and edge (AGCU) "
                             f"injection ports have a token bucket")
        r = round(rate * RATE_ONE)
        if not 0 < r <= RATE_ONE:
            raise RouteError(f"throttle at {ep.name(False)}: rate {rate} outside (0, 1] "
                             f"packets per cycle (resolution 1/{RATE_ONE})")
        if not 1 <= burst < (1 << BURST_BITS):
            raise RouteError(f"throttle at {ep.name(False)}: burst {burst} outside "
                             f"1..{(1 << BURST_BITS) - 1}")
        self.throttles.setdefault((ep.x, ep.y), {})[ep.port] = (r, burst)

    def throttle_to_rates(self, params, flows, burst=2):
        """Throttle every injection port to the total planned rate of the flows that enter
        there (rounded up to 1/RATE_ONE): bursts are smoothed to the rate the router
        checked the links for."""
        total = {}
        for f in flows:
            total[f.src] = total.get(f.src, 0.0) + f.rate
        for ep, rate in total.items():
            self.throttle(params, ep, min(1.0, -(-rate * RATE_ONE // 1) / RATE_ONE), burst)


def route(params, flows):
    """Route ``flows`` (one fabric); returns :class:`FabricRoutes` or raises RouteError."""
    res = FabricRoutes()
    names = set()
    for f in flows:
        if f.name in names:
            raise RouteError(f"flow {f.name!r}: the name is used twice")
        names.add(f.name)
        if not f.dsts:
            raise RouteError(f"flow {f.name!r}: no destination")
        if not 0 < f.rate <= 1:
            raise RouteError(f"flow {f.name!r}: rate {f.rate} outside (0, 1] packets per cycle")
        _check_endpoint(params, f, f.src, False)
        for d in f.dsts:
            _check_endpoint(params, f, d, True)
        if len(set(f.dsts)) != len(f.dsts):
            raise RouteError(f"flow {f.name!r}: a destination is listed twice")
        if f.dynamic and (len(f.dsts) > 1 or f.moves is not None):
            raise RouteError(f"flow {f.name!r}: dynamic (dimension-order) routing is unicast "
                             f"by dimension order; multicast and paths of its own need a "
                             f"static flow")
        if f.moves is not None and len(f.moves) != len(f.dsts):
            raise RouteError(f"flow {f.name!r}: {len(f.moves)} paths for {len(f.dsts)} "
                             f"destinations")
        tree = {}               # (x, y, in_port) -> set of out_ports, in path order
        order = []
        for d, mv in zip(f.dsts, f.moves or (None,) * len(f.dsts)):
            for x, y, inp, out in flow_path(f.src, d, mv):
                node = (x, y, inp)
                if node not in tree:
                    tree[node] = set()
                    order.append(node)
                tree[node].add(out)
        for (x, y, inp) in order:
            for out in tree[x, y, inp]:
                res.load.setdefault((x, y, out), []).append((f.name, f.rate))
        res.load.setdefault((f.src.x, f.src.y, "inject", f.src.port), []).append((f.name, f.rate))
        if f.dynamic:
            d = f.dsts[0]
            res.headers[f.name] = {"dyn": 1, "flow": 0, "x": d.x, "y": d.y, "port": d.port}
            res.arrivals[f.name] = {d: 0}
            continue
        ids = {}
        src_node = (f.src.x, f.src.y, f.src.port)
        ids[src_node] = _free_id(params, res, f, [src_node])
        res.headers[f.name] = {"dyn": 0, "flow": ids[src_node], "x": 0, "y": 0, "port": 0}
        arrivals = {}
        for node in order:
            x, y, inp = node
            nexts = []
            for out in sorted(tree[node]):
                if out < LINKS and not _is_edge(params, x, out):
                    dx, dy = STEP[out]
                    nexts.append((x + dx, y + dy, OPPOSITE[out]))
                else:       # ids are unique per delivery port too, so a unit can tell flows apart
                    nexts.append((x, y, _EXIT + out))
            new = _free_id(params, res, f, nexts)
            for nxt in nexts:
                ids[nxt] = new
            mask = sum(1 << out for out in tree[node])
            res.tables.setdefault((x, y), {}).setdefault(inp, {})[ids[node]] = (mask, new)
            for out in tree[node]:
                ep = Endpoint(Coord(y, x), out)
                if ep in f.dsts:
                    arrivals[ep] = new
        res.arrivals[f.name] = arrivals
    for (x, y, *port), users in res.load.items():
        total = sum(r for _, r in users)
        if total > 1 + 1e-9:
            what = (f"injection port {Endpoint(Coord(y, x), port[1]).name(False)}"
                    if port[0] == "inject"
                    else f"link {_link_name(x, y, port[0])}")
            detail = ", ".join(f"{n} {r:g}" for n, r in users)
            raise RouteError(f"flow {users[-1][0]!r} over-subscribes {what}: {total:g} packets "
                             f"per cycle ({detail})")
    return res


def _free_id(params, res, flow, nodes):
    """Smallest flow id unused at every switch input in ``nodes``; marks it used there."""
    for fid in range(params.rdn_flows):
        if all(fid not in res.ids_used.get(node, ()) for node in nodes):
            for node in nodes:
                res.ids_used.setdefault(node, set()).add(fid)
            return fid
    full = [n for n in nodes if len(res.ids_used.get(n, ())) >= params.rdn_flows] or nodes
    x, y, port = full[0]
    where = (f"output {PORT_NAMES_OUT[port - _EXIT]}" if port >= _EXIT
             else f"input {PORT_NAMES_IN[port]}")
    raise RouteError(f"flow {flow.name!r}: no free flow id at switch ({x},{y}) {where} "
                     f"(all {params.rdn_flows} in use)")


def check_tables(params, tables):
    """Reject tables that send a packet off the grid or round in a loop."""
    def succ(x, y, inp, fid):
        mask, new = tables[x, y][inp][fid]
        for out in range(N_OUT):
            if not mask >> out & 1:
                continue
            if out >= LINKS or _is_edge(params, x, out):
                continue
            dx, dy = STEP[out]
            nx, ny = x + dx, y + dy
            if not (0 <= nx < params.cols and 0 <= ny < params.rows):
                raise RouteError(f"table at switch ({x},{y}) input {PORT_NAMES_IN[inp]} flow "
                                 f"{fid}: output {PORT_NAMES_OUT[out]} leaves the grid")
            yield nx, ny, OPPOSITE[out], new

    for (x, y), ins in tables.items():
        for inp, entries in ins.items():
            for fid, (mask, new) in entries.items():
                if not 0 <= fid < params.rdn_flows or not 0 <= new < params.rdn_flows:
                    raise RouteError(f"table at switch ({x},{y}) input {PORT_NAMES_IN[inp]}: "
                                     f"flow id {fid} -> {new} outside 0..{params.rdn_flows - 1}")
                if not 0 < mask < 1 << N_OUT:
                    raise RouteError(f"table at switch ({x},{y}) input {PORT_NAMES_IN[inp]} "
                                     f"flow {fid}: output mask {mask:#x} is empty or too wide")
    done = set()
    for (x, y), ins in tables.items():
        for inp, entries in ins.items():
            for fid in entries:
                start = (x, y, inp, fid)
                if start in done:
                    continue
                stack = [(start, iter(succ(*start)))]
                on_path = {start}
                while stack:
                    node, it = stack[-1]
                    nxt = next(it, None)
                    if nxt is None:
                        stack.pop()
                        on_path.discard(node)
                        done.add(node)
                        continue
                    if nxt in on_path:
                        cyc = " -> ".join(f"({a},{b}).{PORT_NAMES_IN[c]}#{d}"
                                          for a, b, c, d in [s for s, _ in stack] + [nxt])
                        raise RouteError(f"flow tables loop: {cyc}")
                    if nxt in done:
                        continue
                    nx, ny, ninp, nfid = nxt
                    if nfid not in tables.get((nx, ny), {}).get(ninp, {}):
                        raise RouteError(f"table at switch ({node[0]},{node[1]}) input "
                                         f"{PORT_NAMES_IN[node[2]]} flow {node[3]} sends flow "
                                         f"{nfid} to ({nx},{ny}).{PORT_NAMES_IN[ninp]}, which "
                                         f"has no entry for it")
                    on_path.add(nxt)
                    stack.append((nxt, iter(succ(*nxt))))


def fabric_config(params, routes):
    """The ``fabric_config_layout`` value (a nested dict) of ``routes``."""
    check_tables(params, routes.tables)
    switches = []
    for y in range(params.rows):
        for x in range(params.cols):
            tab = routes.tables.get((x, y), {})
            thr = routes.throttles.get((x, y), {})
            entries = [[tab.get(i, {}).get(fid, (0, 0)) for fid in range(params.rdn_flows)]
                       for i in range(LINKS + 1)]
            switches.append({
                "table": [[{"out": out, "flow": new} for out, new in row] for row in entries],
                "throttle": [{"en": int(i in thr), "rate": thr.get(i, (0, 0))[0],
                              "burst": thr.get(i, (0, 0))[1]} for i in range(LINKS + 1)],
            })
    return switches


def pack_fabric(params, routes):
    return fabric_config_layout(params).const(fabric_config(params, routes)).as_value().value


# --- control fabric --------------------------------------------------------------------

class Token(NamedTuple):
    """Token wire ``k`` of the unit at grid position ``pos`` (a Coord)."""
    pos: Coord
    k: int


@dataclass(frozen=True)
class ControlFlow:
    """A token wire from unit token output ``src`` (a :class:`Token`) to unit token inputs
    ``dsts`` (several: one token reaches every destination)."""
    name: str
    src: Token
    dsts: tuple


@dataclass
class ControlRoutes:
    """``sel``: (x, y) -> {output wire: 1 + input wire}; ``latency``: flow name ->
    {dst: cycles from the source pulse to the destination pulse}."""
    sel: dict = field(default_factory=dict)
    latency: dict = field(default_factory=dict)
    owner: dict = field(default_factory=dict)


def route_control(params, flows):
    t = params.rdn_tracks
    res = ControlRoutes()
    for f in flows:
        for (pos, k), what in [(f.src, "source")] + [(d, "destination") for d in f.dsts]:
            x, y = pos[1], pos[0]
            if not (0 <= x < params.cols and 0 <= y < params.rows and 0 <= k < CTRL_LOCAL):
                raise RouteError(f"control flow {f.name!r}: {what} ({x},{y}) token {k} does not "
                                 f"exist ({params.rows} x {params.cols} grid, {CTRL_LOCAL} tokens "
                                 f"per unit)")
        (sy, sx), sk = f.src
        wire_at = {(sx, sy): ctrl_wire(params, LINKS, sk)}   # switch -> wire carrying it
        res.latency[f.name] = {}
        for dst in f.dsts:
            dk = dst[1]
            hops = xy_path(unit_src(f.src[0]), unit_dst(dst[0]))
            for n, (x, y, _, out) in enumerate(hops):
                inw = wire_at[x, y]
                sel = res.sel.setdefault((x, y), {})
                if out >= LINKS:
                    outw = ctrl_wire(params, LINKS, dk)
                    if outw in sel:
                        raise RouteError(f"control flow {f.name!r}: token input {dk} of unit "
                                         f"({x},{y}) is already driven by "
                                         f"{res.owner[x, y, outw]!r}")
                    sel[outw] = 1 + inw
                    res.owner[x, y, outw] = f.name
                    res.latency[f.name][dst] = n + 1
                    continue
                nx, ny = x + STEP[out][0], y + STEP[out][1]
                if (nx, ny) in wire_at:           # the tree already reaches the neighbour
                    continue
                free = [tr for tr in range(t) if ctrl_wire(params, out, tr) not in sel]
                if not free:
                    users = sorted({res.owner[x, y, ctrl_wire(params, out, tr)]
                                    for tr in range(t)})
                    raise RouteError(f"control flow {f.name!r}: no free track on link "
                                     f"{_link_name(x, y, out)} ({t} tracks, used by "
                                     f"{', '.join(users)})")
                tr = free[0]
                outw = ctrl_wire(params, out, tr)
                sel[outw] = 1 + inw
                res.owner[x, y, outw] = f.name
                wire_at[nx, ny] = ctrl_wire(params, OPPOSITE[out], tr)
    return res


def control_config(params, ctl):
    return [{"sel": [ctl.sel.get((x, y), {}).get(w, 0) for w in range(ctrl_outputs(params))]}
            for y in range(params.rows) for x in range(params.cols)]


def pack_rdn(params, vec=None, sca=None, ctl=None):
    """The whole ``rdn_config_layout`` as an integer (missing parts: nothing routed)."""
    vec, sca, ctl = vec or FabricRoutes(), sca or FabricRoutes(), ctl or ControlRoutes()
    value = {"vec": fabric_config(params, vec), "sca": fabric_config(params, sca),
             "ctl": control_config(params, ctl)}
    return rdn_config_layout(params).const(value).as_value().value
