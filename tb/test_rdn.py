"""cocotb: the RDN (vector, scalar and control fabrics) on Verilator.

Arguments (the test's dataclass in :mod:`tb.lib.args`): ``config``/``params``, ``seed``, and per test:

* ``rdn_traffic``: ``flows`` random flows per fabric (unicast, multicast, dynamic),
  ``packets`` per flow, ``idle`` and ``backpressure`` probabilities, ``throttle`` (a
  list of [fabric, source index, rate, burst] for throttled injection ports). Checks
  every packet arrives exactly once, bit-exact, in flow order at the right port; no
  credit error, nothing dropped; port counters agree with the streams; throttled ports
  never exceed rate x W + burst in any window of W cycles.
* ``rdn_control``: ``flows`` random control flows, random token pulses for ``cycles``
  cycles: every pulse arrives on each configured wire after the routed latency, and no
  other wire ever pulses.
"""

import random

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from firmware.compiler.route import (ControlFlow, Endpoint, Flow, Token, pack_rdn, route,
                                     route_control)
from hdl.grid import Coord, grid_coords
from hdl.packet import scalar_packet_layout, vector_packet_layout
from hdl.rdn.config import CTRL_LOCAL, RATE_ONE, switch_counters_layout
from tb.lib.args import RdnControlArgs, RdnScenarioArgs, RdnTrafficArgs
from tb.lib.harness import TbHarness, write_outputs
from tb.lib.payload import pack, unpack
from tb.lib.rdn_traffic import (SEQ_BITS, check_delivery, make_traffic, random_flows,
                                sink_name, sinks, source_name, sources)

FIELDS = ("hdr.dyn", "hdr.flow", "hdr.x", "hdr.y", "hdr.port", "body.data", "body.mask",
          "body.last")


def _rows(layout, packets):
    names = [f for f in FIELDS if f in packets[0]]
    return pack(layout, {f: np.array([p[f] for p in packets], dtype=np.uint64) for f in names})


def _packets(layout, rows, vector):
    cols = unpack(layout, rows)
    out = []
    for i in range(len(rows)):
        p = {}
        for f in FIELDS:
            if f not in cols:
                continue
            v = cols[f][i]
            p[f] = [int(x) for x in v] if f == "body.data" and vector else int(v)
        out.append(p)
    return out


def window_excess(times, rate, burst):
    """Largest (count in a window of W cycles) - (rate x W + burst) over all windows that
    start and end at an emission (the tightest windows)."""
    t = np.sort(times)
    worst = -np.inf
    for i in range(len(t)):
        w = t[i:] - t[i] + 1                    # window from emission i to emission j
        count = np.arange(1, len(w) + 1)
        worst = max(worst, float(np.max(count - (rate * w + burst))))
    return worst


def _setup(cls):
    """The test's arguments (a ``cls``), machine parameters, seed and a generator seeded
    with it."""
    args = cls.from_env()
    seed = args.seed
    return args, args.machine(), seed, random.Random(seed)


@cocotb.test()
async def rdn_traffic(dut):
    args, params, seed, rng = _setup(RdnTrafficArgs)
    layouts = {"vec": vector_packet_layout(params), "sca": scalar_packet_layout(params)}
    routes, flows, traffic = {}, {}, {}
    throttled = {}
    srcs = sources(params)
    throttles = [(fab, srcs[k % len(srcs)], rate, burst)
                 for fab, k, rate, burst in args.throttle]
    for fab in ("vec", "sca"):
        mine = [ep for f, ep, _, _ in throttles if f == fab]
        flows[fab] = random_flows(params, rng, args.flows, from_=mine)
        routes[fab] = route(params, flows[fab])
        traffic[fab] = make_traffic(params, fab, flows[fab], routes[fab], rng,
                                    args.packets)
    for fab, ep, rate, burst in throttles:
        routes[fab].throttle(params, ep, rate, burst)
        throttled[source_name(fab, ep)] = routes[fab].throttles[ep.x, ep.y][ep.port]
    config = pack_rdn(params, routes["vec"], routes["sca"])
    tb = TbHarness(dut)
    await tb.reset()
    tb.port("config").value = config
    await tb.cycles(3)
    idle, bp = args.idle, args.backpressure
    injected = 0
    for fab in ("vec", "sca"):
        for name, pkts in traffic[fab].inject.items():
            tb.load(name, _rows(layouts[fab], pkts), seed=rng.getrandbits(32),
                    valid_probability=1 - idle)
            injected += len(pkts)
        for ep in sinks(params):
            name = sink_name(fab, ep)
            tb.expect(name, len(traffic[fab].expect.get(name, [])), seed=rng.getrandbits(32),
                      ready_probability=1 - bp)
    expected = sum(len(v) for fab in traffic.values() for v in fab.expect.values())
    cycles, wall = await tb.run(timeout_cycles=200 * (injected + 100))

    problems = []
    for fab in ("vec", "sca"):
        received = {}
        for name, want in traffic[fab].expect.items():
            received[name] = _packets(layouts[fab], await tb.dump(name), fab == "vec")
        problems += check_delivery(traffic[fab], received)
    assert not problems, f"seed {seed}: " + "; ".join(problems[:5])

    # Status and counters.
    assert int(tb.port("credit_error").value) == 0, f"seed {seed}: credit error flagged"
    n = params.rows * params.cols
    for f in range(2):
        for k in range(n):
            d = int(tb.port(f"dropped__{f}__{k}").value)
            assert d == 0, f"seed {seed}: switch {k} of fabric {f} dropped {d} packets"
    layout = switch_counters_layout()
    stall_max = 0
    for fab in ("vec", "sca"):
        ctr = [layout.from_bits(int(tb.port(f"{fab}_counters__{k}").value)) for k in range(n)]
        for ep in sinks(params):
            name = sink_name(fab, ep)
            got = ctr[ep.y * params.cols + ep.x].out[ep.port].packets
            want = len(traffic[fab].expect.get(name, []))
            assert got == want, f"seed {seed}: {name}: port counter {got}, stream {want}"
        for ep in srcs:
            name = source_name(fab, ep)
            got = ctr[ep.y * params.cols + ep.x].inp[ep.port].packets
            want = len(traffic[fab].inject.get(name, []))
            assert got == want, f"seed {seed}: {name}: port counter {got}, stream {want}"
        stall_max = max(stall_max, max(c.out[o].stall for c in ctr for o in range(6)))

    # Throttled ports: no window of W cycles carries more than rate x W + burst.
    excess = {}
    for name, (rate, burst) in throttled.items():
        times = await tb.times(name)
        if len(times):
            excess[name] = window_excess(times, rate / RATE_ONE, burst)
            assert excess[name] <= 1e-9, \
                f"seed {seed}: {name} exceeds its token bucket by {excess[name]} packets"
    write_outputs(cycles=cycles, wall_s=wall, injected=injected, delivered=expected,
                  stall_max=stall_max, throttle_excess=excess, seed=seed)


@cocotb.test()
async def rdn_control(dut):
    args, params, seed, rng = _setup(RdnControlArgs)
    cells = [Token(pos, k) for pos in grid_coords(params) for k in range(CTRL_LOCAL)]
    srcs = rng.sample(cells, args.flows)
    free_dsts = list(cells)
    rng.shuffle(free_dsts)
    cflows = []
    for i, s in enumerate(srcs):
        count = rng.randint(1, 3)
        dsts = tuple(free_dsts.pop() for _ in range(count) if free_dsts)
        cflows.append(ControlFlow(f"t{i}", s, dsts))
    ctl = route_control(params, cflows)
    tb = TbHarness(dut)
    await tb.reset()
    tb.port("config").value = pack_rdn(params, ctl=ctl)
    await tb.cycles(3)
    # Expected: for each destination wire, the source's pulses delayed by the latency
    # (+1: io inputs reach the design through a register).
    route_of = {d: (f.src, ctl.latency[f.name][d]) for f in cflows for d in f.dsts}
    cycles = args.cycles
    pulses = {s: [0] * cycles for s in cells}
    for s in srcs:
        for c in range(cycles - 40):
            pulses[s][c] = int(rng.random() < 0.3)
    seen = {d: [] for d in cells}
    for c in range(cycles):
        for y in range(params.rows):
            for x in range(params.cols):
                v = sum(pulses[Token(Coord(y, x), k)][c] << k for k in range(CTRL_LOCAL))
                tb.port(f"tok_in__{y}__{x}").value = v
        await RisingEdge(dut.clk)
        for y in range(params.rows):
            for x in range(params.cols):
                v = int(tb.port(f"tok_out__{y}__{x}").value)
                for k in range(CTRL_LOCAL):
                    if v >> k & 1:
                        seen[Token(Coord(y, x), k)].append(c)
    problems = []
    base = None
    for d in cells:
        if d not in route_of:
            if seen[d]:
                problems.append(f"unit {d} token pulsed {len(seen[d])} times; no flow drives it")
            continue
        src, lat = route_of[d]
        sent = [c for c in range(cycles) if pulses[src][c]]
        if len(sent) != len(seen[d]):
            problems.append(f"unit {d}: {len(seen[d])} pulses, sent {len(sent)} from {src}")
            continue
        offsets = {b - a for a, b in zip(sent, seen[d])}
        if len(offsets) != 1:
            problems.append(f"unit {d}: pulses from {src} arrive with varying delays {offsets}")
            continue
        delay = offsets.pop() - lat          # the harness's own fixed delay
        if base is None:
            base = delay
        if delay != base:
            problems.append(f"unit {d}: delay {delay + lat} does not match its {lat}-hop route")
    assert not problems, f"seed {seed}: " + "; ".join(problems[:5])
    write_outputs(flows=len(cflows), pulses=sum(len(v) for v in seen.values()), seed=seed)


def _endpoint(spec):
    """A scenario's [row, col, port] as a route ``Endpoint``."""
    row, col, port = spec
    return Endpoint(Coord(row, col), port)


@cocotb.test()
async def rdn_scenario(dut):
    """A measured scenario on the vector fabric: ``flows`` = [{"src": [row, col, port],
    "dst": [row, col, port], "when": [release cycle per packet], "rate": r, "dynamic": b}],
    ``throttle`` = [[row, col, port, rate, burst]] or ``throttle_to_rates`` = burst (every
    source at its flows' planned rate); sources never idle, sinks always ready.
    Outputs throughput, latency percentiles (from release and from injection) and the
    worst stall counters."""
    args = RdnScenarioArgs.from_env()
    params = args.machine()
    layout = vector_packet_layout(params)
    specs = args.flows
    flows = [Flow(f"f{k}", _endpoint(s["src"]), (_endpoint(s["dst"]),), rate=s.get("rate", 1.0),
                  dynamic=s.get("dynamic", False)) for k, s in enumerate(specs)]
    routes = route(params, flows)
    for row, col, port, rate, burst in args.throttle:
        routes.throttle(params, _endpoint((row, col, port)), rate, burst)
    if args.throttle_to_rates is not None:
        routes.throttle_to_rates(params, flows, args.throttle_to_rates)
    per_source = {}
    for k, (f, s) in enumerate(zip(flows, specs)):
        hdr = {f"hdr.{n}": v for n, v in routes.headers[f.name].items()}
        for seq, t in enumerate(s["when"]):
            p = {**hdr, "body.data": [(k << SEQ_BITS) | seq] + [0] * (params.pcu_lanes - 1),
                 "body.mask": 0, "body.last": 0}
            per_source.setdefault(source_name("vec", f.src), []).append((t, k, seq, p))
    tb = TbHarness(dut)
    await tb.reset()
    tb.port("config").value = pack_rdn(params, routes)
    await tb.cycles(3)
    release = {}
    for name, items in per_source.items():
        items.sort(key=lambda it: (it[0], it[1], it[2]))
        tb.load(name, _rows(layout, [p for *_, p in items]), when=[t for t, *_ in items])
        for t, k, seq, _ in items:
            release[k, seq] = t
    sinks_used = {}
    for f, spec in zip(flows, specs):
        for d in f.dsts:
            name = sink_name("vec", d)
            sinks_used[name] = sinks_used.get(name, 0) + len(spec["when"])
    for ep in sinks(params):
        tb.expect(sink_name("vec", ep), sinks_used.get(sink_name("vec", ep), 0))
    cycles, wall = await tb.run(timeout_cycles=100 * (len(release) + 1000))
    accept, arrive = {}, {}
    for name, items in per_source.items():
        for (t, k, seq, _), c in zip(items, await tb.times(name)):
            accept[k, seq] = int(c)
    for name in sinks_used:
        pkts = _packets(layout, await tb.dump(name), True)
        for p, c in zip(pkts, await tb.times(name)):
            tag = p["body.data"][0]
            arrive[tag >> SEQ_BITS, tag & ((1 << SEQ_BITS) - 1)] = int(c)
    assert set(arrive) == set(release), "packets lost or duplicated"
    lat = np.array([arrive[k] - release[k] for k in release])
    net = np.array([arrive[k] - accept[k] for k in release])
    ctr = [switch_counters_layout().from_bits(int(tb.port(f"vec_counters__{k}").value))
           for k in range(params.rows * params.cols)]
    out_stall = max(c.out[o].stall for c in ctr for o in range(6))
    in_stall = max(c.inp[i].stall for c in ctr for i in range(5))
    span = max(arrive.values()) - min(release.values()) + 1
    by_flow = {}
    for k in range(len(flows)):
        keys = [(k, s) for s in range(len(specs[k]["when"]))]
        ts = sorted(arrive[x] for x in keys)
        by_flow[k] = {"first_arrival": ts[0], "last_arrival": ts[-1], "packets": len(ts),
                      "network_latency_min": min(arrive[x] - accept[x] for x in keys),
                      "network_latency_p50": float(np.median([arrive[x] - accept[x]
                                                              for x in keys]))}
    write_outputs(
        packets=len(release), span_cycles=span, throughput=len(release) / span,
        latency_p50=float(np.percentile(lat, 50)), latency_p99=float(np.percentile(lat, 99)),
        latency_max=int(lat.max()),
        network_latency_p50=float(np.percentile(net, 50)),
        network_latency_p99=float(np.percentile(net, 99)), network_latency_max=int(net.max()),
        worst_output_stall=out_stall, worst_input_stall=in_stall,
        worst_port_stall=max(out_stall, in_stall),
        throttled_cycles=max(c.inp[i].throttled for c in ctr for i in range(5)),
        flows=by_flow, cycles=cycles, wall_s=wall)
