"""Run a named job on the simulated hardware and produce its report (ARCHITECTURE.md §7)."""

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from firmware.coe import CoeShape, Experts
from firmware.decoder import Decoder, DecoderShape
from firmware.graph import compile_graph
from firmware.graph import mlp as mlp_graph
from firmware.kernels.attention import (AttentionShape, compile_attention,
                                        compile_attention_unfused, unfused_words)
from firmware.kernels.gemm import GemmShape, compile_gemm, gemm_pcus
from firmware.kernels.gemv import GemvShape, compile_gemv
from firmware.kernels.softmax import compile_softmax
from firmware.runtime.memory import Allocator
from firmware.runtime.reference import ReferenceDevice
from hdl.params import RduParams
from hdl.tile import tile_units
from tb.lib.args import (AttentionArgs, CoeArgs, DecoderArgs, FpuArgs, GemmArgs, GemvLoopArgs, MlpArgs,
                         PcuGemmArgs, PcuSimdArgs, SoftmaxArgs, options_of)

from . import toolchain
from .build import wave_format
from .cocotb_run import SimulationError, run_cocotb
from .designs import build_design
from .tracesel import TraceSelection
from .waves import natural_key, trace_selection, write_gtkw

__all__ = ["Kernel", "KERNELS", "check_run", "check_timeline", "kernel_args", "run_kernel", "wave_request",
           "REPORT_DIR"]

REPORT_DIR = Path("build") / "reports"
RUN_DIR = Path("build") / "runs"
TRACE_DIR = Path("build") / "traces"


@dataclass(frozen=True)
class Option:
    flag: str
    type: type
    default: object
    help: str


@dataclass(frozen=True)
class Kernel:
    name: str
    design: str
    args: type                                     # the cocotb test's tb.lib.args class
    description: str
    flags: tuple = ()                              # its fields the CLI offers as options
    fixed: dict = field(default_factory=dict)      # arguments the kernel always passes
    #: (params, options) -> the socket programs the run launches, compiled here as the
    #: testbench compiles them (for what they start: the default waveform units).
    programs: object = None

    @property
    def options(self):
        """The CLI options: the test's fields ``flags``, with their defaults and help."""
        return [Option(*o) for o in options_of(self.args, self.flags)]


def _scratch(params, sizes):
    """Buffers of ``sizes`` ({name: words}) in HBM of a scratch allocator."""
    alloc = Allocator(params)
    return {name: alloc.alloc("hbm", words, name) for name, words in sizes.items()}


def _gemm_programs(params, o):
    rows = bool(o.get("a_rows"))
    pcus = o["pcus"] or gemm_pcus(params, o["m"], o["n"], o["k"], bool(o["bias"]), rows)
    s = GemmShape.of(params, o["m"], o["n"], o["k"], bool(o["bias"]), pcus, a_pmu=rows)
    a_rows = s.k_vectors if rows else None
    bufs = _scratch(params, {"a": s.a_row_words(a_rows) if rows else s.a_words,
                             "b": s.b_words, "c": s.c_words})
    return [compile_gemm(params, o["m"], o["n"], o["k"], bias=bool(o["bias"]),
                         relu=bool(o["relu"]), bf16=bool(o["bf16"]), pcus=pcus,
                         a_rows=a_rows, c_tiles=bool(o.get("c_tiles")), **bufs).program]


def _decode_programs(params, o):
    sh = GemvShape.of(params, o["n"], o["k"], o["shares"] or None, bool(o["packed"]))
    bufs = _scratch(params, {"w": sh.w_words, "x": sh.kp, "y": sh.y_words})
    return [compile_gemv(params, o["n"], o["k"], shares=sh.shares, packed=sh.packed,
                         partial=bool(o["partial"]), **bufs).program]


def _coe_programs(params, o):
    if o["decoder"]:
        return _programs_of(Decoder(ReferenceDevice(params), DecoderShape(
            o["d"], o["hidden"], o["layers"], o["tokens"], 8, bool(o["packed"]))))
    shape = CoeShape(o["experts"], o["slots"], o["d"], o["layers"], bool(o["packed"]))
    return [Experts(ReferenceDevice(params), shape).gemv.program]


def _decoder_programs(params, o):
    shape = DecoderShape(o["d_model"], o["hidden"], o["layers"], o["tokens"], o["vocab"],
                         bool(o["packed"]), o["batch"], o["act"])
    return _programs_of(Decoder(ReferenceDevice(params), shape, partial=bool(o["partial"])))


def _programs_of(dec):
    """Every program a decoder's positions launch, once each."""
    progs = {id(k.program): k.program for t in range(dec.shape.tokens)
             for k, *_ in dec.steps(t)}       # by identity: programs hold numpy arrays
    return list(progs.values())


def _attention_programs(params, o):
    seq, d = o["seq"], o["head_dim"]
    sh = AttentionShape.of(params, seq, d)
    progs = [compile_attention(params, seq, d, **_scratch(
        params, {"q": sh.q_words, "kv": sh.kv_words, "o": sh.o_words})).program]
    if o["unfused"]:
        w = unfused_words(params, seq, d)
        progs += compile_attention_unfused(params, seq, d, **_scratch(
            params, {n: w[n] for n in ("q", "k", "v", "s", "p", "o")})).programs
    return progs


def _softmax_programs(params, o):
    rows, n = o["rows"], o["n"]
    xs = -(-n // params.pcu_lanes) * params.pcu_lanes
    return [compile_softmax(params, rows, n, **_scratch(
        params, {"x": rows * xs, "y": rows * n})).program]


def mlp_partitions(params, o):
    """The MLP graph of options ``o`` compiled fused and op by op (both are run)."""
    build = lambda: mlp_graph(o["m"], o["k"], o["hidden"], o["n"], bias=bool(o["bias"]))  # noqa: E731
    return {"fused": compile_graph(params, build(), Allocator(params)),
            "op by op": compile_graph(params, build(), Allocator(params), fuse_ops=False)}


def _mlp_programs(params, o):
    return [k.program for cg in mlp_partitions(params, o).values() for _, k in cg.kernels]


def used_units(params, programs):
    """Names (as :func:`sim.waves.wave_units` gives them) of the tile units and AGCUs
    that ``programs`` start."""
    cols = params.cols
    units = {u.name for u in tile_units(params)
             if any(p.units >> (u.row * cols + u.col) & 1 for p in programs)}
    return units | {f"agcu{k}" for k in range(params.agcus)
                    if any(p.agcus >> k & 1 for p in programs)}


_RATES = ("idle", "backpressure")

KERNELS = {
    "fpu": Kernel(
        "fpu", "fpu", FpuArgs,
        "random operand vectors (every op, specials mixed in) through the FP units, "
        "bit-exact against firmware.numerics", ("n", *_RATES)),
    "pcu-gemm": Kernel(
        "pcu-gemm", "pcu", PcuGemmArgs,
        "C = A x B (BF16 inputs, FP32 accumulation) on one PCU in systolic mode, tiled by "
        "firmware, bit-exact against gemm_reference and within k roundings of float64",
        ("m", "n", "k", *_RATES)),
    "gemm": Kernel(
        "gemm", "socket", GemmArgs,
        "C = A x B on the socket: the bitstream loads from HBM through the config "
        "controller, AGCUs stream A and B from HBM into the PCUs' systolic arrays and C back "
        "(--a-rows 1: A row-major, each row tile held and transposed by a PMU; --c-tiles 1: "
        "C stored tile by tile), "
        "bit-exact against the PCU reference and within k FP32 roundings of float64",
        ("m", "n", "k", "bias", "relu", "bf16", "pcus", "a_rows", "c_tiles"),
        programs=_gemm_programs),
    "attention": Kernel(
        "attention", "socket", AttentionArgs,
        "one attention head O = softmax(Q K^T / sqrt(d)) V fused into one kernel: Q K^T and "
        "P V on two PCUs' systolic arrays, the row softmax on two more, S and P kept in PMUs "
        "(a pipeline per share of the query tiles where the array has room); "
        "bit-exact against the PCU references and the reference backend, within the "
        "derived bound of float64; with --unfused 1 also the unfused version (GEMM, "
        "softmax, GEMM through HBM) for the fusion speedup",
        ("seq", "head_dim", "unfused"), programs=_attention_programs),
    "softmax": Kernel(
        "softmax", "socket", SoftmaxArgs,
        "row softmax on the socket (rows longer than the lanes): max, exp + sum and "
        "normalise on three PCUs with the rows buffered in two PMUs, bit-exact against the "
        "PCU references and the reference backend, within the derived bound of float64",
        ("rows", "n"), programs=_softmax_programs),
    "mlp": Kernel(
        "mlp", "socket", MlpArgs,
        "a 2-layer MLP graph y = relu(x W1 + b1) W2, compiled fused (one kernel: the hidden "
        "tensor stays in a PMU between the two PCUs' arrays) and op by op (two GEMMs, the "
        "hidden tensor through HBM); both bit-exact against the reference backend and each "
        "other, within the derived bound of float64; reports both cycle counts",
        ("m", "k", "hidden", "n", "bias"), programs=_mlp_programs),
    "decode": Kernel(
        "decode", "socket", GemvLoopArgs,
        "decode weight streaming: LAYERS GEMV layers y = W x (N x K weights each, their "
        "own input and output), the weights streamed through every AGCU (--packed 1: BF16 "
        "two per word, each word feeding two PCUs), x by AGCU 0's load2 prologue into a "
        "PMU per PCU, the row results through the store path (--chain 1: each layer's input "
        "the output of the one before, through HBM; --ddr 1: the weights start in DDR "
        "and the looped run's first record is a copy record, the sequencer's own DMA copy "
        "into HBM, counted in its cycles); run as one looped launch, "
        "as launches with the program resident and as launches that reload it — the same "
        "bits, bit-exact against the reference and within the float64 bound; reports the "
        "three cycle counts and the HBM utilization of the looped run",
        ("n", "k", "layers", "shares", "packed", "chain", "ddr", "partial"),
        programs=_decode_programs),
    "coe": Kernel(
        "coe", "socket", CoeArgs,
        "Composition of Experts: EXPERTS experts (each LAYERS chained GEMV layers of D x D "
        "BF16 weights, one looped launch) kept in DDR, SLOTS of them cached in HBM (LRU, in "
        "firmware); REQUESTS requests each served by one expert: a hit launches at once, a "
        "miss first copies the expert DDR -> HBM by a copy record (the sequencer's DMA, no "
        "host); every request's outputs bit-exact against the reference backend and within "
        "the float64 bound; reports per request its expert, hit, switch and decode cycles, "
        "and the switch by DMA against one expert written over the host link",
        ("experts", "slots", "requests", "d", "layers", "packed", "decoder", "hidden", "tokens",
         "order"),
        programs=_coe_programs),
    "decoder": Kernel(
        "decoder", "socket", DecoderArgs,
        "LLM decode: a Llama-style decoder (LAYERS layers of RMSNorm, one attention head of "
        "D_MODEL over a KV cache in HBM, output projection, residual, RMSNorm, SiLU (or "
        "--act relu) MLP of HIDDEN, residual) generating TOKENS tokens in a row, the next token the argmax of "
        "the output projection on the device; each token one launch list of a kernel per "
        "step (not yet one kernel per layer); every step's output bit-exact against the "
        "reference backend and within its float64 bound; reports cycles per token, "
        "tokens/s and the HBM utilization",
        ("d_model", "hidden", "layers", "tokens", "batch", "vocab", "first", "packed", "act",
         "partial", "looping"),
        programs=_decoder_programs),
    "pcu-softmax": Kernel(
        "pcu-softmax", "pcu", PcuSimdArgs,
        "row softmax on one PCU in SIMD mode (max-reduce, exp2 of scaled differences, "
        "sum-reduce, rcp, scale), bit-exact against simd_reference, close to float64",
        ("n", *_RATES), {"case": "softmax"}),
}


def _options(k, options):
    """Kernel ``k``'s option defaults overridden by the ``options`` given (None = default)."""
    opts = {o.flag: o.default for o in k.options}
    opts.update({key: v for key, v in (options or {}).items() if v is not None})
    return opts


def kernel_args(name, params, *, seed=1, options=None):
    """The cocotb arguments of a run of kernel ``name`` (its ``tb.lib.args`` dataclass);
    TypeError names an option of the wrong type, before any model is built."""
    k = KERNELS[name]
    return k.args(seed=seed, params=params.to_dict(), **k.fixed, **_options(k, options))


def check_run(name, params, options=None, report=None):
    """Refuse, before any model is built, what cannot run: an unknown kernel, options of
    the wrong type or range (``kernel_args``), options the kernel's compiler refuses
    (shapes that do not fit the array or its memories: its programs are compiled here as
    the testbench will compile them) and a report path that cannot be written. Raises
    ValueError naming the problem."""
    if name not in KERNELS:
        raise ValueError(f"unknown kernel {name!r}; known: {', '.join(KERNELS)}")
    k = KERNELS[name]
    try:
        kernel_args(name, params, options=options)
        if k.programs is not None:
            k.programs(params, _options(k, options))
    except (TypeError, ValueError, MemoryError) as e:
        raise ValueError(f"{name}: {e}") from None
    if report is not None:
        _check_writable(Path(report))


def _check_writable(path):
    """A file can be created or replaced at ``path``: a probe file is created (and
    removed) in its nearest existing directory — the run creates the directories between."""
    if path.is_dir():
        raise ValueError(f"report path {path} is a directory")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    try:
        if not parent.is_dir():
            raise NotADirectoryError(f"{parent} is not a directory")
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(f"{path} is read-only")
        tempfile.TemporaryFile(dir=parent).close()
    except OSError as e:
        raise ValueError(f"report path {path} cannot be written: {e}") from None


def wave_request(name, params, *, units=None, from_cycle=None, to_cycle=None, options=None):
    """What a ``--waves`` run of kernel ``name`` with ``options`` records
    (:class:`TraceSelection`): on the socket the ``units`` in full (default: the sequencer
    and the tile units and AGCUs the kernel's programs start) and the rest at their ports;
    elsewhere the whole design. Raises ValueError naming a bad option."""
    k = KERNELS[name]
    if k.design == "socket":
        if units is None and k.programs is not None:
            units = ["seq"] + sorted(used_units(params, k.programs(params, _options(k, options))),
                                     key=natural_key)
        return trace_selection(params, units, from_cycle, to_cycle)
    if units is not None:
        raise ValueError(f"--waves-units applies to socket kernels; {name!r} runs on the "
                         f"{k.design!r} design, traced whole")
    return TraceSelection(from_cycle=from_cycle, to_cycle=to_cycle)


def run_kernel(name, params: RduParams, *, seed=1, waves=False, options=None, log=print,
               trace=None, run_dir=None, timeline=None):
    """Build (cached), run, check; returns the report dict. Never raises on a failed
    check: the report says ``passed: false`` and carries the error. ``waves``: False,
    True (FST) or a format (``fst``, ``vcd``); ``trace``: what the waveform records (see
    :func:`wave_request`); ``run_dir``: the simulation's folder (default
    ``build/runs/KERNEL``; runs at the same time need folders of their own);
    ``timeline``: a socket kernel's timeline at that resolution (cycles) -> a Perfetto
    trace and a PNG in build/traces/ (:func:`check_timeline` first)."""
    if name not in KERNELS:
        raise KeyError(f"unknown kernel {name!r}; known: {', '.join(KERNELS)}")
    k = KERNELS[name]
    opts = _options(k, options)
    targs = kernel_args(name, params, seed=seed, options=options)
    if timeline is not None:
        check_timeline(name, timeline)
    if waves and trace is None:
        trace = wave_request(name, params, options=opts)
    if waves and toolchain.fst_shims() and wave_format(waves) == "fst":
        log(f"note: no {' or '.join(toolchain.fst_shims())} development files here: the FST "
            f"writer stores those blocks uncompressed (larger files; 'make extras' installs "
            f"them)")
    b = build_design(k.design, params, waves=waves, log=log)
    log(f"model: {b.dir} ({'cached' if b.cached else f'built in {b.seconds:.1f} s'})")
    report = {
        "kernel": name, "config": params.name, "shape": opts, "seed": seed,
        "passed": False, "bit_exact": False, "max_abs_err": None, "max_rel_err": None,
        "cycles": None, "program_load_cycles": None, "pcu_utilization": None,
        "hbm_bytes": None, "hbm_bw_utilization": None, "counters": {},
        "lanes": params.pcu_lanes,
        "sim": {"flow": b.flow, "build_s": round(b.seconds, 3), "build_cached": b.cached},
    }
    try:
        run = run_cocotb(b, targs, test_dir=run_dir or RUN_DIR / name, waves=bool(waves),
                         trace=trace, timeline=timeline)
    except SimulationError as e:
        report["error"] = str(e)
        return report
    o = run.outputs
    report.update(passed=True, bit_exact=o.get("mismatches") == 0,
                  max_abs_err=o.get("max_abs_err"), max_rel_err=o.get("max_rel_err"),
                  cycles=o.get("cycles"), pcu_utilization=o.get("utilization"),
                  program_load_cycles=o.get("load_cycles"), hbm_bytes=o.get("hbm_bytes"),
                  hbm_bw_utilization=o.get("hbm_bw_utilization"),
                  counters=o.get("counters") or {"ops": o.get("per_op", {})})
    if "fusion" in o:
        report["fusion"] = o["fusion"]
    if "speedup_vs_resident" in o:
        report["looping"] = {**{f"{mode}_cycles": o[mode]["cycles"]
                                for mode in ("looped", "resident", "reload")},
                             "speedup_vs_resident": o["speedup_vs_resident"],
                             "speedup_vs_reload": o["speedup"]}
    if isinstance(o.get("looping"), dict):
        report["looping"] = o["looping"]
    for key in ("requests", "switch", "tokens", "tokens_per_s_at_1ghz", "launches_per_token",
                "bound_fraction", "batch", "weight_bytes"):
        if key in o:
            report[key] = o[key]
    if o.get("copied_words"):
        c = o["looped"]["copy_cycles"]
        report["copy"] = {"words": o["copied_words"], "cycles": c,
                          "bytes_per_cycle": round(4 * o["copied_words"] / c, 3),
                          "ddr_peak_bytes_per_cycle": params.ddr_bytes_per_cycle}
    wall = o.get("wall_s") or 0.0
    report["sim"].update(wall_s=round(wall, 4),
                         cycles_per_second=round(o.get("sim_cycles", o["cycles"]) / wall)
                         if wall else None)
    if run.waves:
        _keep_waves(report, k, params, run.waves)
    if timeline:
        report["trace"] = _write_traces(report, params, run.test_dir / "timeline.jsonl")
    return report


def check_timeline(name, resolution):
    """A timeline is recorded by the socket testbench, at a resolution of >= 1 cycle."""
    k = KERNELS[name]
    if k.design != "socket":
        raise ValueError(f"--trace records a socket run; {name!r} runs on the {k.design!r} "
                         f"design (use --waves)")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"--trace-resolution {resolution!r}: a whole number of cycles >= 1")


def _write_traces(report, params, recorded):
    """The timeline the testbench recorded as build/traces/KERNEL.json (Perfetto) and
    .png; their paths and the resolution for the report."""
    from .timeline import read_timeline, write_png, write_trace
    tl = read_timeline(recorded)
    base = TRACE_DIR / report["kernel"]
    labels = ["fused", "unfused"] if report.get("fusion") else []
    return {"json": str(write_trace(tl, params, base.with_suffix(".json"), report["kernel"])),
            "png": str(write_png(tl, params, base.with_suffix(".png"), labels)),
            "resolution": tl.head["resolution"], "lists": len(tl.lists)}


def _keep_waves(report, k, params, dump):
    """Move the run's waveform to build/waves/ and, for the socket, write its save file
    (the groups of the units the run kept busy open)."""
    dest = Path("build") / "waves" / f"{k.name}{dump.suffix}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    for old in dest.parent.glob(f"{k.name}.*"):
        old.unlink()
    shutil.move(dump, dest)
    report["waves"] = str(dest)
    report["waves_bytes"] = dest.stat().st_size
    if k.design == "socket":
        busy = (report.get("counters") or {}).get("unit_busy") or []
        used = {u.name for u in tile_units(params) if
                u.row * params.cols + u.col < len(busy) and busy[u.row * params.cols + u.col]}
        report["gtkw"] = str(write_gtkw(params, dest, dest.with_suffix(".gtkw"),
                                        used=used or None))


def write_report(report, path=None, params=None):
    """The report as JSON; with ``params`` and a socket run's counters also a picture of
    the array beside it (``<name>.svg``, its path in the report's ``picture``)."""
    from .picture import write_svg
    path = Path(path) if path else REPORT_DIR / f"{report['kernel']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    if params is not None and report.get("passed"):
        svg = write_svg(params, report, path.with_suffix(".svg"))
        if svg:
            report["picture"] = str(svg)
    path.write_text(json.dumps(report, indent=1) + "\n")
    return path
