"""The area proxy (``python -m sim area``): the cell counting by width, and the built-in
Yosys on real units — wider datapaths count more, results cached by the RTLIL's hash."""

import pytest

from hdl.params import PRESETS
from sim import area
from sim.area import cell_counts, unit_area

SMALL = PRESETS["small"]


def _cell(t, **prm):
    return {"type": t, "parameters": {k: format(v, "b") for k, v in prm.items()}}


def test_cells_are_counted_by_width():
    module = {"cells": {
        "m": _cell("$mul", A_WIDTH=8, B_WIDTH=4, Y_WIDTH=12),      # 32
        "a": _cell("$add", A_WIDTH=16, B_WIDTH=10, Y_WIDTH=16),    # 16
        "x": _cell("$mux", WIDTH=5),                                # 5
        "p": _cell("$pmux", WIDTH=4, S_WIDTH=3),                   # 12
        "s": _cell("$shl", A_WIDTH=8, B_WIDTH=3, Y_WIDTH=8),       # 24
        "r": _cell("$reduce_or", A_WIDTH=7, Y_WIDTH=1),            # 7
        "f": _cell("$sdffe", WIDTH=9),                              # 9 flip-flops
        "q": _cell("$mem_v2", WIDTH=32, SIZE=64),                   # 2048 memory bits
        "i": _cell("$scopeinfo"),                                   # not a cell
    }}
    assert cell_counts(module) == {"cells": 32 + 16 + 5 + 12 + 24 + 7, "flip_flops": 9,
                                   "memory_bits": 2048, "yosys_cells": 8}


@pytest.mark.rtl
def test_switch_area_from_the_builtin_yosys(tmp_path, monkeypatch):
    from hdl.packet import scalar_packet_layout, vector_packet_layout
    from hdl.rdn.config import E, N, S, W
    from hdl.rdn.switch import LINK, Switch
    monkeypatch.setattr(area.toolchain, "cache_root", lambda: tmp_path)
    links = {d: LINK for d in (N, E, S, W)}
    sca = unit_area(lambda: Switch(SMALL, scalar_packet_layout(SMALL), 1, 1, links))
    vec = unit_area(lambda: Switch(SMALL, vector_packet_layout(SMALL), 1, 1, links))
    assert not sca["cached"] and sca["cells"] > 0 and sca["flip_flops"] > 0
    # The vector switch moves 8-word packets, the scalar one 1-word packets: more logic,
    # more registers and more buffer bits.
    for key in ("cells", "flip_flops", "memory_bits"):
        assert vec[key] > sca[key], (key, vec, sca)
    again = unit_area(lambda: Switch(SMALL, scalar_packet_layout(SMALL), 1, 1, links))
    assert again["cached"] and again["cells"] == sca["cells"]
