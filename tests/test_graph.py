"""Tier 1: the graph IR and its compiler, run on the numpy reference backend — results
in the hardware's operation order, close to float64 — and every error path."""

import asyncio

import numpy as np
import pytest

from firmware import numerics as N
from firmware.compiler.graph import compile_graph
from firmware.graph import Graph, GraphError
from firmware.runtime.memory import OutOfMemory
from firmware.runtime.reference import ReferenceDevice
from hdl.params import PRESETS

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
