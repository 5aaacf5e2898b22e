"""Tier 1: the pieces of the socket stress regression — bitstreams read back into unit
values, token buckets put on a kernel's injection ports (and nowhere else), and the
network bookkeeping that finds a lost or duplicated packet on a link."""

import random

import pytest

from firmware.compiler.bitstream import BitstreamError, bitstream_rows, unit_values
from firmware.compiler.program import injection_ports, throttled
from hdl.params import PRESETS
from hdl.rdn.config import E, IN_LOCAL, N_IN, N_OUT, RATE_ONE, W, switch_config_layout
from hdl.socket import socket_config_units
from tb.lib.stress import CASES, case_of, link_balance, packet_counts

SMALL = PRESETS["small"]
SEED = 20261204


def _programs(params, seed, cases=CASES):
    """The programs of stress ``cases`` at shapes from ``seed`` (run on the reference
    backend, its loads recorded)."""
    import asyncio

    import numpy as np
    from firmware.runtime.reference import ReferenceDevice
    rng, out = random.Random(seed), []
    for name in cases:
        dev = ReferenceDevice(params)
        load = dev.load

        async def recorded(program, region="hbm"):
            out.append(program)
            return await load(program, region)
        dev.load = recorded
        asyncio.run(case_of(name, rng).run(dev, np.random.default_rng(seed)))
    return out


def test_unit_values_inverts_bitstream_rows_and_checks_the_check_beats():
    rng = random.Random(SEED)
    units = {u.id: u for u in socket_config_units(SMALL)}
    from amaranth.lib import data
    pick = rng.sample(sorted(units), 12)
    values = {u: rng.getrandbits(data.Layout.cast(units[u].layout).size) for u in pick}
    rows = bitstream_rows({u: (units[u].layout, v) for u, v in values.items()})
    assert unit_values(rows) == values, f"seed {SEED}"
    bad = rows.copy()
    bad[rng.randrange(len(rows) - 2), 0] ^= 1 << rng.randrange(32)
    with pytest.raises(BitstreamError, match="check beats"):
        unit_values(bad)


@pytest.mark.parametrize("name", ["small", "plasticine"])
def test_injection_ports_are_unit_outputs_and_agcu_edges_the_kernel_routes(name):
    params = PRESETS[name]
    # The decode case's shapes (d_model < 24) have no placement on plasticine: the GEMV's
    # x and its replay flows want one link (a placer limit, issue 17); small runs them.
    cases = CASES if name == "small" else [c for c in CASES if c != "decode"]
    for p in _programs(params, SEED, cases):
        ports = injection_ports(params, p)
        assert ports, f"{p.name}: no injection port"
        for fabric, x, y, port in ports:
            assert fabric in ("vec", "sca")
            assert port == IN_LOCAL or (port == W and x == 0) or \
                (port == E and x == params.cols - 1), (p.name, x, y, port)


def test_throttled_changes_only_the_token_buckets_asked_for():
    layout = switch_config_layout(SMALL)
    rng = random.Random(SEED + 1)
    for p in _programs(SMALL, SEED + 1):
        ports = injection_ports(SMALL, p)
        want = {x: (rng.randint(1, RATE_ONE), rng.randint(1, 255))
                for x in rng.sample(ports, max(1, len(ports) // 2))}
        t = throttled(SMALL, p, want)
        assert t.beats == p.beats and t.units == p.units and t.agcus == p.agcus
        before, after = unit_values(p.rows), unit_values(t.rows)
        assert before.keys() == after.keys() and before != after, p.name
        units = {u.id: u for u in socket_config_units(SMALL)}
        for uid in before:
            u = units[uid]
            if before[uid] == after[uid]:
                continue
            a, b = layout.from_bits(after[uid]), layout.from_bits(before[uid])
            for i in range(N_IN):
                key = (u.name[:3], u.col, u.row, i)
                assert int(a.table[i].as_value().value) == int(b.table[i].as_value().value)
                if key in want:
                    rate = min(want[key][0], int(b.throttle[i].rate)) \
                        if int(b.throttle[i].en) else want[key][0]
                    assert (int(a.throttle[i].en), int(a.throttle[i].rate),
                            int(a.throttle[i].burst)) == (1, rate, want[key][1]), (p.name, key)
                else:
                    assert int(a.throttle[i].as_value().value) == \
                        int(b.throttle[i].as_value().value), (p.name, key)
        assert throttled(SMALL, p, {}).rows.tolist() == p.rows.tolist()


def test_throttled_refuses_ports_that_do_not_inject():
    p = _programs(SMALL, SEED)[0]
    used = set(injection_ports(SMALL, p))
    spare = next(("vec", x, y, IN_LOCAL) for y in range(SMALL.rows) for x in range(SMALL.cols)
                 if ("vec", x, y, IN_LOCAL) not in used)
    with pytest.raises(BitstreamError, match="not an injection port"):
        throttled(SMALL, p, {spare: (64, 2)})
    with pytest.raises(BitstreamError, match="rate"):
        throttled(SMALL, p, {sorted(used)[0]: (0, 2)})


def _delta(params, rng):
    """Port counters of traffic that is balanced on every link."""
    n = params.rows * params.cols
    d = {f: [{"inp": [0] * N_IN, "out": [0] * N_OUT} for _ in range(n)] for f in ("vec", "sca")}
    d["dropped"] = [0] * (2 * n)
    for f in ("vec", "sca"):
        for y in range(params.rows):
            for x in range(params.cols):
                if x + 1 < params.cols:
                    k = rng.randrange(100)
                    d[f][y * params.cols + x]["out"][E] = k
                    d[f][y * params.cols + x + 1]["inp"][W] = k
                    k = rng.randrange(100)
                    d[f][y * params.cols + x + 1]["out"][W] = k
                    d[f][y * params.cols + x]["inp"][E] = k
    return d


def test_link_balance_finds_a_lost_and_a_duplicated_packet():
    rng = random.Random(SEED + 2)
    d = _delta(SMALL, rng)
    checked, bad = link_balance(SMALL, d)
    # Links between neighbours, both directions, both fabrics: 2 x 2 x (horizontal +
    # vertical) pairs of the 2 x 4 grid.
    pairs = SMALL.rows * (SMALL.cols - 1) + (SMALL.rows - 1) * SMALL.cols
    assert (checked, bad) == (2 * 2 * pairs, []), f"seed {SEED + 2}"
    d["vec"][1]["inp"][W] -= 1                       # one packet (0,0) -> (1,0) lost
    d["sca"][2]["out"][W] -= 1                       # (2,0) -> (1,0): one more received
    _, bad = link_balance(SMALL, d)
    assert sorted(bad) == sorted([("vec", (0, 0), "E", d["vec"][0]["out"][E],
                                   d["vec"][0]["out"][E] - 1),
                                  ("sca", (2, 0), "W", d["sca"][2]["out"][W],
                                   d["sca"][2]["out"][W] + 1)]), f"seed {SEED + 2}: {bad}"
    assert len(packet_counts(d)) == 2 * SMALL.rows * SMALL.cols * (N_IN + N_OUT)
