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
           "hbm_bytes", "hbm_bw_utilization", "error")


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
    """One point in a worker process (a simulation folder of its own): the report's
    figures."""
    kernel, params, options, seed, run_dir = args
    report = run_kernel(kernel, params, seed=seed, options=options, log=lambda *_: None,
                        run_dir=run_dir)
    return {f: report.get(f) for f in FIGURES}


def run_sweep(kernel, base, specs, options=None, *, out, jobs=2, seed=1, log=print):
    """Run the sweep; write ``out``/sweep.csv and sweep.json; return the rows (swept
    values and figures, refused points with their reason)."""
    params = parse_params(kernel, base, specs)
    points = sweep_points(kernel, base, params, options)
    runnable = [p for p in points if p["refused"] is None]
    log(f"sweep {kernel}: {len(points)} points, {len(points) - len(runnable)} refused, "
        f"{min(jobs, max(1, len(runnable)))} at a time")
    t0 = time.perf_counter()
    work = [(kernel, p["params"], p["options"], seed, Path(out).resolve() / f"point{k}")
            for k, p in enumerate(runnable)]
    pool = ProcessPoolExecutor(max_workers=jobs) if jobs > 1 and len(work) > 1 else None
    try:
        done = pool.map(_run_point, work) if pool else map(_run_point, work)
        for k, (p, figures) in enumerate(zip(runnable, done), 1):
            p["figures"] = figures
            log(f"  [{k}/{len(work)}] {p['point']}: cycles {figures['cycles']}"
                f"{'' if figures['passed'] else ' FAILED: ' + str(figures['error'])} "
                f"({time.perf_counter() - t0:.0f} s)")
    finally:
        if pool:
            pool.shutdown()
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
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
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
    fig.suptitle(f"sweep: {kernel}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
