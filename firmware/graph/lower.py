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

import math
from dataclasses import dataclass

import numpy as np

from firmware.compiler.pcu import systolic_tile_rows
from firmware.kernels.attention import AttentionShape, attention_fits, compile_attention
from firmware.kernels.elementwise import compile_scale_bias
from firmware.kernels.gemm import GemmShape, compile_gemm, gemm_pcus, pack_b
from firmware.kernels.mlp import compile_mlp, mlp_plan
from firmware.kernels.softmax import compile_softmax
from firmware.runtime.device import MAX_LAUNCHES
from firmware.runtime.memory import Buffer

from .ir import GraphError, Op

__all__ = ["Layout", "CompiledGraph", "compile_graph", "fuse", "LOWERINGS", "PART"]


#: Words of each packed kind, from its kernel's shape.
_WORDS = {"gemm_a": "a_words", "gemm_b": "b_words", "gemm_c": "c_words",
          "attn_q": "q_words", "attn_k": "k_words", "attn_kt": "k_words", "attn_v": "v_words",
          "attn_wo": "wo_words",
          "attn_o": "o_words",
          "mlp_x": "x_words", "mlp_w": "w_words", "mlp_y": "y_words"}
#: Kinds the device writes (the rest the host packs).
_RESULTS = ("gemm_c", "attn_o", "mlp_y")
#: A tensor packed into another's buffer by that tensor's layout (a bias with its
#: weights, W2 with W1 in a fused MLP).
PART = "part"


@dataclass(frozen=True)
class Layout:
    """How a tensor's words lie in its buffer: ``kind`` "flat" (row-major), "gemm_a",
    "gemm_b" (a GEMM operand, packed), "gemm_c" (a GEMM result), "attn_q" / "attn_k" /
    "attn_v" (attention operands) and "attn_o" (its result), "mlp_x" / "mlp_w" / "mlp_y"
    (a fused MLP's), or :data:`PART` (packed by another tensor's layout); ``gemm`` the
    kernel that defines the packed kinds; ``joint``: the tensors whose values this
    layout packs with its own (a bias; a fused MLP's W2 and bias)."""
    kind: str
    shape: tuple
    gemm: object = None
    joint: tuple = ()

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
            return self.gemm.shape.out.c_cols
        if self.kind == "mlp_y":
            return self.gemm.shape.g2.c_cols
        raise GraphError(f"a {self.kind} operand layout is not row-major")

    def pack(self, params, values, joint=()):
        """The buffer's words from this tensor's ``values`` and those of its ``joint``
        tensors (in that order; None for an absent bias)."""
        v = _words(values, self.shape)
        if self.kind == "gemm_a":
            return self.gemm.pack_a(params, v)
        if self.kind == "gemm_b":
            return self.gemm.pack_b(params, v, *joint)
        if self.kind == "mlp_x":
            return self.gemm.pack_x(params, v)
        if self.kind == "mlp_w":
            return self.gemm.pack_w(params, v, *joint)
        if self.kind == "attn_q":
            return self.gemm.pack_q(params, v)
        if self.kind in ("attn_k", "attn_kt", "attn_v", "attn_wo"):
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
        if self.kind == "mlp_y":
            return self.gemm.unpack_y(w[:self.words])
        if self.kind == "flat":
            return w[:self.words].reshape(self.shape)
        raise GraphError(f"a {self.kind} operand layout is not read back")


def _words(values, shape):
    v = np.asarray(values)
    if v.shape != tuple(shape):
        raise ValueError(f"values of shape {v.shape}, the tensor is {tuple(shape)}")
    return v.astype(np.float32).view(np.uint32) if v.dtype != np.uint32 else v


@dataclass
class CompiledGraph:
    graph: object
    buffers: dict          # tensor name -> Buffer
    layouts: dict          # tensor name -> Layout
    kernels: list          # (Op, kernel) in launch order

    async def run(self, device, inputs, **run_args):
        """Write ``inputs`` ({tensor: array of its shape}), load every kernel, run them as
        one launch list, return {output tensor: uint32 array}."""
        words, counters = await device.run_programs(
            self.writes(device.params, inputs), self.programs, self.reads, **run_args)
        return {name: self.layouts[name].unpack(w) for name, w in words.items()}, counters

    def writes(self, params, inputs):
        """[(buffer, words)]: ``inputs`` ({tensor: array of its shape}) packed into the
        input buffers, in their layouts."""
        missing = {t.name for t in self.graph.inputs} - set(inputs)
        if missing:
            raise GraphError(f"no values for input(s) {sorted(missing)}")
        writes = []
        for name, values in inputs.items():
            if name not in self.layouts or self.graph.tensors[name].producer is not None:
                raise GraphError(f"{name!r} is not an input of graph {self.graph.name!r}")
            lay = self.layouts[name]
            if lay.kind == PART:
                continue                      # written with the tensor it is packed into
            joint = [None if j is None else _words(inputs[j], self.graph.tensors[j].shape)
                     for j in lay.joint]
            writes.append((self.buffers[name], lay.pack(params, values, joint)))
        return writes

    @property
    def programs(self):
        """The kernels' programs, in launch order."""
        return [k.program for _, k in self.kernels]

    @property
    def reads(self):
        """{output tensor: its buffer}."""
        return {t.name: self.buffers[t.name] for t in self.graph.outputs}


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
    """A GEMM; its A operand packed by the host, or a row-major result of an earlier op
    (transposed on chip by a PMU: ``compile_gemm(a_rows=...)``); a bias packed with B."""

    def shape(self, params, graph, op):
        """On as many PCUs as the GEMM can use (A computed on the device comes row-major,
        through a transposing PMU)."""
        a, b = (graph.tensors[n] for n in op.inputs[:2])
        (m, k), n, bias = a.shape, b.shape[1], len(op.inputs) > 2
        rows = a.producer is not None
        pcus = gemm_pcus(params, m, n, k, bias, rows)
        return GemmShape.of(params, m, n, k, bias=bias, pcus=pcus, a_pmu=rows)

    def operand_layouts(self, graph, op):
        a, b, *bias = (graph.tensors[n] for n in op.inputs)
        out = [(b, "gemm_b")] + [(t, PART) for t in bias]
        return ([(a, "gemm_a")] if a.producer is None else []) + out

    def lower(self, ctx, op, s):
        a, b, *bias = (ctx.graph.tensors[n] for n in op.inputs)
        out = ctx.graph.tensors[op.output]
        a_rows = None
        if a.producer is not None:
            lay = ctx.final[a.name]
            if bias or lay.kind not in ("flat", *_RESULTS):
                raise GraphError(f"{op.name}: operand {a.name!r} is computed on the device "
                                 f"as {lay.kind}; a matmul takes it only row-major and "
                                 f"without a bias")
            a_rows = lay.row_stride
            if a_rows < a.shape[1]:
                raise GraphError(f"{op.name}: operand {a.name!r} is computed on the device "
                                 f"with rows of {a_rows} words, shorter than its "
                                 f"{a.shape[1]} columns")
            have, need = ctx.buffers[a.name].words, s.a_row_words(a_rows)
            if have < need:
                raise GraphError(f"{op.name}: operand {a.name!r} is computed on the device "
                                 f"as {lay.kind} into {have} words; the matmul reads it by "
                                 f"whole row tiles ({need} words): no relayout op yet")
        elif a.name not in ctx.buffers:
            ctx.buffer(a, s.a_words)
        if b.name not in ctx.buffers:
            ctx.buffer(b, s.b_words)
        # Room for a later matmul that reads C row-major through whole row tiles.
        c = ctx.buffer(out, max(s.c_words, s.mt * s.tile_rows * s.c_cols))
        g = compile_gemm(ctx.params, s.m, s.n, s.k - bool(bias), a=ctx.buffers[a.name],
                         b=ctx.buffers[b.name], c=c, bias=bool(bias), relu=op.attrs["relu"],
                         bf16=op.attrs["bf16"], a_rows=a_rows, pcus=s.pcus)
        if a_rows is None:
            ctx.final.setdefault(a.name, Layout("gemm_a", a.shape, g))
        ctx.final.setdefault(b.name, Layout("gemm_b", b.shape, g,
                                            tuple(t.name for t in bias)))
        for t in bias:
            ctx.final.setdefault(t.name, Layout(PART, t.shape, g))
        ctx.final.setdefault(out.name, Layout("gemm_c", out.shape, g))
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
        tm = systolic_tile_rows(ctx.params)        # room for a matmul reading whole row tiles
        y = ctx.buffer(out, -(-rows // tm) * tm * n)
        kern = compile_softmax(ctx.params, rows, n, x=ctx.buffers[x.name], y=y,
                               x_stride=lay.row_stride, scale=op.attrs["scale"])
        ctx.final[out.name] = Layout("flat", out.shape)
        return kern


class _Attention(_Lowering):
    """One head, fused; with a fourth input Wo, the output projection ``O @ Wo`` too (the
    kernel stores O Wo; Wo in the K/V buffer after V)."""

    def shape(self, params, graph, op):
        proj = graph.tensors[op.inputs[3]].shape[1] if len(op.inputs) > 3 else None
        return AttentionShape.of(params, *graph.tensors[op.inputs[0]].shape, proj)

    def operand_layouts(self, graph, op):
        return tuple((graph.tensors[n], kind) for n, kind in zip(op.inputs, _attn_kinds(op)))

    def lower(self, ctx, op, sh):
        q, *kvw = (ctx.graph.tensors[n] for n in op.inputs)
        out, buffers = ctx.graph.tensors[op.output], ctx.buffers
        if q.name not in buffers:
            ctx.buffer(q, sh.q_words)
        # K^T, V (and Wo) in one buffer: the kernel's AGCU streams them with one access.
        offsets = (0, sh.k_words, sh.k_words + sh.v_words)
        sizes = (sh.k_words, sh.v_words, sh.wo_words)
        if not any(t.name in buffers for t in kvw) and len({t.region for t in kvw}) == 1:
            kv = ctx.alloc.alloc(kvw[0].region, sh.kv_words, "+".join(t.name for t in kvw))
            for t, off, words in zip(kvw, offsets, sizes):
                buffers[t.name] = Buffer(t.region, kv.addr + off, words, t.name)
        kv = buffers.get(kvw[0].name)
        if kv is None or any(buffers.get(t.name) is None or
                             buffers[t.name].addr != kv.addr + off
                             for t, off in zip(kvw, offsets)):
            named = [f"{r} {t.name!r}" for r, t in zip(("k", "v", "wo"), kvw)]
            raise GraphError(f"{op.name}: {', '.join(named[:-1])} and {named[-1]} must be "
                             f"inputs of one region used by this attention only (one buffer "
                             f"holds them)")
        o = ctx.buffer(out, sh.o_words)
        kern = compile_attention(ctx.params, *q.shape, q=buffers[q.name],
                                 kv=Buffer(kvw[0].region, kv.addr, sh.kv_words, "kv"), o=o,
                                 proj=None if sh.proj is None else sh.proj.n)
        for t, kind in zip((q, *kvw, out), (*_attn_kinds(op), "attn_o")):
            ctx.final.setdefault(t.name, Layout(kind, t.shape, kern))
        return kern


def _attn_kinds(op):
    """The layouts of an attention op's q, k, v (and wo): K itself, or K^T where the op is
    a fused ``matmul(q, kT) -> softmax -> matmul(p, v)`` chain; Wo of a fused output
    projection."""
    return ("attn_q", "attn_kt" if op.attrs.get("kt") else "attn_k", "attn_v") + \
        (("attn_wo",) if len(op.inputs) > 3 else ())


class _Mlp(_Lowering):
    """Two matmuls fused (``X @ W1 (+ b1)``, ReLU?, ``@ W2``): one kernel, the hidden
    tensor never leaves the chip; W1 (with its bias) and W2 in one buffer."""

    def shape(self, params, graph, op):
        x, w1, w2 = (graph.tensors[n] for n in op.inputs[:3])
        dims = (*x.shape, w1.shape[1], w2.shape[1], len(op.inputs) > 3)
        return mlp_plan(params, *dims)

    def operand_layouts(self, graph, op):
        x, w1, *rest = (graph.tensors[n] for n in op.inputs)
        return [(x, "mlp_x"), (w1, "mlp_w")] + [(t, PART) for t in rest]

    def lower(self, ctx, op, sh):
        x, w1, w2, *bias = (ctx.graph.tensors[n] for n in op.inputs)
        out = ctx.graph.tensors[op.output]
        ctx.buffer(x, sh.x_words)
        ctx.buffer(w1, sh.w_words)                    # [W1 (; b1) | W2], packed with W1
        y = ctx.buffer(out, max(sh.y_words, sh.g2.mt * sh.g2.tile_rows * sh.g2.c_cols))
        kern = compile_mlp(ctx.params, *x.shape, w1.shape[1], w2.shape[1],
                           x=ctx.buffers[x.name], w=ctx.buffers[w1.name], y=y,
                           bias=bool(bias), relu=op.attrs["relu"], relu2=op.attrs["relu2"],
                           bf16=op.attrs["bf16"], pcus2=sh.g2.pcus, pipes=sh.pipes)
        ctx.final[x.name] = Layout("mlp_x", x.shape, kern)
        ctx.final[w1.name] = Layout("mlp_w", w1.shape, kern,
                                    (w2.name, *(t.name for t in bias)))
        for t in (w2, *bias):
            ctx.final[t.name] = Layout(PART, t.shape, kern)
        ctx.final[out.name] = Layout("mlp_y", out.shape, kern)
        return kern


#: The lowering of each op kind of the IR (and of the fused kinds the compiler makes).
LOWERINGS = {"matmul": _Matmul(), "scale_bias": _ScaleBias(), "softmax": _Softmax(),
             "attention": _Attention(), "mlp": _Mlp()}


def _users(graph):
    users = {}
    for op in graph.ops:
        for name in op.inputs:
            users.setdefault(name, []).append(op)
    return users


def _mlp_pair(params, graph, op, users, outputs):
    """The matmul that ``op`` fuses with into one MLP kernel, or None: ``op``'s result
    feeds only that matmul's A operand and is no output; X, W1 (b1) and W2 are inputs used
    by these two only, the weights in one region; the fused kernel fits the array."""
    t = graph.tensors
    if op.kind != "matmul" or op.attrs["bf16"] or op.output in outputs:
        return None
    nxt = users.get(op.output, [])
    if len(nxt) != 1 or nxt[0].kind != "matmul" or len(nxt[0].inputs) != 2 or \
            nxt[0].inputs[0] != op.output:
        return None
    nxt = nxt[0]
    x, w1, *bias = op.inputs
    w2 = nxt.inputs[1]
    own = (x, w1, w2, *bias)
    if any(t[n].producer is not None or len(users[n]) != 1 for n in own) or \
            len({t[n].region for n in (w1, w2, *bias)}) != 1:
        return None
    m, k = t[x].shape
    fits = mlp_plan(params, m, k, t[w1].shape[1], t[w2].shape[1], bool(bias))
    return nxt if fits is not None else None


def _only_user(users, tensor, kind, outputs):
    """The one op of ``kind`` reading ``tensor`` (no graph output), else None."""
    ops = users.get(tensor, [])
    return ops[0] if len(ops) == 1 and ops[0].kind == kind and tensor not in outputs else None


def _attention_chain(params, graph, op, users, outputs):
    """(softmax, matmul) that ``op`` = ``matmul(q, kT)`` fuses with into one attention
    kernel, or None: ``softmax(scale 1/sqrt(d))`` of its result, then ``matmul(p, v)``;
    q (seq, d), kT (d, seq), v (seq, d) inputs used only there, no epilogues; it fits."""
    t = graph.tensors
    if op.kind != "matmul" or len(op.inputs) != 2 or op.attrs["relu"] or op.attrs["bf16"]:
        return None
    sm = _only_user(users, op.output, "softmax", outputs)
    mm = sm and _only_user(users, sm.output, "matmul", outputs)
    if mm is None or len(mm.inputs) != 2 or mm.inputs[0] != sm.output or mm.attrs["relu"] \
            or mm.attrs["bf16"]:
        return None
    q, kt, v = op.inputs[0], op.inputs[1], mm.inputs[1]
    (seq, d) = t[q].shape
    if t[kt].shape != (d, seq) or t[v].shape != (seq, d) or \
            abs(sm.attrs["scale"] * math.sqrt(d) - 1) > 1e-9 or \
            any(t[n].producer is not None or len(users[n]) != 1 for n in (q, kt, v)) or \
            t[kt].region != t[v].region:
        return None
    return (sm, mm) if attention_fits(params, seq, d) else None


def _projection(params, graph, op, users, outputs):
    """The matmul ``O @ Wo`` that attention op ``op`` fuses with (its output projection),
    or None: O feeds only that matmul's A operand and is no output, Wo an input of K's
    region used only there, no epilogue; the kernel with it fits."""
    t = graph.tensors
    mm = _only_user(users, op.output, "matmul", outputs)
    if mm is None or len(mm.inputs) != 2 or mm.inputs[0] != op.output or \
            mm.attrs["relu"] or mm.attrs["bf16"]:
        return None
    wo = t[mm.inputs[1]]
    seq, d = t[op.inputs[0]].shape
    if wo.producer is not None or len(users[wo.name]) != 1 or \
            wo.region != t[op.inputs[1]].region:
        return None
    return mm if attention_fits(params, seq, d, wo.shape[1]) else None


def _attention_op(params, graph, op, users, outputs):
    """(the fused attention op, the graph ops it takes) that ``op`` starts, or None: a
    matmul -> softmax -> matmul chain (:func:`_attention_chain`) or an attention op, with
    its output projection where that fits too (:func:`_projection`)."""
    if op.kind == "attention":
        fused = Op(op.name, "attention", op.inputs, op.output, dict(op.attrs))
        names = (op.name,)
    else:
        chain = _attention_chain(params, graph, op, users, outputs)
        if chain is None:
            return None
        sm, mm = chain
        names = (op.name, sm.name, mm.name)
        fused = Op("+".join(names), "attention", (op.inputs[0], op.inputs[1], mm.inputs[1]),
                   mm.output, {"kt": True, "fused": names})
    proj = _projection(params, graph, fused, users, outputs)
    if proj is None:
        return (fused, names) if len(names) > 1 else None
    names += (proj.name,)
    return Op("+".join(names), "attention", (*fused.inputs, proj.inputs[1]), proj.output,
              {**fused.attrs, "fused": names}), names


def fuse(params, graph):
    """The ops to lower, in program order: every matmul pair that fits one kernel
    (:func:`_mlp_pair`) becomes one ``mlp`` op (named ``a+b``), every
    matmul -> softmax -> matmul attention chain one ``attention`` op
    (:func:`_attention_chain`), an attention followed by its output projection one
    ``attention`` op with Wo (:func:`_projection`); the rest as they are."""
    users, outputs = _users(graph), {o.name for o in graph.outputs}
    ops, taken = [], set()
    for op in graph.ops:
        if op.name in taken:
            continue
        att = _attention_op(params, graph, op, users, outputs)
        if att is not None:
            taken |= set(att[1])
            ops.append(att[0])
            continue
        nxt = _mlp_pair(params, graph, op, users, outputs)
        if nxt is None:
            ops.append(op)
            continue
        taken.add(nxt.name)
        ops.append(Op(f"{op.name}+{nxt.name}", "mlp",
                      (op.inputs[0], op.inputs[1], nxt.inputs[1], *op.inputs[2:]), nxt.output,
                      {"relu": op.attrs["relu"], "relu2": nxt.attrs["relu"],
                       "bf16": nxt.attrs["bf16"], "hidden": op.output,
                       "fused": (op.name, nxt.name)}))
    return ops


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


def _operand_layouts(params, graph, ops):
    """The kernel shape of every op, and the one packed layout each operand is used in:
    matmul and attention operands must be host-written (packed)."""
    shapes, layouts = {}, {}
    for op in ops:
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


def compile_graph(params, graph, alloc, *, fuse_ops=True):
    """Buffers from ``alloc`` (a device's allocator) and a kernel per op (its
    :data:`LOWERINGS` entry); with ``fuse_ops`` chains that fit one kernel are fused
    first (:func:`fuse`)."""
    if not graph.ops:
        raise GraphError(f"graph {graph.name!r} has no ops")
    ops = fuse(params, graph) if fuse_ops else list(graph.ops)
    if len(ops) > MAX_LAUNCHES:
        raise GraphError(f"graph {graph.name!r} has {len(ops)} kernels to launch; the "
                         f"launch list holds {MAX_LAUNCHES}")
    shapes, layouts = _operand_layouts(params, graph, ops)
    ctx = _Context(params, graph, alloc, {}, {})
    for t in graph.inputs:
        if t.name not in layouts:
            ctx.final[t.name] = Layout("flat", t.shape)
            ctx.buffer(t, ctx.final[t.name].words)
    kernels = [(op, LOWERINGS[op.kind].lower(ctx, op, shapes[op.name])) for op in ops]
    return CompiledGraph(graph, ctx.buffers, ctx.final, kernels)
