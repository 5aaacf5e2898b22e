"""Paths of their own: routes for the flows of a placed kernel where dimension-order
paths would make flows share links.

Each static flow's tree is built path by path (one per destination) from candidate
paths — the shortest simple paths from its source switch to the destination's, up to
``slack`` links longer, dimension order first — by a depth-first search with a budget:
a link carries one flow (or flows of one ``shares`` tag) and at most one packet per
cycle; the paths of one flow form a tree (where two meet on a link they arrived by the
same link). The search is deterministic: the same flows give the same paths.
"""

from hdl.rdn.config import OPPOSITE, STEP

from .route import xy_path

__all__ = ["detour", "candidate_paths"]


def _dims(params):
    return params.cols, params.rows


def candidate_paths(params, src, dst, slack=2, most=12):
    """Up to ``most`` paths (tuples of directions) from switch ``src`` to ``dst`` (x, y)
    of at most Manhattan distance + ``slack`` links, visiting no switch twice: the
    dimension-order path first, then by length, turns and directions."""
    cols, rows = _dims(params)
    limit = abs(src[0] - dst[0]) + abs(src[1] - dst[1]) + slack
    found = []

    def walk(x, y, seen, moves):
        if (x, y) == dst:
            found.append(tuple(moves))
            return
        if len(moves) + abs(x - dst[0]) + abs(y - dst[1]) > limit:
            return
        for d in sorted(STEP):
            nx, ny = x + STEP[d][0], y + STEP[d][1]
            if 0 <= nx < cols and 0 <= ny < rows and (nx, ny) not in seen:
                moves.append(d)
                walk(nx, ny, seen | {(nx, ny)}, moves)
                moves.pop()

    walk(src[0], src[1], {src}, [])

    def turns(mv):
        return sum(a != b for a, b in zip(mv, mv[1:]))
    found.sort(key=lambda mv: (len(mv), turns(mv), mv))
    return found[:most]


def _links(src, dst, moves):
    """(link, parent link) pairs of a path: links are (x, y, out port), the last one the
    delivery port."""
    out, x, y, parent = [], src.x, src.y, None
    for d in moves:
        link = (x, y, d)
        out.append((link, parent))
        parent = link
        x, y = x + STEP[d][0], y + STEP[d][1]
    out.append(((x, y, dst.port), parent))
    return out


def _xy_moves(src, dst):
    return tuple(out for _, _, _, out in xy_path(src, dst)[:-1])


class _State:
    """Links in use: {link: {flow index: paths of it using the link}}, each flow's tree
    {link: parent}, the load of every link."""

    def __init__(self, flows, tags):
        self.flows, self.tags = flows, tags
        self.users, self.trees, self.load = {}, [dict() for _ in flows], {}

    def fits(self, fi, path):
        tree, rate, tag = self.trees[fi], self.flows[fi].rate, self.tags[fi]
        for link, parent in path:
            if link in tree:
                if tree[link] != parent:
                    return False
                continue
            users = self.users.get(link, {})
            if any(tag is None or self.tags[u] != tag for u in users):
                return False
            if self.load.get(link, 0.0) + rate > 1 + 1e-9:
                return False
        return True

    def add(self, fi, path):
        for link, parent in path:
            refs = self.users.setdefault(link, {})
            if fi not in refs:
                self.load[link] = self.load.get(link, 0.0) + self.flows[fi].rate
                self.trees[fi][link] = parent
            refs[fi] = refs.get(fi, 0) + 1

    def remove(self, fi, path):
        for link, _ in path:
            refs = self.users[link]
            refs[fi] -= 1
            if not refs[fi]:
                del refs[fi]
                del self.trees[fi][link]
                self.load[link] -= self.flows[fi].rate
                if not refs:
                    del self.users[link]


def detour(params, flows, tags, budget=50_000, slack=2):
    """Moves for ``flows`` (bound :class:`~firmware.compiler.route.Flow`, one fabric)
    with which no link is shared by flows that need their own (``tags``: flow name ->
    shares tag) or over-subscribed: {flow name: moves per destination}, or None if none
    is found within ``budget`` paths tried; flows whose every path is the dimension-order
    one are left out. Dynamic flows keep dimension order."""
    tag_of = [tags.get(f.name) for f in flows]
    state = _State(flows, tag_of)
    # Decisions: (flow, destination) pairs, the fastest flows (fewest alternatives) first.
    order = sorted(range(len(flows)), key=lambda i: (-flows[i].rate, i))
    decisions = []
    for fi in order:
        f = flows[fi]
        for di, d in enumerate(f.dsts):
            if f.dynamic:
                cands = [_xy_moves(f.src, d)]
            else:
                cands = candidate_paths(params, (f.src.x, f.src.y), (d.x, d.y), slack)
                xy = _xy_moves(f.src, d)
                cands = [xy] + [c for c in cands if c != xy]
            decisions.append((fi, di, [(_links(f.src, d, mv), mv) for mv in cands]))
    chosen = [None] * len(decisions)
    tried = 0

    def search(k):
        nonlocal tried
        if k == len(decisions):
            return True
        fi, _, cands = decisions[k]
        for path, mv in cands:
            tried += 1
            if tried > budget:
                return False
            if not state.fits(fi, path):
                continue
            state.add(fi, path)
            chosen[k] = mv
            if search(k + 1):
                return True
            state.remove(fi, path)
        return False

    if not search(0):
        return None
    moves = {f.name: [None] * len(f.dsts) for f in flows}
    for (fi, di, cands), mv in zip(decisions, chosen):
        moves[flows[fi].name][di] = mv
    return {f.name: tuple(moves[f.name]) for f in flows
            if tuple(moves[f.name]) != tuple(_xy_moves(f.src, d) for d in f.dsts)}
