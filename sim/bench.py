"""``make bench``: measured build times and simulation speed, merged into build/bench.json.

Every figure is measured here by running the model; nothing is written in. Later
issues add their own sections to the same file.
"""

import dataclasses
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from tb.lib.args import (AgcuBandwidthArgs, AttentionArgs, CoeArgs, CopyBandwidthArgs,
                         DecoderArgs, FpuArgs, GemmArgs, GemvLoopArgs, LayerLoopArgs, MlpArgs,
                         PcuGemmArgs, PcuSimdArgs, PmuArgs, RdnScenarioArgs, SoftmaxArgs,
                         StressArgs)

from .build import build
from .cocotb_run import run_cocotb
from .designs import harness_for

__all__ = ["run_bench", "merge_bench", "merge_bench_preset"]

FPU_N = 1 << 17


def merge_bench(path: Path, section: str, values: dict) -> dict:
    """Replace ``section`` in the bench file, keeping the other sections."""
    data = json.loads(path.read_text()) if path.exists() else {}
    data[section] = values
    data["meta"] = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.node(),
                    "cpus": os.cpu_count(), "python": platform.python_version()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    return data


def merge_bench_preset(path: Path, section: str, preset: str, values: dict) -> dict:
    """Replace the keys ``values`` has in one preset's figures of ``section``
    (``section/preset/key``), keeping every other figure."""
    path = Path(path)
    data = json.loads(path.read_text()) if path.exists() else {}
    current = data.get(section) if isinstance(data.get(section), dict) else {}
    mine = current.get(preset) if isinstance(current.get(preset), dict) else {}
    return merge_bench(path, section, {**current, preset: {**mine, **values}})


def _cold_builds(harness):
    """Build times with an empty cache (Verilator runtime compiled too), then with the
    runtime objects reused (what a changed design costs), then a cache hit."""
    saved = os.environ.get("OPENRDU_CACHE")
    tmp = tempfile.mkdtemp(prefix="openrdu-bench-")
    os.environ["OPENRDU_CACHE"] = tmp
    try:
        cold = build(harness, flow="fast")
        shutil.rmtree(cold.dir)
        warm = build(harness, flow="fast")
        hit = build(harness, flow="fast")
        default = build(harness, flow="default")
    finally:
        if saved is None:
            os.environ.pop("OPENRDU_CACHE", None)
        else:
            os.environ["OPENRDU_CACHE"] = saved
        shutil.rmtree(tmp, ignore_errors=True)
    return {"fast_cold_s": round(cold.seconds, 2),
            "fast_reused_runtime_s": round(warm.seconds, 2),
            "fast_cache_hit_s": round(hit.seconds, 3),
            "default_cold_s": round(default.seconds, 2)}


def _speed(harness, flow, repeats, workdir, lanes):
    b = build(harness, flow=flow)
    best = None
    for i in range(repeats):
        run = run_cocotb(b, FpuArgs(n=FPU_N, lanes=lanes, seed=11 + i),
                         test_dir=workdir / f"{flow}{i}")
        o = run.outputs
        cps = o["cycles"] / o["wall_s"]
        if best is None or cps > best["cycles_per_second"]:
            best = {"cycles": o["cycles"], "wall_s": round(o["wall_s"], 4),
                    "cycles_per_second": round(cps)}
    return best


def _best(build, args, workdir, repeats):
    """Outputs of the fastest (wall clock) of ``repeats`` runs; cycle counts do not vary."""
    best = None
    for i in range(repeats):
        o = run_cocotb(build, args, test_dir=workdir / f"r{i}").outputs
        if best is None or o["wall_s"] < best["wall_s"]:
            best = o
    return best


def _pcu_section(params, repeats, workdir):
    """PCU figures: SIMD fma throughput, systolic GEMM MAC utilization with K = 256,
    simulation speed and Verilator build time."""
    from firmware.compiler.pcu import systolic_tile_rows
    from hdl.pcu.pcu import Pcu
    from .designs import build_design
    b = build_design("pcu", params, log=print)
    lanes, stages = params.pcu_lanes, params.pcu_stages
    n = 8192
    fma = _best(b, PcuSimdArgs(params=params.to_dict(), case="fma", n=n, seed=21),
                workdir / "fma", repeats)
    tm, k = systolic_tile_rows(params), 256
    gemm = {}
    for tiles in (1, 4):
        gemm[tiles] = _best(b, PcuGemmArgs(params=params.to_dict(), m=tm * tiles, n=lanes, k=k,
                                           seed=31), workdir / f"gemm{tiles}", 1)
    # Steady state: the extra cycles of 3 more tiles, fill and drain cancelled out.
    extra_cycles = gemm[4]["cycles"] - gemm[1]["cycles"]
    steady = 3 * tm * lanes * k / (stages * lanes * extra_cycles)
    return {
        "lanes": lanes, "stages": stages,
        "simd_pipeline_latency_cycles": Pcu.latency(params),
        "simd_fma": {"iterations": n, "cycles": fma["cycles"],
                     "results_per_cycle": round(n * lanes / fma["cycles"], 3),
                     "iterations_per_cycle": round(n / fma["cycles"], 4)},
        "systolic_gemm_k256": {
            "tile": f"{tm}x{lanes} outputs, {tm * lanes * k} MACs",
            "one_tile": {"cycles": gemm[1]["cycles"],
                         "mac_utilization": round(gemm[1]["utilization"], 4)},
            "four_tiles": {"cycles": gemm[4]["cycles"],
                           "mac_utilization": round(gemm[4]["utilization"], 4)},
            "steady_state_mac_utilization": round(steady, 4),
        },
        "cycles_per_second": round(fma["cycles"] / fma["wall_s"]),
        "cycles_per_second_gemm": round(gemm[4]["cycles"] / gemm[4]["wall_s"]),
        "verilator_build_s": b.built_seconds,
    }


def _pmu_section(params, workdir):
    """PMU figures: streaming write+read through a double buffer (vectors per cycle), and
    bank-conflict cycles of a column walk under default vs chosen bank bits."""
    from .designs import build_design
    b = build_design("pmu", params, log=print)
    machine = {"params": params.to_dict(), "seed": 41}
    stream = _best(b, PmuArgs(**machine, case="linear", tiles=64, nbuf=2, bank_bits="chosen"),
                   workdir / "stream", 1)
    walk = {bits: _best(b, PmuArgs(**machine, case="transpose", tiles=16, nbuf=2,
                                   bank_bits=bits), workdir / f"walk-{bits}", 1)
            for bits in ("default", "chosen")}
    return {
        "double_buffer_stream": {"vectors": stream["vectors"], "cycles": stream["cycles"],
                                 "vectors_per_cycle": round(stream["vectors_per_cycle"], 4)},
        "column_walk_transpose": {
            bits: {"vectors": o["vectors"], "cycles": o["cycles"],
                   "read_conflict_cycles": o["r_conflicts"],
                   "vectors_per_cycle": round(o["vectors_per_cycle"], 4)}
            for bits, o in walk.items()},
        "cycles_per_second": round(stream["cycles"] / stream["wall_s"]),
        "verilator_build_s": b.built_seconds,
    }


def _rdn_section(params, workdir):
    """RDN figures on the vector fabric: uncontended link throughput, zero-load latency per
    hop, and a bursty many-to-one pattern with and without token-bucket throttling."""
    from hdl.rdn.config import IN_LOCAL, OUT_L0
    from .designs import build_design
    b = build_design("rdn", params, log=print)
    rows, cols = params.rows, params.cols

    def scenario(name, flows, **extra):
        return run_cocotb(b, RdnScenarioArgs(params=params.to_dict(), flows=flows, **extra),
                          test_dir=workdir / name).outputs

    n = 1000
    link = scenario("link", [{"src": [0, 0, IN_LOCAL], "dst": [0, cols - 1, OUT_L0],
                              "when": [0] * n}])
    f = link["flows"]["0"]
    throughput = (n - 1) / (f["last_arrival"] - f["first_arrival"])
    # Zero load: one packet at a time from (0, 0) to each column of row 0 (x + 1 switches).
    spacing, reps = 64, 8
    hop = scenario("hops", [{"src": [0, 0, IN_LOCAL], "dst": [0, x, OUT_L0], "dynamic": True,
                             "rate": 1 / cols,
                             "when": [spacing * (i * cols + x) for i in range(reps)]}
                            for x in range(cols)])
    lat = [hop["flows"][str(x)]["network_latency_min"] for x in range(cols)]
    per_hop = (lat[-1] - lat[0]) / (cols - 1) if cols > 1 else None
    # Bursty many-to-one: every other unit bursts `burst` packets at once, all in step,
    # every `period` cycles, into the unit at (0, 0); the offered load is 0.8 of its port.
    producers = [(x, y) for y in range(rows) for x in range(cols) if (x, y) != (0, 0)]
    burst, bursts = 16, 8
    period = round(len(producers) * burst / 0.8)
    flows = [{"src": [y, x, IN_LOCAL], "dst": [0, 0, OUT_L0], "rate": burst / period,
              "when": [period * (i // burst) for i in range(burst * bursts)]}
             for x, y in producers]
    # Throttled: each producer's bucket at its flow's planned (average) rate
    # (FabricRoutes.throttle_to_rates), burst 2.
    runs = {"unthrottled": scenario("burst-free", flows),
            "throttled": scenario("burst-throttled", flows, throttle_to_rates=2)}
    keys = ("packets", "span_cycles", "throughput", "worst_port_stall", "worst_output_stall",
            "worst_input_stall", "throttled_cycles", "latency_p50", "latency_p99", "latency_max",
            "network_latency_p50", "network_latency_p99")
    many = {k: {x: (round(v[x], 4) if isinstance(v[x], float) else v[x]) for x in keys}
            for k, v in runs.items()}
    free, thr = runs["unthrottled"], runs["throttled"]
    return {
        "link_throughput_packets_per_cycle": round(throughput, 4),
        "link_test": f"{n} packets (0,0) -> ({cols - 1},0), {cols} switches, sink always ready",
        "zero_load_latency_by_switches": {str(x + 1): lat[x] for x in range(cols)},
        "zero_load_latency_per_hop_cycles": per_hop,
        "many_to_one": {
            "pattern": f"{len(producers)} producers x {bursts} bursts of {burst} packets, all "
                       f"released together every {period} cycles, into one unit port "
                       f"(offered load 0.8); throttled: each producer at its planned rate "
                       f"{burst}/{period} (rounded up to 1/256), burst 2",
            **many,
            "stall_reduction": round(free["worst_port_stall"] / max(1, thr["worst_port_stall"]), 2),
            "throughput_ratio": round(thr["throughput"] / free["throughput"], 4),
        },
        "cycles_per_second": round(free["cycles"] / free["wall_s"]),
        "verilator_build_s": b.built_seconds,
    }


def _agcu_stream(params, model, workdir, words, write, seed):
    """One ``agcu_bandwidth`` run: every AGCU streams ``words`` contiguous words from (or
    to) its own HBM segment at once; bytes over the slowest AGCU's busy cycles, and that
    as a fraction of the HBM stub's peak (channels x bytes per cycle)."""
    o = run_cocotb(model, AgcuBandwidthArgs(params=params.to_dict(), words=words, write=write,
                                            seed=seed), test_dir=workdir).outputs
    bpc = o["bytes"] / o["cycles"]
    return {"bytes": o["bytes"], "cycles": o["cycles"], "bytes_per_cycle": round(bpc, 3),
            "fraction_of_hbm_peak": round(bpc / params.hbm_peak_bytes_per_cycle, 4)}


def _agcu_bandwidth(params, model, workdir):
    """AGCU streaming read and write bandwidth, as many words per AGCU as the harness
    streams hold (4096 vector packets). One AGCU port moves one network beat per cycle,
    so the HBM peak needs hbm_channels AGCUs at once."""
    from .designs import AGCU_DEPTH
    words = AGCU_DEPTH * params.pcu_lanes
    out = {"words_per_agcu": words, "agcus": params.agcus,
           "hbm_peak_bytes_per_cycle": params.hbm_peak_bytes_per_cycle,
           "agcu_tags": params.agcu_tags, "hbm_outstanding_per_channel": params.hbm_outstanding}
    for kind, write in (("read", False), ("write", True)):
        out[kind] = _agcu_stream(params, model, workdir / f"agcu-{kind}", words, write, 61)
    return out


def _agcu_tag_sweep(params, workdir, words=1 << 14):
    """Read bandwidth against the bursts an AGCU keeps in flight (Little's law: the
    latency needs about latency / burst beats of bursts in flight per AGCU)."""
    from .designs import build_design
    out = {}
    for tags in (2, 4, 16):
        p = params.replace(name=f"{params.name}-tags{tags}", agcu_tags=tags)
        out[str(tags)] = _agcu_stream(p, build_design("memory", p), workdir / f"tags{tags}",
                                      words, False, 62)["fraction_of_hbm_peak"]
    return {"words_per_agcu": words, "read_fraction_of_hbm_peak_by_agcu_tags": out}


def _memory_section(params, workdir):
    """Memory-system figures: AGCU streaming bandwidth, and a 1 MiB "expert" moved into
    HBM by the DMA engine from DDR versus by the host over the host link (cycles measured
    in RTL, data checked)."""
    from hdl.memory.config import MemoryMap
    from .designs import build_design
    b = build_design("memory", params, log=print)
    mm = MemoryMap(params)
    count = (1 << 20) // 4
    runs = {via: run_cocotb(b, CopyBandwidthArgs(params=params.to_dict(), count=count, via=via,
                                                 seed=51), test_dir=workdir / via).outputs
            for via in ("dma", "host")}
    dma, host = runs["dma"]["cycles"], runs["host"]["cycles"]
    return {
        "agcu_streaming": _agcu_bandwidth(params, b, workdir),
        "expert_bytes": 1 << 20,
        "ddr_to_hbm_dma": {"cycles": dma, "bytes_per_cycle": round((1 << 20) / dma, 3),
                           "ddr_peak_bytes_per_cycle": params.ddr_bytes_per_cycle},
        "host_to_hbm_link": {"cycles": host, "bytes_per_cycle": round((1 << 20) / host, 3),
                             "host_peak_bytes_per_cycle": params.host_bytes_per_cycle,
                             "host_latency": params.host_latency},
        "dma_speedup_over_host": round(host / dma, 3),
        "configured_ddr_over_host_bandwidth": params.ddr_bytes_per_cycle / params.host_bytes_per_cycle,
        "network_beat_bytes": mm.beat_bytes,
        "verilator_build_s": b.built_seconds,
    }


#: Attention heads measured per preset (seq, head dim); larger grids simulate slower.
ATTENTION_SHAPES = {"small": ((128, 32), (128, 64), (16, 64)), "plasticine": ((128, 32), (128, 64))}


def _trace_cost(b, params, workdir, seq=64, d=32, resolution=64):
    """What recording a timeline costs (``sim run --trace``): the fused attention run's
    wall seconds with and without the recorder, best of two each."""
    args = AttentionArgs(params=params.to_dict(), seq=seq, head_dim=d, unfused=False, seed=63)
    wall = {}
    for mode, tl in (("plain", None), ("traced", resolution)):
        wall[mode] = min(run_cocotb(b, args, test_dir=workdir / f"trace-{mode}",
                                    timeline=tl).outputs["wall_s"] for _ in range(2))
    return {"kernel": f"fused attention seq {seq} d {d}", "resolution_cycles": resolution,
            "wall_s": {k: round(v, 4) for k, v in wall.items()},
            "slowdown": round(wall["traced"] / wall["plain"], 3)}


def _attention(b, params, workdir, seq, d):
    """One attention head fused and unfused (each checked by the test it runs)."""
    o = run_cocotb(b, AttentionArgs(params=params.to_dict(), seq=seq, head_dim=d, seed=63),
                   test_dir=workdir / f"attention-{seq}x{d}").outputs
    compulsory = 4 * seq * d * 4        # Q, K, V in once, O out once (FP32 words)
    return {"seq": seq, "head_dim": d, "fused_cycles": o["fusion"]["fused_cycles"],
            "compulsory_bytes": compulsory,
            "unfused_cycles": o["fusion"]["unfused_cycles"],
            "fusion_speedup": round(o["fusion"]["speedup"], 3),
            "fused_exec_cycles": o["cycles"], "program_load_cycles": o["load_cycles"],
            "unfused_program_load_cycles": o["unfused"]["load_cycles"],
            "pcu_utilization_array": round(o["utilization"], 4),
            "hbm_bytes_fused": o["hbm_bytes"],
            "hbm_over_compulsory": round(o["hbm_bytes"] / compulsory, 3),
            "max_rel_err": o["max_rel_err"]}


#: The GEMM of `gemm_array` per preset (issue 17's target shapes); others take small's.
GEMM_ARRAY = {"small": (256, 256, 256), "plasticine": (512, 512, 512)}


#: Layer sizes (inputs per layer) of the kernel-looping table; the first is the default.
LOOP_K = (64, 16, 256)


def _loop_figures(o):
    """Cycles of a looped-vs-launches run (``layer_loop``, ``gemv_loop``) in each mode and
    the looped run's speedups."""
    return {**{f"{mode}_cycles": o[mode]["cycles"] for mode in ("looped", "resident", "reload")},
            "speedup_vs_resident": round(o["speedup_vs_resident"], 3),
            "speedup_vs_reload": round(o["speedup"], 3)}


def _kernel_looping(b, params, workdir, layers=8):
    """A decode-style layer loop (``layers`` GEMVs 1 x lanes x k, one weight set each) as
    one pipelined looped launch, as one launch per layer with the program resident, and
    as one launch per layer that each load the program; for each layer size of
    ``LOOP_K``."""
    rows = []
    for k in LOOP_K:
        o = run_cocotb(b, LayerLoopArgs(params=params.to_dict(), m=1, n=params.pcu_lanes,
                                        k=k, layers=layers, seed=62),
                       test_dir=workdir / f"layer_loop-{k}").outputs
        rows.append({"k": k, "weight_bytes_per_layer": o["weight_bytes"] // layers,
                     "looped_exec_cycles": o["looped"]["exec_cycles"],
                     "resident_exec_cycles": o["resident"]["exec_cycles"],
                     **_loop_figures(o)})
    top = rows[0]
    return {"what": f"decode-style layer loop: {layers} GEMVs (1 x {params.pcu_lanes} x k), "
                    f"one weight set each: one looped launch (one pipelined run, the AGCUs "
                    f"stepping the weight and output arguments) vs {layers} launches with "
                    f"the program resident vs {layers} launches that each load it",
            "layers": layers, "k": top["k"],
            "speedup_vs_resident": top["speedup_vs_resident"],
            "speedup": top["speedup_vs_reload"], "by_layer_size": rows}


#: Decode weight streaming per preset: (d, layers) of the looped GEMV chain (BF16 weights,
#: packed), and the layer sizes d of the table (8 layers each).
#: Decode weight streaming: ((d, layers) of the headline run, the d of the 8-layer rows).
#: On plasticine 64 layers of 256 x 256 (8 MiB): a run of B bytes at a fraction e of the
#: peak, after a program load of P cycles, reaches 1 / (P x 256 / B + 1 / e) of it, so
#: 0.9 needs B >> P x 256 (README).
DECODE = {"small": ((128, 48), (64, 128, 256)), "plasticine": ((256, 64), (64, 256))}


def _gemv_loop(b, params, workdir, d, layers, chain=False):
    o = run_cocotb(b, GemvLoopArgs(params=params.to_dict(), n=d, k=d, layers=layers,
                                   packed=True, chain=chain, partial=True, seed=66),
                   test_dir=workdir / f"gemv_loop-{d}-{layers}{'-chain' if chain else ''}"
                   ).outputs
    return o, {"d": d, "layers": layers, "weight_bytes_per_layer": 2 * d * d,
               "hbm_bytes": o["looped"]["hbm_bytes"], "compulsory_bytes": o["compulsory_bytes"],
               "hbm_bw_utilization": round(o["hbm_bw_utilization"], 4), **_loop_figures(o)}


def _decode(b, params, workdir):
    """Decode weight streaming: a chain of GEMV layers (d x d BF16 weights each, packed two
    per word, its own input and output) as one looped launch vs launches with the program
    resident vs launches that reload it; HBM traffic over the whole looped run (record
    fetch, program load, execution) against the HBM peak."""
    (d, layers), sizes = DECODE.get(params.name, DECODE["small"])
    o, top = _gemv_loop(b, params, workdir, d, layers)
    chained = _gemv_loop(b, params, workdir, d, layers, chain=True)[1]
    rows = [_gemv_loop(b, params, workdir, size, 8)[1] for size in sizes]
    lo = o["looped"]
    return {"what": f"decode weight streaming: {layers} GEMV layers of {d} x {d} BF16 "
                    f"weights packed two per word (the weights of {layers // 12} "
                    f"Llama-style layers of d_model {d}, 12 d^2 each), {o['streams']} AGCU "
                    f"streams into {o['shares']} PCUs, one looped launch of a partial "
                    f"bitstream ({o['beats']} beats)",
            "d": d, "layers": layers, "shares": o["shares"], "streams": o["streams"],
            "cycles": lo["cycles"], "load_cycles": lo["load_cycles"],
            "exec_cycles": lo["exec_cycles"], "hbm_bytes": lo["hbm_bytes"],
            "compulsory_bytes": o["compulsory_bytes"],
            "hbm_peak_bytes_per_cycle": params.hbm_peak_bytes_per_cycle,
            "hbm_bw_utilization": round(o["hbm_bw_utilization"], 4),
            "useful_bw_utilization": round(o["useful_bw_utilization"], 4),
            "execute_useful_bw_utilization": round(o["exec_useful_bw_utilization"], 4),
            "looping": {"speedup_vs_resident": top["speedup_vs_resident"],
                        "speedup_vs_reload": top["speedup_vs_reload"],
                        "resident_cycles": top["resident_cycles"],
                        "reload_cycles": top["reload_cycles"],
                        "by_layer_size": rows},
            "chained": {"what": "the same layers chained: each layer's input is the layer "
                                "before's output, through HBM (the looped launch waits, per "
                                "layer, for every store before any next load)",
                        **{key: chained[key] for key in (
                            "looped_cycles", "resident_cycles", "reload_cycles",
                            "hbm_bw_utilization", "speedup_vs_resident",
                            "speedup_vs_reload")}}}


def _gemm_array(args, runs):
    """The GEMM on as many PCUs as it can use, once per A layout (``runs``: {layout:
    outputs}): utilization over the whole array, and HBM traffic against the compulsory
    bytes (A, B in once, C out once). The top-level figures are the faster layout's."""
    m, n, k = args.m, args.n, args.k
    compulsory = 4 * (m * k + k * n + m * n)
    per = {lay: {"pcus": o["active_pcus"], "cycles": o["cycles"],
                 "pcu_utilization_array": round(o["utilization"], 4),
                 "useful_pcu_utilization_array": round(
                     m * n * k / (o["macs"] or 1) * o["utilization"], 4),
                 "hbm_bytes": o["hbm_bytes"],
                 "hbm_over_compulsory": round(o["hbm_bytes"] / compulsory, 3)}
           for lay, o in runs.items()}
    best = min(per, key=lambda lay: per[lay]["cycles"])
    return {"m": m, "n": n, "k": k, "a_layout": best, **per[best],
            "compulsory_bytes": compulsory, "a_layouts": per}


def _placement_seconds():
    """Wall time of placing and routing the largest kernels on the plasticine grid (pure
    Python: the compiler, not the simulator): the fused attention (seq 128, d 64, as
    :func:`attention_plan` picks it: two pipelines of five PCUs and six PMUs) and the
    512^3 GEMM on as many PCUs as place (24 units, flows off dimension order: negotiated
    routing)."""
    import time
    from firmware.compiler.place import place_and_route
    from firmware.kernels.attention import attention_placement
    from firmware.kernels.gemm import GemmShape, gemm_pcus, parallel_flows
    from hdl.params import PRESETS
    p = PRESETS["plasticine"]
    att_units, vec, sca = attention_placement(p, 128, 64)
    n = GEMM_ARRAY["plasticine"]
    s = GemmShape.of(p, *n, pcus=gemm_pcus(p, *n))
    units, flows = parallel_flows(p, s)
    out = {}
    for name, go in (("attention", lambda: place_and_route(p, "attention", att_units,
                                                           vec=vec, sca=sca)),
                     ("gemm_array", lambda: place_and_route(p, "gemm", units, vec=flows))):
        t = time.perf_counter()
        go()
        out[name] = round(time.perf_counter() - t, 3)
    return out


#: Composition of Experts per preset: experts, HBM slots, requests, d, layers.
COE = {"small": (8, 3, 24, 128, 4), "plasticine": (8, 3, 24, 256, 4)}


def _coe(b, params, workdir):
    """Composition of Experts: requests (experts drawn with weight 1 / (e + 1)) served
    from HBM slots, misses switched in from DDR by the sequencer's DMA; the same expert
    written over the host link for the baseline."""
    experts, slots, requests, d, layers = COE.get(params.name, COE["small"])
    o = run_cocotb(b, CoeArgs(params=params.to_dict(), experts=experts, slots=slots,
                              requests=requests, d=d, layers=layers, seed=67),
                   test_dir=workdir / "coe").outputs
    return {"what": f"{requests} requests over {experts} experts ({layers} chained GEMV "
                    f"layers of {d} x {d} BF16 each, {4 * o['expert_words']} bytes), "
                    f"{slots} HBM slots (LRU)",
            "experts": experts, "slots": slots, "requests": requests, "d": d,
            "layers": layers, **_coe_figures(o)}


#: CoE with decoder experts: (experts, slots, requests, d_model, hidden, layers, tokens).
COE_DECODER = {"small": (8, 3, 12, 64, 128, 2, 2), "plasticine": (8, 3, 12, 128, 256, 2, 2)}


def _coe_decoder(b, params, workdir):
    """Composition of Experts whose experts are decoders: each request routed on the
    device, its expert switched in from DDR on a miss, then its tokens generated."""
    experts, slots, requests, d, hidden, layers, tokens = COE_DECODER.get(
        params.name, COE_DECODER["small"])
    o = run_cocotb(b, CoeArgs(params=params.to_dict(), decoder=True, experts=experts,
                              slots=slots, requests=requests, d=d, hidden=hidden,
                              layers=layers, tokens=tokens, seed=69),
                   test_dir=workdir / "coe-decoder").outputs
    return {"what": f"{requests} requests over {experts} decoder experts ({layers} layers of "
                    f"d_model {d}, SiLU MLP {hidden}, BF16, {4 * o['expert_words']} bytes "
                    f"each), {slots} HBM slots (LRU), {tokens} tokens a request",
            "experts": experts, "slots": slots, "requests": requests, "d_model": d,
            "hidden": hidden, "layers": layers, "tokens": tokens, **_coe_figures(o)}


def _coe_figures(o):
    """A CoE run's figures: hits, misses, routing and decode cycles, the expert switch
    by DMA vs the host link, and the run's cycles had every miss gone over the host link."""
    reqs = o["requests"]
    miss = [q for q in reqs if not q["hit"]]
    hit = [q for q in reqs if q["hit"]]
    mean = lambda qs, key: round(sum(q[key] for q in qs) / len(qs), 1) if qs else None  # noqa: E731
    sw = o["switch"]
    return {"expert_bytes": 4 * o["expert_words"], "hits": len(hit),
            "misses": len(miss), "cycles": o["cycles"],
            "mean_route_cycles": mean(reqs, "route_cycles"),
            "router_matches_float64": all(q["expert"] == q["float64_choice"] for q in reqs),
            "mean_hit_decode_cycles": mean(hit, "decode_cycles"),
            "mean_miss_decode_cycles": mean(miss, "decode_cycles"),
            "switch": {key: round(v, 3) for key, v in sw.items()},
            # The same requests with each miss's copy at the host link's measured cycles.
            "cycles_if_switched_by_host": o["cycles"] + len(miss) * (
                sw["host_cycles"] - sw["dma_cycles"])}


#: The decoder bench: (d_model, hidden, layers, tokens, batches, the batch also run as a
#: launch a sequence) per preset.
DECODER = {"small": (64, 128, 2, 4, (1, 2, 4, 8), 4), "plasticine": (128, 256, 2, 4, (1, 8), 8)}


def _decoder(b, params, workdir):
    """LLM decode: tokens generated in a row by the decoder (a launch list a position,
    a kernel per step, looped over the batch), at each batch size: tokens/s, where the
    cycles go (program loads vs the kernels), HBM bytes and utilization."""
    d, hidden, layers, tokens, batches, compared = DECODER.get(params.name, DECODER["small"])
    rows = []
    for batch in batches:
        o = run_cocotb(b, DecoderArgs(params=params.to_dict(), d_model=d, hidden=hidden,
                                      layers=layers, tokens=tokens, batch=batch, seed=68,
                                      looping=batch == compared),
                       test_dir=workdir / f"decoder-{batch}").outputs
        if batch == compared:
            looping = {"batch": batch, **{k: round(v, 3) if isinstance(v, float) else v
                                          for k, v in o["looping"].items()}}
        loads = sum(q["load_cycles"] for q in o["tokens"])
        rows.append({"batch": batch, "cycles": o["cycles"],
                     "cycles_per_position": round(o["cycles"] / tokens, 1),
                     "tokens_per_s_at_1ghz": round(o["tokens_per_s_at_1ghz"]),
                     "program_load_fraction": round(loads / o["cycles"], 4),
                     "hbm_bytes": o["hbm_bytes"],
                     "hbm_bw_utilization": round(o["hbm_bw_utilization"], 4),
                     "records_per_position": o["launches_per_token"],
                     "bound_fraction": round(o["bound_fraction"], 4)})
    return {"what": f"{tokens} tokens in a row, {layers} layers of d_model {d}, MLP {hidden} "
                    f"(SiLU), BF16 weights ({o['weight_bytes']} bytes), a kernel per step "
                    f"(14 a layer), each looped over the batch",
            "d_model": d, "hidden": hidden, "layers": layers, "tokens": tokens,
            "weight_bytes": o["weight_bytes"], "batches": rows, "looping": looping,
            "batch_speedup": round(rows[-1]["tokens_per_s_at_1ghz"] /
                                   rows[0]["tokens_per_s_at_1ghz"], 3)}


#: The busy kernel of the socket's simulation speed per preset: a GEMM whose column tiles
#: cover every PCU of the array.
SPEED_GEMM = {"small": (128, 128, 256), "plasticine": (256, 256, 256)}


def _sim_speed(b, params, workdir, repeats=2):
    """The socket's simulation speed (simulated cycles, program load included, per wall
    second of the run; best of ``repeats``) on a busy kernel (a GEMM on every PCU), a
    mostly idle one (a small softmax: one PCU pipeline) and ``make sim``'s default job
    (the fused attention head of ``sim run attention``)."""
    m, n, k = SPEED_GEMM.get(params.name, SPEED_GEMM["small"])
    p = params.to_dict()
    runs = {"busy": (f"gemm {m}x{n}x{k} on every PCU",
                     GemmArgs(params=p, m=m, n=n, k=k, pcus=0, c_tiles=True, seed=66)),
            "idle": ("softmax 64 x 100 (3 PCUs in SIMD mode)", SoftmaxArgs(params=p, seed=66)),
            "default_job": ("make sim: fused attention 128 x 32", AttentionArgs(params=p))}
    out = {}
    for name, (what, args) in runs.items():
        o = min((run_cocotb(b, args, test_dir=workdir / f"speed-{name}").outputs
                 for _ in range(repeats)), key=lambda o: o["wall_s"])
        out[name] = {"kernel": what, "sim_cycles": o["sim_cycles"],
                     "wall_s": round(o["wall_s"], 4),
                     "cycles_per_second": round(o["sim_cycles"] / o["wall_s"])}
    return {"sim_cycles_per_second": out["busy"]["cycles_per_second"], "sim_speed": out}


def _socket_gemms(b, params, workdir, shape):
    """The GEMM on one PCU and on two (``shape``)."""
    m, n, k = shape
    gemm = GemmArgs(params=params.to_dict(), m=m, n=n, k=k, pcus=1, seed=61)
    o = run_cocotb(b, gemm, test_dir=workdir / "gemm").outputs
    o2 = run_cocotb(b, dataclasses.replace(gemm, pcus=2), test_dir=workdir / "gemm2").outputs
    return {
        "gemm_two_pcus": {"m": m, "n": n, "k": k, "cycles": o2["cycles"],
                          "pcu_utilization_array": round(o2["utilization"], 4),
                          "active_pcu_utilization": round(o2["active_pcu_utilization"], 4)},
        "gemm": {"m": m, "n": n, "k": k, "cycles": o["cycles"], "macs": o["macs"],
                 "pcu_utilization_array": round(o["utilization"], 4),
                 "active_pcu_utilization": round(o["active_pcu_utilization"], 4),
                 "program_load_cycles": o["load_cycles"], "config_beats": o["beats"],
                 "hbm_bytes": o["hbm_bytes"],
                 "hbm_bw_utilization": round(o["hbm_bw_utilization"], 4)}}


def _socket_gemm_array(b, params, workdir):
    gm, gn, gk = GEMM_ARRAY.get(params.name, GEMM_ARRAY["small"])
    # C tile by tile: a few long store bursts per tile (row-major C's one-row bursts each
    # hold an HBM request slot for a whole latency and starve the operand streams).
    big = GemmArgs(params=params.to_dict(), m=gm, n=gn, k=gk, pcus=0, c_tiles=True, seed=65)
    # A streamed from HBM in the systolic layout, or row-major and held by a PMU per row
    # tile (A-stationary, multicast to the PCUs).
    arr = {lay: run_cocotb(b, dataclasses.replace(big, a_rows=rows),
                           test_dir=workdir / f"gemm_array-{lay}").outputs
           for lay, rows in (("systolic_streamed", False), ("row_major_stationary", True))}
    return _gemm_array(big, arr)


def _socket_mlp(b, params, workdir):
    mlp_args = MlpArgs(params=params.to_dict(), seed=64)       # the CLI's default shape
    mlp = run_cocotb(b, mlp_args, test_dir=workdir / "mlp").outputs
    return {"shape": {f: getattr(mlp_args, f) for f in ("m", "k", "hidden", "n", "bias")},
            "what": "Y = relu(X W1 + b1) W2 as a graph: one fused "
                    "kernel vs op by op (two GEMMs, H through HBM)",
            "fused_cycles": mlp["fused"]["cycles"], "unfused_cycles": mlp["unfused"]["cycles"],
            "fused_program_load_cycles": mlp["fused"]["load_cycles"],
            "unfused_program_load_cycles": mlp["unfused"]["load_cycles"],
            "fusion_speedup": round(mlp["speedup"], 3), "max_abs_err": mlp["max_abs_err"]}


#: The socket section's parts: name -> (b, params, workdir) -> its figures (a part that
#: returns several keys is named by a tuple).
SOCKET_PARTS = {
    "kernel_looping": _kernel_looping, "decode": _decode, "coe": _coe,
    "coe_decoder": _coe_decoder, "decoder": _decoder,
    ("gemm", "gemm_two_pcus"): lambda b, p, w: _socket_gemms(b, p, w, (112, 32, 256)),
    ("sim_cycles_per_second", "sim_speed"): _sim_speed,
    "gemm_array": _socket_gemm_array, "mlp": _socket_mlp,
    "placement_s": lambda b, p, w: _placement_seconds(),
    "attention": lambda b, p, w: [_attention(b, p, w, seq, d) for seq, d in
                                  ATTENTION_SHAPES.get(p.name, ((128, 32),))],
    "trace_cost": _trace_cost,
}


def _socket_section(params, workdir, parts=None):
    """The socket end to end: its Verilator build time, GEMMs (one PCU, two, every PCU
    over the array: utilization MACs / (PCUs x STAGES x LANES x cycles), program-load
    cycles, HBM traffic), the fused MLP and attention heads vs unfused (cycles each with
    its program loads, the fusion speedup), kernel looping, decode weight streaming,
    Composition of Experts, the decoder, the placer's time, the socket's simulation speed
    and what a timeline costs. ``parts``: only those (names of ``SOCKET_PARTS``). Each
    run is checked bit-exactly by the test it runs."""
    from .designs import build_design
    b = build_design("socket", params, log=print)
    out = {"verilator_build_s": b.built_seconds}
    for name, part in SOCKET_PARTS.items():
        names = name if isinstance(name, tuple) else (name,)
        if parts is not None and not set(names) & set(parts):
            continue
        got = part(b, params, workdir)
        out.update(got if isinstance(name, tuple) else {name: got})
    return out


def _robustness_section(params, workdir, seeds=(1, 2, 3, 4), runs=6):
    """The randomized socket regression at scale: every stress kernel (``tb.lib.stress``)
    ``runs`` times per seed on ``params`` with random memory latency, each run with new
    inputs, a random start phase and random token buckets on its injection ports; each
    checked by the test (bit-exact against the reference backend, every link balanced,
    nothing dropped, the same packet counts every run) and summed here."""
    from tb.lib.stress import jittered
    from .designs import build_design
    p = jittered(params) if not params.mem_jitter else params
    b = build_design("socket", p, log=print)
    t0 = time.perf_counter()
    sums = ("runs", "packets", "links_checked", "lost", "duplicated", "dropped",
            "mismatched_words", "words_checked", "throttled_ports", "reordered_responses")
    fig = {"config": p.name, "mem_jitter": p.mem_jitter, "seeds": list(seeds),
           "runs_per_kernel_and_seed": runs, **{k: 0 for k in sums}, "kernels": {}}
    for seed in seeds:
        o = run_cocotb(b, StressArgs(params=p.to_dict(), seed=seed, runs=runs),
                       test_dir=workdir / f"stress-{seed}").outputs
        for k in sums:
            fig[k] += o[k]
        for name, c in o["cases"].items():
            kc = fig["kernels"].setdefault(name, {"shapes": [], "packets": 0, "cycles": []})
            kc["shapes"].append(c["shape"])
            kc["packets"] += c["packets"] * len(c["cycles"])
            kc["cycles"] += c["cycles"]
    for kc in fig["kernels"].values():
        cycles = kc.pop("cycles")
        kc.update(runs=len(cycles), cycles_min=min(cycles), cycles_max=max(cycles))
    fig["wall_s"] = round(time.perf_counter() - t0, 1)
    return fig


#: The configuration sweep (issue 20): ``small`` with one knob turned, and the HBM series
#: (bytes per cycle per channel; small's is 32). Each is a socket build of its own.
CONFIG_SWEEP = {"lanes4": {"pcu_lanes": 4}, "lanes16": {"pcu_lanes": 16, "pmu_banks": 16},
                "stages3": {"pcu_stages": 3}, "grid3x4": {"rows": 3, "cols": 4},
                "agcus4_4x4": {"rows": 4, "cols": 4, "agcus": 4, "hbm_channels": 4}}
HBM_SERIES = (16, 32, 64, 128)
#: What each configuration runs (the CLI's kernels and options).
SWEEP_KERNELS = {"gemm": {"m": 128, "n": 128, "k": 128, "pcus": 0},
                 "attention": {"seq": 64, "head_dim": 32}}


def _sweep_run(params, workdir):
    """Every sweep kernel on ``params`` (``sim.run.run_kernel``: checked bit-exactly): its
    figures, or the reason it was refused (found by compiling it, before the build)."""
    from .run import check_run, run_kernel
    out = {}
    for name, options in SWEEP_KERNELS.items():
        try:
            check_run(name, params, options)
        except ValueError as e:
            out[name] = {"refused": str(e)}
            continue
        r = run_kernel(name, params, seed=67, options=options, log=lambda *_: None,
                       run_dir=workdir / f"{params.name}-{name}")
        if not (r["passed"] and r["bit_exact"]):
            raise RuntimeError(f"{name} on {params.name}: {r.get('error', 'not bit-exact')}")
        out[name] = {"cycles": r["cycles"], "program_load_cycles": r["program_load_cycles"],
                     "pcu_utilization_array": round(r["pcu_utilization"], 4),
                     "hbm_bytes": r["hbm_bytes"],
                     "hbm_bw_utilization": round(r["hbm_bw_utilization"], 4)}
        if "fusion" in r:
            out[name]["unfused_cycles"] = r["fusion"]["unfused_cycles"]
    return out


def _knee(series):
    """The HBM width past which doubling it gains a kernel under 10% ({width: cycles})."""
    widths = sorted(series)
    for lo, hi in zip(widths, widths[1:]):
        if series[lo] / series[hi] < 1.1:
            return lo
    return None


def _config_section(workdir):
    """Configurations x kernels: cycles, utilization and HBM bandwidth of each, or why it
    was refused; and the HBM-bandwidth series with each kernel's knee (the width after
    which it is compute or latency bound)."""
    from hdl.params import PRESETS
    small = PRESETS["small"]
    configs = {f"hbm{w}": {"hbm_bytes_per_cycle": w} for w in HBM_SERIES}
    configs.update(CONFIG_SWEEP)
    table = {}
    for name, knobs in configs.items():
        same = all(getattr(small, k) == v for k, v in knobs.items())
        p = small if same else small.replace(name=f"small-{name}", **knobs)
        table[name] = {"knobs": knobs, **_sweep_run(p, workdir)}
    series = {}
    for k in SWEEP_KERNELS:
        cyc = {w: table[f"hbm{w}"][k]["cycles"] for w in HBM_SERIES
               if "cycles" in table[f"hbm{w}"][k]}
        series[k] = {"cycles_by_hbm_bytes_per_cycle": cyc, "knee": _knee(cyc)}
    return {"kernels": SWEEP_KERNELS, "configs": table, "hbm_series": series}


def run_socket_parts(presets, parts, out: Path):
    """Only the socket section's ``parts`` (names of :data:`SOCKET_PARTS`) on each of
    ``presets`` ({name: params}), merged into ``out`` key by key (its socket build time
    too); e.g. the simulation speed after a change to the hardware."""
    known = {n for name in SOCKET_PARTS for n in (name if isinstance(name, tuple) else (name,))}
    unknown = sorted(set(parts) - known)
    if unknown:
        raise ValueError(f"unknown socket bench parts {unknown}; known: {sorted(known)}")
    figures = {}
    for name, p in presets.items():
        figures[name] = _socket_section(p, Path("build") / "bench-runs" / f"socket-{name}",
                                        parts)
        merge_bench_preset(out, "socket", name, figures[name])
    return figures


def time_regression(out: Path, repo=Path(".")):
    """``make test`` on a clean clone of ``repo``'s HEAD with an empty model cache (what
    ``.ci/run`` does): its wall seconds, in ``out`` under ``regression``."""
    tmp = Path(tempfile.mkdtemp(prefix="openrdu-regression-"))
    try:
        import subprocess
        clone = tmp / "clone"
        subprocess.run(["git", "clone", "-q", str(Path(repo).resolve()), str(clone)], check=True)
        env = {**os.environ, "OPENRDU_CACHE": str(tmp / "cache")}
        t0 = time.perf_counter()
        last = ""
        # make test's own output, line by line (its progress), prefixed.
        with subprocess.Popen(["make", "test"], cwd=clone, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
            for line in proc.stdout:
                print(f"  make test: {line.rstrip()}", flush=True)
                last = line.strip() or last
        wall = time.perf_counter() - t0
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone,
                                capture_output=True, text=True).stdout.strip()
        result = {"make_test_cold_s": round(wall, 1), "passed": proc.returncode == 0,
                  "commit": commit, "cpus": os.cpu_count(), "summary": last,
                  "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    merge_bench(out, "regression", result)
    return result


def run_bench(params, out: Path, quick=False):
    repeats = 1 if quick else 5
    t0 = time.perf_counter()

    def say(what):     # progress: a line per section (long runs, CI logs)
        print(f"bench: {what} ({time.perf_counter() - t0:.0f} s)", flush=True)
    say("foundation (FPU builds and speed)")
    harness = harness_for("fpu", params)
    workdir = Path("build") / "bench-runs"
    results = {
        "design": f"fpu: {params.pcu_lanes}-lane SIMD FPU (every numerics unit per lane) behind "
                  f"one stream, HDL stream drivers",
        "vectors_per_run": FPU_N,
        "repeats": repeats,
        "verilator_build": _cold_builds(harness),
        "fast_flow": _speed(harness, "fast", repeats, workdir, params.pcu_lanes),
        "default_flow": _speed(harness, "default", repeats, workdir, params.pcu_lanes),
        "flows": {
            "fast": "clock generated in HDL (--timing), --no-public-flat-rw + .vlt exposing "
                    "only tb_top control/status variables",
            "default": "cocotb runner's Verilator flags (--public-flat-rw: every signal "
                       "public), clock driven by cocotb's Clock",
        },
    }
    results["fast_over_default"] = round(
        results["fast_flow"]["cycles_per_second"] / results["default_flow"]["cycles_per_second"], 2)
    merge_bench(out, "foundation", results)
    from hdl.params import PRESETS
    presets = {"config": params} if quick else {"small": PRESETS["small"],
                                                "plasticine": PRESETS["plasticine"]}
    say("pcu")
    pcu = {name: _pcu_section(p, repeats, workdir / f"pcu-{name}") for name, p in presets.items()}
    merge_bench(out, "pcu", pcu)
    say("pmu")
    pmu = {name: _pmu_section(p, workdir / f"pmu-{name}") for name, p in presets.items()}
    merge_bench(out, "pmu", pmu)
    # The stand-alone RDN top of the plasticine grid does not elaborate: Amaranth allows a
    # top module at most 65536 input bits, and its flat config port plus every unit stream
    # exceed that. It runs once configuration arrives over the config controller's bus.
    say("rdn")
    rdn = {name: _rdn_section(p, workdir / f"rdn-{name}") for name, p in presets.items()
           if name != "plasticine"}
    merge_bench(out, "rdn", rdn)
    say("memory")
    memory = {name: _memory_section(p, workdir / f"memory-{name}") for name, p in presets.items()}
    first = next(iter(presets))
    memory[first]["agcu_tag_sweep"] = _agcu_tag_sweep(presets[first],
                                                      workdir / f"memory-{first}-tags")
    merge_bench(out, "memory", memory)
    say("socket")
    socket = {name: _socket_section(p, workdir / f"socket-{name}")
              for name, p in presets.items()}
    merge_bench(out, "socket", socket)
    # The small socket only: a jittered plasticine socket would be one more long build.
    say("robustness")
    robust = {first: _robustness_section(presets[first], workdir / f"robustness-{first}")}
    merge_bench(out, "robustness", robust)
    # Nine socket builds: left out of a quick run.
    if not quick:
        say("configs")
    configs = None if quick else _config_section(workdir / "configs")
    if configs is not None:
        merge_bench(out, "configs", configs)
    return {"foundation": results, "pcu": pcu, "pmu": pmu, "rdn": rdn, "memory": memory,
            "socket": socket, "robustness": robust, "configs": configs}
