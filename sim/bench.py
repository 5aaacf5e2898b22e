"""``make bench``: measured build times and simulation speed, merged into build/bench.json.

Every figure is measured here by running the model; nothing is written in. Later
issues add their own sections to the same file.
"""

import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from .build import build
from .cocotb_run import run_cocotb
from .designs import harness_for

__all__ = ["run_bench", "merge_bench"]

FPU_N = 1 << 17


def merge_bench(path: Path, section: str, values: dict) -> dict:
    """Replace ``section`` in the bench file, keeping the other sections."""
    data = json.loads(path.read_text()) if path.exists() else {}
    data[section] = values
    data["meta"] = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.node(),
                    "cpus": os.cpu_count(), "python": platform.python_version()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    return data


def _cold_builds(harness):
    """Build times with an empty cache (Verilator runtime compiled too), then with the
    runtime objects reused (what a changed design costs), then a cache hit."""
    saved = os.environ.get("OPENRDU_CACHE")
    tmp = tempfile.mkdtemp(prefix="openrdu-bench-")
    os.environ["OPENRDU_CACHE"] = tmp
    try:
        cold = build(harness, flow="fast")
        shutil.rmtree(cold.dir)
        warm = build(harness, flow="fast")
        hit = build(harness, flow="fast")
        default = build(harness, flow="default")
    finally:
        if saved is None:
            os.environ.pop("OPENRDU_CACHE", None)
        else:
            os.environ["OPENRDU_CACHE"] = saved
        shutil.rmtree(tmp, ignore_errors=True)
    return {"fast_cold_s": round(cold.seconds, 2),
            "fast_reused_runtime_s": round(warm.seconds, 2),
            "fast_cache_hit_s": round(hit.seconds, 3),
            "default_cold_s": round(default.seconds, 2)}


def _speed(harness, flow, repeats, workdir, lanes):
    b = build(harness, flow=flow)
    best = None
    for i in range(repeats):
        run = run_cocotb(b, "tb.test_fpu_stream", test_dir=workdir / f"{flow}{i}",
                         args={"n": FPU_N, "lanes": lanes, "seed": 11 + i, "idle": 0.0,
                               "backpressure": 0.0})
        o = run.outputs
        cps = o["cycles"] / o["wall_s"]
        if best is None or cps > best["cycles_per_second"]:
            best = {"cycles": o["cycles"], "wall_s": round(o["wall_s"], 4),
                    "cycles_per_second": round(cps)}
    return best


def _pcu_section(params, repeats, workdir):
    """PCU SIMD figures: full-rate elementwise fma throughput and simulation speed."""
    from hdl.pcu.alu import Alu
    from .designs import build_design
    b = build_design("pcu", params)
    n = 8192
    best = None
    for i in range(repeats):
        run = run_cocotb(b, "tb.test_pcu_simd", test_dir=workdir / f"pcu{i}",
                         args={"params": params.to_dict(), "case": "fma", "n": n,
                               "seed": 21 + i, "idle": 0.0, "backpressure": 0.0})
        o = run.outputs
        if best is None or o["wall_s"] < best["wall_s"]:
            best = o
    lanes = params.pcu_lanes
    return {
        "lanes": lanes, "stages": params.pcu_stages,
        "body_latency_cycles": params.pcu_stages * Alu.LATENCY,
        "simd_fma": {"iterations": n, "cycles": best["cycles"],
                     "results_per_cycle": round(n * lanes / best["cycles"], 3),
                     "iterations_per_cycle": round(n / best["cycles"], 4)},
        "cycles_per_second": round(best["cycles"] / best["wall_s"]),
        "verilator_build_s": b.built_seconds,
    }


def run_bench(params, out: Path, quick=False):
    repeats = 1 if quick else 5
    harness = harness_for("fpu", params)
    workdir = Path("build") / "bench-runs"
    results = {
        "design": f"fpu: {params.pcu_lanes}-lane SIMD FPU (every numerics unit per lane) behind "
                  f"one stream, HDL stream drivers",
        "vectors_per_run": FPU_N,
        "repeats": repeats,
        "verilator_build": _cold_builds(harness),
        "fast_flow": _speed(harness, "fast", repeats, workdir, params.pcu_lanes),
        "default_flow": _speed(harness, "default", repeats, workdir, params.pcu_lanes),
        "flows": {
            "fast": "clock generated in HDL (--timing), --no-public-flat-rw + .vlt exposing "
                    "only tb_top control/status variables",
            "default": "cocotb runner's Verilator flags (--public-flat-rw: every signal "
                       "public), clock driven by cocotb's Clock",
        },
    }
    results["fast_over_default"] = round(
        results["fast_flow"]["cycles_per_second"] / results["default_flow"]["cycles_per_second"], 2)
    merge_bench(out, "foundation", results)
    pcu = _pcu_section(params, repeats, workdir)
    merge_bench(out, "pcu", pcu)
    return {"foundation": results, "pcu": pcu}
