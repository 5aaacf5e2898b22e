"""Paths of their own: routes for the flows of a placed kernel where dimension-order
paths would make flows share links.

Negotiated routing (the scheme FPGA routers call PathFinder): every static flow is routed
as a tree grown towards its destinations one at a time by the cheapest path from the
tree built so far; a link costs one hop, plus a penalty for each other flow on it (flows
of one ``shares`` tag count as one) or for a load over one packet per cycle, plus a
history term that grows on links that stayed over-used. All flows are ripped up and
routed again, with the penalties rising, until no link is shared by flows that need
their own — or a bound on rounds is reached. Dynamic flows keep dimension order. The
routing is deterministic: the same flows give the same paths.
"""

import heapq

from hdl.rdn.config import STEP

from .route import xy_path

__all__ = ["detour", "ROUNDS"]

#: Rounds of rip-up and re-route before giving up. The present-congestion weight doubles
#: each round (0.5 x 2^12 = 2048 by the last), so a negotiation that has not settled by
#: then keeps its paths; with 40 rounds every kernel of the presets and the 3 x 6 grid in
#: the tests and the bench placed identically, a failing candidate just took 3x longer.
ROUNDS = 12


def _xy_moves(src, dst):
    return tuple(out for _, _, _, out in xy_path(src, dst)[:-1])


class _Usage:
    """Who uses each link ({link: {group: load}}; links are (x, y, out port), delivery
    ports included) and the history cost of each link."""

    def __init__(self):
        self.users, self.history = {}, {}

    def add(self, links, group, rate, sign=1):
        for link in links:
            groups = self.users.setdefault(link, {})
            groups[group] = groups.get(group, 0.0) + sign * rate
            if groups[group] <= 1e-12:
                del groups[group]

    def cost(self, link, group, rate, present):
        groups = self.users.get(link, {})
        others = sum(1 for g in groups if g != group)
        load = sum(groups.values()) + rate
        over = others + (load > 1 + 1e-9)
        return 1.0 + self.history.get(link, 0.0) + present * over

    def overused(self):
        return [link for link, groups in self.users.items()
                if len(groups) > 1 or sum(groups.values()) > 1 + 1e-9]


def _grow(params, usage, src, dsts, group, rate, present):
    """A tree from switch ``src`` to every destination Endpoint: {switch: (parent switch,
    direction)} and its links; each destination joined by the cheapest path from the
    tree so far (nearest destinations first). None if a destination cannot be reached."""
    cols, rows = params.cols, params.rows
    tree = {(src.x, src.y): None}
    links = set()
    for d in sorted(dsts, key=lambda d: (abs(d.x - src.x) + abs(d.y - src.y), d.y, d.x, d.port)):
        goal = (d.x, d.y)
        if goal not in tree:
            dist = {s: 0.0 for s in tree}
            prev = {}
            heap = [(0.0, s) for s in sorted(tree)]
            heapq.heapify(heap)
            while heap:
                c, (x, y) = heapq.heappop(heap)
                if c > dist.get((x, y), float("inf")):
                    continue
                if (x, y) == goal:
                    break
                for out in sorted(STEP):
                    nx, ny = x + STEP[out][0], y + STEP[out][1]
                    if not (0 <= nx < cols and 0 <= ny < rows) or (nx, ny) in tree:
                        continue
                    nc = c + usage.cost((x, y, out), group, rate, present)
                    if nc < dist.get((nx, ny), float("inf")) - 1e-12:
                        dist[nx, ny], prev[nx, ny] = nc, ((x, y), out)
                        heapq.heappush(heap, (nc, (nx, ny)))
            if goal not in prev:
                return None
            node = goal
            while node not in tree:
                (px, py), out = prev[node]
                tree[node] = ((px, py), out)
                links.add((px, py, out))
                node = (px, py)
        links.add((d.x, d.y, d.port))
    return tree, links


def _moves(tree, dst):
    """Directions from the source switch to ``dst``'s switch through ``tree``."""
    out, node = [], (dst.x, dst.y)
    while tree[node] is not None:
        node, d = tree[node]
        out.append(d)
    return tuple(reversed(out))


def detour(params, flows, tags, rounds=ROUNDS):
    """Moves for ``flows`` (bound :class:`~firmware.compiler.route.Flow`, one fabric)
    with which no link is shared by flows that need their own (``tags``: flow name ->
    shares tag) or over-subscribed: {flow name: moves per destination}, or None if
    negotiation does not settle within ``rounds``; flows whose every path is the
    dimension-order one are left out."""
    groups = [tags.get(f.name) or ("own", f.name) for f in flows]
    usage = _Usage()
    routed = {}                               # flow index -> (tree, links)
    for i, f in enumerate(flows):             # dynamic flows: dimension order, fixed
        if f.dynamic:
            links = {(x, y, o) for x, y, _, o in xy_path(f.src, f.dsts[0])}   # delivery too
            usage.add(links, groups[i], f.rate)
    order = sorted((i for i, f in enumerate(flows) if not f.dynamic),
                   key=lambda i: (-flows[i].rate, i))
    present = 0.5
    for _ in range(rounds):
        for i in order:
            f = flows[i]
            if i in routed:
                usage.add(routed[i][1], groups[i], f.rate, sign=-1)
            grown = _grow(params, usage, f.src, f.dsts, groups[i], f.rate, present)
            if grown is None:
                return None
            routed[i] = grown
            usage.add(grown[1], groups[i], f.rate)
        over = usage.overused()
        if not over:
            break
        for link in over:
            usage.history[link] = usage.history.get(link, 0.0) + 1.0
        present *= 2
    else:
        return None
    out = {}
    for i in order:
        f = flows[i]
        mv = tuple(_moves(routed[i][0], d) for d in f.dsts)
        if mv != tuple(_xy_moves(f.src, d) for d in f.dsts):
            out[f.name] = mv
    return out
