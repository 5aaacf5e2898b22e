"""Clock gating (``hdl.clockgate``): which blocks are gated, and the open elaboration the
Python simulator runs. That the gated design computes what the open one does, cycle for
cycle, is what every Verilator test of a PCU checks (they run the gated design against
the references; the Python-simulator tests run it open)."""

import re

from amaranth import Module, Signal
from amaranth.hdl import Fragment
from amaranth.back import rtlil

from hdl.clockgate import activity_domain, ungated
from hdl.pcu.alu import ALU_PATHS
from hdl.pcu.body import Body


def _gate_cells(component):
    """Names of the clock-gate instances in ``component``'s RTLIL."""
    text = rtlil.convert(component, name="top")
    return sorted(set(re.findall(r"cell \\top\.[\w.]*?(\w+_gate) ", text)))


def test_body_gates_every_path_of_every_stage_and_its_operand_lines():
    stages = 2
    gates = _gate_cells(Body(lanes=2, stages=stages))
    want = sorted([f"s{s}_{path}_gate" for s in range(stages) for path in ALU_PATHS] +
                  ["body_side_gate"])
    assert gates == want, f"gated blocks {gates}, expected {want}"


def test_ungated_elaboration_has_no_gate_and_keeps_the_enable():
    with ungated():
        assert _gate_cells(Body(lanes=2, stages=1)) == []
        m, en = Module(), Signal()
        assert activity_domain(m, "x", en, Signal(), 3) == ("sync", en)
        Fragment.get(m, None)
    m, en = Module(), Signal()
    domain, inner = activity_domain(m, "x", en, Signal(), 3)
    Fragment.get(m, None)            # elaborated: the gate is used
    # Inside a gated domain the registers do not read the enable (the gate holds it).
    assert domain == "x" and inner.value == 1
