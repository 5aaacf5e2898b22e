"""Tier 3: one PMU on Verilator through cocotb, bit-exact against ``pmu_reference``, with
seeded idle input and back-pressure (OPENRDU_SEED overrides)."""

import os

import pytest

from hdl.params import PRESETS
from sim.cocotb_run import run_cocotb
from sim.designs import build_design
from tb.lib.args import PmuArgs

pytestmark = pytest.mark.rtl

SEED = int(os.environ.get("OPENRDU_SEED", "20261122"))
SMALL = PRESETS["small"]
L = SMALL.pcu_lanes


@pytest.fixture(scope="module")
def model():
    return build_design("pmu", SMALL)


def run(model, tmp_path, **args):
    return run_cocotb(model, PmuArgs(config="small", **args), test_dir=tmp_path).outputs


@pytest.mark.parametrize("case,tiles,nbuf,idle,backpressure", [
    ("transpose", 12, 2, 0.2, 0.3),
    ("transpose", 6, 1, 0.5, 0.6),
    ("linear", 10, 4, 0.3, 0.2),
    ("random", 6, 2, 0.3, 0.3),
    ("random", 5, 3, 0.1, 0.5),
    ("random", 4, 1, 0.4, 0.1),
])
def test_pmu_streams(model, tmp_path, case, tiles, nbuf, idle, backpressure):
    o = run(model, tmp_path, case=case, tiles=tiles, nbuf=nbuf, seed=SEED + tiles,
            idle=idle, backpressure=backpressure)
    assert o["mismatches"] == 0 and o["vectors"] > 0
    if case != "random":
        assert o["vectors"] == tiles * L


def test_column_walk_conflicts_default_vs_chosen_bank_bits(model, tmp_path):
    """Reading L x L tiles by columns: every column vector hits one bank under the
    default interleave (L - 1 extra cycles each), none under the chosen bank bits."""
    tiles = 4
    default = run(model, tmp_path / "d", case="transpose", tiles=tiles, bank_bits="default",
                  seed=SEED, idle=0.0, backpressure=0.0)
    chosen = run(model, tmp_path / "c", case="transpose", tiles=tiles, bank_bits="chosen",
                 seed=SEED, idle=0.0, backpressure=0.0)
    assert default["r_conflicts"] == tiles * L * (L - 1)
    assert chosen["r_conflicts"] == 0 and chosen["w_conflicts"] == 0
    assert default["mismatches"] == chosen["mismatches"] == 0
