"""Tier 3: kernels placed by the compiler on a machine other than the presets — a 3 x 6
TOML-style grid (9 PCUs, 9 PMUs, three AGCUs with three store streams each) of 4-lane,
3-stage PCUs behind 64 B/cycle HBM channels (a 16-word memory beat is four vector
packets), jittered memory: GEMM on as many PCUs as place (results spread over the AGCUs' store streams,
flows off dimension order), fused and unfused attention (and a head fused with its output
projection), the fused MLP in two pipelines, each bit-exact against the reference backend (checked in the testbench). OPENRDU_SEED overrides the
seed; every failure names it."""

import os

import pytest

from firmware.kernels.gemm import gemm_pcus
from firmware.kernels.mlp import mlp_plan
from hdl.params import PRESETS, RduParams
from sim.cocotb_run import SimulationError, run_cocotb
from sim.designs import build_design
from tb.lib.args import tb_args

pytestmark = pytest.mark.rtl

SEED = int(os.environ.get("OPENRDU_SEED", "20261202"))
GRID = RduParams.from_mapping({**PRESETS["small"].to_dict(), "name": "grid3x6", "rows": 3,
                               "cols": 6, "agcus": 3, "mem_jitter": 15, "pcu_lanes": 4,
                               "pmu_banks": 4, "pcu_stages": 3, "hbm_bytes_per_cycle": 64})


@pytest.fixture(scope="module")
def model():
    return build_design("socket", GRID)


def run(model, tmp_path, testcase, **args):
    targs = tb_args("tb.test_socket", testcase, params=GRID.to_dict(), **args)
    try:
        return run_cocotb(model, targs, test_dir=tmp_path).outputs
    except SimulationError as e:
        raise AssertionError(f"{testcase} on 3x6, seed {targs.seed} (OPENRDU_SEED={SEED}): "
                             f"{e}") from None


@pytest.mark.parametrize("k,m,n,kk,bias,c_tiles", [
    (0, 61, 72, 45, True, False),     # 9 column tiles over the PCUs that place, padded
    (1, 5, 30, 1, False, True),       # M under one tile, K = 1
])
def test_gemm_on_a_3x6_grid(model, tmp_path, k, m, n, kk, bias, c_tiles):
    o = run(model, tmp_path, "gemm", seed=SEED + k, m=m, n=n, k=kk, bias=bias, c_tiles=c_tiles)
    want = gemm_pcus(GRID, m, n, kk, bias)
    assert want > GRID.agcus, "expected more PCUs than AGCUs (several per store path)"
    assert o["mismatches"] == 0 and o["active_pcus"] == want, (o["active_pcus"], want)
    assert o["macs"] <= o["cycles"] * want * GRID.pcu_stages * GRID.pcu_lanes


def test_attention_fused_and_unfused_on_a_3x6_grid(model, tmp_path):
    """Fused (placed on the 3 x 6 grid) and unfused (its GEMMs on the PCUs that place)
    attention: bit-exact with their references, within the float64 bound."""
    o = run(model, tmp_path, "attention", seed=SEED + 10, seq=40, head_dim=16)
    assert o["mismatches"] == 0 and o["fused"]["launched"] == 1


def test_mlp_in_two_pipelines_on_a_3x6_grid(model, tmp_path):
    """The MLP graph fused: three row tiles over two pipelines (X through two AGCUs, W
    through the third), each with two second-layer PCUs; and op by op — the reference
    backend's bits both ways (checked in the testbench), the fused one faster."""
    m, k, hidden, n = 61, 16, 40, 9
    sh = mlp_plan(GRID, m, k, hidden, n, False)
    assert (sh.pipes, sh.g2.pcus) == (2, 2), sh
    o = run(model, tmp_path, "mlp", seed=SEED + 20, m=m, k=k, hidden=hidden, n=n, bias=False)
    assert o["fused"]["launched"] == 1 and o["unfused"]["launched"] == 2
    assert o["fused"]["cycles"] < o["unfused"]["cycles"], o


def test_attention_with_its_projection_fused_on_a_3x6_grid(model, tmp_path):
    """A head and its output projection as one kernel (O transposed in a PMU into the
    projection's A operand, Wo loaded with K and V): the reference backend's bits."""
    o = run(model, tmp_path, "graph", seed=SEED + 30, m=40, n=0, k=16, attention=1, proj=24)
    assert o["kernels"] == ["attention"], o


def test_stress_kernels_on_a_3x6_grid_of_4_lanes_and_wide_beats(model, tmp_path):
    """The stress regression's kernels (GEMM, softmax, attention, MLP, a looped kernel, a
    decoder position) here, twice each with random phase and stalls: bit-exact, every
    link balanced, nothing dropped, the same packet counts each run."""
    from tb.lib.stress import CASES
    out = run(model, tmp_path, "stress", seed=SEED + 40, runs=2)
    assert out["runs"] == 2 * len(CASES), out
    assert out["lost"] == out["duplicated"] == out["dropped"] == out["mismatched_words"] == 0
