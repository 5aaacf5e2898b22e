"""``make paper``'s table: each effect judged from the bench sections' figures — met,
missed, or "not measured" where no run produced its figure (never filled in)."""

from hdl.params import PRESETS
from sim.paper import EFFECTS, _charts, _report_md, effect_rows


def _figures(fusion=2.5, chosen_conflicts=0):
    loop = [{"d": 64, "looped_cycles": 100, "resident_cycles": 200, "hbm_bw_utilization": 0.5}]
    return {
        "pcu": {"systolic_gemm_k256": {"steady_state_mac_utilization": 0.99,
                                       "one_tile": {"mac_utilization": 0.8},
                                       "four_tiles": {"mac_utilization": 0.95}}},
        "pmu": {"column_walk_transpose": {"default": {"read_conflict_cycles": 120},
                                          "chosen": {"read_conflict_cycles": chosen_conflicts}}},
        "socket": {
            "attention": [{"seq": 128, "head_dim": 32, "fusion_speedup": fusion,
                           "fused_cycles": 100, "unfused_cycles": int(100 * fusion)}],
            "mlp": {"fusion_speedup": 1.2, "fused_cycles": 10, "unfused_cycles": 12},
            "decode": {"layers": 48, "d": 128, "hbm_bw_utilization": 0.95,
                       "looping": {"speedup_vs_resident": 1.6, "by_layer_size": loop}},
            "gemm_array": {"m": 256, "pcus": 4, "pcu_utilization_array": 0.97,
                           "a_layouts": {"streamed": {"pcu_utilization_array": 0.97}}},
            "coe": {"switch": {"dma_over_host": 4.006, "configured_ddr_over_host": 4.0,
                               "dma_cycles": 10, "host_cycles": 40}},
        },
    }


def test_effects_are_judged_from_the_figures(tmp_path):
    rows = {r["effect"]: r for r in effect_rows(_figures())}
    assert len(rows) == len(EFFECTS)
    assert rows["streaming-dataflow fusion: attention"]["met"] is True
    assert rows["streaming-dataflow fusion: attention"]["model"] == "128x32: 2.50x"
    assert rows["streaming-dataflow fusion: 2-layer MLP"]["met"] is False
    assert rows["programmable bank bits"]["met"] is True
    assert rows["programmable bank bits"]["model"] == "120 -> 0 cycles"
    # No RDN section: the throttling effect is not measured, not met, not missed.
    thr = rows["packet throttling"]
    assert thr["met"] is None and thr["model"] == "not measured"
    missed = {r["effect"]: r["met"] for r in effect_rows(_figures(1.9, 3))}
    assert missed["streaming-dataflow fusion: attention"] is False
    assert missed["programmable bank bits"] is False


def test_report_and_charts(tmp_path):
    figures = _figures()
    rows = effect_rows(figures)
    charts = _charts(tmp_path, figures, rows)
    assert len(charts) == sum(r["met"] is not None for r in rows)
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in charts.values())
    md = _report_md(PRESETS["small"], rows, charts, None, 12.0)
    assert "| packet throttling | relieves RDN congestion | not measured |" in md
    assert md.count("**missed**") == 1 and "`python -m sim run mlp`" in md
