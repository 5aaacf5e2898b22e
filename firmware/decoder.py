"""LLM decode on the socket: a small Llama-style decoder generating tokens one at a time
(ARCHITECTURE.md §9), a kernel sequence per token run as one launch list.

One layer (single head of ``d``; no positional encoding):

    h  = rmsnorm(x)                 q = Wq h     K[t] = Wk h     V[:, t] = Wv h
    s  = K[:t+1] q                  p = softmax(s)               o = V[:, :t+1] p
    x1 = x + Wo o                   h2 = rmsnorm(x1)
    x' = x1 + W2 silu(W1 h2)

RMSNorm's gains and the attention scale 1/sqrt(d) fold into the weights that follow
(``Wq`` is the scaled, gain-folded matrix), as a decoder's firmware does. SiLU needs
exp and a reciprocal in series (two PCU tails) and a product with the input: three PCUs
(``compile_silu``); ``act="relu"`` (one PCU) for grids without them. After the last layer ``logits = Wout
rmsnorm(x)`` and the next token is their argmax, on the device (the router's GEMV +
argmax); the host reads it and starts the next token's list with a copy record of that
token's embedding row into the input slot.

Each step is its own kernel (RMSNorm, GEMV, softmax, add, SiLU): a layer is 14 launches,
not one kernel — the small grid's 4 PCUs do not hold a layer, and the spatial compiler
that would fuse the steps where they fit is issue 17's. The KV cache is in HBM: per
layer ``K`` (``tokens`` rows of ``d``, row ``t`` written by the ``Wk`` GEMV) and ``V^T``
(``d`` rows of ``tokens``, column ``t`` written by the ``Wv`` GEMV's strided store, so
``V p`` is a GEMV with a row stride). The weights are BF16 two per word (``packed``) or
FP32; activations and the cache FP32.

One program per kernel shape serves every layer: the activations live in one buffer,
the weights in another, and each launch's offsets pick the layer's slots. The scores,
softmax and ``V p`` kernels depend on the cache length, so they are compiled per length.
"""

from dataclasses import dataclass

import numpy as np

from firmware.kernels.elementwise import compile_add, compile_scale_bias, compile_silu
from firmware.kernels.gemv import GemvShape, compile_gemv
from firmware.kernels.rmsnorm import compile_rmsnorm
from firmware.kernels.router import compile_router, expert_of, router_shape
from firmware.kernels.softmax import compile_softmax
from firmware.runtime.device import MAX_LAUNCHES
from firmware.runtime.memory import Buffer

__all__ = ["DecoderShape", "Decoder", "LAYER_SLOTS", "LAYER_MATRICES", "ACTIVATIONS",
           "LOOP_MODES"]

#: Activation slots of each layer, in the order the layer writes them (``x``: its output).
LAYER_SLOTS = ("h", "q", "s", "p", "o", "a", "x1", "h2", "u", "g", "m", "x")
#: How a position's kernels run over the batch: looped, or the launch-per-sequence
#: baselines (program resident, program reloaded).
LOOP_MODES = ("looped", "resident", "reload")
#: The MLP activations: SiLU (Llama's; three PCUs) or ReLU (one).
ACTIVATIONS = ("silu", "relu")
#: Weight matrices of each layer: (name, outputs, inputs), sizes named by DecoderShape.
LAYER_MATRICES = (("wq", "d", "d"), ("wk", "d", "d"), ("wv", "d", "d"), ("wo", "d", "d"),
                  ("w1", "hidden", "d"), ("w2", "d", "hidden"))


@dataclass(frozen=True)
class DecoderShape:
    """``d`` model width (one head), ``hidden`` MLP width, ``layers``, ``tokens`` the
    longest sequence (the KV cache length), ``vocab`` tokens (at most the lanes: the
    argmax is one vector), ``packed`` BF16 weights two per word, ``batch`` sequences
    decoded together, ``act`` the MLP's activation (``silu`` on three PCUs, ``relu`` on
    one for grids without room)."""
    d: int
    hidden: int
    layers: int
    tokens: int
    vocab: int
    packed: bool = True
    batch: int = 1
    act: str = "silu"

    def __post_init__(self):
        for name in ("d", "hidden", "layers", "tokens", "vocab", "batch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"decoder: {name} = {v!r} must be a positive integer")
        if self.act not in ACTIVATIONS:
            raise ValueError(f"decoder: activation {self.act!r}; one of {', '.join(ACTIVATIONS)}")
        if self.vocab < 2:
            raise ValueError(f"decoder: a vocabulary of {self.vocab}; at least 2 tokens")

    def size(self, dim):
        return {"d": self.d, "hidden": self.hidden, "vocab": self.vocab}[dim]

    def records(self, mode="looped"):
        """Records of a position's launch list in ``mode`` (LOOP_MODES): an embedding copy
        a sequence, 14 kernels a layer and 3 more, each looped or once a sequence."""
        kernels = 14 * self.layers + 3
        return self.batch + kernels * (1 if mode == "looped" else self.batch)

    def check(self, params, modes=("looped",)):
        """ValueError naming what of the shape the machine ``params`` cannot hold, before
        anything is compiled: the vocabulary (one vector for the argmax), each GEMV's input
        (a PMU holds two copies of it), a position's list in each of ``modes`` (a launch
        list's records)."""
        for mode in modes:
            if self.records(mode) > MAX_LAUNCHES:
                raise ValueError(f"decoder: {self.records(mode)} records a position "
                                 f"({mode}: batch {self.batch}, {self.layers} layers); a "
                                 f"launch list holds {MAX_LAUNCHES}")
        if self.vocab > params.pcu_lanes:
            raise ValueError(f"decoder: a vocabulary of {self.vocab}; the argmax takes at "
                             f"most {params.pcu_lanes} (one vector of the lanes)")
        for n, k in ((self.d, self.d), (self.hidden, self.d), (self.d, self.hidden),
                     (self.vocab, self.d)):
            GemvShape.of(params, n, k, packed=self.packed)
        GemvShape.of(params, self.d, self.tokens)


def _round_up(n, m):
    return -(-n // m) * m


def _streams(kernel, operands):
    """Each operand's value (an offset or a stride) on every AGCU stream of it."""
    return {key: v for name, v in operands.items() for key in kernel.streams[name]}


class Decoder:
    """The decoder of ``shape`` on device ``dev`` (either backend: the same calls give
    the same addresses): its buffers, its programs, and the launch list of each token.
    ``partial``: every kernel's bitstream writes only its own units and switches (a
    layer's 14 program loads are most of a small token's cycles). ``slots``: weight sets
    (experts) the weight buffer holds, one ``expert_words`` image each (every layer's
    matrices, then the output projection); a launch list runs one of them.
    ``slot[layer, name]`` is the word offset of an activation in a sequence's part of
    ``act`` (``x0`` the input embedding, ``hf`` the final norm's output, under layer
    None). A batch is kernel looping: every kernel runs once per sequence in one launch
    (iteration ``b`` on sequence ``b``: its activations, caches and logits stepped by the
    AGCU strides, the weights not), each weight matrix read once per sequence."""

    def __init__(self, dev, shape: DecoderShape, *, partial=True, slots=1):
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise ValueError(f"decoder: {slots!r} weight slots; at least 1")
        self.dev, self.shape, self.partial, self.slots = dev, shape, partial, slots
        params, beat = dev.params, dev.map.words
        shape.check(params)
        L = params.pcu_lanes
        self.tp = _round_up(shape.tokens, L)            # a V^T row: the cache length
        self.vec = _round_up(_round_up(max(shape.d, shape.hidden, self.tp), L), beat)
        keys = [(None, "x0")] + [(l, n) for l in range(shape.layers) for n in LAYER_SLOTS] \
            + [(None, "hf")]
        self.slot = {key: i * self.vec for i, key in enumerate(keys)}
        alloc, B = dev.alloc.alloc, shape.batch
        dp = _round_up(shape.d, L)
        # The K and V GEMVs write their padded rows' results too (zeros): a K row's spill
        # lands in the next row (rewritten at the next position before it is read) and,
        # after the last, in the layer's slack; V^T has a row for each.
        yd = max(dp, GemvShape.of(params, shape.d, shape.d, packed=shape.packed).y_words)
        self.k_row, self.v_layer = dp, yd * self.tp
        self.k_layer = (shape.tokens - 1) * dp + yd
        #: Words of one sequence's part of each per-sequence buffer (the batch stride).
        self.seq = {"act": len(keys) * self.vec, "kc": shape.layers * self.k_layer,
                    "vt": shape.layers * self.v_layer}
        self.act = alloc("hbm", B * self.seq["act"], "decoder activations")
        self.kc = alloc("hbm", B * self.seq["kc"], "K cache")
        self.vt = alloc("hbm", B * self.seq["vt"], "V^T cache")
        self.emb = alloc("hbm", shape.vocab * self.vec, "embeddings")
        self.w_offset, words = {}, 0
        #: Words of one weight set the kernels read (each matrix once a position).
        self.weight_words = 0
        for l, name, n, k in [(l, *m) for l in range(shape.layers) for m in LAYER_MATRICES] \
                + [(None, "wout", "vocab", "d")]:
            self.w_offset[l, name] = words
            gs = (router_shape if name == "wout" else GemvShape.of)(
                params, shape.size(n), shape.size(k), packed=shape.packed)
            words += _round_up(gs.w_words, beat)
            self.weight_words += gs.w_words
        # Whole allocation blocks: a slot's copies and host writes are block aligned.
        self.expert_words = _round_up(words, dev.alloc.align)
        self.weights = alloc("hbm", slots * self.expert_words, "decoder weights")
        self._compile(params)
        self.per_length = {}                             # cache length -> its kernels
        self.loaded = {}                                 # program name -> LoadedProgram

    def _compile(self, params):
        s, act, w, packed = self.shape, self.act, self.weights, self.shape.packed
        part = self.partial

        def gemv(n, k, **kw):
            return compile_gemv(params, n, k, w=w, x=act, packed=packed, partial=part, **kw)
        self.kernels = {
            "dd": gemv(s.d, s.d, y=act), "k": gemv(s.d, s.d, y=self.kc),
            "v": gemv(s.d, s.d, y=self.vt, y_stride=self.tp),
            "w1": gemv(s.hidden, s.d, y=act), "w2": gemv(s.d, s.hidden, y=act),
            "norm": compile_rmsnorm(params, 1, s.d, x=act, y=act, partial=part),
            "add": compile_add(params, s.d, a=act, b=act, y=act, partial=part),
            "act": compile_silu(params, s.hidden, x=act, y=act, partial=part)
            if s.act == "silu" else
            compile_scale_bias(params, s.hidden, x=act, y=act, relu=True, partial=part),
        }
        rs = router_shape(params, s.vocab, s.d, packed)
        alloc = self.dev.alloc.alloc
        self.seq["logits"] = _round_up(rs.y_words, self.dev.map.words)
        self.seq["choice"] = 1
        self.logits = alloc("hbm", s.batch * self.seq["logits"], "logits")
        self.choice = alloc("hbm", s.batch, "next tokens")
        self.router = compile_router(params, s.vocab, s.d, w=w, x=act, logits=self.logits,
                                     choice=self.choice, packed=packed)

    def length_kernels(self, n):
        """The kernels of attention over a cache of ``n`` tokens: scores (``K[:n] q``),
        their softmax and ``V[:, :n] p``."""
        if n not in self.per_length:
            params, act, part = self.dev.params, self.act, self.partial
            self.per_length[n] = {
                "scores": compile_gemv(params, n, self.shape.d, w=self.kc, x=act, y=act,
                                       partial=part),
                "softmax": compile_softmax(params, 1, n, x=act, y=act, partial=part),
                "pv": compile_gemv(params, self.shape.d, n, w=self.vt, x=act, y=act,
                                   w_stride=self.tp, partial=part),
            }
        return self.per_length[n]

    def expert_image(self, weights, wout):
        """One weight set's ``expert_words`` words: the layers' matrices (``weights[l]
        [name]``, FP32 words of the matrices of LAYER_MATRICES; BF16 values when packed),
        then the output projection (vocab x d)."""
        if len(weights) != self.shape.layers:
            raise ValueError(f"decoder: weights of {len(weights)} layers, expected "
                             f"{self.shape.layers}")
        image = np.zeros(self.expert_words, np.uint32)
        mats = [(self.w_offset[l, name], self._matrix_kernel(name), layer[name])
                for l, layer in enumerate(weights) for name, _, _ in LAYER_MATRICES]
        for off, kernel, m in mats + [(self.w_offset[None, "wout"], self.router.gemv, wout)]:
            packed = kernel.pack_w(m)
            image[off:off + len(packed)] = packed
        return image

    def slot_buffer(self, slot):
        """Weight slot ``slot`` of the weight buffer (a copy record's destination)."""
        if not 0 <= slot < self.slots:
            raise ValueError(f"decoder: weight slot {slot!r}; 0 .. {self.slots - 1}")
        w = self.expert_words
        return Buffer("hbm", self.weights.addr + slot * w, w, f"weight slot {slot}")

    async def store(self, weights, wout, emb):
        """Write one weight set into slot 0 (:meth:`expert_image`), then :meth:`setup`."""
        await self.dev.write(self.slot_buffer(0), self.expert_image(weights, wout))
        await self.setup(emb)

    async def setup(self, emb):
        """Write the embeddings (vocab x d FP32) and the programs."""
        s = self.shape
        e = np.zeros((s.vocab, self.vec), np.uint32)
        e[:, :s.d] = np.asarray(emb, np.uint32).reshape(s.vocab, s.d)
        await self.dev.write(self.emb, e)
        for t in range(1, s.tokens + 1):
            self.length_kernels(t)
        programs = [k.program for k in self.kernels.values()] + self.router.programs + \
            [k.program for per in self.per_length.values() for k in per.values()]
        for p in programs:
            self.loaded[id(p)] = await self.dev.load(p)

    def _matrix_kernel(self, name):
        return self.kernels[{"wq": "dd", "wk": "k", "wv": "v", "wo": "dd", "w1": "w1",
                             "w2": "w2"}[name]]

    def _layer(self, l, t, base):
        """(kernel, offsets, strides) of layer ``l`` at position ``t`` with the weights of
        the slot at word ``base``, in order: every operand stepped per sequence by its
        buffer's part, the weights not."""
        slot = {n: self.slot[l, n] for n in LAYER_SLOTS}
        x = self.slot[l - 1, "x"] if l else self.slot[None, "x0"]
        K, att = self.kernels, self.length_kernels(t + 1)
        wo = {n: base + self.w_offset[l, n] for n, _, _ in LAYER_MATRICES}
        kc, vt = l * self.k_layer, l * self.v_layer
        A = self.seq["act"]
        steps = [
            (K["norm"], dict(x=x, y=slot["h"])),
            (K["dd"], dict(w=wo["wq"], x=slot["h"], y=slot["q"])),
            (K["k"], dict(w=wo["wk"], x=slot["h"], y=kc + t * self.k_row)),
            (K["v"], dict(w=wo["wv"], x=slot["h"], y=vt + t)),
            (att["scores"], dict(w=kc, x=slot["q"], y=slot["s"])),
            (att["softmax"], dict(x=slot["s"], y=slot["p"])),
            (att["pv"], dict(w=vt, x=slot["p"], y=slot["o"])),
            (K["dd"], dict(w=wo["wo"], x=slot["o"], y=slot["a"])),
            (K["add"], dict(a=x, b=slot["a"], y=slot["x1"])),
            (K["norm"], dict(x=slot["x1"], y=slot["h2"])),
            (K["w1"], dict(w=wo["w1"], x=slot["h2"], y=slot["u"])),
            (K["act"], dict(x=slot["u"], y=slot["g"])),
            (K["w2"], dict(w=wo["w2"], x=slot["g"], y=slot["m"])),
            (K["add"], dict(a=slot["x1"], b=slot["m"], y=slot["x"])),
        ]
        cache = {id(K["k"]): {"y": self.seq["kc"]}, id(K["v"]): {"y": self.seq["vt"]},
                 id(att["scores"]): {"w": self.seq["kc"]}, id(att["pv"]): {"w": self.seq["vt"]}}
        return [(k, ops, {**{n: 0 if n == "w" else A for n in ops}, **cache.get(id(k), {})})
                for k, ops in steps]

    def steps(self, t, slot=0):
        """Every kernel of position ``t`` with the weights of ``slot``, with its offsets
        and strides: the layers, the final norm, the output projection and the argmax."""
        if not 0 <= t < self.shape.tokens:
            raise ValueError(f"decoder: position {t!r}; 0 .. {self.shape.tokens - 1} (the "
                             f"KV cache holds {self.shape.tokens} tokens)")
        base = self.slot_buffer(slot).addr - self.weights.addr
        out = [st for l in range(self.shape.layers) for st in self._layer(l, t, base)]
        last, hf = self.slot[self.shape.layers - 1, "x"], self.slot[None, "hf"]
        A, lg = self.seq["act"], self.seq["logits"]
        wout = base + self.w_offset[None, "wout"]
        return out + [(self.kernels["norm"], dict(x=last, y=hf), dict(x=A, y=A)),
                      (self.router.gemv, dict(x=hf, y=0, w=wout), dict(x=A, y=lg, w=0)),
                      (self.router.argmax, dict(x=0, y=0), dict(x=lg, y=1))]

    def token(self, t, tokens, slot=0, mode="looped"):
        """The launch list of position ``t`` whose inputs are ``tokens`` (one a sequence;
        None: the inputs already in ``x0``), with the weights of ``slot``: a copy record of
        each token's embedding into its ``x0``, then every kernel of :meth:`steps` over the
        batch — ``mode`` ``looped``: one launch of ``batch`` iterations a kernel (a program
        loaded again only where it differs from the one before); the baselines
        ``resident``: a launch a sequence, the program loaded by the first only;
        ``reload``: a launch a sequence, each loading the program. The same results."""
        s = self.shape
        if not self.loaded:
            raise RuntimeError("decoder: store() the weights before a token")
        if mode not in LOOP_MODES:
            raise ValueError(f"decoder: mode {mode!r}; one of {', '.join(LOOP_MODES)}")
        tokens = [] if tokens is None else list(tokens)
        if tokens and (len(tokens) != s.batch or not all(0 <= k < s.vocab for k in tokens)):
            raise ValueError(f"decoder: tokens {tokens!r}; {s.batch} of 0 .. {s.vocab - 1} "
                             f"(one a sequence)")
        v = self.vec
        out, prev = [], None
        for b, k in enumerate(tokens):
            src = Buffer("hbm", self.emb.addr + k * v, v, f"embedding {k}")
            dst = Buffer("hbm", self.act.addr + b * self.seq["act"] + self.slot[None, "x0"],
                         v, f"x0 of sequence {b}")
            out.append(self.dev.copy(src, dst))
        for kernel, ops, strides in self.steps(t, slot):
            p = self.loaded[id(kernel.program)]
            if mode == "looped":
                out.append(p.launch(iterations=s.batch, offsets=_streams(kernel, ops),
                                    strides=_streams(kernel, strides),
                                    reload=kernel.program is not prev))
            else:
                out += [p.launch(offsets=_streams(kernel, {n: off + b * strides[n]
                                                           for n, off in ops.items()}),
                                 reload=mode == "reload" or (b == 0 and
                                                             kernel.program is not prev))
                        for b in range(s.batch)]
            prev = kernel.program
        s.check(self.dev.params, (mode,))
        return out

    async def next_tokens(self):
        """The tokens the last list chose, one a sequence (the argmax's key words
        decoded)."""
        return [expert_of(w) for w in await self.dev.read(self.choice)]

    def part(self, name, words, b):
        """Sequence ``b``'s part of per-sequence buffer ``name`` (``act``, ``kc``, ``vt``,
        ``logits``) from its ``words``."""
        n = self.seq[name]
        return words[b * n:(b + 1) * n]
