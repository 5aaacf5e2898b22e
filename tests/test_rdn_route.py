"""Tier 1: the RDN router and table packing (firmware/compiler/route.py)."""

import random

import pytest

from firmware.compiler.route import (ControlFlow, Endpoint, FabricRoutes, Flow, RouteError,
                                     Token, check_tables, edge_dst, edge_src, pack_fabric,
                                     pack_rdn, route, route_control, unit_dst, unit_src,
                                     xy_path)
from hdl.grid import Coord
from hdl.params import PRESETS
from hdl.rdn.config import E, IN_LOCAL, N, OPPOSITE, OUT_L0, S, STEP, W, fabric_config_layout

P = PRESETS["small"]


def walk(params, routes, flow):
    """Follow the packed tables from the flow's source: the delivery ports reached and the
    flow id seen there."""
    tables = routes.tables
    out = {}
    todo = [(flow.src.x, flow.src.y, flow.src.port, routes.headers[flow.name]["flow"])]
    while todo:
        x, y, inp, fid = todo.pop()
        mask, new = tables[x, y][inp][fid]
        for o in range(6):
            if mask >> o & 1:
                if o >= OUT_L0 or (o == W and x == 0) or (o == E and x == params.cols - 1):
                    assert (x, y, o) not in out, "a delivery port reached twice"
                    out[x, y, o] = new
                else:
                    todo.append((x + STEP[o][0], y + STEP[o][1], OPPOSITE[o], new))
    return out


def test_xy_path_goes_x_then_y():
    hops = xy_path(unit_src(Coord(0, 0)), unit_dst(Coord(1, 3), 1))
    assert [(x, y, o) for x, y, _, o in hops] == [(0, 0, E), (1, 0, E), (2, 0, E), (3, 0, S),
                                                   (3, 1, OUT_L0 + 1)]
    assert hops[0][2] == IN_LOCAL and hops[1][2] == W


@pytest.mark.parametrize("seed", range(5))
def test_random_flows_reach_exactly_their_destinations(seed):
    rng = random.Random(seed)
    srcs = [unit_src(Coord(y, x)) for y in range(P.rows) for x in range(P.cols)]
    dsts = [unit_dst(Coord(y, x), k) for y in range(P.rows) for x in range(P.cols)
            for k in range(2)]
    dsts += [edge_dst(P, s, r) for s in "WE" for r in range(P.rows)]
    flows = [Flow(f"f{i}", rng.choice(srcs), tuple(rng.sample(dsts, rng.randint(1, 5))),
                  rate=1 / 20) for i in range(20)]
    r = route(P, flows)
    for f in flows:
        reached = walk(P, r, f)
        assert set(reached) == {(d.x, d.y, d.port) for d in f.dsts}
        assert {(d.x, d.y, d.port): fid for d, fid in r.arrivals[f.name].items()} == reached
    # Flow ids are unique per switch input and per delivery port.
    seen = {}
    for f in flows:
        for d, fid in r.arrivals[f.name].items():
            assert seen.setdefault((d, fid), f.name) == f.name
    value = pack_fabric(P, r)
    assert 0 < value < 1 << fabric_config_layout(P).size


def test_over_subscribed_link_names_flow_and_link():
    flows = [Flow("a", unit_src(Coord(0, 0)), (unit_dst(Coord(0, 2)),), rate=0.6),
             Flow("b", unit_src(Coord(0, 1)), (unit_dst(Coord(0, 3)),), rate=0.5)]
    with pytest.raises(RouteError, match=r"flow 'b' over-subscribes link \(1,0\)->E->\(2,0\)"):
        route(P, flows)
    # Dynamic flows count too, and so do delivery and injection ports.
    with pytest.raises(RouteError, match=r"over-subscribes link \(2,0\)->L0"):
        route(P, [Flow("a", unit_src(Coord(0, 0)), (unit_dst(Coord(0, 2)),), rate=0.6),
                  Flow("c", unit_src(Coord(1, 3)), (unit_dst(Coord(0, 2)),), rate=0.6, dynamic=True)])
    with pytest.raises(RouteError, match=r"over-subscribes injection port \(0,0\).L"):
        route(P, [Flow("a", unit_src(Coord(0, 0)), (unit_dst(Coord(0, 2)),), rate=0.6),
                  Flow("d", unit_src(Coord(0, 0)), (unit_dst(Coord(1, 0)),), rate=0.6)])


def test_unroutable_flows_are_rejected():
    with pytest.raises(RouteError, match="outside the 2 x 4 grid"):
        route(P, [Flow("a", unit_src(Coord(0, 0)), (unit_dst(Coord(0, 4)),))])
    with pytest.raises(RouteError, match="neither a unit port nor an edge port"):
        route(P, [Flow("a", unit_src(Coord(0, 0)), (Endpoint(Coord(0, 1), N),))])
    with pytest.raises(RouteError, match="dynamic .* is unicast"):
        route(P, [Flow("a", unit_src(Coord(0, 0)), (unit_dst(Coord(0, 1)), unit_dst(Coord(0, 2))), dynamic=True)])
    with pytest.raises(RouteError, match="used twice"):
        route(P, [Flow("a", unit_src(Coord(0, 0)), (unit_dst(Coord(0, 1)),), rate=0.1)] * 2)
    with pytest.raises(RouteError, match="rate 1.5"):
        route(P, [Flow("a", unit_src(Coord(0, 0)), (unit_dst(Coord(0, 1)),), rate=1.5)])


def test_flow_ids_run_out_with_a_clear_error():
    flows = [Flow(f"f{i}", unit_src(Coord(0, 0)), (unit_dst(Coord(0, 1)),), rate=1 / 32) for i in range(17)]
    with pytest.raises(RouteError, match=r"flow 'f16': no free flow id at switch \(0,0\) "
                                         r"input L \(all 16 in use\)"):
        route(P, flows)


def test_looping_tables_are_rejected():
    # (0,0) E -> (1,0) W; (1,0) sends it back W -> (0,0) E input, which sends it E again.
    tables = {(0, 0): {IN_LOCAL: {0: (1 << E, 1)}, E: {2: (1 << E, 1)}},
              (1, 0): {W: {1: (1 << W, 2)}}}
    with pytest.raises(RouteError, match="flow tables loop"):
        check_tables(P, tables)
    with pytest.raises(RouteError, match="loop"):
        pack_fabric(P, FabricRoutes(tables=tables))
    # A dangling entry and an exit off the grid are errors too.
    with pytest.raises(RouteError, match="has no entry for it"):
        check_tables(P, {(0, 0): {IN_LOCAL: {0: (1 << E, 3)}}})
    with pytest.raises(RouteError, match="output N leaves the grid"):
        check_tables(P, {(0, 0): {IN_LOCAL: {0: (1 << N, 0)}}})


def test_throttle_only_on_injection_ports():
    r = route(P, [Flow("a", unit_src(Coord(0, 0)), (unit_dst(Coord(0, 1)),))])
    r.throttle(P, unit_src(Coord(0, 0)), 0.25, 4)
    r.throttle(P, edge_src(P, "E", 1), 1.0, 1)
    with pytest.raises(RouteError, match="only unit and edge"):
        r.throttle(P, Endpoint(Coord(0, 1), W), 0.5, 1)
    with pytest.raises(RouteError, match="rate 0 outside"):
        r.throttle(P, unit_src(Coord(0, 0)), 0, 1)
    with pytest.raises(RouteError, match="burst 0 outside"):
        r.throttle(P, unit_src(Coord(0, 0)), 0.5, 0)


def test_control_routes_and_track_exhaustion():
    tok = lambda row, col, k: Token(Coord(row, col), k)
    c = route_control(P, [ControlFlow("done", tok(0, 0, 0), (tok(1, 3, 1), tok(0, 1, 0)))])
    assert c.latency["done"] == {tok(1, 3, 1): 5, tok(0, 1, 0): 2}
    # Three circuits over one link with two tracks.
    flows = [ControlFlow(f"t{i}", tok(0, 0, i % 2) if i < 2 else tok(1, 0, 0),
                         (tok(0, 2, i % 2),)) for i in range(3)]
    flows[2] = ControlFlow("t2", tok(0, 0, 0), (tok(0, 3, 0),))
    with pytest.raises(RouteError, match=r"no free track on link \(0,0\)->E->\(1,0\)"):
        route_control(P, flows)
    with pytest.raises(RouteError, match="already driven by 'a'"):
        route_control(P, [ControlFlow("a", tok(0, 0, 0), (tok(1, 1, 0),)),
                          ControlFlow("b", tok(0, 2, 0), (tok(1, 1, 0),))])
    with pytest.raises(RouteError, match="does not exist"):
        route_control(P, [ControlFlow("a", tok(0, 0, 2), (tok(1, 1, 0),))])
    assert pack_rdn(P, ctl=c) > 0


def test_throttle_to_rates_sums_the_flows_of_each_port():
    flows = [Flow("a", unit_src(Coord(0, 0)), (unit_dst(Coord(0, 1)),), rate=0.1),
             Flow("b", unit_src(Coord(0, 0)), (unit_dst(Coord(1, 2)),), rate=0.2),
             Flow("c", edge_src(P, "E", 1), (unit_dst(Coord(1, 2), 1),), rate=1 / 7)]
    r = route(P, flows)
    r.throttle_to_rates(P, flows, burst=3)
    assert r.throttles[0, 0][IN_LOCAL] == (77, 3)          # ceil(0.3 x 256)
    assert r.throttles[3, 1][E] == (37, 3)                 # ceil(256 / 7)
