"""Tier 2: RDN blocks in the Amaranth simulator: token bucket, round-robin arbiter, and
one switch (every neighbour link an edge stream) for arbitration, multicast and drops."""

import random

from amaranth import Value

from hdl.arbiter import RoundRobin
from hdl.packet import scalar_packet_layout
from hdl.params import RduParams
from hdl.rdn.config import E, IN_LOCAL, N, OUT_L0, RATE_ONE, S, W, switch_config_layout
from hdl.rdn.switch import EDGE, Switch
from hdl.rdn.throttle import TokenBucket
from tb.lib.pysim import collect, drive, simulate

TINY = RduParams(name="tiny", rows=2, cols=3, pcu_lanes=2, pcu_stages=2, pmu_banks=2,
                 pmu_bank_words=64, agcus=2, rdn_flows=4)


def test_token_bucket_bounds_every_window():
    for rate, burst, seed in [(64, 3, 1), (200, 1, 2), (RATE_ONE, 2, 3), (17, 5, 4)]:
        dut = TokenBucket()
        rng = random.Random(seed)
        taken = []

        async def tb(ctx):
            ctx.set(dut.config, {"en": 1, "rate": rate, "burst": burst})
            for cycle in range(600):
                want = cycle >= 300 or rng.random() < 0.6
                allow = ctx.get(dut.allow)
                ctx.set(dut.take, want and allow)
                if want and allow:
                    taken.append(cycle)
                await ctx.tick()

        simulate(dut, tb)
        # Over any window of W cycles: at most rate x W + burst packets ...
        for i in range(len(taken)):
            for j in range(i, len(taken)):
                w = taken[j] - taken[i] + 1
                assert j - i + 1 <= rate / RATE_ONE * w + burst, (rate, burst, i, j)
        # ... and a packet every cycle (the last 300) gets the full rate.
        late = sum(c >= 300 for c in taken)
        assert abs(late - rate / RATE_ONE * 300) <= burst + 1, (rate, burst, late)


def test_round_robin_shares_fairly_and_keeps_unused_grants():
    dut = RoundRobin(4)
    grants = []

    async def tb(ctx):
        for cycle in range(40):
            ctx.set(dut.request, 0b1011)
            ctx.set(dut.take, cycle % 5 != 0)        # every 5th grant is not used
            g = ctx.get(dut.grant)
            grants.append((g, cycle % 5 != 0))
            await ctx.tick()

    simulate(dut, tb)
    used = [g for g, t in grants if t]
    assert all(bin(g).count("1") == 1 and g & 0b1011 for g, _ in grants)
    # Used grants rotate 0 -> 1 -> 3 -> 0 ...; an unused grant is offered again.
    order = {1: 0, 2: 1, 8: 2}
    for a, b in zip(used, used[1:]):
        assert order[b] == (order[a] + 1) % 3
    for (g, taken), (g2, _) in zip(grants, grants[1:]):
        if not taken:
            assert g2 == g


def _switch():
    layout = scalar_packet_layout(TINY)
    return Switch(TINY, layout, 0, 0, {d: EDGE for d in (N, E, S, W)}), layout


def _pkt(layout, hdr, tag):
    return layout.const({"body": {"data": tag, "last": tag & 1}, "hdr": hdr}).as_value().value


def _config(entries=(), throttle=()):
    cfg = {"table": [[{"out": 0, "flow": 0} for _ in range(TINY.rdn_flows)] for _ in range(5)],
           "throttle": [{"en": 0, "rate": 0, "burst": 0} for _ in range(5)]}
    for inp, fid, out, new in entries:
        cfg["table"][inp][fid] = {"out": out, "flow": new}
    return switch_config_layout(TINY).const(cfg).as_value().value


def _port_in(sw, i):
    return sw.l_in if i == IN_LOCAL else sw.edge_in[i]


def _port_out(sw, o):
    return sw.l_out[o - OUT_L0] if o >= OUT_L0 else sw.edge_out[o]


def run_switch(config, feeds, expect, *, seed, backpressure=0.3, idle=0.2):
    """``feeds``: input port -> payloads; ``expect``: output port -> count. Returns output
    port -> payloads, and the dropped count."""
    sw, layout = _switch()
    rng = random.Random(seed)
    got = {o: [] for o in expect}
    dropped = []

    async def setup(ctx):
        ctx.set(Value.cast(sw.config), config)

    def feeder(i, items, r):
        async def tb(ctx):
            await ctx.tick().repeat(2)
            await drive(ctx, _port_in(sw, i), items, r, idle, max_wait=500)
        return tb

    def sink(o, n, r):
        async def tb(ctx):
            await collect(ctx, _port_out(sw, o), n, r, backpressure, max_cycles=2000,
                          seed=seed, out=got[o])
        return tb

    async def status(ctx):
        await ctx.tick().repeat(2500)
        dropped.append(ctx.get(sw.dropped))
        assert ctx.get(sw.credit_error) == 0

    tbs = [setup, status]
    tbs += [feeder(i, items, random.Random(rng.random())) for i, items in feeds.items()]
    tbs += [sink(o, n, random.Random(rng.random())) for o, n in expect.items()]
    simulate(sw, *tbs)
    return got, dropped[0], layout


def test_many_inputs_to_one_output_in_order_per_input():
    layout = scalar_packet_layout(TINY)
    dyn = {"dyn": 1, "x": 0, "y": 0, "port": OUT_L0}
    feeds = {i: [_pkt(layout, dyn, (i << 8) | k) for k in range(25)] for i in (N, E, W, IN_LOCAL)}
    got, dropped, layout = run_switch(_config(), feeds, {OUT_L0: 100}, seed=5)
    assert dropped == 0
    tags = [layout.from_bits(p).body.data for p in got[OUT_L0]]
    for i in feeds:
        mine = [t & 0xFF for t in tags if t >> 8 == i]
        assert mine == list(range(25)), i


def test_multicast_one_copy_each_with_flow_rewrite():
    layout = scalar_packet_layout(TINY)
    cfg = _config([(W, 2, (1 << OUT_L0) | (1 << (OUT_L0 + 1)) | (1 << E), 3)])
    feeds = {W: [_pkt(layout, {"dyn": 0, "flow": 2}, k) for k in range(30)]}
    got, dropped, layout = run_switch(cfg, feeds, {OUT_L0: 30, OUT_L0 + 1: 30, E: 30}, seed=6,
                                      backpressure=0.6)
    assert dropped == 0
    for o, pkts in got.items():
        views = [layout.from_bits(p) for p in pkts]
        assert [v.body.data for v in views] == list(range(30)), o
        assert all(v.hdr.flow == 3 for v in views)


def test_unroutable_packets_are_dropped_and_counted_not_hung():
    layout = scalar_packet_layout(TINY)
    cfg = _config([(IN_LOCAL, 1, 1 << OUT_L0, 0)])
    good = {"dyn": 0, "flow": 1}
    bad = [{"dyn": 0, "flow": 0},                                  # no table entry
           {"dyn": 1, "x": 3, "y": 0, "port": OUT_L0},             # column outside the grid
           {"dyn": 1, "x": 0, "y": 0, "port": 6},                  # no output 6
           {"dyn": 1, "x": 0, "y": 0, "port": N}]                  # N is an edge here: delivered
    seq = [_pkt(layout, good, 0), _pkt(layout, bad[0], 1), _pkt(layout, good, 2),
           _pkt(layout, bad[2], 3), _pkt(layout, good, 4), _pkt(layout, bad[3], 5),
           _pkt(layout, bad[1], 6), _pkt(layout, good, 7)]
    got, dropped, layout = run_switch(cfg, {IN_LOCAL: seq}, {OUT_L0: 4, N: 1}, seed=7)
    assert [layout.from_bits(p).body.data for p in got[OUT_L0]] == [0, 2, 4, 7]
    assert [layout.from_bits(p).body.data for p in got[N]] == [5]
    assert dropped == 3


def test_credit_link_between_two_switches_under_backpressure():
    """Two switches joined by a credit link: everything arrives in order at the far unit,
    no credit error, and the link never had more packets in flight than buffer entries."""
    from hdl.rdn.fabric import Fabric
    from hdl.rdn.config import fabric_config_layout
    params = TINY.replace(rows=1, cols=2, rdn_buffer_depth=3)
    layout = scalar_packet_layout(params)
    fab = Fabric(params, layout)
    n = 60
    items = [_pkt(layout, {"dyn": 1, "x": 1, "y": 0, "port": OUT_L0}, k) for k in range(n)]
    got, status = [], {}
    cfg = fabric_config_layout(params).const([_switch_cfg(params)] * 2).as_value().value

    async def feed(ctx):
        ctx.set(Value.cast(fab.config), cfg)
        await ctx.tick().repeat(2)
        await drive(ctx, fab.ports.inj[0][0], items, random.Random(1), 0.1, max_wait=500)

    async def sink(ctx):
        await collect(ctx, fab.ports.dlv[0][1][0], n, random.Random(2), 0.7, max_cycles=3000,
                      seed=2, out=got)
        status["err"] = ctx.get(fab.credit_error)
        status["link"] = ctx.get(fab.counters[0]).out[E]

    simulate(fab, feed, sink)
    assert [layout.from_bits(p).body.data for p in got] == list(range(n))
    assert status["err"] == 0
    # Back-pressure reached the sender: its link output waited for credits.
    assert status["link"].stall > 0 and status["link"].packets == n


def _switch_cfg(params):
    return {"table": [[{"out": 0, "flow": 0}] * params.rdn_flows] * 5,
            "throttle": [{"en": 0, "rate": 0, "burst": 0}] * 5}
