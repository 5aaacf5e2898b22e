"""Tier 1: the GTKWave save file of a socket waveform groups the signals by unit."""

from hdl.params import PRESETS
from hdl.tile import is_pcu
from sim.waves import unit_groups, write_gtkw

SMALL = PRESETS["small"]


def _vcd(path, scopes):
    lines = ["$timescale 1ps $end"]
    ident = iter(range(1 << 20))
    for scope, names in scopes.items():
        parts = scope.split(".")
        lines += [f"$scope module {p} $end" for p in parts]
        lines += [f"$var wire {w} v{next(ident)} {n} $end" for n, w in names]
        lines += ["$upscope $end"] * len(parts)
    lines.append("$enddefinitions $end")
    path.write_text("\n".join(lines) + "\n")


def test_every_unit_has_a_group_with_its_handshakes(tmp_path):
    groups = unit_groups(SMALL)
    n = SMALL.rows * SMALL.cols
    assert len(groups) == 1 + n + 2 * n + SMALL.agcus + SMALL.hbm_channels + 2
    assert sum(t.startswith("PCU") for t, _ in groups) == sum(
        is_pcu(r, c) for r in range(SMALL.rows) for c in range(SMALL.cols))
    scopes = {scope: [("vin0__valid", 1), ("vin0__ready", 1), ("vin0__payload", 265),
                      ("busy", 1), ("internal_tmp", 3)] for _, scope in groups}
    scopes["tb_top.dut.tile.rdn.vec.sw_0_0"] = [("counters", 1408)]
    _vcd(tmp_path / "w.vcd", scopes)
    text = write_gtkw(SMALL, tmp_path / "w.vcd", tmp_path / "w.gtkw").read_text()
    for title, scope in groups:
        assert f"-{title}\n" in text, title
    assert "tb_top.dut.tile.pcu_0_0.vin0__valid\n" in text
    assert "tb_top.dut.tile.rdn.vec.sw_0_0.counters[1407:0]" in text
    assert "internal_tmp" not in text and "payload" not in text
    assert text.count("@800200") == text.count("@1000200") == len(groups)
