"""Random RDN traffic and its checker, shared by the Amaranth-simulator and cocotb tests.

A packet is a dict of flat fields (``hdr.dyn``, ``hdr.flow``, ``hdr.x``, ``hdr.y``,
``hdr.port``, ``body.data`` — a list for the vector fabric —, ``body.mask``,
``body.last``). Every packet carries a tag in its first data word: the flow's index and
its sequence number in the flow, so the checker can tell which flow a delivery belongs
to and whether it came in order.
"""

from collections import defaultdict

from firmware.compiler.route import Flow, edge_dst, edge_src, unit_dst, unit_src
from hdl.grid import grid_coords
from hdl.rdn.config import IN_LOCAL, LOCAL_OUT, OUT_L0, W

__all__ = ["source_name", "sink_name", "sources", "sinks", "random_flows", "Traffic",
           "make_traffic", "check_delivery", "SEQ_BITS"]

SEQ_BITS = 16


def source_name(fabric, ep):
    if ep.port == IN_LOCAL:
        return f"{fabric}__inj__{ep.y}__{ep.x}"
    return f"{fabric}__{'west' if ep.port == W else 'east'}_in__{ep.y}"


def sink_name(fabric, ep):
    if ep.port >= OUT_L0:
        return f"{fabric}__dlv__{ep.y}__{ep.x}__{ep.port - OUT_L0}"
    return f"{fabric}__{'west' if ep.port == W else 'east'}_out__{ep.y}"


def sources(params):
    eps = [unit_src(pos) for pos in grid_coords(params)]
    eps += [edge_src(params, s, r) for s in ("W", "E") for r in range(params.rows)]
    return eps


def sinks(params):
    eps = [unit_dst(pos, k) for pos in grid_coords(params) for k in range(LOCAL_OUT)]
    eps += [edge_dst(params, s, r) for s in ("W", "E") for r in range(params.rows)]
    return eps


def random_flows(params, rng, n, *, multicast=0.25, dynamic=0.3, max_dsts=4, from_=()):
    """``n`` random flows among all ports: some multicast (static), some dynamic; rates
    are set so that no link is over-subscribed. The first flows start at the sources
    ``from_``."""
    srcs, dsts = sources(params), sinks(params)
    flows = []
    for k in range(n):
        src = from_[k] if k < len(from_) else rng.choice(srcs)
        dyn = rng.random() < dynamic
        count = 1 if dyn or rng.random() >= multicast else rng.randint(2, max_dsts)
        flows.append(Flow(f"f{k}", src, tuple(rng.sample(dsts, count)),
                          rate=1.0 / n, dynamic=dyn))
    return flows


class Traffic:
    """Packets to inject per source stream, and what each sink stream must receive."""

    def __init__(self):
        self.inject = defaultdict(list)        # source stream -> [packet]
        self.expect = defaultdict(list)        # sink stream -> [packet] (any order across flows)


def _body(rng, vector, lanes, tag):
    if vector:
        return {"body.data": [tag] + [rng.getrandbits(32) for _ in range(lanes - 1)],
                "body.mask": rng.getrandbits(lanes), "body.last": rng.getrandbits(1)}
    return {"body.data": tag, "body.last": rng.getrandbits(1)}


def make_traffic(params, fabric, flows, routes, rng, packets):
    """``packets`` packets per flow, interleaved at random per source (order within a
    flow kept). ``fabric`` is ``"vec"`` or ``"sca"``."""
    t = Traffic()
    vector = fabric == "vec"
    queues = defaultdict(list)
    for k, f in enumerate(flows):
        hdr = {f"hdr.{n}": v for n, v in routes.headers[f.name].items()}
        seq = []
        for s in range(packets):
            p = {**hdr, **_body(rng, vector, params.pcu_lanes, (k << SEQ_BITS) | s)}
            seq.append(p)
            for dst, fid in routes.arrivals[f.name].items():
                q = dict(p)
                q["hdr.flow"] = fid
                t.expect[sink_name(fabric, dst)].append(q)
        queues[source_name(fabric, f.src)].append(seq)
    for src, seqs in queues.items():
        seqs = [list(s) for s in seqs]
        while any(seqs):
            pick = rng.choice([s for s in seqs if s])
            t.inject[src].append(pick.pop(0))
    return t


def _tag(p):
    d = p["body.data"]
    return d[0] if isinstance(d, list) else d


def check_delivery(traffic, received):
    """Problems (strings) with ``received`` (sink stream -> packets in arrival order):
    each expected packet exactly once, bit-exact, at the right sink, in flow order."""
    problems = []
    for sink in sorted(set(traffic.expect) | set(received)):
        want = traffic.expect.get(sink, [])
        got = received.get(sink, [])
        by_flow_want, by_flow_got = defaultdict(list), defaultdict(list)
        for p in want:
            by_flow_want[_tag(p) >> SEQ_BITS].append(p)
        for p in got:
            by_flow_got[_tag(p) >> SEQ_BITS].append(p)
        for flow in sorted(set(by_flow_want) | set(by_flow_got)):
            w, g = by_flow_want[flow], by_flow_got[flow]
            if len(w) != len(g):
                problems.append(f"{sink}: flow {flow}: {len(g)} packets, expected {len(w)}")
            for i, (a, b) in enumerate(zip(w, g)):
                if a != b:
                    problems.append(f"{sink}: flow {flow}: packet {i} is {b}, expected {a}")
                    break
    return problems
