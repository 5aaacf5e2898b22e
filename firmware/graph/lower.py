"""Graph lowering: a :class:`~firmware.graph.ir.Graph` -> device buffers, one kernel per
op, and the launch list the kernel sequencer runs without the host (on a device through
``Device.run_programs``).

Each op becomes a kernel (``firmware/kernels``); each tensor a buffer in its region, in
the layout its producer writes or its consumer reads: a matmul or attention operand in
the layout the kernel takes (packed by the host when the tensor is written; attention's
K and V share one buffer, K^T then V, as its AGCU streams them), a matmul or attention
result row-major with padded columns, an elementwise result in its input's layout, a
softmax result row-major. A graph that
does not fit says what ran out (``OutOfMemory`` names the tensor and the region); a
layout this compiler cannot produce on the device is a ``GraphError``.
"""

from dataclasses import dataclass

import numpy as np

from firmware.kernels.attention import AttentionShape, compile_attention
from firmware.kernels.elementwise import compile_scale_bias
from firmware.kernels.gemm import GemmShape, compile_gemm, pack_b
from firmware.kernels.softmax import compile_softmax
from firmware.runtime.device import MAX_LAUNCHES
from firmware.runtime.memory import Buffer

from .ir import GraphError

__all__ = ["Layout", "CompiledGraph", "compile_graph", "LOWERINGS"]


#: Words of each packed kind, from its kernel's shape.
_WORDS = {"gemm_a": "a_words", "gemm_b": "b_words", "gemm_c": "c_words",
          "attn_q": "q_words", "attn_k": "k_words", "attn_v": "v_words", "attn_o": "o_words"}
#: Kinds the device writes (the rest the host packs).
_RESULTS = ("gemm_c", "attn_o")


@dataclass(frozen=True)
class Layout:
    """How a tensor's words lie in its buffer: ``kind`` "flat" (row-major), "gemm_a",
    "gemm_b" (a GEMM operand, packed), "gemm_c" (a GEMM result), "attn_q" / "attn_k" /
    "attn_v" (attention operands) and "attn_o" (its result); ``gemm`` the kernel that
    defines the packed kinds."""
    kind: str
    shape: tuple
    gemm: object = None

    @property
    def words(self):
        if self.kind == "flat":
            return int(np.prod(self.shape))
        return getattr(self.gemm.shape, _WORDS[self.kind])

    @property
    def row_stride(self):
        """Words from one row to the next, for a row-major kind (flat or a result)."""
        if self.kind == "flat":
            return self.shape[-1]
        if self.kind == "gemm_c":
            return self.gemm.shape.c_cols
        if self.kind == "attn_o":
            return self.gemm.shape.pv.c_cols
        raise GraphError(f"a {self.kind} operand layout is not row-major")

    def pack(self, params, values):
        v = np.asarray(values)
        if v.shape != self.shape:
            raise ValueError(f"values of shape {v.shape}, the tensor is {self.shape}")
        v = (v.astype(np.float32).view(np.uint32) if v.dtype != np.uint32 else v)
        if self.kind == "gemm_a":
            return self.gemm.pack_a(params, v)
        if self.kind == "gemm_b":
            return self.gemm.pack_b(params, v)
        if self.kind == "attn_q":
            return self.gemm.pack_q(params, v)
        if self.kind in ("attn_k", "attn_v"):
            return pack_b(params, v.T if self.kind == "attn_k" else v)
        if self.kind in _RESULTS:
            raise GraphError(f"a {self.kind} result layout is written by the device, not "
                             f"the host")
        return v.reshape(-1)

    def unpack(self, words):
        w = np.asarray(words, np.uint32)
        if self.kind == "gemm_c":
            return self.gemm.unpack_c(w[:self.words])
        if self.kind == "attn_o":
            return self.gemm.unpack_o(w[:self.words])
        if self.kind == "flat":
            return w[:self.words].reshape(self.shape)
        raise GraphError(f"a {self.kind} operand layout is not read back")


@dataclass
class CompiledGraph:
    graph: object
    buffers: dict          # tensor name -> Buffer
    layouts: dict          # tensor name -> Layout
    kernels: list          # (Op, kernel) in launch order

    async def run(self, device, inputs, **run_args):
        """Write ``inputs`` ({tensor: array of its shape}), load every kernel, run them as
        one launch list, return {output tensor: uint32 array}."""
        params = device.params
        missing = {t.name for t in self.graph.inputs} - set(inputs)
        if missing:
            raise GraphError(f"no values for input(s) {sorted(missing)}")
        writes = []
        for name, values in inputs.items():
            if name not in self.layouts or self.graph.tensors[name].producer is not None:
                raise GraphError(f"{name!r} is not an input of graph {self.graph.name!r}")
            writes.append((self.buffers[name], self.layouts[name].pack(params, values)))
        words, counters = await device.run_programs(
            writes, [k.program for _, k in self.kernels],
            {t.name: self.buffers[t.name] for t in self.graph.outputs}, **run_args)
        return {name: self.layouts[name].unpack(w) for name, w in words.items()}, counters


class _Lowering:
    """How one op kind becomes a kernel: the packed layouts it needs of its operands
    (decided for the whole graph first), then its buffers and kernel."""

    def shape(self, params, graph, op):
        """The kernel's shape object, or None (no packed operands)."""
        return None

    def operand_layouts(self, graph, op):
        """[(tensor, packed kind)] this op needs its operands in."""
        return ()

    def lower(self, ctx, op, shape):
        """Allocate what the op still needs, return its compiled kernel; record the
        layout of every tensor it fixes in ``ctx.final``."""
        raise NotImplementedError


class _Matmul(_Lowering):
    def shape(self, params, graph, op):
        a, b = (graph.tensors[n] for n in op.inputs)
        m, k = a.shape
        return GemmShape.of(params, m, b.shape[1], k)

    def operand_layouts(self, graph, op):
        a, b = (graph.tensors[n] for n in op.inputs)
        return ((a, "gemm_a"), (b, "gemm_b"))

    def lower(self, ctx, op, s):
        a, b = (ctx.graph.tensors[n] for n in op.inputs)
        out = ctx.graph.tensors[op.output]
        for t, words in ((a, s.a_words), (b, s.b_words)):
            if t.name not in ctx.buffers:
                ctx.buffer(t, words)
        c = ctx.buffer(out, s.c_words)
        g = compile_gemm(ctx.params, s.m, s.n, s.k, a=ctx.buffers[a.name],
                         b=ctx.buffers[b.name], c=c, relu=op.attrs["relu"],
                         bf16=op.attrs["bf16"])
        for t, kind in ((a, "gemm_a"), (b, "gemm_b"), (out, "gemm_c")):
            ctx.final.setdefault(t.name, Layout(kind, t.shape, g))
        return g


class _ScaleBias(_Lowering):
    def lower(self, ctx, op, _):
        x, out = ctx.graph.tensors[op.inputs[0]], ctx.graph.tensors[op.output]
        lay = ctx.final[x.name]
        if lay.kind in ("gemm_a", "gemm_b"):
            raise GraphError(f"{op.name}: input {x.name!r} is a packed GEMM operand")
        y = ctx.buffer(out, lay.words)
        kern = compile_scale_bias(ctx.params, lay.words, x=ctx.buffers[x.name], y=y,
                                  scale=op.attrs["scale"], bias=op.attrs["bias"],
                                  relu=op.attrs["relu"])
        ctx.final[out.name] = Layout(lay.kind, out.shape, lay.gemm)
        return kern


class _Softmax(_Lowering):
    def lower(self, ctx, op, _):
        x, out = ctx.graph.tensors[op.inputs[0]], ctx.graph.tensors[op.output]
        lay = ctx.final[x.name]
        if lay.kind not in ("flat", *_RESULTS):
            raise GraphError(f"{op.name}: input {x.name!r} is a packed operand")
        rows, n = x.shape
        y = ctx.buffer(out, rows * n)
        kern = compile_softmax(ctx.params, rows, n, x=ctx.buffers[x.name], y=y,
                               x_stride=lay.row_stride, scale=op.attrs["scale"])
        ctx.final[out.name] = Layout("flat", out.shape)
        return kern


class _Attention(_Lowering):
    def shape(self, params, graph, op):
        return AttentionShape.of(params, *graph.tensors[op.inputs[0]].shape)

    def operand_layouts(self, graph, op):
        return tuple((graph.tensors[n], f"attn_{r}") for n, r in zip(op.inputs, "qkv"))

    def lower(self, ctx, op, sh):
        q, k, v = (ctx.graph.tensors[n] for n in op.inputs)
        out, buffers = ctx.graph.tensors[op.output], ctx.buffers
        if q.name not in buffers:
            ctx.buffer(q, sh.q_words)
        # K^T then V in one buffer: the kernel's AGCU streams both with one access.
        if k.name not in buffers and v.name not in buffers and k.region == v.region:
            kv = ctx.alloc.alloc(k.region, sh.kv_words, f"{k.name}+{v.name}")
            buffers[k.name] = Buffer(k.region, kv.addr, sh.k_words, k.name)
            buffers[v.name] = Buffer(v.region, kv.addr + sh.k_words, sh.v_words, v.name)
        kv = buffers.get(k.name)
        if kv is None or buffers.get(v.name) is None or \
                buffers[v.name].addr != kv.addr + sh.k_words:
            raise GraphError(f"{op.name}: k {k.name!r} and v {v.name!r} must be inputs "
                             f"of one region used by this attention only (one buffer "
                             f"holds both)")
        o = ctx.buffer(out, sh.o_words)
        kern = compile_attention(ctx.params, *q.shape, q=buffers[q.name],
                                 kv=Buffer(k.region, kv.addr, sh.kv_words, "kv"), o=o)
        for t, kind in ((q, "attn_q"), (k, "attn_k"), (v, "attn_v"), (out, "attn_o")):
            ctx.final.setdefault(t.name, Layout(kind, t.shape, kern))
        return kern


#: The lowering of each op kind of the IR.
LOWERINGS = {"matmul": _Matmul(), "scale_bias": _ScaleBias(), "softmax": _Softmax(),
             "attention": _Attention()}


@dataclass
class _Context:
    """What lowering a graph builds up: buffers and final layouts by tensor name."""
    params: object
    graph: object
    alloc: object
    buffers: dict
    final: dict

    def buffer(self, t, words):
        # A row-major result is read by whole vectors per row (softmax): the last row
        # may reach past the tensor's words.
        self.buffers[t.name] = self.alloc.alloc(t.region, words + self.params.pcu_lanes, t.name)
        return self.buffers[t.name]


def _operand_layouts(params, graph):
    """The kernel shape of every op, and the one packed layout each operand is used in:
    matmul and attention operands must be host-written (packed)."""
    shapes, layouts = {}, {}
    for op in graph.ops:
        low = LOWERINGS.get(op.kind)
        if low is None:
            raise GraphError(f"{op.name}: unknown op kind {op.kind!r}")
        shapes[op.name] = low.shape(params, graph, op)
        for t, kind in low.operand_layouts(graph, op):
            if t.producer is not None:
                raise GraphError(f"{op.name}: operand {t.name!r} is computed on the device "
                                 f"(by {t.producer}); the {op.kind} operand layout needs a "
                                 f"relayout op this compiler does not have yet")
            prev = layouts.get(t.name)
            if prev is not None and prev[0] != kind:
                raise GraphError(f"{op.name}: input {t.name!r} is used as {prev[0]} by "
                                 f"{prev[1]} and as {kind} here; one buffer has one layout")
            layouts.setdefault(t.name, (kind, op.name))
    return shapes, layouts


def compile_graph(params, graph, alloc):
    """Buffers from ``alloc`` (a device's allocator) and a kernel per op (its
    :data:`LOWERINGS` entry)."""
    if not graph.ops:
        raise GraphError(f"graph {graph.name!r} has no ops")
    if len(graph.ops) > MAX_LAUNCHES:
        raise GraphError(f"graph {graph.name!r} has {len(graph.ops)} ops, a kernel each; the "
                         f"launch list holds {MAX_LAUNCHES}")
    shapes, layouts = _operand_layouts(params, graph)
    ctx = _Context(params, graph, alloc, {}, {})
    for t in graph.inputs:
        if t.name not in layouts:
            ctx.final[t.name] = Layout("flat", t.shape)
            ctx.buffer(t, ctx.final[t.name].words)
    kernels = [(op, LOWERINGS[op.kind].lower(ctx, op, shapes[op.name])) for op in graph.ops]
    return CompiledGraph(graph, ctx.buffers, ctx.final, kernels)
