"""Tier 3: one PCU in SIMD mode on Verilator through cocotb, bit-exact against
``simd_reference``, with seeded idle inputs and back-pressure (OPENRDU_SEED overrides)."""

import os

import pytest

from hdl.params import PRESETS
from hdl.pcu.pcu import Pcu
from sim.cocotb_run import run_cocotb
from sim.designs import build_design
from tb.lib.args import PcuGemmArgs, PcuSimdArgs

pytestmark = pytest.mark.rtl

SEED = int(os.environ.get("OPENRDU_SEED", "20261122"))
SMALL = PRESETS["small"]


@pytest.fixture(scope="module")
def model():
    return build_design("pcu", SMALL)


@pytest.mark.parametrize("case,n,idle,backpressure,seed", [
    ("fma", 4096, 0.2, 0.3, SEED),            # elementwise fma over long vectors
    ("dot", 2048, 0.2, 0.4, SEED + 4),        # dot products: reduction tree + accumulator
    ("random", 600, 0.3, 0.5, SEED + 1),      # every stage busy, all sources
    ("random", 600, 0.6, 0.8, SEED + 2),      # starved and heavily back-pressured
    ("softmax", 3000, 0.2, 0.3, SEED + 5),    # one row per vector, all lanes
    ("softmax", 3000, 0.3, 0.5, SEED + 6),    # ragged rows (lanes - 1 wide)
    ("normalize", 800, 0.3, 0.5, SEED + 7),   # rows of vectors scaled by rcp(scalar input)
])
def test_pcu_simd(model, tmp_path, case, n, idle, backpressure, seed):
    run = run_cocotb(model, PcuSimdArgs(config="small", case=case, n=n, seed=seed, idle=idle,
                                        backpressure=backpressure), test_dir=tmp_path)
    assert run.outputs["mismatches"] == 0 and run.outputs["results"] > 0


def test_pcu_simd_full_rate(model, tmp_path):
    """With inputs always valid and the output always ready, one iteration (LANES
    results) retires per cycle once the pipeline is full: start-to-done is the
    iteration count plus the pipeline latency (header reduction, body, tail) plus a few
    cycles of input and output FIFO, driver and done-flag registers."""
    n = 4096
    run = run_cocotb(model, PcuSimdArgs(config="small", case="fma", n=n, seed=SEED + 3,
                                        idle=0.0, backpressure=0.0), test_dir=tmp_path)
    assert run.outputs["cycles"] <= n + Pcu.latency(SMALL) + 8, run.outputs


@pytest.mark.parametrize("m,n,k,idle,backpressure", [
    (5, 3, 1, 0.2, 0.3),          # M, N below the array, K = 1
    (28, 8, 37, 0.2, 0.3),        # one full tile, K not a multiple of anything
    (61, 19, 50, 0.3, 0.5),       # several partial tiles in both dimensions
    (40, 8, 2, 0.0, 0.7),         # short tiles back to back, slow consumer
])
def test_pcu_systolic_gemm(model, tmp_path, m, n, k, idle, backpressure):
    run = run_cocotb(model, PcuGemmArgs(config="small", m=m, n=n, k=k, seed=SEED + m + k,
                                        idle=idle, backpressure=backpressure),
                     test_dir=tmp_path)
    assert run.outputs["mismatches"] == 0 and run.outputs["results"] == m * n


@pytest.mark.parametrize("m,n,k,idle,backpressure", [
    (61, 19, 12, 0.3, 0.5),       # 4 row tiles x 3 column tiles sharing each row's scalar
    (9, 8, 5, 0.0, 0.0),          # one partial tile, full rate
    (40, 30, 3, 0.5, 0.8),        # short tiles: the next group's scalars land early
])
def test_pcu_systolic_row_scale(model, tmp_path, m, n, k, idle, backpressure):
    """C with each row divided by its scalar (``Tail(scale="SIN", row_fn="RCP")``): one
    scalar per row from sin0, reused by every column tile of the row tile."""
    run = run_cocotb(model, PcuGemmArgs(config="small", m=m, n=n, k=k, seed=SEED + 3 * m,
                                        idle=idle, backpressure=backpressure, row_scale=True),
                     test_dir=tmp_path)
    assert run.outputs["mismatches"] == 0 and run.outputs["results"] == m * n


@pytest.mark.parametrize("kernel,options", [
    ("pcu-gemm", {"m": 30, "n": 5, "k": 9, "idle": 0.2, "backpressure": 0.2}),
    ("pcu-softmax", {"n": 200, "idle": 0.2, "backpressure": 0.2}),
])
def test_pcu_kernels_through_the_cli_runner(model, kernel, options):
    """``python -m sim run pcu-gemm|pcu-softmax`` (what ``make sim KERNEL=...`` runs):
    the report says the run passed bit-exact, with measured cycles."""
    from sim.run import run_kernel
    report = run_kernel(kernel, SMALL, seed=SEED, options=options, log=lambda *_: None)
    assert report["passed"] and report["bit_exact"], report.get("error")
    assert report["cycles"] > 0 and report["max_rel_err"] is not None
