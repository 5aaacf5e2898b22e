"""Tier 1: the picture of the array ``make sim`` prints and writes beside its report."""

from hdl.params import PRESETS
from sim.picture import array_text, write_svg

SMALL = PRESETS["small"]


def _report(busy):
    return {"kernel": "k", "config": "small", "cycles": 1000,
            "counters": {"unit_busy": busy,
                         "agcu": [{"bursts": 5}, {"bursts": 0}]}}


def test_array_text_places_units_and_agcus():
    busy = [500, 0, 250, 0, 0, 1000, 0, 2000]       # row-major, one over the cycles
    lines = array_text(SMALL, _report(busy))
    assert lines[0].startswith("array: busy fraction of the 1,000 kernel cycles")
    row0, row1 = lines[1], lines[2]
    # Checkerboard: PCU at (0, 0), PMU at (0, 1) ..., each kind numbered row-major;
    # AGCU 0 west of row 0, AGCU 1 east of row 1.
    assert row0.startswith("AGCU0 (5 bursts) > pcu0   0.50 | pmu0    -   | pcu1   0.25 | pmu1    -")
    assert row1.endswith("pmu2    -   | pcu2   1.00 | pmu3    -   | pcu3   1.00 < AGCU1")
    assert array_text(SMALL, {"cycles": 0, "counters": {}}) == []


def test_svg_has_a_cell_per_unit(tmp_path):
    path = write_svg(SMALL, _report([1] * 8), tmp_path / "k.svg")
    text = path.read_text()
    assert text.count("<rect") == SMALL.rows * SMALL.cols
    assert "pcu3 (1,3)" in text and "AGCU1" in text and text.rstrip().endswith("</svg>")
    assert write_svg(SMALL, {"cycles": 5}, tmp_path / "none.svg") is None
