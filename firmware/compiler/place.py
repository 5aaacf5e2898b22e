"""Placement: a kernel's logical units onto the grid, then its flows routed.

A kernel is described without coordinates (ARCHITECTURE.md section 6): named logical
units of a kind (``"pcu"`` or ``"pmu"``), the vector and scalar flows between their ports
and the AGCU edge ports, each with the rate it needs. :func:`place_and_route` chooses a
position for every unit — the placement whose dimension-order routes give every flow
links of its own (where the kernel asks for that) and move the fewest packets over the
fewest hops; where no placement does that by dimension order, the best placements are
tried with paths of their own for the flows (:mod:`~firmware.compiler.detour`) — routes
both fabrics and returns a :class:`Layout`. The search is
deterministic: the same kernel on the same grid gives the same placement and bitstream.

A kernel that cannot be placed raises :class:`PlacementError` naming what it ran out of
("needs 9 PCUs, the array has 4", "flows a and b both need link (1,2)->E->(2,2)").
"""

import functools
import heapq
import itertools
import math
import random
from dataclasses import dataclass, field

from hdl.grid import Coord, grid_coords, is_pcu
from hdl.rdn.config import OUT_L0, STEP, W
from hdl.socket import agcu_position

from .detour import detour
from .route import Endpoint, Flow, RouteError, edge_src, flow_path, route, unit_dst, unit_src

__all__ = ["PlacementError", "Port", "port", "agcu", "VFlow", "Layout", "place",
           "place_and_route", "try_place"]

#: Placements tried exhaustively up to this many; beyond, greedy + local search.
EXHAUSTIVE = 20_000
#: Placements (best by dimension-order cost first) tried with paths of their own.
DETOUR_TRIES = 64
#: Seeded random restarts of the local search tried with paths of their own, each from
#: the first placement with ``SHAKE`` random moves per unit kind.
RESTARTS = 8
SHAKE = 4


class PlacementError(ValueError):
    """A kernel that does not fit the grid; the message names the missing resource."""


@dataclass(frozen=True)
class Port:
    """A logical endpoint: port ``k`` of logical unit ``unit`` (for a destination: the
    unit's delivery ``k``, a PCU's vin0/vin1 or a PMU's vin/...), or AGCU ``agcu``'s edge."""
    unit: str | None = None
    k: int = 0
    agcu: int | None = None

    def __str__(self):
        return f"agcu{self.agcu}" if self.unit is None else f"{self.unit}.{self.k}"


def port(unit, k=0):
    return Port(unit=unit, k=k)


def agcu(k):
    return Port(agcu=k)


@dataclass(frozen=True)
class VFlow:
    """A flow between logical ports (see :class:`~firmware.compiler.route.Flow`).
    ``shares``: flows with the same tag may share links with each other (e.g. results
    draining to AGCU store streams, which always make progress: one waiting behind
    another cannot close a dependency cycle)."""
    name: str
    src: Port
    dsts: tuple
    rate: float = 1.0
    dynamic: bool = False
    shares: str | None = None


@dataclass
class Layout:
    """A placed and routed kernel: ``at`` (logical unit -> Coord), the routed ``vec`` and
    ``sca`` fabrics (:class:`~firmware.compiler.route.FabricRoutes`), the logical
    ``flows`` ({"vector": [VFlow], "scalar": [...]}), the placement's ``cost`` and the
    ``moves`` of flows that leave dimension order ({flow name: moves per destination})."""
    name: str
    kinds: dict
    at: dict
    vec: object
    sca: object
    cost: tuple = field(default=(), compare=False)
    flows: dict = field(default_factory=dict, compare=False)
    moves: dict = field(default_factory=dict)

    def configs(self, kind, values):
        """{Coord: config} of the units of ``kind`` from {logical name: config}."""
        out = {}
        for name, v in values.items():
            if self.kinds.get(name) != kind:
                raise PlacementError(f"kernel {self.name!r}: {name!r} is not a "
                                     f"{kind.upper()} of the kernel")
            out[self.at[name]] = v
        return out

    def endpoint(self, params, p, output=True):
        """The routed :class:`~firmware.compiler.route.Endpoint` of logical port ``p`` (as
        a destination, or as a source): the key of ``vec.arrivals``."""
        return _endpoint(params, self.at, p, output)

    def describe(self):
        """One line per unit: its name, kind and position."""
        return [f"{n:<10} {self.kinds[n].upper()} at {self.at[n]}"
                for n in sorted(self.at, key=lambda n: (self.at[n], n))]

    def grid(self, params):
        """The placement as a picture of the grid: each position's kind and unit."""
        by_pos = {c: n for n, c in self.at.items()}
        width = max([len(n) for n in self.at] + [4]) + 5
        rows = []
        for r in range(params.rows):
            cells = [f"{'PCU' if is_pcu(r, c) else 'PMU'} {by_pos.get(Coord(r, c), '.')}"
                     for c in range(params.cols)]
            rows.append(f"row {r}: " + "".join(x.ljust(width) for x in cells).rstrip())
        return rows

    def flow_lines(self, params):
        """One line per flow: fabric, name, source -> destinations, rate and hops."""
        where = lambda p: (f"agcu{p.agcu}" if p.unit is None  # noqa: E731
                           else f"{p.unit}{'' if p.k == 0 else f'.{p.k}'}")
        out = []
        for fabric, flows in self.flows.items():
            for f, b in zip(flows, _bind(params, self.at, flows, self.moves)):
                hops = sum(1 for _, _, o in _links(b.src, b.dsts, b.moves) if o < OUT_L0)
                own = " (paths of its own)" if b.moves is not None else ""
                out.append(f"{fabric:<6} {f.name:<8} {where(f.src)} -> "
                           f"{', '.join(where(d) for d in f.dsts)}  rate {f.rate:.3g}, "
                           f"{hops} links{own}")
        return out


@functools.lru_cache(maxsize=256)
def _edge(params, k):
    if not 0 <= k < params.agcus:
        raise PlacementError(f"AGCU {k} does not exist ({params.agcus} AGCUs)")
    side, row = agcu_position(params, k)
    return edge_src(params, "W" if side == W else "E", row)


def _endpoint(params, at, p, output):
    if p.unit is None:
        return _edge(params, p.agcu)
    return _unit_end(at[p.unit], p.k, output)


@functools.lru_cache(maxsize=1 << 12)
def _unit_end(coord, k, output):
    return unit_dst(coord, k) if output else unit_src(coord)


def _bind(params, at, flows, moves=None):
    moves = moves or {}
    return [Flow(f.name, _endpoint(params, at, f.src, False),
                 tuple(_endpoint(params, at, d, True) for d in f.dsts), f.rate, f.dynamic,
                 moves.get(f.name)) for f in flows]


@functools.lru_cache(maxsize=1 << 16)
def _path(src, dst, moves=None):
    """(x, y, out) of every hop of the path (placement tries many): dimension order, or
    ``moves``."""
    return frozenset((x, y, out) for x, y, _, out in flow_path(src, dst, moves))


def _links(src, dsts, moves=None):
    """The directed links and delivery ports of a flow's tree."""
    return _tree(src, tuple(dsts), moves)[0]


@functools.lru_cache(maxsize=1 << 16)
def _tree(src, dsts, moves=None):
    """(the links and delivery ports of a flow's tree, its links between switches)."""
    tree = frozenset().union(*(_path(src, d, mv)
                               for d, mv in zip(dsts, moves or (None,) * len(dsts))))
    return tree, sum(1 for _, _, out in tree if out < OUT_L0)


def _conflicts(users):
    """Flows of one link beyond the first that may not share it: (name, tag) pairs, where
    flows with one non-None tag count once."""
    groups = {tag if tag is not None else ("own", name) for name, tag in users}
    return len(groups) - 1


def _cost(params, at, fabrics, own, moves=None):
    """(links shared by flows that need their own, over-subscription, rate x hops, hops)
    of placement ``at``: smaller is better."""
    shared = over = 0
    weighted = hops = 0.0
    moves = moves or {}
    for fabric, flows in fabrics.items():
        load, users = {}, {}
        get, add = load.get, users.setdefault
        for f in flows:
            src = _endpoint(params, at, f.src, False)
            dsts = tuple(_endpoint(params, at, d, True) for d in f.dsts)
            tree, n = _tree(src, dsts, moves.get(f.name))
            rate, user = f.rate, (f.name, f.shares)
            hops += n
            weighted += rate * n
            for link in tree:
                load[link] = get(link, 0.0) + rate
                add(link, []).append(user)
        over += sum(1 for v in load.values() if v > 1 + 1e-9)
        if own:
            shared += sum(_conflicts(u) for u in users.values() if len(u) > 1)
    return (shared, over, round(weighted, 9), hops)


def _shared_report(params, at, fabrics):
    """'flows a and b both need link ...' for the first shared link of placement ``at``."""
    for fabric, flows in fabrics.items():
        users = {}
        for f, bound in zip(flows, _bind(params, at, flows)):
            for link in sorted(_links(bound.src, bound.dsts)):
                users.setdefault(link, []).append((f.name, f.shares))
        for (x, y, out), pairs in sorted(users.items()):
            if _conflicts(pairs):
                names = [n for n, _ in pairs]
                where = Endpoint(Coord(y, x), out).name(True)
                if out < OUT_L0:
                    dx, dy = STEP[out]
                    where += f"->({x + dx},{y + dy})"
                return (f"{fabric} flows {' and '.join(names)} both need link {where} "
                        f"(x, y = col, row)")
    return None


def _slots(params, kinds):
    """Free positions per kind, and the logical units per kind in a fixed order."""
    by_kind = {}
    for name, kind in kinds.items():
        if kind not in ("pcu", "pmu"):
            raise PlacementError(f"unit {name!r}: kind {kind!r} is neither 'pcu' nor 'pmu'")
        by_kind.setdefault(kind, []).append(name)
    slots = {}
    for kind, names in by_kind.items():
        slots[kind] = grid_coords(params, kind)
        if len(names) > len(slots[kind]):
            raise PlacementError(f"needs {len(names)} {kind.upper()}s, the array has "
                                 f"{len(slots[kind])} ({params.rows} x {params.cols} grid)")
    return by_kind, slots


def _exhaustive(params, by_kind, slots, score):
    """Every placement: the best ``DETOUR_TRIES`` [(score, at)], best first (ties in
    enumeration order)."""
    kinds = sorted(by_kind)
    choices = [itertools.permutations(slots[k], len(by_kind[k])) for k in kinds]
    scored = ((score(at), i, at) for i, at in enumerate(
        {n: c for k, cs in zip(kinds, combo) for n, c in zip(by_kind[k], cs)}
        for combo in itertools.product(*choices)))
    return [(s, at) for s, _, at in heapq.nsmallest(DETOUR_TRIES, scored, key=lambda t: t[:2])]


def _local_search(params, by_kind, slots, score):
    """Greedy placement in unit order, then moves and swaps while the score drops; after
    it (lazily: for paths of their own where it shares links), ``RESTARTS`` placements
    improved the same way from seeded random shakes of it. Yields (score, at)."""
    at = {}
    for kind in sorted(by_kind):
        for name in by_kind[kind]:
            free = [c for c in slots[kind] if c not in at.values()]
            at[name] = min(free, key=lambda c: (score({**at, name: c}, partial=True), c))
    best = _improve(by_kind, slots, score, at)
    yield best
    rng = random.Random(len(slots.get("pcu", ())) * 1000 + sum(map(len, by_kind.values())))
    for _ in range(RESTARTS):
        at = dict(best[1])          # the first placement, shaken: a few random swaps
        for kind in sorted(by_kind):
            for _ in range(SHAKE):
                name = rng.choice(by_kind[kind])
                c = rng.choice(slots[kind])
                other = next((n for n in by_kind[kind] if at[n] == c), None)
                if other is not None:
                    at[other] = at[name]
                at[name] = c
        yield _improve(by_kind, slots, score, at)


def _improve(by_kind, slots, score, at):
    """Moves and swaps of ``at`` while the score drops: (score, at)."""
    best = score(at)
    improved = True
    while improved:
        improved = False
        for kind in sorted(by_kind):
            names = by_kind[kind]
            for name in names:
                for c in slots[kind]:
                    other = next((n for n in names if at[n] == c), None)
                    trial = dict(at)
                    trial[name] = c
                    if other is not None:
                        trial[other] = at[name]
                    s = score(trial)
                    if s < best:
                        best, at, improved = s, trial, True
    return best, at


def _with_detours(params, ranked, fabrics, score):
    """The first placement of ``ranked`` whose flows all get links of their own with paths
    of their own: (cost, at, moves), or None."""
    for _, at in ranked:
        moves = {}
        for flows in fabrics.values():
            tags = {f.name: f.shares for f in flows}
            found = detour(params, _bind(params, at, flows), tags)
            if found is None:
                break
            moves.update(found)
        else:
            return score(at, moves=moves), at, moves
    return None


def place(params, name, kinds, vec=(), sca=(), *, own_links=True):
    """({logical unit: Coord}, cost, {flow name: moves}) for the units ``kinds`` ({name:
    "pcu"/"pmu"}) and flows: the moves of the flows that leave dimension order."""
    by_kind, slots = _slots(params, kinds)
    fabrics = {"vector": list(vec), "scalar": list(sca)}
    for f in fabrics["vector"] + fabrics["scalar"]:
        for p in (f.src, *f.dsts):
            if p.unit is not None and p.unit not in kinds:
                raise PlacementError(f"kernel {name!r}: flow {f.name!r} names unit "
                                     f"{p.unit!r}, which the kernel does not have")
            if p.unit is None:
                _edge(params, p.agcu)

    def score(at, partial=False, moves=None):
        if partial:
            fl = {fab: [f for f in flows if all(p.unit is None or p.unit in at
                                                 for p in (f.src, *f.dsts))]
                  for fab, flows in fabrics.items()}
            return _cost(params, at, fl, own_links)
        return _cost(params, at, fabrics, own_links, moves)

    space = math.prod(math.perm(len(slots[k]), len(by_kind[k])) for k in by_kind)
    ranked = iter((_exhaustive if space <= EXHAUSTIVE else _local_search)(
        params, by_kind, slots, score))
    cost, at = first = next(ranked)
    if not cost[0]:
        return at, cost, {}
    ranked = itertools.chain([first], ranked)
    found = _with_detours(params, ranked, fabrics, score) if own_links else None
    if found is None:
        raise PlacementError(f"kernel {name!r} does not fit the {params.rows} x {params.cols} "
                             f"grid with a link of its own for every flow: "
                             f"{_shared_report(params, at, fabrics)} (and no placement tried "
                             f"gives every flow links of its own by other paths)")
    return found[1], found[0], found[2]


def try_place(params, name, kinds, vec=(), sca=()):
    """:func:`place_and_route`, or the :class:`PlacementError` it raised (plans try many
    candidates and keep the reason of a failure)."""
    try:
        return place_and_route(params, name, kinds, vec=vec, sca=sca)
    except PlacementError as e:
        return e


def place_and_route(params, name, kinds, vec=(), sca=(), *, own_links=True):
    """Place the units, route both fabrics; a :class:`Layout`. ``own_links``: every flow
    needs links of its own (a pipeline whose stages wait on each other can deadlock when
    flows share a link buffer)."""
    at, cost, moves = place(params, name, kinds, vec, sca, own_links=own_links)
    try:
        vr = route(params, _bind(params, at, vec, moves))
        sr = route(params, _bind(params, at, sca, moves))
    except RouteError as e:
        raise PlacementError(f"kernel {name!r}: {e}") from None
    if own_links:
        tags = {f.name: f.shares for f in (*vec, *sca)}
        for fabric in (vr, sr):
            fabric.require_own_links(f"kernel {name!r}", tags)
    return Layout(name, dict(kinds), at, vr, sr, cost, {"vector": list(vec), "scalar": list(sca)},
                  moves)
