"""``make lint``'s check on every design: Verilator -Wall clean apart from the documented
waivers (``sim.build.LINT_WAIVERS``)."""

import pytest

from hdl.params import PRESETS
from sim.build import lint
from sim.designs import DESIGNS, harness_for


@pytest.mark.parametrize("name", sorted(DESIGNS))
def test_generated_verilog_is_lint_clean(name, tmp_path):
    clean, messages = lint(harness_for(name, PRESETS["small"]).verilog, tmp_path / f"{name}.v")
    assert clean, messages[:4000]
