"""Tier 3: the socket on Verilator through cocotb — program load by the config
controller, launches and kernel looping by the kernel sequencer, error stops
(OPENRDU_SEED overrides the seed)."""

import os

import pytest

from hdl.params import PRESETS
from sim.cocotb_run import run_cocotb
from sim.designs import build_design

pytestmark = pytest.mark.rtl

SEED = int(os.environ.get("OPENRDU_SEED", "20261130"))
SMALL = PRESETS["small"]


@pytest.fixture(scope="module")
def model():
    return build_design("socket", SMALL)


def run(model, tmp_path, testcase, **args):
    return run_cocotb(model, "tb.test_socket", test_dir=tmp_path, testcase=testcase,
                      args={"params": SMALL.to_dict(), **args}).outputs


@pytest.mark.parametrize("k,n,iterations,ddr", [(0, 37, 1, False), (1, 64, 3, True),
                                                (2, 300, 2, False)])
def test_scale_bias_end_to_end(model, tmp_path, k, n, iterations, ddr):
    o = run(model, tmp_path, "scale_bias", seed=SEED + k, n=n, iterations=iterations, ddr=ddr)
    assert o["load_cycles"] >= o["beats"]


def test_kernel_looping_matches_separate_launches(model, tmp_path):
    o = run(model, tmp_path, "looping", seed=SEED + 10, n=40, iterations=4)
    assert o["looped_load"] < o["launches_load"]


def test_agcu_fault_stops_the_sequencer(model, tmp_path):
    run(model, tmp_path, "fault", seed=SEED + 20, n=50)


def test_kernel_timeout_stops_the_sequencer(model, tmp_path):
    run(model, tmp_path, "timeout", seed=SEED + 30, n=24)
