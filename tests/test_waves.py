"""Tier 1: waveform plumbing — plain Verilog names, trace selections, payload fields,
markers and the GTKWave save file (checked against a dump written here), the FP32 filter,
and the FST library stand-ins."""

import subprocess
import zlib

import pytest
from vcd import VCDWriter

from hdl.params import PRESETS
from hdl.tile import tile_units
from sim import toolchain
from sim.fp32_filter import fp32_text
from sim.harness import TIME_UNITS_PER_CYCLE
from sim.tracesel import FULL_DEPTH, TraceSelection
from sim.verilog import plain_names
from sim.waves import (payload_fields, read_dump, run_markers, save_file_signals,
                       trace_selection, wave_units, write_gtkw)

SMALL = PRESETS["small"]
T = TIME_UNITS_PER_CYCLE


def test_plain_names_renames_dollar_names_consistently_and_keeps_keywords():
    text = ("module \\top.sub (\\config , \\r_data$5 );\n  wire \\$1 ;\n"
            "  wire \\$auto$verilog_backend.cc:2352:dump_module$7 ;\n  wire r_data_5;\n"
            "  assign \\$1 = \\r_data$5 ;\nendmodule\n")
    out = plain_names(text)
    assert "$" not in out.replace("$signed", "")
    assert "\\config " in out and "\\top.sub " in out           # no $: left alone
    assert out.count("_1 ") == 2                                 # \$1 -> _1 everywhere
    assert "r_data_5_" in out and out.count("r_data_5_") == 2    # clash with r_data_5
    assert "_auto_verilog_backend_cc_2352_dump_module_7" in out


def test_every_unit_has_one_name_and_scope():
    units = wave_units(SMALL)
    names = [u.name for u in units]
    assert len(names) == len(set(names))
    n = SMALL.rows * SMALL.cols
    assert len(units) == 1 + 3 * n + SMALL.agcus + SMALL.hbm_channels + 2
    assert {"seq", "pcu0", "pcu3", "pmu0", "pmu3", "vsw7", "ssw0", "agcu1", "hbm1", "ddr0",
            "dma"} <= set(names)
    assert next(u for u in units if u.name == "pmu0").scope == "tb_top.dut.tile.pmu_0_1"


def test_trace_selection_full_units_ports_elsewhere_and_window():
    sel = trace_selection(SMALL, ["pcu0", "agcu1"], 1000, 2000)
    assert sel.full == ("tb_top.dut.tile.pcu_0_0", "tb_top.dut.mem.agcu1")
    assert "tb_top.dut.tile.pmu_0_1" in sel.ports and "tb_top.dut.tile.pcu_0_0" not in sel.ports
    args = sel.main_args()
    assert f"{FULL_DEPTH}:tb_top.dut.tile.pcu_0_0" in args and "1:tb_top.dut.seq" in args
    assert args[args.index("--trace-from") + 1] == str(1000 * T)
    assert args[args.index("--trace-to") + 1] == str(2000 * T)
    default = trace_selection(SMALL)
    assert len(default.full) == 1 + SMALL.rows * SMALL.cols
    assert TraceSelection().main_args() == []


def test_default_waveform_units_are_those_the_kernel_starts():
    from sim.run import KERNELS, _options, wave_request
    full = lambda kernel, **o: {s.rsplit(".", 1)[-1] for s in
                                wave_request(kernel, SMALL, options=o).full}
    everything = {"seq", "agcu0", "agcu1"} | {u.instance for u in tile_units(SMALL)}
    assert full("attention", seq=32, head_dim=32, unfused=0) == everything
    assert full("gemm", m=30, n=8, k=16) == {"seq", "agcu0", "agcu1", "pcu_0_0"}
    two = full("gemm", m=30, n=20, k=16, pcus=2)
    opts = _options(KERNELS["gemm"], {"m": 30, "n": 20, "k": 16, "pcus": 2})
    layout = KERNELS["gemm"].programs(SMALL, opts)[0].layout       # where the compiler put them
    placed = {f"{layout.kinds[u]}_{c.row}_{c.col}" for u, c in layout.at.items()}
    assert len(placed) == 4 and two == {"seq", "agcu0", "agcu1"} | placed
    sel = wave_request("gemm", SMALL, units=["pmu2"], options={})
    assert sel.full == ("tb_top.dut.tile.pmu_1_0",)            # pmu2: third PMU, row-major


@pytest.mark.parametrize("units,window,message", [
    (["pcu9"], (None, None), "unknown unit(s) pcu9"),
    (["pcu0", "tile"], (None, None), "unknown unit(s) tile"),
    (None, (2000, 1000), "window is empty"),
    (None, (5, 5), "window is empty"),
    (None, (-1, None), "cycle number >= 0"),
])
def test_bad_selections_are_refused(units, window, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        trace_selection(SMALL, units, *window)


def test_payload_fields_follow_the_hdl_layouts():
    lanes = SMALL.pcu_lanes
    vec = payload_fields(SMALL, 32 * lanes + lanes + 1)
    assert vec[0] == ("data[0]", 0, 32) and vec[lanes - 1] == (f"data[{lanes - 1}]",
                                                               32 * (lanes - 1), 32)
    assert vec[-2:] == [("mask", 32 * lanes, lanes), ("last", 33 * lanes, 1)]
    assert payload_fields(SMALL, 33) == [("data", 0, 32), ("last", 32, 1)]
    from amaranth.lib import data
    from hdl.packet import vector_packet_layout
    w = data.Layout.cast(vector_packet_layout(SMALL)).size
    names = [n for n, _, _ in payload_fields(SMALL, w)]
    assert "body.data[3]" in names and "hdr.flow" in names and "hdr.x" in names
    assert payload_fields(SMALL, 7) is None


def _dump(path):
    """A small dump shaped like a socket run: a program load of 5 cycles, two kernel
    iterations of 10 and 4 cycles, a PCU port with a vector payload."""
    lanes = SMALL.pcu_lanes
    width = 33 * lanes + 1
    with open(path, "w") as f, VCDWriter(f, timescale="1 ps", date="today") as w:
        clk = w.register_var("tb_top", "clk", "wire", size=1)
        load = w.register_var("tb_top.dut.seq", "load_cycles", "wire", size=48, init=0)
        exe = w.register_var("tb_top.dut.seq", "exec_cycles", "wire", size=48, init=0)
        valid = w.register_var("tb_top.dut.tile.pcu_0_0", "vin0__valid", "wire", size=1)
        pay = w.register_var("tb_top.dut.tile.pcu_0_0", "vin0__payload", "wire", size=width)
        acc = w.register_var("tb_top.dut.tile.pcu_0_0.unit.unit.sys", "acc0", "wire", size=32)
        cfg = w.register_var("tb_top.dut.tile.pcu_0_0.unit.unit", "config", "wire", size=64)
        busy = w.register_var("tb_top.dut.tile.pmu_0_1", "busy", "wire", size=1)
        lc = ec = 0
        for cyc in range(40):
            w.change(clk, cyc * T, 1)
            if 2 <= cyc < 7:
                lc += 1
                w.change(load, cyc * T, lc)
            if 10 <= cyc < 20 or 22 <= cyc < 26:
                ec += 1
                w.change(exe, cyc * T, ec)
            w.change(valid, cyc * T, cyc % 2)
            w.change(pay, cyc * T, (0x3F800000 << 32) | cyc)
            w.change(acc, cyc * T, 0x40000000)
            w.change(cfg, cyc * T, 0)
            w.change(busy, cyc * T, 0)
            w.change(clk, cyc * T + T // 2, 0)


def test_save_file_names_only_dump_signals_with_markers_and_lanes(tmp_path):
    _dump(tmp_path / "w.vcd")
    dump = read_dump(tmp_path / "w.vcd")
    assert run_markers(dump) == [(7 * T, "loaded-1"), (10 * T, "start-1"), (20 * T, "done-1"),
                                 (22 * T, "start-2"), (26 * T, "done-2")]
    text = write_gtkw(SMALL, tmp_path / "w.vcd", tmp_path / "w.gtkw",
                      used={"pcu0"}).read_text()
    refs = save_file_signals(text)
    assert refs
    for name, msb in refs:
        assert name in dump.widths, name
        assert msb == (dump.widths[name] - 1 if dump.widths[name] > 1 else None), name
    assert "[markername] Aloaded-1" in text and "[markername] Edone-2" in text
    marker_line = next(line for line in text.splitlines() if line.startswith("*"))
    assert marker_line.split()[1:7] == ["-1", str(7 * T), str(10 * T), str(20 * T),
                                        str(22 * T), str(26 * T)]
    # Lane 1 of the payload is bits 63..32: GTKWave counts from the MSB.
    width = 33 * SMALL.pcu_lanes + 1
    lane1 = next(line for line in text.splitlines()
                 if line.startswith("#{tb_top.dut.tile.pcu_0_0.vin0__payload.data[1]}"))
    assert lane1.split()[1] == f"({width - 1 - 63})tb_top.dut.tile.pcu_0_0.vin0__payload[{width - 1}:0]"
    assert len(lane1.split()) == 33
    assert f"^>1 {(tmp_path / 'fp32_filter.py').resolve()}" in text
    assert (tmp_path / "fp32_filter.py").stat().st_mode & 0o111
    assert "-pcu0: PCU (0,0)" in text and "-pmu0: PMU (0,1)" in text
    assert "unit.unit.sys.acc0" in text and ".config" not in text     # inside, no config
    assert text.count("@" + format(0x800200, "x")) + text.count(format(0xc00200, "x")) > 0


def test_fp32_filter_numbers_and_echo():
    assert fp32_text("3F800000") == "1" and fp32_text("c0490fdb\n") == "-3.141593"
    assert fp32_text("7FC00000") == "nan" and fp32_text("FF800000") == "-inf"
    assert fp32_text("xxxxxxxx") == "xxxxxxxx" and fp32_text("1FFFFFFFF") == "1FFFFFFFF"


def _lz4_literals(block):
    """Decode an LZ4 block (the sequences a literal-only encoder writes, and matches)."""
    out, i = bytearray(), 0
    while i < len(block):
        token = block[i]
        i += 1
        n = token >> 4
        if n == 15:
            while block[i] == 255:
                n += 255
                i += 1
            n += block[i]
            i += 1
        out += block[i:i + n]
        i += n
        if i >= len(block):
            break
        offset = block[i] | block[i + 1] << 8
        i += 2
        m = (token & 15) + 4
        for _ in range(m):
            out.append(out[-offset])
    return bytes(out)


def test_fst_library_stand_ins_write_valid_streams(tmp_path):
    import ctypes
    lib = tmp_path / "shim.so"
    subprocess.run(["g++", "-shared", "-fPIC", "-O1", "-o", str(lib),
                    str(toolchain.SHIM_DIR / "lz4" / "lz4_literals.cpp"),
                    str(toolchain.SHIM_DIR / "zlib" / "zlib_stored.cpp")], check=True)
    so = ctypes.CDLL(str(lib))
    so.compressBound.restype = ctypes.c_ulong
    for n in (0, 1, 14, 15, 16, 269, 270, 1000, 65535, 65536, 200_001):
        src = bytes((i * 7919 + n) % 251 for i in range(n))
        cap = so.compressBound(ctypes.c_ulong(n))
        buf, size = ctypes.create_string_buffer(cap), ctypes.c_ulong(cap)
        assert so.compress2(buf, ctypes.byref(size), src, ctypes.c_ulong(n), 4) == 0
        assert zlib.decompress(buf.raw[:size.value]) == src, n
        cap = so.LZ4_compressBound(n)
        buf = ctypes.create_string_buffer(cap)
        m = so.LZ4_compress_default(src, buf, n, cap)
        assert 0 < m <= cap and _lz4_literals(buf.raw[:m]) == src, n
        assert so.LZ4_compress_default(src, buf, n, max(0, n - 1)) == 0 or n == 0
