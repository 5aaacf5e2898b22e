"""The parameter dataclass: presets, TOML loading, and errors that name the field."""

import pytest

from hdl.params import PRESETS, RANGES, ParamError, RduParams, load_params


def test_presets_match_architecture_table():
    s, p = PRESETS["small"], PRESETS["plasticine"]
    assert (s.rows, s.cols, s.pcu_lanes, s.pcu_stages, s.pmu_banks, s.pmu_bank_words) == \
        (2, 4, 8, 4, 8, 1024)
    assert (s.agcus, s.hbm_channels, s.hbm_bytes_per_cycle, s.hbm_latency) == (2, 2, 32, 64)
    assert (s.ddr_bytes_per_cycle, s.ddr_latency, s.host_bytes_per_cycle, s.host_latency) == \
        (8, 150, 2, 500)
    assert (s.hbm_capacity, s.ddr_capacity) == (4 << 20, 16 << 20)
    assert (p.rows, p.cols, p.pcu_lanes, p.pcu_stages, p.pmu_banks, p.pmu_bank_words) == \
        (4, 8, 16, 6, 16, 4096)
    assert (p.agcus, p.hbm_channels, p.hbm_bytes_per_cycle, p.hbm_latency) == (4, 4, 64, 100)
    assert s.pcus + s.pmus == s.rows * s.cols and s.macs_per_pcu == 32


@pytest.mark.parametrize("field,value,words", [
    ("pcu_lanes", 6, "power of two"),
    ("pmu_banks", 12, "power of two"),
    ("rows", 0, "positive"),
    ("hbm_latency", -1, "positive"),
    ("pcu_stages", 2.5, "integer"),
    ("agcus", 9, "do not fit"),
    ("pmu_banks", 4, "pmu_banks >= pcu_lanes"),
    ("pcu_lanes", 1, "at least 2 lanes"),
    ("pcu_lanes", 128, "out of range: 2 .. 64"),
    ("clock_ghz", float("nan"), "positive number"),
    ("ddr_bytes_per_cycle", 2, "32-bit word"),
    ("clock_ghz", 0, "positive"),
    ("agcu_stores", 5, "1 .. 4 (store streams"),
])
def test_bad_values_name_the_field(field, value, words):
    with pytest.raises(ParamError) as e:
        PRESETS["small"].replace(**{field: value})
    assert str(e.value).startswith(field) and words in str(e.value)


def test_toml_loading(tmp_path):
    f = tmp_path / "wide.toml"
    f.write_text('base = "small"\npcu_lanes = 16\npmu_banks = 16\n')
    p = load_params(str(f))
    assert p.name == "wide" and p.pcu_lanes == 16 and p.rows == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("pcu_lanez = 4\n")
    with pytest.raises(ParamError, match="pcu_lanez: unknown parameter"):
        load_params(str(bad))
    broken = tmp_path / "broken.toml"
    broken.write_text("pcu_lanes = \n")
    with pytest.raises(ParamError, match="not valid TOML"):
        load_params(str(broken))
    unknown_base = tmp_path / "ub.toml"
    unknown_base.write_text('base = "huge"\n')
    with pytest.raises(ParamError, match="unknown preset 'huge'"):
        load_params(str(unknown_base))
    with pytest.raises(ParamError, match="neither a preset"):
        load_params("tiny")
    with pytest.raises(ParamError, match="does not exist"):
        load_params(str(tmp_path / "missing.toml"))


def test_params_are_frozen():
    with pytest.raises(Exception):
        PRESETS["small"].rows = 3
    assert RduParams() == PRESETS["small"].replace(name="custom")


def _random_params(rng):
    """A random point of the validator's space: every field in its range (a power of two
    where a field must be one), and in a third of the cases one field just outside."""
    out = {}
    for name, (lo, hi, why) in RANGES.items():
        if "power of two" in why:
            out[name] = 1 << rng.randint((lo - 1).bit_length(), hi.bit_length() - 1)
        else:
            out[name] = rng.choice([lo, hi, rng.randint(lo, min(hi, 4 * lo + 8))])
    if rng.random() < 1 / 3:
        name = rng.choice(sorted(RANGES))
        lo, hi, _ = RANGES[name]
        out[name] = rng.choice([lo - 1, hi + 1])
    return out


def test_random_configs_are_accepted_whole_or_refused_by_name():
    """Seeded random configs (bounded count): either refused with a ParamError that starts
    with a field name, or accepted — and then every config register fits the bus and a
    launch record one burst (check_socket), the HDL's own layouts computed."""
    import random

    from hdl.socket import check_socket
    fields = set(RANGES) | {"clock_ghz", "name", "base"}
    seed = 20261203
    rng = random.Random(seed)
    accepted = 0
    for i in range(200):
        fields_given = _random_params(rng)
        try:
            p = PRESETS["small"].replace(**fields_given)
            check_socket(p)
            accepted += 1
        except ParamError as e:
            first = str(e).split(":")[0].split(",")[0].split(" ")[0]
            assert first in fields, f"seed {seed} case {i}: {e} names no field"
    assert accepted >= 10, f"seed {seed}: {accepted} of 200 random configs accepted (the " \
        f"generator is too wide to test the accepted side)"


def test_readme_table_is_the_validators():
    from pathlib import Path
    from hdl.params import ranges_table
    text = (Path(__file__).parent.parent / "README.md").read_text()
    start = text.index("<!-- params table: ranges_table() -->\n") + len(
        "<!-- params table: ranges_table() -->\n")
    assert text[start:text.index("<!-- end params table -->")] == ranges_table(), \
        "README's params table is out of date: paste hdl.params.ranges_table()"
