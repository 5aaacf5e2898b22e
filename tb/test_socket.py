"""cocotb: the whole socket on Verilator — program load from HBM by the config
controller, kernels run by the kernel sequencer, results read from device memory.

Arguments (the test's dataclass in :mod:`tb.lib.args`): ``config``/``params``, ``seed``, and per test:

* ``scale_bias``: ``n`` words, ``iterations``: y = relu(x * scale + bias) through one
  PCU, looped over ``iterations`` slices with the AGCU strides; bit-exact against the
  reference, close to float64 numpy; program-load cycles = config beats (+ latency).
* ``looping``: the same ``iterations`` slices once by kernel looping (one launch, one
  program load) and once as separate launches (reloading the program each time): same
  results; looping loads the program once.
* ``gemm``: C = A @ B (``m``, ``n``, ``k``; epilogue ``bias``, ``relu``, ``bf16``; ``a_rows``:
  A stored row-major, transposed on chip by a PMU; ``pcus``: PCUs sharing the column tiles, 0 = all it can use) on one PCU's
  systolic array fed by AGCU load streams, C back by a store stream: bit-exact against
  the PCU reference, within k FP32 roundings of float64; outputs the cycles and MACs.
* ``softmax``: ``rows`` x ``n`` row softmax (rows longer than the lanes) through three
  PCUs and two PMUs: bit-exact against the PCU references and the reference backend's
  whole Y buffer, within ``softmax_bound`` of float64.
* ``attention``: one head, ``seq`` x ``head_dim``, fused (one kernel, S and P on chip)
  and, with ``unfused`` (default 1), unfused (three kernels through HBM): each bit-exact
  against its reference backend run (whole O buffer) and the fused one against its PCU
  references, both within ``attention_bound`` of float64; outputs the fused run's report
  and both cycle counts. ``max_rel_err``: the error relative to sum_j p_ij |v_j|.
* ``attention_heads``: ``heads`` attention heads (``seq`` x ``head_dim``) by kernel looping
  (one launch, the Q, [K^T|V] and O arguments stepped per head) and by separate launches
  (each loading the program): the same O as each head's reference; outputs both cycle
  counts.
* ``layer_loop``: ``layers`` GEMMs (``m``, ``n``, ``k``) with one weight set each — by
  kernel looping (one launch, one pipelined run: the AGCUs step the weight and output
  arguments per iteration), by one launch per layer with the program resident, and by
  one launch per layer that each load the program (kernel-by-kernel): the same bits,
  equal to the reference backend; outputs the three cycle counts.
* ``graph``: a two-op graph (``h = relu(x @ w)``, ``y = h * 0.5 + 1``; with ``attention``:
  ``y = softmax(2 attention(q, k, v)) * 3 - 1``) compiled to a kernel per op run as one
  launch list: the output equals the reference backend's, bit for bit.
* ``fault``: an AGCU access outside its segment stops the sequencer with FAULT and the
  address; memory outside the segment unchanged.
* ``timeout``: a kernel whose writer waits for more data than the PCU sends stops with
  TIMEOUT instead of hanging.
* ``stress``: each of ``cases`` (``tb.lib.stress``) ``runs`` times, each run with new
  inputs, a random start phase and random token buckets on the kernel's injection ports:
  bit-exact against the reference backend, no packet dropped, every link's packets sent
  = received, every port's packet count the same in every run; outputs the figure.
"""

import math
import random
import time

import cocotb
import numpy as np

from firmware.coe import CoeShape, DecoderExperts, Experts, request_input, router_weights
from firmware.decoder import Decoder, DecoderShape
from firmware.compiler.agcu import Segment, TensorAccess, pack_agcu
from firmware.compiler.bitstream import BEAT_WORDS
from firmware.compiler.program import kernel_program
from firmware import numerics as N
from firmware.kernels.elementwise import compile_scale_bias
from firmware.kernels.gemm import GemmShape, compile_gemm, gemm_pcus
from firmware.runtime.launch import Launch, LaunchError
from firmware.runtime.reference import ReferenceDevice
from firmware.runtime.rtl import DeviceError, RtlDevice
from hdl.tile import is_pcu
from tb.lib.args import (
    AttentionArgs, AttentionHeadsArgs, CoeArgs, DecoderArgs, DmaRefusedArgs, FaultArgs, FaultsArgs,
    GemmArgs,
    GemvLoopArgs, GraphArgs, LayerLoopArgs, LoopingArgs, MlpArgs, ScaleBiasArgs, SoftmaxArgs, StressArgs,
    TimeoutArgs)
from tb.lib.decoder import check_batch, decoder_weights
from tb.lib.gemv import check_gemv, gemv_inputs
from tb.lib.harness import TbHarness, write_outputs
from tb.lib.hostlink import host_write
from tb.lib.memimage import MemoryImage
from tb.lib.timeline import start_timeline


async def _setup(dut, cls):
    args = cls.from_env()
    params = args.machine()
    tb = TbHarness(dut)
    await tb.reset()
    start_timeline(tb, params)
    dev = RtlDevice(tb, params, MemoryImage(params))
    return args, params, dev, random.Random(args.seed)


def _floats(rng, n):
    return np.array([rng.gauss(0, 4) for _ in range(n)], np.float32).view(np.uint32)


def _check(got, want, x, scale, bias, what):
    bad = np.nonzero(got != want)[0]
    assert not len(bad), (f"{what}: {len(bad)} words differ from the reference, first at "
                          f"{bad[0]}: {got[bad[0]]:#010x} != {want[bad[0]]:#010x}")
    exact = np.maximum(x.view(np.float32).astype(np.float64) * scale + bias, 0)
    err = np.abs(got.view(np.float32) - exact)
    # Two FP32 roundings (product, sum): within 2 ulp of the larger magnitude involved.
    tol = 2 * np.spacing(np.maximum(np.abs(exact), np.abs(x.view(np.float32) * scale))
                         .astype(np.float32)).astype(np.float64)
    worst = int(np.argmax(err - tol))
    assert (err <= tol).all(), f"{what}: word {worst} off float64 by {err[worst]:g}"


def _slices(words):
    """Arguments of the scale_bias kernel: both streams moved by ``words``."""
    return {(0, "load"): words, (1, "store"): words}


@cocotb.test()
async def scale_bias(dut):
    args, params, dev, rng = await _setup(dut, ScaleBiasArgs)
    n, iters = args.n, args.iterations
    scale, bias = rng.uniform(-3, 3), rng.uniform(-2, 2)
    x = dev.alloc.alloc("hbm", n * iters, "x")
    y = dev.alloc.alloc("ddr" if args.ddr else "hbm", n * iters, "y")
    xs = _floats(rng, n * iters)
    await dev.write(x, xs)
    k = compile_scale_bias(params, n, x=x, y=y, scale=scale, bias=bias, relu=True)
    prog = await dev.load(k.program)
    c = await dev.run([prog.launch(iterations=iters, strides=_slices(n))])
    got = await dev.read(y, n * iters)
    want = np.concatenate([k.reference(params, xs[i * n:(i + 1) * n]) for i in range(iters)])
    _check(got, want, xs, np.float32(scale), np.float32(bias), "scale_bias")
    seq = c["seq"]
    assert seq["launched"] == 1 and seq["iterations"] == iters
    # The config bus takes one beat per cycle: a load is never faster than its beats.
    assert seq["load_cycles"] >= k.program.beats
    assert c["unit_busy"][0] > 0 and not any(c["unit_busy"][1:]), c["unit_busy"]
    assert c["vec"][0]["out"][4]["packets"] == iters * -(-n // params.pcu_lanes)
    write_outputs(load_cycles=seq["load_cycles"], exec_cycles=seq["exec_cycles"],
                  cycles=seq["cycles"], beats=k.program.beats)


@cocotb.test()
async def looping(dut):
    args, params, dev, rng = await _setup(dut, LoopingArgs)
    n, iters = args.n, args.iterations
    x = dev.alloc.alloc("hbm", n * iters, "x")
    y1 = dev.alloc.alloc("hbm", n * iters, "y looped")
    y2 = dev.alloc.alloc("hbm", n * iters, "y launches")
    xs = _floats(rng, n * iters)
    await dev.write(x, xs)
    k1 = compile_scale_bias(params, n, x=x, y=y1, scale=1.5, bias=-0.25)
    k2 = compile_scale_bias(params, n, x=x, y=y2, scale=1.5, bias=-0.25)
    p1, p2 = await dev.load(k1.program), await dev.load(k2.program)
    c1 = await dev.run([p1.launch(iterations=iters, strides=_slices(n))])
    looped = await dev.read(y1, n * iters)
    c2 = await dev.run([p2.launch(offsets=_slices(i * n)) for i in range(iters)])
    separate = await dev.read(y2, n * iters)
    assert (looped == separate).all(), "kernel looping and separate launches differ"
    want = np.concatenate([k1.reference(params, xs[i * n:(i + 1) * n]) for i in range(iters)])
    assert (looped == want).all(), "looped results differ from the reference"
    # The reference backend runs the same launch records to the same memory.
    ref = ReferenceDevice(params)
    rx, ry1, ry2 = (ref.alloc.alloc(b.region, b.words, b.name) for b in (x, y1, y2))
    await ref.write(rx, xs)
    rp1, rp2 = await ref.load(k1.program), await ref.load(k2.program)
    await ref.run([rp1.launch(iterations=iters, strides=_slices(n))])
    await ref.run([rp2.launch(offsets=_slices(i * n)) for i in range(iters)])
    assert (await ref.read(ry1) == looped).all() and (await ref.read(ry2) == separate).all()
    load1 = c1["seq"]["load_cycles"]
    load2 = c2["seq"]["load_cycles"] - load1
    assert load2 >= iters * k2.program.beats > load1 >= k1.program.beats
    write_outputs(looped_cycles=c1["seq"]["cycles"],
                  launches_cycles=c2["seq"]["cycles"] - c1["seq"]["cycles"],
                  looped_load=load1, launches_load=load2)


@cocotb.test()
async def gemm(dut):
    args, params, dev, rng = await _setup(dut, GemmArgs)
    m, n, k = args.m, args.n, args.k
    relu, bf16 = args.relu, args.bf16
    use_bias = args.bias
    nrng = np.random.default_rng(args.seed)
    a = nrng.normal(0, 1, (m, k)).astype(np.float32).view(np.uint32) & 0xFFFF0000
    b = nrng.normal(0, 1, (k, n)).astype(np.float32).view(np.uint32) & 0xFFFF0000
    bias = (nrng.normal(0, 1, n).astype(np.float32).view(np.uint32) & 0xFFFF0000
            if use_bias else None)
    pcus = args.pcus or gemm_pcus(params, m, n, k, use_bias, args.a_rows)
    s = GemmShape.of(params, m, n, k, use_bias, pcus, a_pmu=args.a_rows)
    # Row-major A: rows padded to whole vectors (Gemm.pack_a fills the pad with NaNs).
    a_rows = s.k_vectors if args.a_rows else None
    a_words = s.a_words if a_rows is None else s.a_row_words(a_rows)
    bufs = {name: dev.alloc.alloc(region, words, name) for name, region, words in
            (("a", "hbm", a_words), ("b", "hbm", s.b_words), ("c", "hbm", s.c_words))}
    g = compile_gemm(params, m, n, k, bias=use_bias, relu=relu, bf16=bf16, a_rows=a_rows,
                     pcus=pcus, c_tiles=args.c_tiles, **bufs)
    packed_a = g.pack_a(params, a)
    await dev.write(bufs["a"], packed_a)
    await dev.write(bufs["b"], g.pack_b(params, b, bias))
    prog = await dev.load(g.program)
    t0 = time.perf_counter()
    c = await dev.run([prog.launch()],
                      kernel_timeout=100 * s.macs // (s.lanes * s.stages) + 20000)
    wall = time.perf_counter() - t0
    raw = await dev.read(bufs["c"])
    # The numpy backend, given the same calls, holds the same words — padding included.
    ref = ReferenceDevice(params)
    rbufs = {name: ref.alloc.alloc(b_.region, b_.words, name) for name, b_ in bufs.items()}
    await ref.write(rbufs["a"], packed_a)
    await ref.write(rbufs["b"], g.pack_b(params, b, bias))
    await ref.run([(await ref.load(g.program)).launch()])
    diff = np.nonzero(raw != await ref.read(rbufs["c"]))[0]
    assert not len(diff), f"C buffer differs from the reference backend at word {diff[0]}"
    got = g.unpack_c(raw)
    want = g.reference(params, a, b, bias)
    bad = np.argwhere(got != want)
    assert not len(bad), (f"gemm {m}x{n}x{k}: {len(bad)} results differ from the reference, "
                          f"first C[{bad[0][0]}, {bad[0][1]}] = {got[tuple(bad[0])]:#010x}, "
                          f"expected {want[tuple(bad[0])]:#010x}")
    fa, fb = N.from_bits(a).astype(np.float64), N.from_bits(b).astype(np.float64)
    exact = fa @ fb
    if use_bias:
        exact = exact + N.from_bits(bias).astype(np.float64)
    if relu:
        exact = np.maximum(exact, 0)
    scale = np.abs(fa) @ np.abs(fb)
    if use_bias:
        scale = scale + np.abs(N.from_bits(bias).astype(np.float64))
    # Exact BF16 products, one FP32 rounding per accumulation step (the bias is one more
    # step); a BF16 output adds one rounding to 8 significant bits (2**-8 of the value).
    bound = s.k * 2.0 ** -24 * scale
    if bf16:
        bound = bound + 2.0 ** -8 * (np.abs(exact) + bound)
    err = np.abs(N.from_bits(got).astype(np.float64) - exact)
    assert (err <= bound).all(), f"gemm {m}x{n}x{k}: C differs from float64 beyond the bound"
    write_outputs(**_report(params, c, wall, s.macs, pcus), useful_macs=m * n * k,
                  beats=g.program.beats, mismatches=0, max_abs_err=float(err.max()),
                  max_rel_err=float(np.max(err / np.where(scale > 0, scale, 1))))


def _report(params, c, wall, macs, active=1):
    """The report fields (ARCHITECTURE.md section 7) of a run from its counters;
    ``active``: the PCUs doing the MACs."""
    from hdl.memory.config import MemoryMap
    seq = c["seq"]
    cycles = seq["exec_cycles"]
    pcus = sum(is_pcu(r, col) for r in range(params.rows) for col in range(params.cols))
    peak = params.pcu_stages * params.pcu_lanes
    hbm = MemoryMap(params).region("hbm")
    hbm_bytes = sum(ch["read"] + ch["write"] for ch in c["hbm"])
    return {"cycles": cycles, "load_cycles": seq["load_cycles"], "macs": macs,
            "utilization": macs / (pcus * peak * cycles),
            "active_pcu_utilization": macs / (active * peak * cycles), "active_pcus": active,
            "hbm_bytes": hbm_bytes,
            "hbm_bw_utilization": hbm_bytes / (cycles * hbm.channels *
                                               params.hbm_bytes_per_cycle),
            "wall_s": wall, "sim_cycles": seq["cycles"],
            "counters": {k: c[k] for k in ("seq", "agcu", "unit_busy", "hbm", "ddr", "dma")}}


@cocotb.test()
async def softmax(dut):
    from firmware.kernels.softmax import compile_softmax, softmax_bound
    args, params, dev, rng = await _setup(dut, SoftmaxArgs)
    rows, n, spread = args.rows, args.n, args.spread
    L = params.pcu_lanes
    xs = -(-n // L) * L
    nrng = np.random.default_rng(args.seed)
    x = nrng.normal(0, spread, (rows, n)).astype(np.float32)
    padded = np.zeros((rows, xs), np.uint32)
    padded[:, :n] = x.view(np.uint32)
    # The padding lanes hold NaNs: they must not reach any result.
    padded[:, n:] = N.QNAN32
    outs = {}
    for name, d in (("rtl", dev), ("reference", ReferenceDevice(params))):
        xb, yb = d.alloc.alloc("hbm", rows * xs, "x"), d.alloc.alloc("hbm", rows * n, "y")
        sm = compile_softmax(params, rows, n, x=xb, y=yb)
        await d.write(xb, padded)
        t0 = time.perf_counter()
        c = await d.run([(await d.load(sm.program)).launch()],
                        kernel_timeout=40 * rows * xs + 20000)
        wall = time.perf_counter() - t0
        outs[name] = (await d.read(yb)).reshape(rows, n)
        if name == "rtl":
            counters = c
    got = outs["rtl"]
    diff = np.argwhere(got != outs["reference"])
    assert not len(diff), f"Y differs from the reference backend at {diff[0]}"
    want = sm.reference(params, x.view(np.uint32))
    assert np.array_equal(got, want), "Y differs from the PCU references"
    xf = x.astype(np.float64)
    e = np.exp(xf - xf.max(axis=1, keepdims=True))
    exact = e / e.sum(axis=1, keepdims=True)
    rel = np.abs(N.from_bits(got).astype(np.float64) - exact) / exact
    bound = softmax_bound(float(np.max(np.abs(xf - xf.max(axis=1, keepdims=True)))) *
                          math.log2(math.e), n, L)
    assert rel.max() <= bound, f"softmax off float64 by {rel.max():.3g} > {bound:.3g}"
    write_outputs(**_report(params, counters, wall, 0), mismatches=0,
                  max_rel_err=float(rel.max()), rel_bound=bound, beats=sm.program.beats)


def _seq_delta(before, after):
    """What a run added to the sequencer's counters."""
    return {k: after[k] - before[k] for k in ("cycles", "load_cycles", "exec_cycles",
                                              "copy_cycles", "launched")}


async def _run_both(dev, params, setup):
    """``await setup(device)`` -> (launches, output buffer, kernel timeout), run on the RTL
    device and on the reference backend; the output buffers must agree word for word.
    Returns the RTL run's (output words, counters, counter deltas, wall seconds)."""
    out = {}
    for name, d in (("rtl", dev), ("reference", ReferenceDevice(params))):
        launches, obuf, timeout = await setup(d)
        before = (await d.counters())["seq"] if name == "rtl" else None
        t0 = time.perf_counter()
        c = await d.run(launches, kernel_timeout=timeout)
        wall = time.perf_counter() - t0
        words = await d.read(obuf)
        if name == "rtl":
            out[name] = (words, c, _seq_delta(before, c["seq"]), wall)
        else:
            out[name] = words
    rtl, ref = out["rtl"], out["reference"]
    diff = np.nonzero(rtl[0] != ref)[0]
    assert not len(diff), f"O buffer differs from the reference backend at word {diff[0]}"
    return rtl


@cocotb.test()
async def attention(dut):
    from firmware.kernels.attention import (AttentionShape, attention_bound,
                                            compile_attention, compile_attention_unfused,
                                            exact_attention, unfused_words)
    args, params, dev, rng = await _setup(dut, AttentionArgs)
    seq, d = args.seq, args.head_dim
    nrng = np.random.default_rng(args.seed)
    q, k, v = (nrng.normal(0, args.spread, (seq, d)).astype(np.float32)
               .view(np.uint32) & 0xFFFF0000 for _ in range(3))
    sh = AttentionShape.of(params, seq, d)
    timeout = 40 * sh.macs // (params.pcu_lanes * params.pcu_stages) + 50000
    exact, scale = exact_attention(q, k, v, magnitude=True)
    bound = attention_bound(q, k, v, params.pcu_lanes)
    results = {}

    async def fused(d_):
        b = {n: d_.alloc.alloc("hbm", w, n) for n, w in
             (("q", sh.q_words), ("kv", sh.kv_words), ("o", sh.o_words))}
        kern = compile_attention(params, seq, d, **b)
        await d_.write(b["q"], kern.pack_q(params, q))
        await d_.write(b["kv"], kern.pack_kv(params, k, v))
        results["fused"] = kern
        return [(await d_.load(kern.program)).launch()], b["o"], timeout

    async def unfused(d_):
        w = unfused_words(params, seq, d)
        b = {n: d_.alloc.alloc("hbm", w[n], n) for n in ("q", "k", "v", "s", "p", "o")}
        kern = compile_attention_unfused(params, seq, d, **b)
        await d_.write(b["q"], kern.pack_q(params, q))
        await d_.write(b["k"], kern.pack_k(params, k))
        await d_.write(b["v"], kern.pack_v(params, v))
        results["unfused"] = kern
        return [(await d_.load(p)).launch() for p in kern.programs], b["o"], timeout

    report = {}
    runs = (("fused", fused), ("unfused", unfused))[:2 if args.unfused else 1]
    for name, setup in runs:
        words, c, delta, wall = await _run_both(dev, params, setup)
        kern = results[name]
        got = kern.unpack_o(words)
        if name == "fused":
            want = kern.reference(params, q, k, v)
            bad = np.argwhere(got != want)
            assert not len(bad), (f"fused O differs from the PCU references at {bad[0]}: "
                                  f"{got[tuple(bad[0])]:#010x} != {want[tuple(bad[0])]:#010x}")
            report.update(_report(params, c, wall, sh.macs), beats=kern.program.beats)
        err = np.abs(N.from_bits(got).astype(np.float64) - exact)
        worst = np.unravel_index(np.argmax(err / bound), err.shape)
        assert (err <= bound).all(), (f"{name} O[{worst}] off float64 by {err[worst]:.3g} > "
                                      f"{bound[worst]:.3g}")
        report[name] = {**delta, "max_abs_err": float(err.max()),
                        "max_rel_err": float(np.max(err / scale))}
    assert report["fused"]["launched"] == 1
    report.update(max_abs_err=report["fused"]["max_abs_err"],
                  max_rel_err=report["fused"]["max_rel_err"])
    if "unfused" in report:
        assert report["unfused"]["launched"] == 3
        report["fusion"] = {
            "fused_cycles": report["fused"]["cycles"],
            "unfused_cycles": report["unfused"]["cycles"],
            "speedup": report["unfused"]["cycles"] / report["fused"]["cycles"]}
    write_outputs(**report, mismatches=0)


@cocotb.test()
async def attention_heads(dut):
    from firmware.kernels.attention import AttentionShape, compile_attention
    args, params, dev, rng = await _setup(dut, AttentionHeadsArgs)
    seq, d, heads = args.seq, args.head_dim, args.heads
    sh = AttentionShape.of(params, seq, d)
    nrng = np.random.default_rng(args.seed)
    qkv = [[nrng.normal(0, 1, (seq, d)).astype(np.float32).view(np.uint32) & 0xFFFF0000
            for _ in range(3)] for _ in range(heads)]
    al = dev.alloc.align                       # heads block-aligned in each buffer
    size = {n: -(-w // al) * al for n, w in (("q", sh.q_words), ("kv", sh.kv_words),
                                              ("o", sh.o_words))}
    results = {}
    for mode in ("looped", "launches"):
        b = {n: dev.alloc.alloc("hbm", size[n] * heads, f"{n} {mode}") for n in size}
        att = compile_attention(params, seq, d, **b)
        for h, (q, k, v) in enumerate(qkv):
            await dev.write(_at(b["q"], h * size["q"]), att.pack_q(params, q))
            await dev.write(_at(b["kv"], h * size["kv"]), att.pack_kv(params, k, v))
        prog = await dev.load(att.program)
        before = (await dev.counters())["seq"]
        # Every AGCU stream of a buffer moves by one head's words per iteration.
        step = {key: size[n] for n, keys in att.arg_keys.items() for key in keys}
        if mode == "looped":
            launches = [prog.launch(iterations=heads, strides=step)]
        else:
            launches = [prog.launch(offsets={k_: h * s_ for k_, s_ in step.items()})
                        for h in range(heads)]
        after = (await dev.run(launches))["seq"]
        out = (await dev.read(b["o"])).reshape(heads, size["o"])
        for h, (q, k, v) in enumerate(qkv):
            got = att.unpack_o(out[h, :sh.o_words])
            assert (got == att.reference(params, q, k, v)).all(), f"{mode}: head {h} differs"
        results[mode] = _seq_delta(before, after)
    assert results["looped"]["launched"] == 1 and results["launches"]["launched"] == heads
    write_outputs(**results, heads=heads, mismatches=0,
                  speedup=results["launches"]["cycles"] / results["looped"]["cycles"])


def _at(buf, offset):
    """The part of ``buf`` from word ``offset`` on (a block-aligned offset)."""
    from firmware.runtime.memory import Buffer
    return Buffer(buf.region, buf.addr + offset, buf.words - offset, buf.name)


def _loop_launches(prog, mode, layers, step, base=None, chained=False):
    """``layers`` iterations of ``prog``, the AGCU arguments from ``base`` moved by ``step``
    each: one looped launch (``"looped"``; ``chained``: its iterations pass data through
    memory), or one launch per layer with the program loaded once (``"resident"``) or by
    each (``"reload"``)."""
    base = base or {}
    if mode == "looped":
        return [prog.launch(iterations=layers, offsets=base, strides=step, chained=chained)]
    return [prog.launch(offsets={key: base.get(key, 0) + i * v for key, v in step.items()},
                        reload=mode == "reload" or i == 0) for i in range(layers)]


@cocotb.test()
async def layer_loop(dut):
    args, params, dev, rng = await _setup(dut, LayerLoopArgs)
    m, n, k, layers = args.m, args.n, args.k, args.layers
    s = GemmShape.of(params, m, n, k)
    nrng = np.random.default_rng(args.seed)
    bf16 = lambda shape: (nrng.normal(0, 1, shape).astype(np.float32).view(np.uint32)  # noqa: E731
                          & 0xFFFF0000)
    # Decode form (weights_a): each layer's weights are A (m outputs x k inputs, W^T) and
    # the activations B (k x n tokens); else the activations are A and the weights B.
    wshape, xshape = ((m, k), (k, n)) if args.weights_a else ((k, n), (m, k))
    x, ws = bf16(xshape), [bf16(wshape) for _ in range(layers)]
    al = dev.alloc.align                          # block-aligned weight sets
    wwords = s.a_words if args.weights_a else s.b_words
    wsz, csz = -(-wwords // al) * al, -(-s.c_words // al) * al
    results, outs = {}, {}
    for mode in ("looped", "resident", "reload"):
        wbuf = dev.alloc.alloc("hbm", wsz * layers, "weights")
        xbuf = dev.alloc.alloc("hbm", s.b_words if args.weights_a else s.a_words, "x")
        bufs = {"a": wbuf, "b": xbuf} if args.weights_a else {"a": xbuf, "b": wbuf}
        bufs["c"] = dev.alloc.alloc("hbm", csz * layers, "outputs")
        g = compile_gemm(params, m, n, k, relu=True, **bufs)
        pack_w, pack_x = (g.pack_a, g.pack_b) if args.weights_a else (g.pack_b, g.pack_a)
        await dev.write(xbuf, pack_x(params, x))
        await dev.write(wbuf, np.concatenate(
            [np.pad(pack_w(params, w), (0, wsz - wwords)) for w in ws]))
        prog = await dev.load(g.program)
        before = (await dev.counters())["seq"]
        step = {(0 if args.weights_a else 1, "load"): wsz,
                **{key: csz for key in g.c_streams}}
        after = (await dev.run(_loop_launches(prog, mode, layers, step)))["seq"]
        out = outs[mode] = (await dev.read(bufs["c"])).reshape(layers, csz)[:, :s.c_words]
        for i, w in enumerate(ws):
            got = g.unpack_c(out[i])
            want = g.reference(params, w, x) if args.weights_a else g.reference(params, x, w)
            assert (got == want).all(), f"{mode}: layer {i} differs (seed {args.seed})"
        results[mode] = _seq_delta(before, after)
    for mode in ("resident", "reload"):
        assert (outs[mode] == outs["looped"]).all(), \
            f"looped and {mode} launches differ (seed {args.seed})"
    looped = results["looped"]["cycles"]
    write_outputs(**results, layers=layers, macs=layers * s.macs, beats=g.program.beats,
                  weight_bytes=4 * layers * wwords,
                  speedup=results["reload"]["cycles"] / looped,
                  speedup_vs_resident=results["resident"]["cycles"] / looped)


def _hbm_total(c):
    return sum(ch["read"] + ch["write"] for ch in c["hbm"])


@cocotb.test()
async def gemv_loop(dut):
    from firmware.kernels.gemv import GemvShape, compile_gemv
    args, params, dev, rng = await _setup(dut, GemvLoopArgs)
    n, k, layers = args.n, args.k, args.layers
    nrng = np.random.default_rng(args.seed)
    # Chained: weights scaled by 1/sqrt(k), so the activations keep their size.
    ws = nrng.normal(0, k ** -0.5 if args.chain else 1, (layers, n, k)).astype(np.float32)
    if args.packed:                                      # BF16 weights
        ws = (ws.view(np.uint32) & 0xFFFF0000).view(np.float32)
    xs = nrng.normal(0, 1, (layers, k)).astype(np.float32)
    al = dev.alloc.align
    sh = GemvShape.of(params, n, k, args.shares or None, args.packed)
    wsz, xsz, ysz = (-(-v // al) * al for v in (sh.w_words, sh.kp, sh.y_words))
    slot = max(xsz, ysz)                  # chained: x0, y0, y1, ... one slot each
    # Weights (and unchained inputs) written once (the runs only read them).
    bufs = {"w": dev.alloc.alloc("hbm", wsz * layers, "weights")}
    if not args.chain:
        bufs["x"] = dev.alloc.alloc("hbm", xsz * layers, "inputs")
    results, outs, worst = {}, {}, 0.0
    for mode in ("looped", "resident", "reload"):
        if args.chain:
            bufs["x"] = bufs["y"] = dev.alloc.alloc("hbm", slot * (layers + 1), f"xy {mode}")
        else:
            bufs["y"] = dev.alloc.alloc("hbm", ysz * layers, f"outputs {mode}")
        g = compile_gemv(params, n, k, shares=sh.shares, packed=sh.packed,
                         partial=args.partial, **bufs)
        if mode == "looped":
            wwords = np.concatenate(
                [np.pad(g.pack_w(w.view(np.uint32)), (0, wsz - sh.w_words)) for w in ws])
            # In DDR: the first run copies them into HBM by a copy record.
            wsrc = dev.alloc.alloc("ddr", len(wwords), "weights") if args.ddr else bufs["w"]
            await dev.write(wsrc, wwords)
            xin = gemv_inputs(params, g, ws, xs, args.chain)
            if not args.chain:
                await dev.write(bufs["x"], np.concatenate(
                    [np.pad(x, (0, xsz - sh.kp)) for x in xin]))
        if args.chain:
            await dev.write(bufs["x"], np.pad(xin[0], (0, slot * (layers + 1) - sh.kp)))
        prog = await dev.load(g.program)
        stores = [sh.stream_of(p) for p in range(sh.shares)]
        step = {(0, "load2"): slot if args.chain else xsz,
                **{(s, "load"): wsz for s in range(sh.streams)},
                **{key: slot if args.chain else ysz for key in stores}}
        base = {key: slot for key in stores} if args.chain else {}
        before = await dev.counters()
        t0 = time.time()
        launches = _loop_launches(prog, mode, layers, step, base, args.chain)
        if mode == "looped" and args.ddr:
            launches.insert(0, dev.copy(wsrc, bufs["w"]))
        after = await dev.run(launches)
        if mode == "looped":
            wall, counters = time.time() - t0, {key: after[key] for key in (
                "seq", "agcu", "unit_busy", "hbm", "ddr", "dma")}
        words = await dev.read(bufs["y"])
        out = outs[mode] = (words[slot:].reshape(layers, slot) if args.chain else
                            words.reshape(layers, ysz))[:, :n]
        worst = max(worst, check_gemv(params, g, ws, xin, out, f"{mode} (seed {args.seed})"))
        results[mode] = {**_seq_delta(before["seq"], after["seq"]),
                         "hbm_bytes": _hbm_total(after) - _hbm_total(before)}
    for mode in ("resident", "reload"):
        assert (outs[mode] == outs["looped"]).all(), \
            f"looped and {mode} launches differ (seed {args.seed})"
    peak = params.hbm_peak_bytes_per_cycle
    lo = results["looped"]
    write_outputs(**results, layers=layers, shares=sh.shares, streams=sh.streams,
                  beats=g.program.beats, cycles=lo["cycles"], load_cycles=lo["load_cycles"],
                  hbm_bytes=lo["hbm_bytes"], mismatches=0, max_abs_err=worst,
                  wall_s=wall, sim_cycles=lo["cycles"], counters=counters,
                  compulsory_bytes=layers * sh.bytes, copy_cycles=lo["copy_cycles"],
                  copied_words=len(wwords) if args.ddr else 0,
                  hbm_bw_utilization=lo["hbm_bytes"] / (lo["cycles"] * peak),
                  # While executing: the compulsory bytes (the run's HBM bytes include its
                  # record and bitstream, read before execution starts).
                  exec_useful_bw_utilization=layers * sh.bytes / (lo["exec_cycles"] * peak),
                  useful_bw_utilization=layers * sh.bytes / (lo["cycles"] * peak),
                  speedup=results["reload"]["cycles"] / lo["cycles"],
                  speedup_vs_resident=results["resident"]["cycles"] / lo["cycles"])


def _router_f64(rw, x):
    """The router's choice in float64."""
    w = np.asarray(rw, np.uint32).view(np.float32).astype(np.float64)
    return int(np.argmax(w @ x.view(np.float32).astype(np.float64)))


def _expert_order(args, rng):
    """The requests' experts: ``args.order``, or drawn with weight 1 / (e + 1) (a few
    experts popular, as a router's traffic is)."""
    order = args.expert_order()
    if order is not None:
        return order
    p = 1 / np.arange(1, args.experts + 1)
    return [int(e) for e in rng.choice(args.experts, args.requests, p=p / p.sum())]


async def _timed(d, launches):
    """Run ``launches`` on device ``d``: (sequencer counter deltas, wall seconds) on the
    RTL device, (None, 0) on the reference backend."""
    rtl = isinstance(d, RtlDevice)
    before = (await d.counters())["seq"] if rtl else None
    t0 = time.perf_counter()
    after = await d.run(launches)
    return (_seq_delta(before, after["seq"]), time.perf_counter() - t0) if rtl else (None, 0)


async def _serve(dev, ref, experts, x, what):
    """One request with input ``x`` on the RTL device and the reference backend (both
    ``Experts``: the same lists, the same addresses): routed on the device (router GEMV +
    argmax), then served by the expert chosen; the logits, the choice and every layer's
    outputs agree word for word. Returns (expert, slot, hit, outputs, routing and serving
    counter deltas, wall seconds)."""
    got = []
    for d, ex in ((dev, experts[0]), (ref, experts[1])):
        await ex.write_input(x)
        route, w0 = await _timed(d, ex.route())
        e = await ex.chosen()
        launches, slot, hit = ex.request(e)
        serve, w1 = await _timed(d, launches)
        got.append((e, slot, hit, await ex.read_outputs(), await d.read(ex.logits),
                    route, serve, w0 + w1))
    (e, slot, hit, ys, logits, route, serve, wall), (e_ref, _, _, want, l_ref, *_) = got
    assert (logits == l_ref).all(), f"{what}: router logits differ from the reference backend"
    assert e == e_ref, f"{what}: routed to {e}, the reference backend to {e_ref}"
    bad = np.nonzero(ys != want)
    assert not len(bad[0]), f"{what}: layer {bad[0][0]} differs from the reference backend"
    return e, slot, hit, ys, route, serve, wall


def _coe_weights(args, rng):
    """The experts' weights (experts, layers, d, d) FP32 (BF16 values when packed) and
    the router's (experts x d words)."""
    ws = rng.normal(0, args.d ** -0.5, (args.experts, args.layers, args.d, args.d))
    ws = ws.astype(np.float32)
    if args.packed:
        ws = (ws.view(np.uint32) & 0xFFFF0000).view(np.float32)
    return ws, router_weights(rng, args.experts, args.d, args.packed)


@cocotb.test()
async def coe(dut):
    args, params, dev, _ = await _setup(dut, CoeArgs)
    if args.decoder:
        return await _coe_decoders(args, params, dev)
    nrng = np.random.default_rng(args.seed)
    shape = CoeShape(args.experts, args.slots, args.d, args.layers, args.packed)
    ws, rw = _coe_weights(args, nrng)
    ref = ReferenceDevice(params)
    experts = (Experts(dev, shape), Experts(ref, shape))
    for ex in experts:
        await ex.store([w.view(np.uint32) for w in ws], rw)
    requests, worst, wall = [], 0.0, 0.0
    hbm0 = _hbm_total(await dev.counters())
    for r, meant in enumerate(_expert_order(args, nrng)):
        x = request_input(nrng, rw, meant)
        what = f"request {r}, meant for expert {meant} (seed {args.seed})"
        e, slot, hit, ys, route, d, w = await _serve(dev, ref, experts, x, what)
        wall += w
        g = experts[0].gemv
        xf = [x.view(np.float32)]
        worst = max(worst, check_gemv(params, g, ws[e], gemv_inputs(params, g, ws[e], xf, True),
                                      ys, what))
        assert (d["copy_cycles"] == 0) == hit, f"{what}: copy cycles {d['copy_cycles']}"
        requests.append({"expert": e, "meant": meant, "float64_choice": _router_f64(rw, x),
                         "slot": slot, "hit": hit, "route_cycles": route["cycles"],
                         "switch_cycles": d["copy_cycles"],
                         "decode_cycles": d["cycles"] - d["copy_cycles"],
                         "load_cycles": route["load_cycles"] + d["load_cycles"],
                         "cycles": route["cycles"] + d["cycles"]})
    ex = experts[0]
    await _coe_outputs(dev, args, requests, ex.expert_image(ws[0].view(np.uint32)), hbm0,
                       wall, max_abs_err=worst, request_beats=ex.gemv.program.beats +
                       sum(p.beats for p in ex.router.programs))


async def _coe_outputs(dev, args, requests, image, hbm0, wall, **more):
    """A CoE run's outputs: its requests, HBM traffic since ``hbm0``, and the expert
    switch by DMA (the misses' mean copy cycles) against one expert ``image`` written over
    the host link (the baseline)."""
    params = dev.params
    hbm = _hbm_total(await dev.counters()) - hbm0
    scratch = dev.alloc.alloc("hbm", len(image), "host-link copy")
    host = await host_write(dev.tb, params, scratch.addr, image)
    assert (await dev.read(scratch) == image).all(), f"host-link copy wrong (seed {args.seed})"
    misses = [q["switch_cycles"] for q in requests if not q["hit"]]
    dma = sum(misses) / len(misses)
    total = sum(q["cycles"] for q in requests)
    write_outputs(requests=requests, mismatches=0, cycles=total, hbm_bytes=hbm,
                  hbm_bw_utilization=hbm / (total * params.hbm_peak_bytes_per_cycle),
                  sim_cycles=total, wall_s=wall, expert_words=len(image),
                  load_cycles=sum(q["load_cycles"] for q in requests),
                  switch={"dma_cycles": dma, "host_cycles": host, "dma_over_host": host / dma,
                          "configured_ddr_over_host":
                              params.ddr_bytes_per_cycle / params.host_bytes_per_cycle},
                  **more)


async def _decode_token(dev, ref, decs, lists, what):
    """A position of every sequence — ``lists``, its launch lists on the RTL device and
    the reference backend (both ``Decoder``: the same lists, the same addresses): every
    activation, both caches, the logits and the next tokens agree word for word. Returns
    (next tokens, the device's buffers, counter deltas, wall seconds)."""
    got = []
    for d, dec, launches in zip((dev, ref), decs, lists):
        c, wall = await _timed(d, launches)
        got.append(([await d.read(b) for b in (dec.act, dec.kc, dec.vt, dec.logits)],
                    await dec.next_tokens(), c, wall))
    (bufs, nxt, c, wall), (want, nxt_ref, _, _) = got
    for name, a, b in zip(("activations", "K cache", "V^T cache", "logits"), bufs, want):
        bad = np.nonzero(a != b)[0]
        assert not len(bad), f"{what}: {name} word {bad[0]} differs from the reference backend"
    assert nxt == nxt_ref, f"{what}: next token {nxt}, the reference backend's {nxt_ref}"
    return nxt, bufs, c, wall


@cocotb.test()
async def decoder(dut):
    args, params, dev, _ = await _setup(dut, DecoderArgs)
    shape = args.shape()
    ws, wout, emb = decoder_weights(np.random.default_rng(args.seed), shape)
    ref = ReferenceDevice(params)
    decs = (Decoder(dev, shape, partial=args.partial), Decoder(ref, shape, partial=args.partial))
    for dec in decs:
        await dec.store(ws, wout, emb)
    hbm0 = _hbm_total(await dev.counters())
    token = [(args.first + b) % shape.vocab for b in range(shape.batch)]
    tokens, worst, wall = [], 0.0, 0.0
    for t in range(shape.tokens):
        what = f"position {t} (inputs {token}, seed {args.seed})"
        nxt, bufs, c, w = await _decode_token(dev, ref, decs, [d.token(t, token) for d in decs],
                                              what)
        worst = max(worst, check_batch(params, decs[0], ws, wout, t, bufs, nxt, what))
        wall += w
        tokens.append({"position": t, "input": token, "output": nxt, "cycles": c["cycles"],
                       "load_cycles": c["load_cycles"], "copy_cycles": c["copy_cycles"],
                       "launched": c["launched"]})
        token = nxt
    hbm = _hbm_total(await dev.counters()) - hbm0
    cycles = sum(q["cycles"] for q in tokens)
    looping = await _decoder_baselines(dev, decs[0], tokens, args) \
        if args.looping and shape.batch > 1 else None
    write_outputs(passed=True, bit_exact=True, mismatches=0, bound_fraction=worst,
                  tokens=tokens, cycles=cycles, sim_cycles=cycles, wall_s=wall,
                  tokens_per_s_at_1ghz=len(tokens) * shape.batch * 1e9 / cycles *
                  params.clock_ghz, batch=shape.batch,
                  launches_per_token=len(decs[0].token(0, token)), hbm_bytes=hbm,
                  weight_bytes=4 * decs[0].weight_words, looping=looping,
                  hbm_bw_utilization=hbm / (cycles * params.hbm_peak_bytes_per_cycle))


async def _decoder_baselines(dev, dec, tokens, args):
    """The same positions (``tokens``: the looped run's inputs and outputs) again as a
    launch per sequence with the program resident, then with it reloaded: the same next
    tokens and, at the end, the same activations, caches and logits word for word.
    Returns the three cycle counts and the speedups of looping."""
    bufs = (dec.act, dec.kc, dec.vt, dec.logits)
    want = [await dev.read(b) for b in bufs]
    cycles = {"looped_cycles": sum(q["cycles"] for q in tokens)}
    for mode in ("resident", "reload"):
        total = 0
        for q in tokens:
            c, _ = await _timed(dev, dec.token(q["position"], q["input"], mode=mode))
            total += c["cycles"]
            got = await dec.next_tokens()
            assert got == q["output"], (f"{mode}: position {q['position']}: tokens {got}, "
                                        f"looped {q['output']} (seed {args.seed})")
        for b, w in zip(bufs, want):
            bad = np.nonzero(await dev.read(b) != w)[0]
            assert not len(bad), (f"{mode}: {b.name} word {bad[0]} differs from the looped "
                                  f"run's (seed {args.seed})")
        cycles[f"{mode}_cycles"] = total
    lo = cycles["looped_cycles"]
    return {**cycles, "speedup_vs_resident": cycles["resident_cycles"] / lo,
            "speedup_vs_reload": cycles["reload_cycles"] / lo}


async def _coe_request(dev, ref, exs, weights, x, what):
    """One request (input ``x``) to decoder experts ``exs`` (RTL, reference) in lockstep:
    routed on the device, then ``tokens`` positions generated by the chosen expert, every
    position bit-exact between the backends and each step within its float64 bound.
    Returns (expert, slot, hit, routing counters, per-position counters, worst, wall)."""
    route, wall, chosen = [], 0.0, []
    for d, ex in zip((dev, ref), exs):
        await ex.write_input(x)
        c, w = await _timed(d, ex.route())
        route.append(c)
        wall += w
        chosen.append((await ex.chosen(), await d.read(ex.logits)))
    (e, logits), (e_ref, l_ref) = chosen
    assert (logits == l_ref).all(), f"{what}: router logits differ from the reference backend"
    assert e == e_ref, f"{what}: routed to {e}, the reference backend to {e_ref}"
    served = [ex.request(e) for ex in exs]
    slot, hit = served[0][1:]
    lists, positions, worst, ws, wout, _ = [s[0] for s in served], [], 0.0, *weights[e]
    decs = [ex.dec for ex in exs]
    for t in range(exs[0].shape.tokens):
        at = f"{what}, expert {e}, position {t}"
        nxt, bufs, c, w = await _decode_token(dev, ref, decs, lists, at)
        worst = max(worst, check_batch(dev.params, decs[0], ws, wout, t, bufs, nxt, at))
        positions.append({**c, "output": nxt[0]})
        wall += w
        if t + 1 < exs[0].shape.tokens:
            lists = [d.token(t + 1, nxt, slot) for d in decs]
    return e, slot, hit, route[0], positions, worst, wall


async def _coe_decoders(args, params, dev):
    """The CoE run with decoder experts (``args.decoder``)."""
    nrng = np.random.default_rng(args.seed)
    shape = DecoderShape(args.d, args.hidden, args.layers, args.tokens, vocab=8,
                         packed=args.packed)
    weights = [decoder_weights(nrng, shape) for _ in range(args.experts)]
    rw = router_weights(nrng, args.experts, args.d, args.packed)
    ref = ReferenceDevice(params)
    exs = (DecoderExperts(dev, args.experts, args.slots, shape),
           DecoderExperts(ref, args.experts, args.slots, shape))
    for ex in exs:
        await ex.store([(w, wout) for w, wout, _ in weights], rw, weights[0][2])
    requests, worst, wall = [], 0.0, 0.0
    hbm0 = _hbm_total(await dev.counters())
    for r, meant in enumerate(_expert_order(args, nrng)):
        x = request_input(nrng, rw, meant)
        what = f"request {r}, meant for expert {meant} (seed {args.seed})"
        e, slot, hit, route, pos, w, wl = await _coe_request(dev, ref, exs, weights, x, what)
        worst, wall = max(worst, w), wall + wl
        switch = pos[0]["copy_cycles"]
        assert (switch == 0) == hit, f"{what}: copy cycles {switch}"
        cycles = route["cycles"] + sum(p["cycles"] for p in pos)
        requests.append({"expert": e, "meant": meant, "float64_choice": _router_f64(rw, x),
                         "slot": slot, "hit": hit, "route_cycles": route["cycles"],
                         "switch_cycles": switch, "decode_cycles": cycles - switch -
                         route["cycles"], "tokens": [p["output"] for p in pos],
                         "load_cycles": route["load_cycles"] +
                         sum(p["load_cycles"] for p in pos), "cycles": cycles})
    ex = exs[0]
    await _coe_outputs(dev, args, requests, ex.dec.expert_image(*weights[0][:2]), hbm0, wall,
                       bound_fraction=worst)


@cocotb.test()
async def graph(dut):
    from firmware.graph import compile_graph
    from firmware.graph import Graph
    args, params, dev, rng = await _setup(dut, GraphArgs)
    m, n, k = args.m, args.n, args.k
    nrng = np.random.default_rng(args.seed)
    bf16 = lambda shape: (nrng.normal(0, 1, shape).astype(np.float32).view(np.uint32)  # noqa: E731
                          & 0xFFFF0000)
    if args.attention:
        # One head (seq m, head dim k), the softmax of its rows and an elementwise op, or
        # its output projection (fused with the head where the array has room).
        g = Graph("attention")
        o = g.attention(*(g.input(t, (m, k)) for t in "qkv"), out="o")
        inputs = {t: bf16((m, k)) for t in "qkv"}
        if args.proj:
            g.matmul(o, g.input("wo", (k, args.proj)), out="y")
            inputs["wo"] = bf16((k, args.proj))
        else:
            g.scale_bias(g.softmax(o, scale=2.0), scale=3.0, bias=-1.0, out="y")
    else:
        g = Graph("mlp")
        h = g.matmul(g.input("x", (m, k)), g.input("w", (k, n), region="ddr"), relu=True,
                     out="h")
        g.scale_bias(h, scale=0.5, bias=1.0, out="y")
        inputs = {"x": bf16((m, k)), "w": bf16((k, n))}
    cg = compile_graph(params, g, dev.alloc)
    got, c = await cg.run(dev, inputs)
    ref = ReferenceDevice(params)
    want, _ = await compile_graph(params, g, ref.alloc).run(ref, inputs)
    bad = np.argwhere(got["y"] != want["y"])
    assert not len(bad), (f"graph output y (seed {args.seed}) differs from the reference "
                          f"backend at {bad[0]}")
    assert c["seq"]["launched"] == len(cg.kernels)
    write_outputs(kernels=[op.kind for op, _ in cg.kernels], cycles=c["seq"]["cycles"])


@cocotb.test()
async def mlp(dut):
    """``Y = relu(X @ W1 + b1) @ W2`` as a graph, compiled fused (one kernel, H on chip)
    and op by op (two GEMMs, H through HBM): both equal to the reference backend's Y and
    to each other, within ``mlp_bound`` of float64; outputs both runs' cycles."""
    from firmware.graph import compile_graph
    from firmware.graph import mlp as mlp_graph
    from firmware.kernels.mlp import mlp_bound
    args, params, dev, rng = await _setup(dut, MlpArgs)
    m, k, hid, n = args.m, args.k, args.hidden, args.n
    nrng = np.random.default_rng(args.seed)
    bf16 = lambda *shape: (nrng.normal(0, 1, shape).astype(np.float32).view(np.uint32)  # noqa: E731
                           & 0xFFFF0000)
    inputs = {"x": bf16(m, k), "w1": bf16(k, hid), "w2": bf16(hid, n)}
    if args.bias:
        inputs["b1"] = bf16(hid)

    def build():
        return mlp_graph(m, k, hid, n, bias=args.bias)
    ref = ReferenceDevice(params)
    want, _ = await compile_graph(params, build(), ref.alloc).run(ref, inputs)
    results, report = {}, {}
    for mode, fuse in (("fused", True), ("unfused", False)):
        cg = compile_graph(params, build(), dev.alloc, fuse_ops=fuse)
        before = (await dev.counters())["seq"]
        t0 = time.perf_counter()
        got, c = await cg.run(dev, inputs)
        wall = time.perf_counter() - t0
        bad = np.argwhere(got["y"] != want["y"])
        assert not len(bad), (f"{mode} MLP (seed {args.seed}): y differs from the reference "
                              f"backend at {bad[0]}")
        results[mode] = {**_seq_delta(before, c["seq"]), "kernels": len(cg.kernels)}
        if fuse:            # the first run on the device: its counters are the fused run's
            report = _report(params, c, wall, cg.kernels[0][1].shape.macs, 2)
    assert (results["fused"]["kernels"], results["unfused"]["kernels"]) == (1, 2), results
    exact, bound = mlp_bound(inputs["x"], inputs["w1"], inputs.get("b1"), inputs["w2"])
    err = np.abs(N.from_bits(want["y"]).astype(np.float64) - exact)
    assert (err <= bound).all(), (f"MLP (seed {args.seed}): error {err.max()} over the "
                                  f"bound at {np.unravel_index(np.argmax(err - bound), err.shape)}")
    speedup = results["unfused"]["cycles"] / results["fused"]["cycles"]
    write_outputs(**report, **results, mismatches=0, max_abs_err=float(err.max()),
                  speedup=speedup,
                  fusion={"fused_cycles": results["fused"]["cycles"],
                          "unfused_cycles": results["unfused"]["cycles"], "speedup": speedup})


async def _expect_error(dev, prog, code, **kw):
    # The launch is built by hand: LoadedProgram.launch would refuse a stream outside its
    # buffer before the hardware sees it, and the hardware's own check is under test.
    p = prog.program
    try:
        await dev.run([Launch(prog.buffer.addr, p.beats, p.units, p.agcus)], **kw)
    except DeviceError as e:
        assert code in str(e), e
        return str(e)
    raise AssertionError(f"the sequencer reported no {code}")


async def _with_writer(dev, params, n, writer_words, segment_words, guard=None):
    """The scale_bias kernel on ``n`` words, its writer replaced by one storing
    ``writer_words`` words into a segment of ``segment_words`` (unchecked here)."""
    x = dev.alloc.alloc("hbm", 2 * n, "x")
    y = dev.alloc.alloc("hbm", 2 * n, "y")
    if guard is not None:
        await dev.write(y, guard)
    k = compile_scale_bias(params, n, x=x, y=y)
    agcus = dict(k.parts["agcus"])
    agcus[1] = pack_agcu(params, store=(TensorAccess((writer_words,), (1,)), 0),
                         segments=[Segment(y.addr, segment_words)], check_bounds=False)[0]
    return y, await dev.load(kernel_program(params, "bad writer", **{**k.parts, "agcus": agcus}))


@cocotb.test()
async def fault(dut):
    args, params, dev, rng = await _setup(dut, FaultArgs)
    n = args.n
    guard = _floats(rng, 2 * n)
    # The writer's segment is one word short: the last run must fault, and nothing of it
    # may be written.
    y, prog = await _with_writer(dev, params, n, n, n - 1, guard)
    msg = await _expect_error(dev, prog, "FAULT", kernel_timeout=50000)
    assert "in the kernel" in msg and "AGCU 1" in msg, msg
    got = await dev.read(y, 2 * n)
    assert (got[n - 1:] == guard[n - 1:]).all(), "memory outside the segment was written"
    await _recovers(dev, params, rng, f"an AGCU fault (seed {args.seed})")


@cocotb.test()
async def dma_refused(dut):
    """A copy record whose source runs past the end of memory (packed by hand: firmware
    refuses it) stops the sequencer with DMA, and nothing is written."""
    from hdl.memory.config import MemoryMap
    from firmware.runtime.launch import record_words
    from hdl.sequencer import launch_layout
    args, params, dev, rng = await _setup(dut, DmaRefusedArgs)
    mm = MemoryMap(params)
    dst = dev.alloc.alloc("hbm", args.n, "dst")
    guard = _floats(rng, args.n)
    await dev.write(dst, guard)
    record = launch_layout(params).const({"copy": 1, "program": mm.beats - 1,
                                          "dst": dst.addr // mm.words, "count": args.n})
    try:
        await dev.run_records(record_words(params, record.as_value().value), 1,
                              kernel_timeout=10000)
    except DeviceError as e:
        assert "DMA" in str(e) and "refused" in str(e), e
    else:
        raise AssertionError(f"the sequencer ran a refused copy (seed {args.seed})")
    assert (await dev.read(dst) == guard).all(), f"a refused copy wrote (seed {args.seed})"
    await _recovers(dev, params, rng, f"a refused copy (seed {args.seed})")


@cocotb.test()
async def timeout(dut):
    args, params, dev, rng = await _setup(dut, TimeoutArgs)
    n = args.n
    # The writer expects twice what the PCU sends: it would wait forever.
    _, prog = await _with_writer(dev, params, n, 2 * n, 2 * n)
    msg = await _expect_error(dev, prog, "TIMEOUT", kernel_timeout=5000)
    # The error names who was still working: the writer, not the finished PCU or reader.
    assert "in the kernel" in msg and msg.endswith("still busy: AGCU 1"), msg
    await _recovers(dev, params, rng, f"a kernel timeout (seed {args.seed})")


async def _recovers(dev, params, rng, what):
    """After an error the datapath was cleared: a launch that loads its program runs
    bit-exactly (one that counts on a resident program is refused by firmware)."""
    n = 3 * params.pcu_lanes + 1
    x, y = (dev.alloc.alloc("hbm", n, f"{v} after") for v in "xy")
    xs = _floats(rng, n)
    await dev.write(x, xs)
    k = compile_scale_bias(params, n, x=x, y=y, scale=1.5, bias=-0.25, relu=True)
    prog = await dev.load(k.program)
    try:
        await dev.run([prog.launch(reload=False)])
    except DeviceError as e:
        assert "must load its program" in str(e), e
    else:
        raise AssertionError(f"after {what}: a launch without its program was run")
    await dev.run([prog.launch()], kernel_timeout=20000)
    _check(await dev.read(y, n), k.reference(params, xs), xs, np.float32(1.5),
           np.float32(-0.25), f"the launch after {what}")


@cocotb.test()
async def faults(dut):
    """Each of: a record list outside memory, a program outside memory, a program with one
    bit flipped, a program load over the watchdog, a looped kernel whose last iteration
    steps out of its buffer — stops with its named error and phase, writes nothing outside
    its segments, and the next launch runs bit-exactly."""
    args, params, dev, rng = await _setup(dut, FaultsArgs)
    mm, n = dev.map, args.n
    outside = mm.beats + 3          # a beat address past the end of memory (DDR's)
    assert outside < 1 << mm.addr_bits, "no beat address outside memory to try"
    for case in ("record", "program", "checksum", "load_timeout", "loop_bounds"):
        what = f"{case} (seed {args.seed})"
        msg = await _FAULTS[case](dev, params, rng, n, outside, what)
        await _recovers(dev, params, rng, what)
        dut._log.info(f"{case}: {msg}")


async def _error_of(run, code, phase, what):
    try:
        await run
    except DeviceError as e:
        msg = str(e)
        assert f"{code} in {phase}" in msg, f"{what}: {msg}"
        return msg
    raise AssertionError(f"{what}: the sequencer reported no {code}")


async def _fault_record(dev, params, rng, n, outside, what):
    msg = await _error_of(dev.run_records(None, 1, at=outside, kernel_timeout=10000),
                          "MEMORY", "the record fetch", what)
    assert f"at beat {outside:#x}" in msg, f"{what}: {msg}"
    return msg


async def _guarded_kernel(dev, params, rng, n, slices=1):
    """scale_bias on ``n`` words, its buffers ``slices`` x ``n`` words, its output ``y``
    followed by a guard buffer of random words: (kernel, y, guard buffer, guard words)."""
    x = dev.alloc.alloc("hbm", n * slices, "x")
    y = dev.alloc.alloc("hbm", n * slices, "y")
    g = dev.alloc.alloc("hbm", 2 * n, "guard")
    for buf in (x, y):
        await dev.write(buf, _floats(rng, buf.words))
    guard = _floats(rng, 2 * n)
    await dev.write(g, guard)
    k = compile_scale_bias(params, n, x=x, y=y, scale=2.0, bias=1.0)
    return k, y, g, guard


async def _fault_program(dev, params, rng, n, outside, what):
    from firmware.runtime.launch import record_words
    from hdl.sequencer import launch_layout
    k, y, g, guard = await _guarded_kernel(dev, params, rng, n)
    before = await dev.read(y)
    p = k.program
    record = launch_layout(params).const({"program": outside, "beats": p.beats,
                                          "iterations": 1, "units": p.units, "agcus": p.agcus})
    msg = await _error_of(dev.run_records(record_words(params, record.as_value().value), 1,
                                          kernel_timeout=10000),
                          "MEMORY", "the program load", what)
    assert f"at beat {outside:#x}" in msg, f"{what}: {msg}"
    assert (await dev.read(y) == before).all() and (await dev.read(g) == guard).all(), \
        f"{what}: a kernel without its program wrote"
    return msg


async def _fault_checksum(dev, params, rng, n, outside, what):
    k, y, g, guard = await _guarded_kernel(dev, params, rng, n)
    before = await dev.read(y)
    prog = await dev.load(k.program)
    image = (await dev.read(prog.buffer)).copy()
    r = rng.randrange(k.program.beats)
    image[r * BEAT_WORDS] ^= np.uint32(1 << rng.randrange(32))      # one data bit
    await dev.write(prog.buffer, image)
    msg = await _error_of(dev.run([prog.launch()], kernel_timeout=10000),
                          "CHECKSUM", "the program load", what)
    assert (await dev.read(y) == before).all() and (await dev.read(g) == guard).all(), \
        f"{what}: a program that failed its checksum ran"
    return msg


async def _fault_load_timeout(dev, params, rng, n, outside, what):
    k, _, _, _ = await _guarded_kernel(dev, params, rng, n)
    prog = await dev.load(k.program)
    limit = k.program.beats // 4            # the load takes at least a cycle a beat
    return await _error_of(dev.run([prog.launch()], kernel_timeout=limit),
                           "TIMEOUT", "the program load", what)


async def _fault_loop_bounds(dev, params, rng, n, outside, what):
    # Three iterations of n words, stepped by n, over buffers of two slices: the third
    # steps out of both segments (built by hand: firmware refuses such strides).
    k, y, g, guard = await _guarded_kernel(dev, params, rng, n, slices=2)
    prog = await dev.load(k.program)
    p = prog.program
    try:
        prog.launch(iterations=3, strides=_slices(n))
    except LaunchError as e:
        assert "outside" in str(e) or "buffer" in str(e), f"{what}: {e}"
    else:
        raise AssertionError(f"{what}: firmware let iterations step out of their buffer")
    launch = Launch(prog.buffer.addr, p.beats, p.units, p.agcus, 3, {}, _slices(n))
    msg = await _error_of(dev.run([launch], kernel_timeout=50000), "FAULT", "the kernel", what)
    assert (await dev.read(g) == guard).all(), f"{what}: an iteration wrote past its buffer"
    return msg


_FAULTS = {"record": _fault_record, "program": _fault_program, "checksum": _fault_checksum,
           "load_timeout": _fault_load_timeout, "loop_bounds": _fault_loop_bounds}


@cocotb.test()
async def stress(dut):
    """Kernels under timing variation: memory latency jitter met at a random phase, and
    units and AGCUs stalled by random token buckets; nothing may change but the timing."""
    from tb.lib.stress import case_of
    args, params, dev, rng = await _setup(dut, StressArgs)
    # packets: every packet counted at each switch input it enters.
    figure = {"runs": 0, "packets": 0, "links_checked": 0, "lost": 0, "duplicated": 0,
              "dropped": 0, "mismatched_words": 0, "words_checked": 0, "throttled_ports": 0,
              "reordered_responses": 0, "cases": {}}
    for name in args.cases.split(","):
        case = case_of(name.strip(), rng)
        runs = [await _stress_run(dev, params, case, rng, args, k, figure)
                for k in range(args.runs)]
        what = f"stress {case.name} {case.shape} (seed {args.seed})"
        counts = {r["counts"] for r in runs}
        assert len(counts) == 1, f"{what}: the port packet counts differ between runs"
        timings = {r["timing"] for r in runs}
        assert args.runs == 1 or len(timings) > 1, \
            f"{what}: every run had the same timing {timings}: nothing was varied"
        figure["cases"][case.name] = {"shape": case.shape, "packets": runs[0]["packets"],
                                      "cycles": [r["timing"][0] for r in runs]}
    write_outputs(**figure)


def _stalling(dev, params, rng, probability, figure):
    """``dev.load`` putting random token buckets (rate 1/8 .. 3/4, burst 1 .. 4) on each
    injection port of a program with ``probability``."""
    from firmware.compiler.program import injection_ports, throttled
    load = type(dev).load

    async def stalled_load(program, region="hbm"):
        ports = [x for x in injection_ports(params, program) if rng.random() < probability]
        figure["throttled_ports"] += len(ports)
        buckets = {x: (rng.randint(32, 192), rng.randint(1, 4)) for x in ports}
        return await load(dev, throttled(params, program, buckets), region)
    return stalled_load


async def _stress_run(dev, params, case, rng, args, k, figure):
    """One run of ``case`` (new inputs, phase and token buckets; the reference backend
    given the same inputs): checks it and adds it to ``figure``."""
    from tb.lib.stress import counter_delta, link_balance, packet_counts
    seed = rng.randrange(1 << 31)
    what = f"stress {case.name} {case.shape} run {k} (seed {args.seed}, run seed {seed})"
    want = await case.run(ReferenceDevice(params), np.random.default_rng(seed))
    mark = dev.alloc.mark()
    dev.load = _stalling(dev, params, rng, args.throttle, figure)
    try:
        before = await dev.counters()
        await dev.tb.cycles(rng.randrange(args.phase))
        got = await case.run(dev, np.random.default_rng(seed))
        after = await dev.counters()
    finally:
        del dev.load
        dev.alloc.release(mark)
    for name, words in got.items():
        bad = np.nonzero(words != want[name])[0]
        figure["words_checked"] += len(words)
        figure["mismatched_words"] += len(bad)
        assert not len(bad), (f"{what}: {name} differs from the reference backend at word "
                              f"{bad[0]} of {len(words)}")
    delta = counter_delta(before, after)
    checked, unbalanced = link_balance(params, delta)
    figure["lost"] += sum(max(0, sent - recv) for *_, sent, recv in unbalanced)
    figure["duplicated"] += sum(max(0, recv - sent) for *_, sent, recv in unbalanced)
    figure["dropped"] += sum(delta["dropped"])
    assert not unbalanced, f"{what}: links whose packets sent != received: {unbalanced}"
    assert not any(delta["dropped"]), f"{what}: packets dropped: {delta['dropped']}"
    counts = packet_counts(delta)
    seq = _seq_delta(before["seq"], after["seq"])
    hops = sum(n for f in ("vec", "sca") for sw in delta[f] for n in sw["inp"])
    figure["runs"] += 1
    figure["packets"] += hops
    figure["links_checked"] += checked
    figure["reordered_responses"] += sum(a["reordered"] - b["reordered"]
                                         for b, a in zip(before["agcu"], after["agcu"]))
    return {"counts": counts, "packets": hops,
            "timing": (seq["cycles"], seq["exec_cycles"])}
