"""Tier 3: waveforms of real runs on Verilator — dumps that strict parsers accept, with no
Yosys ``$`` names, the inside of hierarchical blocks traced, the socket's save file naming
only signals of its dump, the unit and cycle selection, and (where GTKWave and Xvfb are
installed) GTKWave opening the default ``make waves`` dump with its save file."""

import shutil
import subprocess
from pathlib import Path

import pytest
from vcd.reader import tokenize

from conftest import TEST_SOCKET
from hdl.params import PRESETS
from sim.cocotb_run import run_cocotb
from sim.designs import build_design
from sim.harness import TIME_UNITS_PER_CYCLE
from sim.run import run_kernel, wave_request
from sim.waves import WaveUnit, read_dump, run_markers, save_file_signals, write_gtkw
from tb.lib.args import PmuArgs

pytestmark = pytest.mark.rtl

SMALL = PRESETS["small"]
T = TIME_UNITS_PER_CYCLE
#: What `make waves` runs (Makefile WAVES_ARGS).
WAVES_OPTIONS = {"seq": 32, "head_dim": 32, "unfused": 0}


def _no_dollar_names(dump):
    bad = [n for n in dump.widths if "$" in n]
    assert not bad, f"Yosys/Amaranth $-names reached the dump: {bad[:5]}"


def test_vcd_of_a_hierarchical_block_is_strict_and_traced_inside(tmp_path):
    model = build_design("pmu", SMALL, waves="vcd")
    run = run_cocotb(model, PmuArgs(case="linear", tiles=4, nbuf=2, seed=5, idle=0.2,
                                    backpressure=0.2), test_dir=tmp_path, waves=True)
    assert run.outputs["mismatches"] == 0 and run.waves.suffix == ".vcd"
    with open(run.waves, "rb") as f:          # pyvcd's tokenizer raises on any bad token
        kinds = {tok.kind.name for tok in tokenize(f)}
    assert {"SCOPE", "VAR", "ENDDEFINITIONS", "CHANGE_TIME"} <= kinds
    dump = read_dump(run.waves)
    _no_dollar_names(dump)
    # The PMU is a Verilator hierarchical block: its banks and address pipelines are in.
    assert any(".unit.unit.unit.banks." in n for n in dump.widths)
    assert any(".unit.unit.unit.rgen.chain." in n for n in dump.widths)
    # A save file of the lone PMU names only signals of this VCD, with their widths.
    save = write_gtkw(SMALL, run.waves, tmp_path / "pmu.gtkw",
                      units=[WaveUnit("pmu", "PMU", "tb_top.dut.unit", tile=True)])
    refs = save_file_signals(save.read_text())
    assert len(refs) > 100
    for name, msb in refs:
        assert name in dump.widths, f"save file names {name}, not in the dump"
        assert msb == (dump.widths[name] - 1 if dump.widths[name] > 1 else None), name
    assert "vin__payload.data[7]}" in save.read_text() and "inside: rgen" in save.read_text()


@pytest.fixture(scope="module")
def waves_dir(tmp_path_factory, socket_model):
    # The socket model of tests/conftest.py: traced, shared with the socket tests.
    return tmp_path_factory.mktemp("waves")


def _run(cwd, monkeypatch, **trace):
    cwd.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(cwd)
    report = run_kernel("attention", TEST_SOCKET, waves=True, options=WAVES_OPTIONS,
                        log=lambda m: None,
                        trace=wave_request("attention", TEST_SOCKET, **trace) if trace else None)
    assert report["passed"] and report["bit_exact"], report.get("error")
    return report


def test_default_socket_waves_open_with_a_save_file_of_dump_signals(waves_dir, monkeypatch):
    r = _run(waves_dir / "default", monkeypatch)
    wave = waves_dir / "default" / r["waves"]
    assert wave.suffix == ".fst"
    dump = read_dump(wave)
    _no_dollar_names(dump)
    text = (waves_dir / "default" / r["gtkw"]).read_text()
    refs = save_file_signals(text)
    assert len(refs) > 1000
    for name, msb in refs:
        assert name in dump.widths, f"save file names {name}, not in the dump"
        assert msb == (dump.widths[name] - 1 if dump.widths[name] > 1 else None), name
    # Inside every PCU: the systolic array and the counter chain; lanes shown as numbers.
    for pcu in ("pcu_0_0", "pcu_1_3"):
        assert any(n.startswith(f"tb_top.dut.tile.{pcu}.unit.unit.systolic.")
                   for n in dump.widths), pcu
        assert f"tb_top.dut.tile.{pcu}.unit.unit.chain" in text, pcu
    assert "^>1 " in text and "vout__payload.data[7]}" in text
    # Markers: the program load ends, the kernel starts, then is done, within the dump.
    marks = run_markers(dump)
    assert [label for _, label in marks] == ["loaded-1", "start-1", "done-1"]
    assert dump.start <= marks[0][0] < marks[1][0] < marks[2][0] <= dump.end + T
    assert marks[2][0] - marks[1][0] == r["cycles"] * T
    assert "[markername] Aloaded-1" in text
    assert r["waves_bytes"] < 50e6


def test_units_and_window_select_what_is_traced(waves_dir, monkeypatch):
    r = _run(waves_dir / "window", monkeypatch, units=["pcu0"], from_cycle=1000,
             to_cycle=2000)
    dump = read_dump(waves_dir / "window" / r["waves"])
    assert 1000 * T <= dump.start and dump.end <= 2000 * T + T
    assert dump.end - dump.start >= 999 * T
    names = list(dump.widths)
    assert any(n.startswith("tb_top.dut.tile.pcu_0_0.unit.unit.systolic.") for n in names)
    # Every other unit at its ports only: nothing below its own level (a PCU's or PMU's
    # ports appear also on the top level of its hierarchical block, ``unit``).
    for scope, levels in (("tb_top.dut.tile.pmu_0_1", 2), ("tb_top.dut.tile.pcu_0_2", 2),
                          ("tb_top.dut.mem.agcu0", 1)):
        inside = [n[len(scope) + 1:] for n in names if n.startswith(scope + ".")]
        assert inside and all(n.count(".") < levels for n in inside), (scope, inside[:5])
    refs = save_file_signals((waves_dir / "window" / r["gtkw"]).read_text())
    assert all(name in dump.widths for name, _ in refs)


GTKWAVE = pytest.mark.skipif(not (shutil.which("gtkwave") and shutil.which("xvfb-run")),
                             reason="GTKWave and Xvfb not installed ('make extras')")


def _gtkwave_loads(dump, save, tmp_path):
    """Open ``dump`` with ``save`` in GTKWave under Xvfb; assert no error and that every
    trace line of the save file was loaded (GTKWave drops a line whose signal it cannot
    find, and refuses a dump it cannot parse)."""
    script = tmp_path / "quit.tcl"
    script.write_text('puts "openrdu-traces [gtkwave::getTotalNumTraces]"\n'
                      "gtkwave::/File/Quit\n")
    proc = subprocess.run(["xvfb-run", "-a", "gtkwave", "-S", str(script), str(dump),
                           str(save)], capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-2000:]
    assert "error" not in out.lower(), out[-2000:]
    traces = int(out.split("openrdu-traces ")[1].split()[0])
    lines = Path(save).read_text().splitlines()
    assert traces == sum(1 for line in lines if line and line[0] not in "@*[^")


@GTKWAVE
def test_gtkwave_opens_the_default_dump_and_save_file(waves_dir, monkeypatch, tmp_path):
    r = _run(waves_dir / "gtkwave", monkeypatch)
    base = waves_dir / "gtkwave"
    _gtkwave_loads(base / r["waves"], base / r["gtkw"], tmp_path)


@GTKWAVE
def test_gtkwave_opens_a_vcd_of_a_hierarchical_block(tmp_path):
    model = build_design("pmu", SMALL, waves="vcd")
    run = run_cocotb(model, PmuArgs(case="transpose", tiles=2, nbuf=2, seed=6, idle=0.1,
                                    backpressure=0.1), test_dir=tmp_path / "run", waves=True)
    save = write_gtkw(SMALL, run.waves, tmp_path / "pmu.gtkw",
                      units=[WaveUnit("pmu", "PMU", "tb_top.dut.unit", tile=True)])
    _gtkwave_loads(run.waves, save, tmp_path)
