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

__all__ = ["Layout", "CompiledGraph", "compile_graph"]


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


def compile_graph(params, graph, alloc):
    """Buffers from ``alloc`` (a device's allocator) and a kernel per op."""
    if not graph.ops:
        raise GraphError(f"graph {graph.name!r} has no ops")
    if len(graph.ops) > MAX_LAUNCHES:
        raise GraphError(f"graph {graph.name!r} has {len(graph.ops)} ops, a kernel each; the "
                         f"launch list holds {MAX_LAUNCHES}")
    gemms = {}
    layouts = {}
    # Operand layouts first: matmul and attention operands must be host-written (packed).
    for op in graph.ops:
        if op.kind == "matmul":
            a, b = (graph.tensors[n] for n in op.inputs)
            m, k = a.shape
            n = b.shape[1]
            gemms[op.name] = GemmShape.of(params, m, n, k)
            roles = ((a, "gemm_a"), (b, "gemm_b"))
        elif op.kind == "attention":
            gemms[op.name] = AttentionShape.of(params, *graph.tensors[op.inputs[0]].shape)
            roles = tuple((graph.tensors[n], f"attn_{r}") for n, r in zip(op.inputs, "qkv"))
        else:
            continue
        for t, kind in roles:
            if t.producer is not None:
                raise GraphError(f"{op.name}: operand {t.name!r} is computed on the device "
                                 f"(by {t.producer}); the {op.kind} operand layout needs a "
                                 f"relayout op this compiler does not have yet")
            prev = layouts.get(t.name)
            if prev is not None and prev[0] != kind:
                raise GraphError(f"{op.name}: input {t.name!r} is used as {prev[0]} by "
                                 f"{prev[1]} and as {kind} here; one buffer has one layout")
            layouts.setdefault(t.name, (kind, op.name))
    buffers = {}
    slack = params.pcu_lanes

    def buffer(t, words):
        # A row-major result is read by whole vectors per row (softmax): the last row
        # may reach past the tensor's words.
        buffers[t.name] = alloc.alloc(t.region, words + slack, t.name)
        return buffers[t.name]

    final, kernels = {}, []
    for t in graph.inputs:
        if t.name not in layouts:
            final[t.name] = Layout("flat", t.shape)
            buffer(t, final[t.name].words)
    for op in graph.ops:
        out = graph.tensors[op.output]
        if op.kind == "matmul":
            s = gemms[op.name]
            a, b = (graph.tensors[n] for n in op.inputs)
            for t, words in ((a, s.a_words), (b, s.b_words)):
                if t.name not in buffers:
                    buffer(t, words)
            c = buffer(out, s.c_words)
            g = compile_gemm(params, s.m, s.n, s.k, a=buffers[a.name], b=buffers[b.name],
                             c=c, relu=op.attrs["relu"], bf16=op.attrs["bf16"])
            for t, kind in ((a, "gemm_a"), (b, "gemm_b"), (out, "gemm_c")):
                final.setdefault(t.name, Layout(kind, t.shape, g))
            kernels.append((op, g))
        elif op.kind == "scale_bias":
            x = graph.tensors[op.inputs[0]]
            lay = final[x.name]
            if lay.kind in ("gemm_a", "gemm_b"):
                raise GraphError(f"{op.name}: input {x.name!r} is a packed GEMM operand")
            y = buffer(out, lay.words)
            kern = compile_scale_bias(params, lay.words, x=buffers[x.name], y=y,
                                      scale=op.attrs["scale"], bias=op.attrs["bias"],
                                      relu=op.attrs["relu"])
            final[out.name] = Layout(lay.kind, out.shape, lay.gemm)
            kernels.append((op, kern))
        elif op.kind == "softmax":
            x = graph.tensors[op.inputs[0]]
            lay = final[x.name]
            if lay.kind not in ("flat", *_RESULTS):
                raise GraphError(f"{op.name}: input {x.name!r} is a packed operand")
            rows, n = x.shape
            y = buffer(out, rows * n)
            kern = compile_softmax(params, rows, n, x=buffers[x.name], y=y,
                                   x_stride=lay.row_stride, scale=op.attrs["scale"])
            final[out.name] = Layout("flat", out.shape)
            kernels.append((op, kern))
        elif op.kind == "attention":
            sh = gemms[op.name]
            q, k, v = (graph.tensors[n] for n in op.inputs)
            if q.name not in buffers:
                buffer(q, sh.q_words)
            # K^T then V in one buffer: the kernel's AGCU streams both with one access.
            if k.name not in buffers and v.name not in buffers and k.region == v.region:
                kv = alloc.alloc(k.region, sh.kv_words, f"{k.name}+{v.name}")
                buffers[k.name] = Buffer(k.region, kv.addr, sh.k_words, k.name)
                buffers[v.name] = Buffer(v.region, kv.addr + sh.k_words, sh.v_words, v.name)
            kv = buffers.get(k.name)
            if kv is None or buffers.get(v.name) is None or \
                    buffers[v.name].addr != kv.addr + sh.k_words:
                raise GraphError(f"{op.name}: k {k.name!r} and v {v.name!r} must be inputs "
                                 f"of one region used by this attention only (one buffer "
                                 f"holds both)")
            o = buffer(out, sh.o_words)
            kern = compile_attention(params, *q.shape, q=buffers[q.name],
                                     kv=Buffer(k.region, kv.addr, sh.kv_words, "kv"), o=o)
            for t, kind in ((q, "attn_q"), (k, "attn_k"), (v, "attn_v"), (out, "attn_o")):
                final.setdefault(t.name, Layout(kind, t.shape, kern))
            kernels.append((op, kern))
        else:
            raise GraphError(f"{op.name}: unknown op kind {op.kind!r}")
    return CompiledGraph(graph, buffers, final, kernels)
