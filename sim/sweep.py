"""Design-space sweeps: one kernel over the product of config fields and kernel options
(``python -m sim sweep KERNEL --param NAME=v1,v2 ...``), points in parallel processes,
each building (or reusing) its own cached model. Every point is checked before anything
is built; a point that is refused or fails is reported in the results, never dropped.
Writes ``sweep.csv``, ``sweep.json`` and ``sweep.png`` (cycles and PCU utilization
against the first parameter, a line per value of the others)."""

import csv
import dataclasses
import itertools
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from hdl.params import RduParams

from .run import KERNELS, check_run, run_kernel

__all__ = ["SweepError", "parse_params", "sweep_points", "run_sweep", "FIGURES"]

#: The figures of a point (report fields), in the CSV's column order.
FIGURES = ("passed", "bit_exact", "cycles", "program_load_cycles", "pcu_utilization",
           "hbm_bytes", "hbm_bw_utilization", "macs_per_cycle", "macs_per_hbm_byte",
           "peak_macs_per_cycle", "peak_hbm_bytes_per_cycle", "tile_cells",
           "macs_per_cycle_per_mcell", "error")


#: How long a sweep waits for a Dask scheduler to answer.
CONNECT_TIMEOUT = "20s"


class SweepError(ValueError):
    """A sweep that cannot start; the message names the parameter."""


def _value(text, like, name):
    """``text`` parsed as the type of ``like`` (int, float or bool as 0/1)."""
    try:
        if isinstance(like, bool):
            if text not in ("0", "1"):
                raise ValueError
            return text == "1"
        return type(like)(text) if isinstance(like, (int, float)) else text
    except ValueError:
        raise SweepError(f"--param {name}: {text!r} is not a {type(like).__name__}"
                         f"{' (0/1)' if isinstance(like, bool) else ''}") from None


def parse_params(kernel, base, specs):
    """[(name, "config" or "option", [values])] of ``specs`` ("NAME=v1,v2,..."): NAME a
    config field of ``base`` (an RduParams) or an option of ``kernel``."""
    k = KERNELS[kernel]
    fields = {f.name for f in dataclasses.fields(RduParams)} - {"name"}
    options = {o.flag: o for o in k.options}
    out, seen = [], set()
    for spec in specs:
        name, eq, vals = spec.partition("=")
        name = name.strip().replace("-", "_")
        if not eq or not vals.strip():
            raise SweepError(f"--param {spec!r}: NAME=v1,v2,... expected")
        if name in seen:
            raise SweepError(f"--param {name}: given twice")
        seen.add(name)
        if name in fields:
            kind, like = "config", getattr(base, name)
        elif name in options:
            kind, like = "option", options[name].type(0)
        else:
            raise SweepError(f"--param {name}: neither a config field nor an option of "
                             f"{kernel} ({', '.join(sorted(options))})")
        values = [_value(v.strip(), like, name) for v in vals.split(",") if v.strip()]
        out.append((name, kind, values))
    if not out:
        raise SweepError("a sweep needs at least one --param NAME=v1,v2,...")
    return out


def sweep_points(kernel, base, params, options=None):
    """Every point of the product: dicts with ``point`` (the swept values), ``params``
    (RduParams, or None when refused), ``options`` and ``refused`` (the reason, checked
    as ``run`` checks, before any build)."""
    names = [n for n, _, _ in params]
    points = []
    for combo in itertools.product(*(vals for _, _, vals in params)):
        point = dict(zip(names, combo))
        conf = {n: v for (n, kind, _), v in zip(params, combo) if kind == "config"}
        opts = {**(options or {}), **{n: v for (n, kind, _), v in zip(params, combo)
                                      if kind == "option"}}
        row = {"point": point, "params": None, "options": opts, "refused": None}
        try:
            tag = "-".join(f"{n}{v}" for n, v in conf.items())
            p = base.replace(name=f"{base.name}-{tag}", **conf) if conf else base
            check_run(kernel, p, opts)
            row["params"] = p
        except ValueError as e:
            row["refused"] = str(e)
        points.append(row)
    return points


def _run_point(args):
    """One point in a worker (a process here or a Dask worker; a simulation folder of its
    own, the worker's own model cache): the report's figures. A point whose build or run
    raises is a failed point, not a lost one."""
    kernel, params, options, seed, run_dir, area = args
    try:
        report = run_kernel(kernel, params, seed=seed, options=options, log=lambda *_: None,
                            run_dir=run_dir)
    except Exception as e:          # noqa: BLE001 - reported in the point's row
        report = {"passed": False, "error": f"{type(e).__name__}: {e}"}
    row = {f: report.get(f) for f in FIGURES} | _roofline(params, report)
    if area:
        from .area import tile_area
        cells = tile_area(params)["tile"]["cells"]
        rate = row["macs_per_cycle"]
        row.update(tile_cells=cells, macs_per_cycle_per_mcell=rate / (cells / 1e6)
                   if rate is not None else None)
    return row


def _roofline(params, report):
    """The point on its machine's roofline: MACs per cycle (from the array utilization)
    against MACs per HBM byte, beside the machine's two ceilings."""
    peak = params.pcus * params.pcu_stages * params.pcu_lanes
    util, cycles, hbm = (report.get(k) for k in ("pcu_utilization", "cycles", "hbm_bytes"))
    rate = util * peak if util is not None else None
    return {"macs_per_cycle": rate,
            "macs_per_hbm_byte": rate * cycles / hbm if rate and cycles and hbm else None,
            "peak_macs_per_cycle": peak,
            "peak_hbm_bytes_per_cycle": params.hbm_channels * params.hbm_bytes_per_cycle}


def _local(work, jobs):
    """The points' figures in order, ``jobs`` processes at a time."""
    if jobs <= 1 or len(work) <= 1:
        yield from map(_run_point, work)
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        yield from pool.map(_run_point, work)


def _dask(work, scheduler):
    """The points' figures in order, on a Dask distributed cluster: ``scheduler`` its
    address (``tcp://host:8786``) or a ``distributed.Client``."""
    from distributed import Client
    own = not isinstance(scheduler, Client)
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT) if own else scheduler
    except OSError as e:
        raise SweepError(f"--scheduler {scheduler}: no Dask scheduler answers ({e})") from None
    try:
        futures = client.map(_run_point, work, pure=False)
        for f in futures:
            try:
                yield f.result()
            except Exception as e:  # noqa: BLE001 - a worker lost: the point failed
                yield {**{k: None for k in FIGURES}, "passed": False,
                       "error": f"dask: {type(e).__name__}: {e}"}
    finally:
        if own:
            client.close()


def run_sweep(kernel, base, specs, options=None, *, out, jobs=2, seed=1, log=print,
              scheduler=None, area=False):
    """Run the sweep (``jobs`` local processes, or on the Dask cluster ``scheduler``);
    write ``out``/sweep.csv, sweep.json and sweep.png; return the rows (swept values and
    figures, refused and failed points with their reason); ``area``: each point's tile
    area proxy (``sim.area``) and MACs per cycle per million of its cells."""
    params = parse_params(kernel, base, specs)
    points = sweep_points(kernel, base, params, options)
    runnable = [p for p in points if p["refused"] is None]
    where = f"on the Dask cluster {scheduler}" if scheduler is not None else \
        f"{min(jobs, max(1, len(runnable)))} at a time"
    log(f"sweep {kernel}: {len(points)} points, {len(points) - len(runnable)} refused, {where}")
    t0 = time.perf_counter()
    work = [(kernel, p["params"], p["options"], seed, Path(out).resolve() / f"point{k}", area)
            for k, p in enumerate(runnable)]
    done = _dask(work, scheduler) if scheduler is not None else _local(work, jobs)
    for k, (p, figures) in enumerate(zip(runnable, done), 1):
        p["figures"] = figures
        log(f"  [{k}/{len(work)}] {p['point']}: cycles {figures['cycles']}"
            f"{'' if figures['passed'] else ' FAILED: ' + str(figures['error'])} "
            f"({time.perf_counter() - t0:.0f} s)")
    rows = [{**p["point"], **(p.get("figures") or
                              {**{f: None for f in FIGURES}, "passed": False,
                               "error": f"refused: {p['refused']}"})} for p in points]
    _write(Path(out), kernel, base, params, options, rows)
    return rows


def _write(out, kernel, base, params, options, rows):
    out.mkdir(parents=True, exist_ok=True)
    names = [n for n, _, _ in params]
    with open(out / "sweep.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[*names, *FIGURES])
        w.writeheader()
        w.writerows(rows)
    (out / "sweep.json").write_text(json.dumps(
        {"kernel": kernel, "config": base.name, "options": options or {},
         "params": {n: vals for n, _, vals in params}, "rows": rows}, indent=1))
    _plot(out / "sweep.png", kernel, names, rows)


def _plot(path, kernel, names, rows):
    """Cycles and PCU utilization against ``names[0]``, a line per value of the rest;
    points that did not run are left out (they are in the CSV)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    groups = {}
    for r in rows:
        if r["passed"]:
            key = ", ".join(f"{n}={r[n]}" for n in names[1:]) or kernel
            groups.setdefault(key, []).append((r[names[0]], r["cycles"], r["pcu_utilization"]))
    for key, pts in groups.items():
        xs = [str(x) for x, _, _ in pts]
        axes[0].plot(xs, [c for _, c, _ in pts], marker="o", label=key)
        if any(u is not None for _, _, u in pts):
            axes[1].plot(xs, [u for _, _, u in pts], marker="o", label=key)
    for ax, what in zip(axes, ("cycles", "PCU utilization (array)")):
        ax.set_xlabel(names[0])
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
    if groups:
        axes[0].legend(fontsize=7)
    _roofline_plot(axes[2], names, rows)
    fig.suptitle(f"sweep: {kernel}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _roofline_plot(ax, names, rows):
    """Each point that ran with MACs: its rate against its intensity, under its
    machine's roofline (compute peak, HBM bandwidth x intensity)."""
    import numpy as np
    pts = [r for r in rows if r["passed"] and r.get("macs_per_hbm_byte")]
    roofs = {(r["peak_macs_per_cycle"], r["peak_hbm_bytes_per_cycle"]) for r in pts}
    if pts:
        xs = [r["macs_per_hbm_byte"] for r in pts]
        grid = np.geomspace(min(xs) / 4, max(xs) * 4, 64)
        for peak, bw in sorted(roofs):
            ax.plot(grid, np.minimum(peak, bw * grid), color="0.6", linewidth=1)
            ax.text(grid[-1], peak, f" {peak} MAC/cycle", fontsize=6, va="bottom", ha="right")
        for r in pts:
            ax.plot(r["macs_per_hbm_byte"], r["macs_per_cycle"], "o")
            ax.annotate(", ".join(f"{n}={r[n]}" for n in names), (r["macs_per_hbm_byte"],
                        r["macs_per_cycle"]), fontsize=6, xytext=(3, -8),
                        textcoords="offset points")
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("MACs per HBM byte")
    ax.set_ylabel("MACs per cycle")
    ax.set_title("roofline" + ("" if pts else " (no MACs in these runs)"), fontsize=9)
    ax.grid(alpha=0.3, which="both")
