"""Tier 3: the FPU stream on Verilator through cocotb, bit-exact against firmware.numerics,
with seeded random idle cycles and back-pressure. OPENRDU_SEED overrides the seeds."""

import os

import pytest

from hdl.numerics.fpu import Fpu
from hdl.params import PRESETS
from sim.cocotb_run import run_cocotb
from sim.designs import build_design
from tb.lib.args import FpuArgs

pytestmark = pytest.mark.rtl

SEED = int(os.environ.get("OPENRDU_SEED", "20261122"))
LANES = PRESETS["small"].pcu_lanes


@pytest.fixture(scope="module")
def model():
    return build_design("fpu", PRESETS["small"])


@pytest.mark.parametrize("n,idle,backpressure,seed", [
    (100_000, 0.2, 0.3, SEED),          # the long random stream of the issue
    (20_000, 0.6, 0.8, SEED + 1),        # starved and heavily back-pressured
])
def test_fpu_random_stream(model, tmp_path, n, idle, backpressure, seed):
    run = run_cocotb(model, FpuArgs(n=n, lanes=LANES, seed=seed, idle=idle,
                                    backpressure=backpressure), test_dir=tmp_path)
    assert run.outputs["n"] == n and run.outputs["mismatches"] == 0


def test_fpu_full_throughput(model, tmp_path):
    """With no idle cycles and no back-pressure the pipeline accepts one element per
    cycle: start-to-done is n plus the pipeline latency plus the drivers' registered
    valid/ready (2 cycles) and the done flag (1 cycle)."""
    n = 20_000
    run = run_cocotb(model, FpuArgs(n=n, lanes=LANES, seed=SEED + 2, idle=0.0,
                                    backpressure=0.0), test_dir=tmp_path)
    assert run.outputs["cycles"] <= n + Fpu.LATENCY + 3, run.outputs["cycles"]


def test_waveform_is_written(tmp_path):
    """The opt-in waveform path: a traced build of a one-lane FPU writes an FST waveform of
    a short run (on every machine: ``sim/fstshim`` stands in for missing lz4/zlib), which
    a strict reader parses, and the run is still checked."""
    from sim.build import build
    from sim.harness import Harness
    from sim.verilog import to_verilog
    from sim.waves import read_dump
    model = build(Harness(to_verilog(Fpu(1)), depths={"i": 1024, "o": 1024}), waves=True)
    run = run_cocotb(model, FpuArgs(n=300, lanes=1, seed=SEED + 3, idle=0.2, backpressure=0.3),
                     test_dir=tmp_path, waves=True)
    assert run.outputs["mismatches"] == 0
    assert run.waves is not None and run.waves.suffix == ".fst"
    assert run.waves.read_bytes()[:1] == b"\x00"                   # FST header block
    dump = read_dump(run.waves)
    assert {"tb_top.dut.i__valid", "tb_top.dut.o__payload"} <= set(dump.widths)
    assert dump.end >= 300 * 10_000                                  # 300 vectors, 10 ns each
    assert not [n for n in dump.widths if "$" in n]

