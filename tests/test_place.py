"""Tier 1: placement (firmware/compiler/place.py) — kernels described without coordinates,
placed deterministically on any grid, with errors that name what is missing."""

import ast
import pathlib

import numpy as np
import pytest

from firmware.compiler.place import PlacementError, VFlow, agcu, place_and_route, port
from firmware.kernels.attention import AttentionShape, compile_attention
from firmware.kernels.gemm import GemmShape, compile_gemm
from firmware.kernels.softmax import compile_softmax
from firmware.runtime.memory import Allocator
from hdl.grid import Coord, is_pcu
from hdl.params import PRESETS, RduParams

SMALL = PRESETS["small"]
GRIDS = [SMALL, PRESETS["medium"], PRESETS["plasticine"],
         RduParams.from_mapping({**SMALL.to_dict(), "name": "3x6", "rows": 3, "cols": 6})]
KERNELS = pathlib.Path(__file__).resolve().parent.parent / "firmware" / "kernels"


def _attention(params, seq=64, d=16):
    al, sh = Allocator(params), AttentionShape.of(params, seq, d)
    return compile_attention(params, seq, d, q=al.alloc("hbm", sh.q_words, "q"),
                             kv=al.alloc("hbm", sh.kv_words, "kv"),
                             o=al.alloc("hbm", sh.o_words, "o"))


def _gemm(params, pcus=1):
    al, s = Allocator(params), GemmShape.of(params, 30, 20, 16, pcus=pcus)
    return compile_gemm(params, 30, 20, 16, pcus=pcus, a=al.alloc("hbm", s.a_words, "a"),
                        b=al.alloc("hbm", s.b_words, "b"), c=al.alloc("hbm", s.c_words, "c"))


def _softmax(params):
    al = Allocator(params)
    return compile_softmax(params, 8, 20, x=al.alloc("hbm", 8 * 32, "x"),
                           y=al.alloc("hbm", 160, "y"))


@pytest.mark.parametrize("params", GRIDS, ids=lambda p: p.name)
@pytest.mark.parametrize("compile_", [_attention, _gemm, lambda p: _gemm(p, 2), _softmax],
                         ids=["attention", "gemm", "gemm2", "softmax"])
def test_kernels_place_on_every_grid_with_links_of_their_own(params, compile_):
    k = compile_(params)
    layout = k.program.layout
    positions = list(layout.at.values())
    assert len(set(positions)) == len(positions), "two units on one position"
    for name, c in layout.at.items():
        assert 0 <= c.row < params.rows and 0 <= c.col < params.cols
        assert is_pcu(*c) == (layout.kinds[name] == "pcu"), (name, c)
    # Flows share a link only with flows of their tag (results draining to one AGCU).
    tags = {f.name: f.shares for flows in layout.flows.values() for f in flows}
    for fabric in (layout.vec, layout.sca):
        for link, names in fabric.shared_links():
            assert len({tags[n] or ("own", n) for n in names}) == 1, (link, names)
    # The bitstream starts exactly the placed units.
    mask = sum(1 << (c.row * params.cols + c.col) for c in positions)
    assert k.program.units == mask
    # Deterministic: compiled again, the same placement and the same bits.
    again = compile_(params)
    assert again.program.layout.at == layout.at
    assert np.array_equal(again.program.rows, k.program.rows)


def test_too_many_units_name_the_resource():
    kinds = {f"p{i}": "pcu" for i in range(5)}
    with pytest.raises(PlacementError, match=r"needs 5 PCUs, the array has 4 \(2 x 4 grid\)"):
        place_and_route(SMALL, "big", kinds)
    with pytest.raises(PlacementError, match="kind 'alu' is neither"):
        place_and_route(SMALL, "odd", {"u": "alu"})
    with pytest.raises(PlacementError, match="flow 'x' names unit 'v', which the kernel"):
        place_and_route(SMALL, "k", {"u": "pcu"}, vec=[VFlow("x", agcu(0), (port("v"),))])
    with pytest.raises(PlacementError, match="AGCU 2 does not exist"):
        place_and_route(SMALL, "k", {"u": "pcu"}, vec=[VFlow("x", agcu(2), (port("u"),))])


def test_flows_that_must_share_a_link_are_named():
    flows = [VFlow("a", agcu(0), (port("u", 0),), rate=0.5),
             VFlow("b", agcu(1), (port("u", 0),), rate=0.5)]
    with pytest.raises(PlacementError, match=r"vector flows a and b both need link \(\d,\d\)\.L0"):
        place_and_route(SMALL, "k", {"u": "pcu"}, vec=flows)
    # Allowed to share, the same flows place and route.
    assert place_and_route(SMALL, "k", {"u": "pcu"}, vec=flows, own_links=False).vec


def test_flows_leave_dimension_order_where_it_would_share_links():
    """GEMM over all four PCUs of small: no placement gives every flow links of its own by
    dimension order, so flows take paths of their own; the tables deliver every flow to
    each of its destinations, and no link carries two flows that need their own."""
    from firmware.compiler.place import _bind, _links
    from firmware.compiler.route import check_tables
    from firmware.kernels.gemm import c_assignments
    g = _gemm(SMALL, 4)
    layout = g.program.layout
    assert layout.moves, "expected flows off dimension order"
    assert [a for a, _ in g.c_streams].count(0) == 3, g.c_streams
    assert c_assignments(SMALL, 4)[0] != g.c_streams     # the even spread does not place
    check_tables(SMALL, layout.vec.tables)
    tags = {f.name: f.shares for f in layout.flows["vector"]}
    layout.vec.require_own_links("gemm", tags)
    for f in _bind(SMALL, layout.at, layout.flows["vector"], layout.moves):
        assert set(layout.vec.arrivals[f.name]) == set(f.dsts), f.name
        hops = [o for _, _, o in _links(f.src, f.dsts, f.moves)]
        assert hops, f.name
    assert any("paths of its own" in line for line in layout.flow_lines(SMALL))
    # Deterministic: the same kernel again, the same paths and bits.
    again = _gemm(SMALL, 4)
    assert again.program.layout.moves == layout.moves
    assert np.array_equal(again.program.rows, g.program.rows)


def test_placement_minimises_hops():
    """One PCU between AGCU 0 (west edge, row 0) and AGCU 0 again: the closest PCU."""
    layout = place_and_route(SMALL, "k", {"u": "pcu"}, vec=[
        VFlow("x", agcu(0), (port("u"),)), VFlow("y", port("u"), (agcu(0),))])
    assert layout.at == {"u": Coord(0, 0)}


def test_kernels_hold_no_coordinates():
    """firmware/kernels describes logical units only: it builds no Coord or route endpoint."""
    banned = {"Coord", "Endpoint", "unit_src", "unit_dst", "edge_src", "edge_dst"}
    for path in sorted(KERNELS.glob("*.py")):
        tree = ast.parse(path.read_text())
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                  for a in n.names}
        assert not names & banned, f"{path.name} uses {sorted(names & banned)}"


def test_explain_shows_partition_placement_and_flows():
    from sim.explain import explain
    lines = explain("mlp", SMALL, {"m": 40, "k": 16, "hidden": 16, "n": 8})
    text = "\n".join(lines)
    assert "partition (fused): 2 graph ops -> 1 kernel(s): matmul0+matmul1 (mlp)" in text
    assert "partition (op by op): 2 graph ops -> 2 kernel(s)" in text
    assert sum(line.strip().startswith("row ") for line in lines) == 3 * SMALL.rows
    assert "vector h_cols   h_pmu -> g2" in text
    with pytest.raises(ValueError, match="'fpu' is not a socket kernel"):
        explain("fpu", SMALL)
