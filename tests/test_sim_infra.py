"""The simulation flow's pure-Python parts: Verilog ports, harness generation, cache keys,
and the command line's error paths."""

import subprocess
import sys

import pytest

from hdl.numerics.fpu import Fpu, fpu_layouts
from hdl.params import PRESETS
from sim import build as B
from sim.designs import harness_for
from sim.harness import Harness
from sim.verilog import ports_of, to_verilog


@pytest.fixture(scope="module")
def fpu_verilog():
    return to_verilog(Fpu(2))


def test_ports_and_streams(fpu_verilog):
    FpuIn, FpuOut = fpu_layouts(2)
    ports = {p.name: p for p in ports_of(fpu_verilog)}
    assert ports["i__payload"].width == FpuIn.size and ports["i__payload"].direction == "input"
    assert ports["o__payload"].width == FpuOut.size and ports["o__payload"].direction == "output"
    h = Harness(fpu_verilog, depths={"i": 256})
    kinds = {s.name: (s.kind, s.width, s.depth) for s in h.streams}
    assert kinds == {"i": ("source", FpuIn.size, 256), "o": ("sink", FpuOut.size, 4096)}
    assert h.others == []


def test_only_control_and_status_are_public(fpu_verilog):
    vlt = Harness(fpu_verilog).public_vlt()
    rw = [l.split('"')[3] for l in vlt.splitlines() if l.startswith("public_flat_rw")]
    rd = [l.split('"')[3] for l in vlt.splitlines() if l.startswith("public_flat_rd")]
    assert "*" not in rw + rd
    assert not any("__" in v for v in rw + rd), "stream wires must stay private"
    assert "rst" not in rw and "rst_req" in rw, "reset must reach the design through a flop"
    assert {"cycle", "tb_done", "o_received"} <= set(rd)


def test_harness_rejects_bad_depths(fpu_verilog):
    with pytest.raises(ValueError, match="not a power of two"):
        Harness(fpu_verilog, depths={"i": 1000})
    with pytest.raises(ValueError, match="unknown streams"):
        Harness(fpu_verilog, depths={"x": 1024})


def test_cache_key_tracks_every_input(fpu_verilog):
    files = Harness(fpu_verilog).sources()
    flags = B._flags("fast", False)
    k = B._key(files, flags, "")
    assert k == B._key(dict(files), list(flags), "")
    changed = dict(files, **{"top.v": files["top.v"] + "\n// changed\n"})
    assert B._key(changed, flags, "") != k
    assert B._key(files, B._flags("fast", True), "") != k
    assert B._key(files, B._flags("default", False), "") != k
    with pytest.raises(ValueError, match="unknown flow"):
        B._flags("turbo", False)


def test_fpu_design_width_follows_params():
    from sim.designs import DESIGNS
    for name in ("small", "plasticine"):
        fpu = DESIGNS["fpu"].make(PRESETS[name])
        fpu._MustUse__silence = True          # built only to read its width
        assert fpu.lanes == PRESETS[name].pcu_lanes
    with pytest.raises(KeyError, match="unknown design"):
        harness_for("gpu", PRESETS["small"])


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "sim", *args], capture_output=True, text=True)


def test_cli_help_and_errors():
    r = run_cli("--help")
    assert r.returncode == 0 and "run" in r.stdout and "bench" in r.stdout
    r = run_cli("run", "nope")
    assert r.returncode != 0 and "unknown kernel 'nope'" in r.stderr
    r = run_cli("run", "fpu", "--config", "tiny")
    assert r.returncode != 0 and "neither a preset" in r.stderr
    r = run_cli("run", "fpu", "--bogus", "1")
    assert r.returncode != 0 and "unrecognized arguments: --bogus" in r.stderr
