"""Tier 1: the tile's config-bus map (hdl/tile.config_units): one register per unit and
per switch of each fabric, ids unique and dense, every layout fits the bus."""

import pytest

from hdl.configbus import UNIT_BITS, config_words
from hdl.params import PRESETS
from hdl.tile import config_units, is_pcu


@pytest.mark.parametrize("name", ["small", "plasticine"])
def test_config_units_cover_the_tile(name):
    p = PRESETS[name]
    n = p.rows * p.cols
    units = config_units(p)
    assert [u.id for u in units] == list(range(4 * n))
    assert max(u.id for u in units) < 1 << UNIT_BITS
    kinds = [u.name for u in units]
    assert kinds.count("pcu") == p.pcus and kinds.count("pmu") == p.pmus
    for kind in ("vec_switch", "sca_switch", "ctl_switch"):
        assert kinds.count(kind) == n
    for u in units[:n]:
        assert u.name == ("pcu" if is_pcu(u.row, u.col) else "pmu")
        assert u.id == u.row * p.cols + u.col
    for u in units:
        config_words(u.layout)          # raises if a register does not fit the bus
