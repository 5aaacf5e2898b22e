"""``make paper`` / ``python -m sim paper [--config NAME]``: every effect of
ARCHITECTURE.md section 8 measured end to end on one preset, in one report.

Runs the bench sections the effects come from (PCU, PMU, RDN, socket) for the config,
stores their figures in build/bench.json under the same keys ``make bench`` writes (so
the report and the bench agree: they are the same numbers), and writes
``build/paper/report.md`` (a table: effect, the paper's figure, this model's, the
target, met or not, the command that reproduces it), a chart per effect, the fused vs
unfused attention timeline, and ``figures.json``. Nothing in the table is written in: a
figure the runs did not produce is "not measured".
"""

import json
import time
from dataclasses import dataclass
from pathlib import Path

from .bench import (_pcu_section, _pmu_section, _rdn_section, _socket_section,
                    merge_bench_preset)
from .area import area_lines, tile_area
from .progress import progress

__all__ = ["EFFECTS", "run_paper", "effect_rows"]


@dataclass(frozen=True)
class Effect:
    name: str
    paper: str
    target: str
    section: str            # the bench section its figures are in
    judge: object           # section figures -> (this model's figure text, met or None)
    chart: object           # (axes, section figures) -> None
    command: str


def _attention(s):
    rows = s.get("attention") or []
    if not rows:
        return None, None
    text = ", ".join(f"{r['seq']}x{r['head_dim']}: {r['fusion_speedup']:.2f}x" for r in rows)
    return text, all(r["fusion_speedup"] >= 2.0 for r in rows)


def _bars(ax, labels, values, ylabel, line=None):
    ax.bar(range(len(values)), values, color="#4a78c8")
    ax.set_xticks(range(len(values)), labels, fontsize=7)
    ax.set_ylabel(ylabel, fontsize=8)
    if line is not None:
        ax.axhline(line, color="#d6453d", linestyle="--", linewidth=1, label=f"target {line}")
        ax.legend(fontsize=7)


def _pairs(ax, groups, names, ylabel):
    """Grouped bars: ``groups`` [(label, [value per name])]."""
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        ax.bar([i + j * width for i in range(len(groups))], [v[j] for _, v in groups],
               width, label=name)
    ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(groups))],
                  [g for g, _ in groups], fontsize=7)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.legend(fontsize=7)


EFFECTS = [
    Effect("streaming-dataflow fusion: attention", "2x-13x",
           "fused attention >= 2x fewer cycles than unfused", "socket", _attention,
           lambda ax, s: _pairs(ax, [(f"{r['seq']}x{r['head_dim']}",
                                      [r["fused_cycles"], r["unfused_cycles"]])
                                     for r in s["attention"]], ["fused", "unfused"], "cycles"),
           "python -m sim run attention --seq 128 --head-dim 32 --trace"),
    Effect("streaming-dataflow fusion: 2-layer MLP", "2x-13x", "fused MLP >= 1.5x",
           "socket", lambda s: (f"{s['mlp']['fusion_speedup']:.2f}x",
                                s["mlp"]["fusion_speedup"] >= 1.5),
           lambda ax, s: _bars(ax, ["fused", "op by op"], [s["mlp"]["fused_cycles"],
                                                           s["mlp"]["unfused_cycles"]], "cycles"),
           "python -m sim run mlp"),
    Effect("kernel looping vs repeated launches", "up to 2.2x",
           "decode layer loop >= 1.5x vs launches with the program resident", "socket",
           lambda s: (f"{s['decode']['looping']['speedup_vs_resident']:.2f}x "
                      f"({s['decode']['layers']} layers of {s['decode']['d']}x{s['decode']['d']})",
                      s["decode"]["looping"]["speedup_vs_resident"] >= 1.5),
           lambda ax, s: _pairs(ax, [(f"d {r['d']}", [r["looped_cycles"], r["resident_cycles"]])
                                     for r in s["decode"]["looping"]["by_layer_size"]],
                                ["looped", "launches, resident"], "cycles (8 layers)"),
           "python -m sim run decode --n 128 --k 128 --layers 48 --packed 1 --partial 1"),
    Effect("memory-bound decode bandwidth", "> 90% of peak HBM",
           ">= 0.90 of the HBM peak over the whole decode loop", "socket",
           lambda s: (f"{s['decode']['hbm_bw_utilization']:.3f}",
                      s["decode"]["hbm_bw_utilization"] >= 0.90),
           lambda ax, s: _bars(ax, [f"d {r['d']}" for r in s["decode"]["looping"]["by_layer_size"]]
                               + [f"{s['decode']['layers']} x d {s['decode']['d']}"],
                               [r["hbm_bw_utilization"]
                                for r in s["decode"]["looping"]["by_layer_size"]]
                               + [s["decode"]["hbm_bw_utilization"]], "HBM utilization", 0.9),
           "python -m sim run decode --n 128 --k 128 --layers 48 --packed 1 --partial 1"),
    Effect("GEMM in systolic PCUs: one PCU", "-", ">= 0.90 of peak MACs per PCU", "pcu",
           lambda s: (f"{s['systolic_gemm_k256']['steady_state_mac_utilization']:.3f}",
                      s["systolic_gemm_k256"]["steady_state_mac_utilization"] >= 0.90),
           lambda ax, s: _bars(ax, ["1 tile", "4 tiles", "steady"], [
               s["systolic_gemm_k256"]["one_tile"]["mac_utilization"],
               s["systolic_gemm_k256"]["four_tiles"]["mac_utilization"],
               s["systolic_gemm_k256"]["steady_state_mac_utilization"]], "MAC utilization", 0.9),
           "make bench (pcu section)"),
    Effect("GEMM in systolic PCUs: the whole array", "-", ">= 0.80 across the whole array",
           "socket", lambda s: (f"{s['gemm_array']['pcu_utilization_array']:.3f} "
                                f"({s['gemm_array']['m']}^3 on {s['gemm_array']['pcus']} PCUs)",
                                s["gemm_array"]["pcu_utilization_array"] >= 0.80),
           lambda ax, s: _bars(ax, list(s["gemm_array"]["a_layouts"]),
                               [v["pcu_utilization_array"]
                                for v in s["gemm_array"]["a_layouts"].values()],
                               "array utilization", 0.8),
           "python -m sim run gemm --m 256 --n 256 --k 256 --c-tiles 1"),
    Effect("programmable bank bits", "removes multi-buffer conflicts",
           "conflict stalls -> 0 on a pattern that conflicts by default", "pmu",
           lambda s: (f"{s['column_walk_transpose']['default']['read_conflict_cycles']} -> "
                      f"{s['column_walk_transpose']['chosen']['read_conflict_cycles']} cycles",
                      s["column_walk_transpose"]["chosen"]["read_conflict_cycles"] == 0
                      < s["column_walk_transpose"]["default"]["read_conflict_cycles"]),
           lambda ax, s: _bars(ax, ["default bits", "chosen bits"], [
               s["column_walk_transpose"][b]["read_conflict_cycles"]
               for b in ("default", "chosen")], "read conflict cycles"),
           "make bench (pmu section)"),
    Effect("packet throttling", "relieves RDN congestion",
           ">= 2x lower worst-case port stall, same throughput (>= 0.95 of it)", "rdn",
           lambda s: (f"{s['many_to_one']['stall_reduction']:.2f}x lower, throughput "
                      f"x{s['many_to_one']['throughput_ratio']:.3f}",
                      s["many_to_one"]["stall_reduction"] >= 2
                      and s["many_to_one"]["throughput_ratio"] >= 0.95),
           lambda ax, s: _bars(ax, ["unthrottled", "throttled"], [
               s["many_to_one"][k]["worst_port_stall"] for k in ("unthrottled", "throttled")],
               "worst port stall (cycles)"),
           "make bench (rdn section)"),
    Effect("DDR->HBM expert switching vs host", "15x-31x faster",
           "DMA vs host link >= the configured DDR/host bandwidth ratio", "socket",
           lambda s: (f"{s['coe']['switch']['dma_over_host']:.3f}x (configured "
                      f"{s['coe']['switch']['configured_ddr_over_host']:.1f}x)",
                      s["coe"]["switch"]["dma_over_host"]
                      >= s["coe"]["switch"]["configured_ddr_over_host"]),
           lambda ax, s: _bars(ax, ["DMA from DDR", "host link"], [
               s["coe"]["switch"]["dma_cycles"], s["coe"]["switch"]["host_cycles"]],
               "cycles per expert switch"),
           "python -m sim run coe"),
]


def effect_rows(figures):
    """The table's rows from the sections' figures ({section: figures or None})."""
    rows = []
    for e in EFFECTS:
        s = figures.get(e.section)
        try:
            text, met = e.judge(s) if s else (None, None)
        except (KeyError, TypeError, IndexError):
            text, met = None, None
        rows.append({"effect": e.name, "paper": e.paper, "model": text or "not measured",
                     "target": e.target, "met": met, "command": e.command,
                     "section": e.section})
    return rows


#: The socket section's parts the effects need (the rest is ``make bench``'s).
SOCKET_PARTS = ("attention", "mlp", "decode", "gemm_array", "coe", "trace_cost")


def _sections(params, workdir):
    """name -> a function measuring it (RDN: not on plasticine, whose stand-alone RDN top
    does not elaborate; see ``make bench``)."""
    out = {"pcu": lambda: _pcu_section(params, 1, workdir / "pcu"),
           "pmu": lambda: _pmu_section(params, workdir / "pmu"),
           "rdn": lambda: _rdn_section(params, workdir / "rdn"),
           "socket": lambda: _socket_section(params, workdir / "socket", SOCKET_PARTS)}
    if params.name == "plasticine":
        del out["rdn"]
    return out


def _charts(out, figures, rows):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    paths = {}
    for i, (e, row) in enumerate(zip(EFFECTS, rows)):
        s = figures.get(e.section)
        if row["met"] is None or not s:
            continue
        fig, ax = plt.subplots(figsize=(4.2, 2.8))
        e.chart(ax, s)
        ax.set_title(e.name, fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        fig.tight_layout()
        paths[e.name] = out / f"effect{i + 1}.png"
        fig.savefig(paths[e.name], dpi=100)
        plt.close(fig)
    return paths


def _report_md(params, rows, charts, timeline, seconds, area=None):
    mark = {True: "met", False: "**missed**", None: "not measured"}
    lines = [f"# OpenRDU: the paper's effects on `{params.name}`", "",
             f"Measured by `python -m sim paper --config {params.name}` in {seconds:.0f} s; "
             f"every figure from a run of the RTL model (the same numbers are in "
             f"build/bench.json, sections pcu / pmu / rdn / socket -> {params.name}).", "",
             "| effect | paper | this model | target | | reproduce |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['effect']} | {r['paper']} | {r['model']} | {r['target']} | "
              f"{mark[r['met']]} | `{r['command']}` |" for r in rows]
    if timeline:
        lines += ["", "## Fused vs unfused attention, unit by unit", "",
                  f"![timeline]({Path(timeline).name})"]
    if area:
        lines += ["", "## Area beside performance", "", *area_lines(area)]
    lines += ["", "## Charts", ""]
    lines += [f"![{name}]({p.name})" for name, p in charts.items()]
    return "\n".join(lines) + "\n"


def _timeline(params, out):
    """The showcase: fused vs unfused attention as a timeline picture, or None."""
    import shutil
    from .run import run_kernel
    r = run_kernel("attention", params, options={"seq": 64, "head_dim": 32},
                   log=lambda *_: None, timeline=64)
    if not r.get("trace"):
        return None
    dest = out / "attention_timeline.png"
    shutil.copy(r["trace"]["png"], dest)
    return dest


def run_paper(params, out=Path("build/paper"), bench=Path("build/bench.json"), log=print):
    """Measure, store in ``bench``, write the report into ``out``; returns the rows."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path("build") / "paper-runs"
    t0 = time.perf_counter()
    figures = {}
    sections = _sections(params, workdir)
    for name, measure in progress(sections.items(), "paper: bench sections", log=log,
                                  label=lambda item: item[0]):
        figures[name] = measure()
        merge_bench_preset(Path(bench), name, params.name, figures[name])
    log("paper: the attention timeline")
    timeline = _timeline(params, out)
    log("paper: the area proxy (python -m sim area)")
    area = tile_area(params)
    rows = effect_rows(figures)
    charts = _charts(out, figures, rows)
    seconds = time.perf_counter() - t0
    (out / "figures.json").write_text(json.dumps(
        {"config": params.name, "seconds": round(seconds, 1), "effects": rows,
         "area": area, "sections": figures}, indent=1) + "\n")
    (out / "report.md").write_text(_report_md(params, rows, charts, timeline, seconds, area))
    return rows
