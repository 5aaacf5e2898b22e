"""OpenRDU command line: ``python -m sim {run,verilog,lint,waves,bench} ...``."""

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from hdl.params import ParamError, load_params


def _config(value):
    from hdl.socket import check_socket
    try:
        params = load_params(value)
        check_socket(params)
        return params
    except ParamError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _kernel_parser(k, cmd):
    """The options of kernel ``k`` (its test's argument fields) for ``python -m sim cmd``."""
    kp = argparse.ArgumentParser(prog=f"python -m sim {cmd} {k.name}", description=k.description)
    for o in k.options:
        kp.add_argument(f"--{o.flag.replace('_', '-')}", dest=o.flag, type=o.type,
                        default=o.default, help=f"{o.help} (default {o.default})")
    return kp


def cmd_run(args, extra):
    from .run import KERNELS, check_run, run_kernel, write_report
    k = KERNELS.get(args.kernel)
    if k is None:
        sys.exit(f"unknown kernel {args.kernel!r}; known: {', '.join(KERNELS)}")
    kargs = _kernel_parser(k, "run").parse_args(extra)
    try:
        check_run(k.name, args.config, vars(kargs), args.json)
    except ValueError as e:
        sys.exit(f"error: {e}")
    trace = _wave_request(args, k.name, vars(kargs))
    timeline = _timeline_request(args, k.name)
    report = run_kernel(k.name, args.config, seed=args.seed,
                        waves=args.waves_format if args.waves else False,
                        options=vars(kargs), trace=trace, timeline=timeline)
    path = write_report(report, args.json, args.config)
    _print_report(report, args.config)
    print(f"report: {path}")
    sys.exit(0 if report["passed"] and report["bit_exact"] else 1)


def cmd_sweep(args, extra):
    from .run import KERNELS
    from .sweep import SweepError, run_sweep
    k = KERNELS.get(args.kernel)
    if args.help or k is None:
        if k is None and args.kernel is not None:
            sys.exit(f"unknown kernel {args.kernel!r}; known: {', '.join(KERNELS)}")
        sys.exit("usage: python -m sim sweep KERNEL --param NAME=v1,v2 [--param ...] "
                 "[--config C] [--jobs N | --scheduler ADDRESS] [--out DIR] [kernel options]")
    if args.jobs < 1:
        sys.exit(f"--jobs {args.jobs}: at least 1")
    fixed = {key: v for key, v in vars(_kernel_parser(k, "sweep").parse_args(extra)).items()
             if f"--{key.replace('_', '-')}" in extra}
    try:
        rows = run_sweep(k.name, args.config, args.param, fixed, out=args.out, jobs=args.jobs,
                         seed=args.seed, scheduler=args.scheduler, area=args.area)
    except SweepError as e:
        sys.exit(f"error: {e}")
    print(f"results: {args.out}/sweep.csv, sweep.json, sweep.png")
    sys.exit(0 if all(r["passed"] and r["bit_exact"] for r in rows) else 1)


def _wave_request(args, kernel, options):
    """The waveform options, checked before any model is built."""
    from .run import wave_request
    wave_opts = {"--waves-units": args.waves_units, "--waves-from": args.waves_from,
                 "--waves-to": args.waves_to}
    if not args.waves:
        given = [f for f, v in wave_opts.items() if v is not None]
        if given or args.waves_format != "fst":
            sys.exit(f"{', '.join(given) or '--waves-format'} needs --waves")
        return None
    units = None
    if args.waves_units is not None:
        units = [u.strip() for u in args.waves_units.split(",") if u.strip()]
        if not units:
            sys.exit("--waves-units needs at least one unit name (e.g. pcu0,pmu1,agcu0)")
    try:
        return wave_request(kernel, args.config, units=units, from_cycle=args.waves_from,
                            to_cycle=args.waves_to, options=options)
    except Exception as e:      # a bad selection, or kernel options the compiler refuses
        sys.exit(f"{type(e).__name__}: {e}")


def _timeline_request(args, kernel):
    """``--trace`` / ``--trace-resolution``, checked before any model is built."""
    from .run import check_timeline
    if not args.trace:
        if args.trace_resolution is not None:
            sys.exit("--trace-resolution needs --trace")
        return None
    res = 64 if args.trace_resolution is None else args.trace_resolution
    try:
        check_timeline(kernel, res)
    except ValueError as e:
        sys.exit(f"error: {e}")
    return res


def _cycle(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a cycle number: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"a cycle number is >= 0, not {v}")
    return v


def _print_report(r, params=None):
    print(f"\n== {r['kernel']} on config '{r['config']}' (seed {r['seed']}) ==")
    print(f"shape: {r['shape']}")
    if not r["passed"]:
        print(f"FAILED:\n{r.get('error', '')}")
        return
    counters = r.get("counters", {}).get("ops")
    if counters:
        n, lanes = r["shape"].get("n"), r.get("lanes", 1)
        print(f"checked: {n} vectors x {lanes} lanes = {n * lanes} results against "
              f"firmware.numerics (vectors per op: "
              f"{', '.join(f'{k} {v}' for k, v in counters.items())})")
    line = f"bit-exact: {r['bit_exact']}"
    if r.get("max_rel_err") is not None:
        line += f"   vs float64: max rel err {r['max_rel_err']:.3g}"
    if r.get("pcu_utilization") is not None:
        line += f"   PCU MAC utilization: {r['pcu_utilization']:.3f}"
    print(line)
    if r.get("program_load_cycles") is not None and r.get("hbm_bytes") is not None:
        print(f"program load: {r['program_load_cycles']} cycles   HBM: {r['hbm_bytes']} bytes "
              f"= {r['hbm_bw_utilization']:.3f} of peak over the kernel's cycles")
    s = r["sim"]
    model = "cached" if s["build_cached"] else f"built in {s['build_s']} s"
    print(f"cycles: {r['cycles']}   simulated in {s['wall_s']} s = "
          f"{s['cycles_per_second']:,} cycles/s ({s['flow']} flow; model {model})")
    if params is not None:
        from .picture import array_text
        for line in array_text(params, r):
            print(line)
        if r.get("picture"):
            print(f"picture of the array: {r['picture']}")
    f = r.get("fusion")
    if f:
        print(f"fused vs unfused (each with its program load): {f['fused_cycles']} vs "
              f"{f['unfused_cycles']} cycles = {f['speedup']:.2f}x")
    lp = r.get("looping")
    if lp:
        what = "sequence" if r.get("tokens") else "layer"
        print(f"one looped launch vs a launch per {what}, program resident / reloaded: "
              f"{lp['looped_cycles']} vs {lp['resident_cycles']} / {lp['reload_cycles']} "
              f"cycles = {lp['speedup_vs_resident']:.2f}x / {lp['speedup_vs_reload']:.2f}x")
    _print_coe(r)
    _print_tokens(r)
    if r.get("waves"):
        print(f"waves: {r['waves']} ({r['waves_bytes'] / 1e6:.1f} MB)"
              + (f"   GTKWave save file (one group per unit): {r['gtkw']}"
                 if r.get("gtkw") else ""))
    if r.get("trace"):
        t = r["trace"]
        print(f"timeline ({t['resolution']}-cycle intervals, {t['lists']} launch lists): "
              f"{t['json']} (open in https://ui.perfetto.dev), {t['png']}")


def _print_coe(r):
    """A Composition-of-Experts run: a line per request and the expert switch."""
    if not r.get("requests"):
        return
    print("request  expert (float64)  slot  hit    route   switch   decode  (cycles)")
    for i, q in enumerate(r["requests"]):
        print(f"{i:7}  {q['expert']:6} ({q['float64_choice']:7})  {q['slot']:4}  "
              f"{'yes' if q['hit'] else 'no ':3}  {q['route_cycles']:7}  "
              f"{q['switch_cycles']:7}  {q['decode_cycles']:7}")
    s = r["switch"]
    print(f"expert switch: DMA DDR -> HBM {s['dma_cycles']:.0f} cycles vs host link "
          f"{s['host_cycles']} cycles = {s['dma_over_host']:.2f}x (configured DDR / host "
          f"bandwidth {s['configured_ddr_over_host']:.2f}x)")


def _print_tokens(r):
    """A decoder run: a line per generated token."""
    if not r.get("tokens"):
        return
    width = max(len(",".join(map(str, q["input"]))) for q in r["tokens"])
    print(f"position  {'inputs':>{width}}  {'outputs':>{width}}    cycles  program loads  "
          f"records")
    for q in r["tokens"]:
        i, o = (",".join(map(str, q[k])) for k in ("input", "output"))
        print(f"{q['position']:8}  {i:>{width}}  {o:>{width}}  {q['cycles']:8}  "
              f"{q['load_cycles']:13}  {q['launched']:7}")
    print(f"{r['tokens_per_s_at_1ghz']:,.0f} tokens/s at 1 GHz (batch {r['batch']}); "
          f"{r['launches_per_token']} records a position; worst step error "
          f"{r['bound_fraction']:.3f} of its float64 bound")



def cmd_verilog(args, _):
    from .designs import DESIGNS, harness_for
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in DESIGNS:
        h = harness_for(name, args.config)
        for fname, text in h.sources().items():
            dest = out / name / fname
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(text)
        print(f"{name}: {out / name}/top.v ({len(h.verilog.splitlines())} lines) and tb_top.sv")


def cmd_lint(args, _):
    from .build import LINT_WAIVERS, lint
    from .designs import DESIGNS, harness_for
    failed = False
    for name in DESIGNS:
        clean, messages = lint(harness_for(name, args.config).verilog,
                               Path("build") / "lint" / f"{name}.v")
        print(f"lint {name}: {'clean' if clean else 'FAILED'} "
              f"(waived: {' '.join(w[5:] for w in LINT_WAIVERS)})")
        if not clean:
            print(messages)
            failed = True
    sys.exit(1 if failed else 0)


def cmd_waves(args, _):
    waves = sorted(list(Path("build/waves").glob("*.fst")) + list(Path("build/waves").glob("*.vcd")),
                   key=lambda p: p.stat().st_mtime)
    path = Path(args.file) if args.file else (waves[-1] if waves else None)
    if path is None or not path.exists():
        sys.exit("no waveform yet: run 'make waves' or 'python -m sim run KERNEL --waves'")
    viewer = shutil.which("gtkwave") or shutil.which("surfer")
    save = path.with_suffix(".gtkw")
    command = f"gtkwave {path}" + (f" {save}" if save.exists() else "")
    if viewer is None:
        print(f"waveform: {path}\n(no viewer found; 'make extras' installs gtkwave, then: "
              f"{command})")
        return
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                 or os.environ.get("WAYLAND_DISPLAY")):
        print(f"waveform: {path}\n(no display to open it here; where there is one: {command})")
        return
    subprocess.run([viewer, str(path)] + ([str(save)] if save.exists() and "gtkwave" in viewer
                                           else []))


def cmd_explain(args, extra):
    from .explain import explain
    from .run import KERNELS
    k = KERNELS.get(args.kernel)
    if k is None:
        sys.exit(f"unknown kernel {args.kernel!r}; known: {', '.join(KERNELS)}")
    kargs = _kernel_parser(k, "explain").parse_args(extra)
    try:
        print("\n".join(explain(k.name, args.config, vars(kargs))))
    except (ValueError, TypeError) as e:
        sys.exit(f"error: {e}")


def cmd_bench(args, _):
    from hdl.params import PRESETS

    from .bench import run_bench, run_socket_parts, time_regression
    if args.socket_parts or args.regression:
        results = {}
        if args.socket_parts:
            names = args.presets.split(",")
            bad = [n for n in names if n not in PRESETS]
            if bad:
                raise SystemExit(f"bench: unknown presets {bad}; known: {', '.join(PRESETS)}")
            try:
                results["socket"] = run_socket_parts({n: PRESETS[n] for n in names},
                                                     args.socket_parts.split(","),
                                                     Path(args.out))
            except ValueError as e:
                raise SystemExit(f"bench: {e}") from None
        if args.regression:
            results["regression"] = time_regression(Path(args.out))
    else:
        results = run_bench(args.config, Path(args.out), quick=args.quick)
    print(json.dumps(results, indent=1))
    print(f"written to {args.out}")


def cmd_area(args, _):
    from .area import area_lines, tile_area
    r = tile_area(args.config, log=print)
    out = Path(args.out) / f"{args.config.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(r, indent=1) + "\n")
    print("\n".join(area_lines(r)))
    print(f"area: {out}")


def cmd_paper(args, _):
    from .paper import run_paper
    rows = run_paper(args.config, out=Path(args.out))
    for r in rows:
        met = {True: "met", False: "MISSED", None: "not measured"}[r["met"]]
        print(f"  {r['effect']}: {r['model']} (target {r['target']}): {met}")
    print(f"report: {args.out}/report.md (charts and figures.json beside it; the figures "
          f"also in build/bench.json)")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m sim", description=(
        "OpenRDU: build the Verilator model of a design (cached), run jobs on it, "
        "generate Verilog, lint, view waveforms and measure performance."))
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp):
        sp.add_argument("--config", type=_config, default="small",
                        help="preset name (small, plasticine) or TOML file (default small)")

    from .run import KERNELS
    kernels = ", ".join(KERNELS)
    r = sub.add_parser("run", help="run a kernel and check it; writes build/reports/KERNEL.json",
                       description="Run KERNEL; kernel options follow (see 'run KERNEL -h').",
                       add_help=False)
    r.add_argument("-h", "--help", action="store_true",
                   help="this help, and with a kernel name its options")
    r.add_argument("kernel", nargs="?", help=f"kernel name: {kernels}")
    common(r)
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--waves", action="store_true",
                   help="record a waveform (build/waves/KERNEL.fst) and a GTKWave save file")
    r.add_argument("--waves-format", choices=("fst", "vcd"), default="fst",
                   help="waveform format (default fst)")
    r.add_argument("--waves-units", metavar="NAMES",
                   help="socket units traced in full, comma-separated as the array picture "
                        "names them (pcu0,pmu1,agcu0,seq,vsw3,...); the rest at their ports "
                        "(default: the sequencer and the units the kernel's programs start)")
    r.add_argument("--waves-from", type=_cycle, metavar="CYCLE",
                   help="first clock cycle recorded (default 0)")
    r.add_argument("--waves-to", type=_cycle, metavar="CYCLE",
                   help="last clock cycle recorded (default: the end of the run)")
    r.add_argument("--trace", action="store_true",
                   help="record a timeline: build/traces/KERNEL.json (Perfetto / Chrome trace) "
                        "and KERNEL.png (socket kernels)")
    r.add_argument("--trace-resolution", type=int, metavar="CYCLES",
                   help="cycles per sampled interval of the timeline's stall / starve / "
                        "bandwidth tracks (default 64; busy and sequencer slices are exact)")
    r.add_argument("--json", help="report path (default build/reports/KERNEL.json)")
    r.set_defaults(func=cmd_run)

    v = sub.add_parser("verilog", help="write generated Verilog")
    common(v)
    v.add_argument("--out", default="build/verilog")
    v.set_defaults(func=cmd_verilog)

    li = sub.add_parser("lint", help="Verilator --lint-only -Wall on the generated Verilog")
    common(li)
    li.set_defaults(func=cmd_lint)

    w = sub.add_parser("waves", help="open the newest waveform (gtkwave if installed)")
    w.add_argument("file", nargs="?")
    w.set_defaults(func=cmd_waves)

    e = sub.add_parser("explain", help="how a socket kernel is partitioned, placed and "
                                       "routed (no simulation)", add_help=False)
    e.add_argument("-h", "--help", action="store_true",
                   help="this help, and with a kernel name its options")
    e.add_argument("kernel", nargs="?", help="socket kernel: " + ", ".join(
        n for n, k in KERNELS.items() if k.programs is not None))
    common(e)
    e.set_defaults(func=cmd_explain)
    sw = sub.add_parser("sweep", help="a kernel over config fields and kernel options "
                                      "(CSV and JSON in --out)", add_help=False,
                        description="Sweep KERNEL over the product of --param NAME=v1,v2,... "
                                    "(config fields or kernel options); fixed kernel options "
                                    "follow (see 'run KERNEL -h').")
    sw.add_argument("-h", "--help", action="store_true", help="this help")
    sw.add_argument("kernel", nargs="?", help=f"kernel name: {kernels}")
    common(sw)
    sw.add_argument("--param", action="append", default=[], metavar="NAME=v1,v2",
                    help="a config field or kernel option and its values (repeatable)")
    sw.add_argument("--jobs", type=int, default=2, help="points run at a time (default 2)")
    sw.add_argument("--scheduler", metavar="ADDRESS",
                    help="run the points on a Dask distributed cluster (tcp://host:8786); "
                         "each worker builds or reuses its own cached model")
    sw.add_argument("--seed", type=int, default=1)
    sw.add_argument("--area", action="store_true",
                    help="add each point's tile area proxy and MACs/cycle per million cells")
    sw.add_argument("--out", default="build/sweep", help="output folder (default build/sweep)")
    sw.set_defaults(func=cmd_sweep)
    ar = sub.add_parser("area", help="an area proxy per unit type (built-in Yosys), cached")
    common(ar)
    ar.add_argument("--out", default="build/area")
    ar.set_defaults(func=cmd_area)
    pa = sub.add_parser("paper", help="every effect of the paper measured on one config: "
                                      "build/paper/report.md, charts, figures.json")
    common(pa)
    pa.add_argument("--out", default="build/paper")
    pa.set_defaults(func=cmd_paper)
    b = sub.add_parser("bench", help="measure build time and simulation speed")
    common(b)
    b.add_argument("--out", default="build/bench.json")
    b.add_argument("--quick", action="store_true",
                   help="fewer repetitions, the given config only, no configuration sweep")
    b.add_argument("--socket-parts", metavar="NAMES", default="",
                   help="only these parts of the socket section, comma-separated (e.g. "
                        "sim_speed) on the --presets; merged into the bench file")
    b.add_argument("--presets", default="small,plasticine",
                   help="presets of --socket-parts (default small,plasticine)")
    b.add_argument("--regression", action="store_true",
                   help="time `make test` on a clean clone with an empty model cache "
                        "(regression/make_test_cold_s)")
    b.set_defaults(func=cmd_bench)

    args, extra = p.parse_known_args(argv)
    if extra and args.cmd not in ("run", "explain", "sweep"):
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.cmd in ("run", "explain") and (args.help or args.kernel is None):
        _kernel_help(args, sub.choices[args.cmd], KERNELS)
    args.func(args, extra)


def _kernel_help(args, parser, kernels):
    """``run -h`` / ``run KERNEL -h`` (and explain's): the command's help, then the
    kernel's own options; no kernel: the list of kernels."""
    if args.kernel is None and not args.help:
        parser.error(f"a kernel name is needed: {', '.join(kernels)}")
    parser.print_help()
    k = kernels.get(args.kernel)
    if k is None and args.kernel is not None:
        sys.exit(f"\nunknown kernel {args.kernel!r}; known: {', '.join(kernels)}")
    if k is not None:
        print(f"\nkernel {k.name!r}:")
        print(_kernel_parser(k, args.cmd).format_help())
    sys.exit(0)


if __name__ == "__main__":
    main()
