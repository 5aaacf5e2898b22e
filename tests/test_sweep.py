"""Design-space sweeps (``python -m sim sweep``): parameters parsed and refused by name
before any build, every point of the product in the results (a refused one with its
reason), CSV and JSON written; and a real two-point sweep in two processes."""

import csv
import json

import pytest

import sim.sweep
from hdl.params import PRESETS
from sim.sweep import FIGURES, SweepError, parse_params, run_sweep

SMALL = PRESETS["small"]


@pytest.mark.parametrize("specs,words", [
    (["nosuch=1"], "neither a config field nor an option of gemm"),
    (["m=a"], "'a' is not a int"),
    (["m"], "NAME=v1,v2"),
    (["m=1", "m=2"], "given twice"),
    ([], "at least one --param"),
])
def test_bad_parameters_are_refused_by_name(specs, words):
    with pytest.raises(SweepError, match=words):
        parse_params("gemm", SMALL, specs)


def test_every_point_is_reported_refused_ones_with_their_reason(tmp_path, monkeypatch):
    """The product of a config field and an option; points the validator or the kernel
    compiler refuses never reach a build (the run is faked here)."""
    ran = []

    def fake(kernel, params, *, seed, options, log, run_dir):  # noqa: ARG001
        ran.append((params.hbm_channels, options["m"]))
        return {"passed": True, "bit_exact": True, "cycles": 100 * options["m"]}
    monkeypatch.setattr(sim.sweep, "run_kernel", fake)
    rows = run_sweep("gemm", SMALL, ["hbm_channels=2,3", "m=0,8"], {"n": 8, "k": 8},
                     out=tmp_path, jobs=1, log=lambda *_: None)
    assert ran == [(2, 8)]
    assert [(r["hbm_channels"], r["m"]) for r in rows] == [(2, 0), (2, 8), (3, 0), (3, 8)]
    assert rows[1]["cycles"] == 800 and rows[1]["passed"]
    refused = [r for r in rows if not r["passed"]]
    assert len(refused) == 3 and all(r["error"].startswith("refused:") for r in refused)
    assert "hbm_channels: must be a power of two" in rows[2]["error"]
    assert "GemmArgs.m: 0 is below" in rows[0]["error"]
    with open(tmp_path / "sweep.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["hbm_channels", "m", *FIGURES] and len(table) == 4
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert saved["params"] == {"hbm_channels": [2, 3], "m": [0, 8]} and saved["rows"] == rows


@pytest.mark.rtl
def test_a_two_point_sweep_runs_in_two_processes(tmp_path):
    rows = run_sweep("fpu", SMALL, ["n=64,100"], out=tmp_path, jobs=2, log=lambda *_: None)
    assert [r["n"] for r in rows] == [64, 100]
    assert all(r["passed"] and r["bit_exact"] for r in rows), rows
    # Each point ran in a folder of its own: its own cycle count (n vectors, one a cycle).
    assert rows[0]["cycles"] < rows[1]["cycles"], rows


@pytest.mark.rtl
def test_a_sweep_runs_on_a_dask_cluster(tmp_path):
    """The same two points through an in-process Dask LocalCluster (one worker thread:
    a run patches the process environment)."""
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        rows = run_sweep("fpu", SMALL, ["n=64,100"], out=tmp_path, scheduler=client,
                         log=lambda *_: None)
    assert [r["n"] for r in rows] == [64, 100]
    assert all(r["passed"] and r["bit_exact"] for r in rows), rows
    assert rows[0]["cycles"] < rows[1]["cycles"], rows
    assert (tmp_path / "sweep.csv").exists() and (tmp_path / "sweep.png").exists()


def test_an_unreachable_scheduler_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(sim.sweep, "CONNECT_TIMEOUT", "1s")
    with pytest.raises(SweepError, match="no Dask scheduler answers"):
        run_sweep("fpu", SMALL, ["n=64"], out=tmp_path, scheduler="tcp://127.0.0.1:1",
                  log=lambda *_: None)
