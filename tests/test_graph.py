"""Tier 1: the graph IR and its compiler, run on the numpy reference backend — results
in the hardware's operation order, close to float64 — and every error path."""

import asyncio

import numpy as np
import pytest

from firmware import numerics as N
from firmware.graph import compile_graph
from firmware.graph import Graph, GraphError
from firmware.graph import mlp as mlp_graph
from firmware.runtime.memory import OutOfMemory
from firmware.runtime.reference import ReferenceDevice
from hdl.params import PRESETS, RduParams

SMALL = PRESETS["small"]


def mlp(m=40, k=33, n=20):
    g = Graph("mlp")
    x = g.input("x", (m, k))
    w = g.input("w", (k, n), region="ddr")
    h = g.matmul(x, w, relu=True, name="fc", out="h")
    g.scale_bias(h, scale=0.5, bias=1.0, name="affine", out="y")
    return g


def _bf16(rng, shape):
    return rng.normal(0, 1, shape).astype(np.float32).view(np.uint32) & 0xFFFF0000


def test_graph_runs_on_the_reference_backend():
    g = mlp()
    dev = ReferenceDevice(SMALL)
    cg = compile_graph(SMALL, g, dev.alloc)
    assert [op.name for op, _ in cg.kernels] == ["fc", "affine"]
    assert cg.buffers["w"].region == "ddr"
    rng = np.random.default_rng(7)
    x, w = _bf16(rng, (40, 33)), _bf16(rng, (33, 20))
    out, _ = asyncio.run(cg.run(dev, {"x": x, "w": w}))
    assert list(out) == ["y"] and out["y"].shape == (40, 20)
    # Hardware order: the GEMM (FMA chain, ReLU in the tail), then x * 0.5 + 1 in FP32.
    h = N.from_bits(cg.kernels[0][1].reference(SMALL, x, w))
    want = (h * np.float32(0.5) + np.float32(1.0)).astype(np.float32)
    assert (N.from_bits(out["y"]) == want).all()
    fx, fw = N.from_bits(x).astype(np.float64), N.from_bits(w).astype(np.float64)
    exact = np.maximum(fx @ fw, 0) * 0.5 + 1
    bound = 33 * 2.0 ** -24 * (np.abs(fx) @ np.abs(fw)) + 2.0 ** -23 * np.abs(exact)
    assert (np.abs(N.from_bits(out["y"]) - exact) <= bound).all()


def test_graph_errors_name_the_problem():
    g = Graph("g")
    a = g.input("a", (4, 5))
    with pytest.raises(GraphError, match="defined twice"):
        g.input("a", (2, 2))
    with pytest.raises(GraphError, match="inner dimensions differ"):
        g.matmul(a, g.input("b", (4, 4)))
    with pytest.raises(GraphError, match="not in graph"):
        g.scale_bias(Graph("other").input("z", (2,)))
    with pytest.raises(GraphError, match="region 'sram'"):
        g.input("c", (2,), region="sram")
    with pytest.raises(GraphError, match="shape"):
        g.input("d", (0, 3))
    with pytest.raises(GraphError, match="no ops"):
        compile_graph(SMALL, Graph("empty"), ReferenceDevice(SMALL).alloc)
    # A matmul operand computed on the device: no relayout op yet, said so.
    h = g.scale_bias(a, scale=2.0)
    g.matmul(h, g.input("e", (5, 3)), name="mm")
    with pytest.raises(GraphError, match="mm: operand .* is computed on the device"):
        compile_graph(SMALL, g, ReferenceDevice(SMALL).alloc)


def test_graph_that_does_not_fit_memory_names_tensor_and_region():
    g = Graph("big")
    x = g.input("x", (512, 1024), region="hbm")
    g.scale_bias(x, scale=2.0, out="y")          # 2 x 2 MiB (+ the launch list) > 4 MiB
    with pytest.raises(OutOfMemory, match="buffer 'y' .* does not fit in hbm"):
        compile_graph(SMALL, g, ReferenceDevice(SMALL).alloc)


def test_missing_and_unknown_inputs_are_refused():
    g = mlp()
    dev = ReferenceDevice(SMALL)
    cg = compile_graph(SMALL, g, dev.alloc)
    with pytest.raises(GraphError, match=r"no values for input\(s\) \['w'\]"):
        asyncio.run(cg.run(dev, {"x": np.zeros((40, 33), np.float32)}))
    with pytest.raises(ValueError, match="shape"):
        asyncio.run(cg.run(dev, {"x": np.zeros((3, 3), np.float32),
                                 "w": np.zeros((33, 20), np.float32)}))


def attention_graph(seq=40, d=32, scale=True):
    """q k v -> attention -> (softmax of the result's rows) -> scale_bias."""
    g = Graph("attn")
    q, k, v = (g.input(n, (seq, d)) for n in "qkv")
    o = g.attention(q, k, v, name="att", out="o")
    if scale:
        s = g.softmax(o, scale=2.0, name="sm", out="p")
        g.scale_bias(s, scale=3.0, bias=-1.0, name="affine", out="y")
    return g


def test_softmax_and_attention_ops_on_the_reference_backend():
    """A graph with an attention head, a softmax over its rows and an elementwise op:
    every kernel's result as the hardware computes it (the attention kernel's own
    reference; then the softmax of those rows), close to float64."""
    from firmware.kernels.attention import attention_bound, exact_attention
    from firmware.kernels.softmax import softmax_bound
    seq, d = 40, 32
    g = attention_graph(seq, d)
    dev = ReferenceDevice(SMALL)
    cg = compile_graph(SMALL, g, dev.alloc)
    assert [op.name for op, _ in cg.kernels] == ["att", "sm", "affine"]
    assert cg.buffers["v"].addr == cg.buffers["k"].addr + cg.buffers["k"].words
    rng = np.random.default_rng(11)
    q, k, v = (_bf16(rng, (seq, d)) for _ in range(3))
    out, _ = asyncio.run(cg.run(dev, {"q": q, "k": k, "v": v}))
    att = cg.kernels[0][1]
    o = att.reference(SMALL, q, k, v)
    exact = exact_attention(q, k, v)
    assert (np.abs(N.from_bits(o) - exact) <= attention_bound(q, k, v, SMALL.pcu_lanes)).all()
    sm = cg.kernels[1][1]
    p = sm.reference(SMALL, o)
    y = N.fp32_add(N.fp32_mul(p, np.full_like(p, np.float32(3.0).view(np.uint32))),
                   np.full_like(p, np.float32(-1.0).view(np.uint32)))
    assert np.array_equal(out["y"], y)
    f = 2.0 * N.from_bits(o).astype(np.float64)
    e = np.exp(f - f.max(axis=1, keepdims=True))
    rel = np.abs(N.from_bits(p) - e / e.sum(axis=1, keepdims=True)) / (e / e.sum(axis=1,
                                                                                  keepdims=True))
    assert rel.max() <= softmax_bound(float(np.abs(f - f.max(axis=1, keepdims=True)).max()) *
                                      np.log2(np.e), d, SMALL.pcu_lanes)


def test_softmax_of_a_matmul_result_reads_its_padded_rows():
    g = Graph("mm-softmax")
    h = g.matmul(g.input("x", (30, 16)), g.input("w", (16, 12)), name="fc", out="h")
    g.softmax(h, name="sm", out="p")
    dev = ReferenceDevice(SMALL)
    cg = compile_graph(SMALL, g, dev.alloc)
    rng = np.random.default_rng(3)
    x, w = _bf16(rng, (30, 16)), _bf16(rng, (16, 12))
    out, _ = asyncio.run(cg.run(dev, {"x": x, "w": w}))
    h_bits = cg.kernels[0][1].reference(SMALL, x, w)
    assert np.array_equal(out["p"], cg.kernels[1][1].reference(SMALL, h_bits))


def test_softmax_and_attention_errors_name_the_problem():
    g = Graph("bad")
    x = g.input("x", (4, 5, 6))
    with pytest.raises(GraphError, match="softmax takes a 2-D tensor"):
        g.softmax(x)
    y = g.input("y", (4, 8))
    with pytest.raises(GraphError, match="scale -1 must be a positive number"):
        g.softmax(y, scale=-1)
    with pytest.raises(GraphError, match="of one shape"):
        g.attention(y, g.input("k", (5, 8)), g.input("v", (4, 8)))
    # An attention operand computed on the device needs a relayout.
    g = Graph("computed")
    q = g.scale_bias(g.input("x", (8, 8)), scale=2.0, out="q")
    g.attention(q, g.input("k", (8, 8)), g.input("v", (8, 8)), name="att")
    with pytest.raises(GraphError, match="att: operand 'q' is computed on the device"):
        compile_graph(SMALL, g, ReferenceDevice(SMALL).alloc)
    # K and V must share one buffer: not when they live in different regions.
    g = Graph("split")
    g.attention(g.input("q", (8, 8)), g.input("k", (8, 8)), g.input("v", (8, 8), region="ddr"),
                name="att")
    with pytest.raises(GraphError, match="att: k 'k' and v 'v' must be inputs of one region"):
        compile_graph(SMALL, g, ReferenceDevice(SMALL).alloc)


def test_a_graph_longer_than_the_launch_list_is_refused():
    from firmware.runtime.device import MAX_LAUNCHES
    g = Graph("long")
    t = g.input("x", (4, 8))
    for i in range(MAX_LAUNCHES + 1):
        t = g.scale_bias(t, scale=1.0, name=f"op{i}")
    with pytest.raises(GraphError, match=f"has {MAX_LAUNCHES + 1} kernels to launch; the "
                                         f"launch list holds {MAX_LAUNCHES}"):
        compile_graph(SMALL, g, ReferenceDevice(SMALL).alloc)


def _mlp(m, k, hidden, n, bias=True):
    return mlp_graph(m, k, hidden, n, bias=bias)


@pytest.mark.parametrize("params,m,k,hidden,n,bias", [
    (SMALL, 40, 33, 20, 12, True), (SMALL, 5, 8, 9, 30, False), (SMALL, 61, 16, 40, 9, True),
    (PRESETS["medium"], 40, 33, 20, 30, True),        # two pipelines
], ids=str)
def test_mlp_graph_fuses_into_one_kernel_with_the_op_by_op_bits(params, m, k, hidden, n, bias):
    """x @ W1 + b1, ReLU, @ W2: one fused kernel (H never in HBM; the second layer shared
    by PCUs, the row tiles by pipelines where the array has room); compiled op by op (the second GEMM takes H row-major
    through a transposing PMU) the same bits."""
    import asyncio
    from firmware.kernels.mlp import mlp_bound
    rng = np.random.default_rng(m + k)
    bf = lambda *s: rng.normal(0, 1, s).astype(np.float32).view(np.uint32) & 0xFFFF0000  # noqa: E731
    vals = {"x": bf(m, k), "w1": bf(k, hidden), "w2": bf(hidden, n)}
    if bias:
        vals["b1"] = bf(hidden)
    outs = {}
    for fuse in (True, False):
        dev = ReferenceDevice(params)
        cg = compile_graph(params, _mlp(m, k, hidden, n, bias), dev.alloc, fuse_ops=fuse)
        assert [op.kind for op, _ in cg.kernels] == (["mlp"] if fuse else ["matmul"] * 2)
        if fuse:
            # small: one X stream (W takes the other AGCU's load), and four PMUs hold W1,
            # H and two shares of W2; medium: a pipeline per row tile (two, four AGCUs),
            # its eight PMUs two pipelines' W1, H and two W2 shares.
            sh = cg.kernels[0][1].shape
            assert (sh.pipes, sh.g2.pcus) == ((2, 2) if params.agcus == 4 else (1, 2)), sh
        outs[fuse] = asyncio.run(cg.run(dev, vals))[0]["y"]
    assert np.array_equal(outs[True], outs[False])
    exact, bound = mlp_bound(vals["x"], vals["w1"], vals.get("b1"), vals["w2"])
    assert (np.abs(N.from_bits(outs[True]).astype(np.float64) - exact) <= bound).all()


def test_mlp_that_does_not_fit_stays_two_kernels():
    """W1 larger than a PMU: no fused kernel fits, the graph runs op by op."""
    dev = ReferenceDevice(SMALL)
    cg = compile_graph(SMALL, _mlp(30, 600, 64, 8), dev.alloc)
    assert [op.kind for op, _ in cg.kernels] == ["matmul", "matmul"]
    # Nor one whose hidden tensor another op reads too.
    g = _mlp(30, 16, 16, 8)
    g.scale_bias("h", out="h2")
    kinds = [op.kind for op, _ in compile_graph(SMALL, g, dev.alloc).kernels]
    assert kinds == ["matmul", "matmul", "scale_bias"]


@pytest.mark.parametrize("seq,d", [(40, 16), (64, 32)])
def test_attention_chain_fuses_into_the_attention_kernel(seq, d):
    """matmul(q, kT) -> softmax(1/sqrt(d)) -> matmul(p, v) becomes the fused attention
    kernel: the same bits as the graph's attention op on K = kT^T; op by op (three
    kernels through HBM) within the attention bound of float64."""
    import math
    from firmware.kernels.attention import attention_bound, exact_attention
    rng = np.random.default_rng(seq + d)
    bf = lambda *s: rng.normal(0, 1, s).astype(np.float32).view(np.uint32) & 0xFFFF0000  # noqa: E731
    q, k, v = bf(seq, d), bf(seq, d), bf(seq, d)

    def chain():
        g = Graph("chain")
        s = g.matmul(g.input("q", (seq, d)), g.input("kt", (d, seq)))
        p = g.softmax(s, scale=1 / math.sqrt(d))
        g.matmul(p, g.input("v", (seq, d)), out="o")
        return g
    outs = {}
    for fuse in (True, False):
        dev = ReferenceDevice(SMALL)
        cg = compile_graph(SMALL, chain(), dev.alloc, fuse_ops=fuse)
        kinds = [op.kind for op, _ in cg.kernels]
        assert kinds == (["attention"] if fuse else ["matmul", "softmax", "matmul"])
        outs[fuse] = asyncio.run(cg.run(dev, {"q": q, "kt": k.T.copy(), "v": v}))[0]["o"]
    g = Graph("head")
    g.attention(*(g.input(t, (seq, d)) for t in "qkv"), out="o")
    dev = ReferenceDevice(SMALL)
    head = asyncio.run(compile_graph(SMALL, g, dev.alloc).run(dev, {"q": q, "k": k, "v": v}))
    assert np.array_equal(outs[True], head[0]["o"])
    bound = attention_bound(q, k, v, SMALL.pcu_lanes)
    for got in outs.values():
        assert (np.abs(N.from_bits(got).astype(np.float64) - exact_attention(q, k, v))
                <= bound).all()


#: A grid with room for a head and its output projection (5 PCUs, 7 PMUs; the RTL grid test's).
GRID = RduParams.from_mapping({**SMALL.to_dict(), "name": "grid3x6", "rows": 3, "cols": 6,
                               "agcus": 3})


@pytest.mark.parametrize("chain,seq,d,n", [(False, 40, 16, 24), (True, 64, 32, 8),
                                           (False, 30, 8, 40)])
def test_attention_and_its_projection_fuse_into_one_kernel(chain, seq, d, n):
    """An attention head (the op, or the matmul -> softmax -> matmul chain) followed by
    its output projection ``O @ Wo``: one kernel where the array has room (O never in HBM)
    with the bits of the head and the matmul run one after the other; on ``small`` (four
    PCUs, all taken by the head) two kernels."""
    import math
    rng = np.random.default_rng(seq + d + n)
    bf = lambda *s: rng.normal(0, 1, s).astype(np.float32).view(np.uint32) & 0xFFFF0000  # noqa: E731
    vals = {"q": bf(seq, d), "k": bf(seq, d), "v": bf(seq, d), "wo": bf(d, n)}

    def graph():
        g = Graph("head+proj")
        q, v = g.input("q", (seq, d)), g.input("v", (seq, d))
        if chain:
            p = g.softmax(g.matmul(q, g.input("k", (d, seq))), scale=1 / math.sqrt(d))
            o = g.matmul(p, v)
        else:
            o = g.attention(q, g.input("k", (seq, d)), v)
        g.matmul(o, g.input("wo", (d, n)), out="y")
        return g
    inputs = dict(vals, k=vals["k"].T.copy()) if chain else vals
    outs = {}
    for params, fuse, kinds in ((GRID, True, ["attention"]),
                                (GRID, False, ["matmul", "softmax", "matmul", "matmul"]
                                 if chain else ["attention", "matmul"]),
                                (SMALL, True, ["attention", "matmul"])):
        dev = ReferenceDevice(params)
        cg = compile_graph(params, graph(), dev.alloc, fuse_ops=fuse)
        assert [op.kind for op, _ in cg.kernels] == kinds, (params.name, fuse)
        outs[params.name, fuse] = asyncio.run(cg.run(dev, inputs))[0]["y"]
    if not chain:       # the head op's bits, then the matmul's
        assert np.array_equal(outs["grid3x6", True], outs["grid3x6", False])
    assert np.array_equal(outs["grid3x6", True], outs["small", True])
