"""Tier 3: the RDN on Verilator through cocotb: random traffic (unicast, multicast,
dynamic; both fabrics) with idle sources and back-pressured sinks, throttling bounds,
and control tokens (OPENRDU_SEED overrides the seed)."""

import os

import pytest

from hdl.params import PRESETS
from sim.cocotb_run import run_cocotb
from sim.designs import build_design
from tb.lib.args import tb_args

pytestmark = pytest.mark.rtl

SEED = int(os.environ.get("OPENRDU_SEED", "20261122"))
SMALL = PRESETS["small"]
#: The larger grid: more hops, more contention, and edge ports on four rows.
LARGE = SMALL.replace(name="rdn-large", rows=4, cols=5, pcu_lanes=4, pmu_banks=4)


@pytest.fixture(scope="module")
def small():
    return build_design("rdn", SMALL)


@pytest.fixture(scope="module")
def large():
    return build_design("rdn", LARGE)


def run(model, tmp_path, params, testcase, **args):
    return run_cocotb(model, tb_args("tb.test_rdn", testcase, params=params.to_dict(), **args),
                      test_dir=tmp_path).outputs


@pytest.mark.parametrize("k,flows,packets,idle,bp", [
    (0, 12, 20, 0.2, 0.3),
    (1, 24, 12, 0.5, 0.6),
    (2, 8, 60, 0.0, 0.0),
    (3, 16, 30, 0.1, 0.8),
])
def test_random_traffic_small(small, tmp_path, k, flows, packets, idle, bp):
    o = run(small, tmp_path, SMALL, "rdn_traffic", seed=SEED + k, flows=flows,
            packets=packets, idle=idle, backpressure=bp)
    assert o["delivered"] >= o["injected"] > 0


@pytest.mark.parametrize("k", [0, 1])
def test_random_traffic_large(large, tmp_path, k):
    o = run(large, tmp_path, LARGE, "rdn_traffic", seed=SEED + 10 + k, flows=30, packets=15,
            idle=0.3, backpressure=0.4)
    assert o["delivered"] >= o["injected"] > 0


def test_throttled_ports_respect_rate_and_burst(small, tmp_path):
    """Sources always valid, so a throttled port is limited only by its bucket."""
    throttle = [["vec", 0, 0.25, 2], ["vec", 5, 0.5, 1], ["sca", 3, 0.125, 4],
                ["sca", 9, 0.3, 3]]
    o = run(small, tmp_path, SMALL, "rdn_traffic", seed=SEED + 20, flows=10, packets=40,
            idle=0.0, backpressure=0.1, throttle=throttle)
    assert len(o["throttle_excess"]) == len(throttle)


@pytest.mark.parametrize("k", [0, 1])
def test_control_tokens(small, tmp_path, k):
    o = run(small, tmp_path, SMALL, "rdn_control", seed=SEED + 30 + k, flows=5)
    assert o["pulses"] > 0
