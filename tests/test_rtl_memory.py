"""Tier 3: the memory system on Verilator through cocotb, with random memory latency:
DMA copies both ways, a refused descriptor, the host-link path under back-pressure, AGCUs
streaming strided tensors both ways, a segment fault (OPENRDU_SEED overrides the seed)."""

import os

import pytest

from hdl.params import PRESETS
from sim.cocotb_run import run_cocotb
from sim.designs import build_design
from tb.lib.args import tb_args

pytestmark = pytest.mark.rtl

SEED = int(os.environ.get("OPENRDU_SEED", "20261122"))
#: The small config with random memory latency (0 .. 31 extra cycles per request), so
#: responses from different channels overtake each other.
JITTER = PRESETS["small"].replace(name="small-jitter", mem_jitter=31)


@pytest.fixture(scope="module")
def model():
    return build_design("memory", JITTER)


def run(model, tmp_path, testcase, **args):
    return run_cocotb(model, tb_args("tb.test_memory", testcase, params=JITTER.to_dict(), **args),
                      test_dir=tmp_path).outputs


@pytest.mark.parametrize("k,count", [(0, 8 * 16 * 5 + 3), (1, 8 * 16 * 12 + 8 * 7), (2, 5)])
def test_dma_copies_both_ways_exact(model, tmp_path, k, count):
    o = run(model, tmp_path, "dma_copy", seed=SEED + k, count=count)
    assert o["cycles"] > 0


def test_dma_refuses_descriptor_past_memory(model, tmp_path):
    run(model, tmp_path, "dma_error", seed=SEED + 5)


@pytest.mark.parametrize("k,bp", [(0, 0.0), (1, 0.6)])
def test_host_link_writes_and_reads(model, tmp_path, k, bp):
    o = run(model, tmp_path, "host_link", seed=SEED + 10 + k, requests=40, backpressure=bp)
    assert o["responses"] > 0


@pytest.mark.parametrize("k,cases,idle,bp", [
    (0, ["1d", "2d", "3d"], 0.2, 0.3),
    (1, ["4d", "columns", "long"], 0.4, 0.5),
    (2, ["long", "2d"], 0.0, 0.0),
])
def test_agcu_streams_strided_tensors_both_ways(model, tmp_path, k, cases, idle, bp):
    o = run(model, tmp_path, "agcu_stream", seed=SEED + 20 + k, cases=cases, idle=idle,
            backpressure=bp)
    assert set(o["cases"]) == set(cases)


def test_agcu_bounds_violation_faults_and_writes_nothing_outside(model, tmp_path):
    run(model, tmp_path, "agcu_fault", seed=SEED + 30)
