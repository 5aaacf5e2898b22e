"""LLM decode on the socket: a small Llama-style decoder generating tokens one at a time
(ARCHITECTURE.md §9), a kernel sequence per token run as one launch list.

One layer (single head of ``d``; no positional encoding):

    h  = rmsnorm(x)                 q = Wq h     K[t] = Wk h     V[:, t] = Wv h
    s  = K[:t+1] q                  p = softmax(s)               o = V[:, :t+1] p
    x1 = x + Wo o                   h2 = rmsnorm(x1)
    x' = x1 + W2 relu(W1 h2)

RMSNorm's gains and the attention scale 1/sqrt(d) fold into the weights that follow
(``Wq`` is the scaled, gain-folded matrix), as a decoder's firmware does. The MLP uses
ReLU, not SiLU: SiLU needs exp and a reciprocal in series (two PCU tails) and a multiply
by the input, a three-PCU kernel not built yet. After the last layer ``logits = Wout
rmsnorm(x)`` and the next token is their argmax, on the device (the router's GEMV +
argmax); the host reads it and starts the next token's list with a copy record of that
token's embedding row into the input slot.

Each step is its own kernel (RMSNorm, GEMV, softmax, add, ReLU): a layer is 14 launches,
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

from firmware.kernels.elementwise import compile_add, compile_scale_bias
from firmware.kernels.gemv import GemvShape, compile_gemv
from firmware.kernels.rmsnorm import compile_rmsnorm
from firmware.kernels.router import compile_router, expert_of
from firmware.kernels.softmax import compile_softmax
from firmware.runtime.memory import Buffer

__all__ = ["DecoderShape", "Decoder", "LAYER_SLOTS", "LAYER_MATRICES"]

#: Activation slots of each layer, in the order the layer writes them (``x``: its output).
LAYER_SLOTS = ("h", "q", "s", "p", "o", "a", "x1", "h2", "u", "g", "m", "x")
#: Weight matrices of each layer: (name, outputs, inputs), sizes named by DecoderShape.
LAYER_MATRICES = (("wq", "d", "d"), ("wk", "d", "d"), ("wv", "d", "d"), ("wo", "d", "d"),
                  ("w1", "hidden", "d"), ("w2", "d", "hidden"))


@dataclass(frozen=True)
class DecoderShape:
    """``d`` model width (one head), ``hidden`` MLP width, ``layers``, ``tokens`` the
    longest sequence (the KV cache length), ``vocab`` tokens (at most the lanes: the
    argmax is one vector), ``packed`` BF16 weights two per word."""
    d: int
    hidden: int
    layers: int
    tokens: int
    vocab: int
    packed: bool = True

    def __post_init__(self):
        for name in ("d", "hidden", "layers", "tokens", "vocab"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"decoder: {name} = {v!r} must be a positive integer")
        if self.vocab < 2:
            raise ValueError(f"decoder: a vocabulary of {self.vocab}; at least 2 tokens")

    def size(self, dim):
        return {"d": self.d, "hidden": self.hidden, "vocab": self.vocab}[dim]

    def check(self, params):
        """ValueError naming what of the shape the machine ``params`` cannot hold, before
        anything is compiled: the vocabulary (one vector for the argmax), each GEMV's input
        (a PMU holds two copies of it)."""
        if self.vocab > params.pcu_lanes:
            raise ValueError(f"decoder: a vocabulary of {self.vocab}; the argmax takes at "
                             f"most {params.pcu_lanes} (one vector of the lanes)")
        for n, k in ((self.d, self.d), (self.hidden, self.d), (self.d, self.hidden),
                     (self.vocab, self.d)):
            GemvShape.of(params, n, k, packed=self.packed)
        GemvShape.of(params, self.d, self.tokens)


def _round_up(n, m):
    return -(-n // m) * m


def _offsets(kernel, **operands):
    """A launch's offsets: each operand's word offset on every AGCU stream of it."""
    return {key: off for name, off in operands.items() for key in kernel.streams[name]}


class Decoder:
    """The decoder of ``shape`` on device ``dev`` (either backend: the same calls give
    the same addresses): its buffers, its programs, and the launch list of each token.
    ``slot[layer, name]`` is the word offset of an activation in ``act`` (``x0`` the
    input embedding, ``hf`` the final norm's output, under layer None)."""

    def __init__(self, dev, shape: DecoderShape):
        self.dev, self.shape = dev, shape
        params, beat = dev.params, dev.map.words
        shape.check(params)
        L = params.pcu_lanes
        self.tp = _round_up(shape.tokens, L)            # a V^T row: the cache length
        self.vec = _round_up(_round_up(max(shape.d, shape.hidden, self.tp), L), beat)
        keys = [(None, "x0")] + [(l, n) for l in range(shape.layers) for n in LAYER_SLOTS] \
            + [(None, "hf")]
        self.slot = {key: i * self.vec for i, key in enumerate(keys)}
        alloc = dev.alloc.alloc
        self.act = alloc("hbm", len(keys) * self.vec, "decoder activations")
        dp = _round_up(shape.d, L)
        self.k_row, self.k_layer, self.v_layer = dp, shape.tokens * dp, dp * self.tp
        self.kc = alloc("hbm", shape.layers * self.k_layer, "K cache")
        self.vt = alloc("hbm", shape.layers * self.v_layer, "V^T cache")
        self.emb = alloc("hbm", shape.vocab * self.vec, "embeddings")
        self.w_offset, words = {}, 0
        for l in range(shape.layers):
            for name, n, k in LAYER_MATRICES:
                self.w_offset[l, name] = words
                gs = GemvShape.of(params, shape.size(n), shape.size(k), packed=shape.packed)
                words += _round_up(gs.w_words, beat)
        self.weights = alloc("hbm", words, "decoder weights")
        self._compile(params)
        self.per_length = {}                             # cache length -> its kernels
        self.loaded = {}                                 # program name -> LoadedProgram

    def _compile(self, params):
        s, act, w, packed = self.shape, self.act, self.weights, self.shape.packed

        def gemv(n, k, **kw):
            return compile_gemv(params, n, k, w=w, x=act, packed=packed, **kw)
        self.kernels = {
            "dd": gemv(s.d, s.d, y=act), "k": gemv(s.d, s.d, y=self.kc),
            "v": gemv(s.d, s.d, y=self.vt, y_stride=self.tp),
            "w1": gemv(s.hidden, s.d, y=act), "w2": gemv(s.d, s.hidden, y=act),
            "norm": compile_rmsnorm(params, 1, s.d, x=act, y=act),
            "add": compile_add(params, s.d, a=act, b=act, y=act),
            "relu": compile_scale_bias(params, s.hidden, x=act, y=act, relu=True),
        }
        rs = GemvShape.of(params, s.vocab, s.d, packed=packed)
        alloc = self.dev.alloc.alloc
        self.wout = alloc("hbm", rs.w_words, "output projection")
        self.logits = alloc("hbm", rs.y_words, "logits")
        self.choice = alloc("hbm", 1, "next token")
        self.router = compile_router(params, s.vocab, s.d, w=self.wout, x=act,
                                     logits=self.logits, choice=self.choice, packed=packed)

    def length_kernels(self, n):
        """The kernels of attention over a cache of ``n`` tokens: scores (``K[:n] q``),
        their softmax and ``V[:, :n] p``."""
        if n not in self.per_length:
            params, act = self.dev.params, self.act
            self.per_length[n] = {
                "scores": compile_gemv(params, n, self.shape.d, w=self.kc, x=act, y=act),
                "softmax": compile_softmax(params, 1, n, x=act, y=act),
                "pv": compile_gemv(params, self.shape.d, n, w=self.vt, x=act, y=act,
                                   w_stride=self.tp),
            }
        return self.per_length[n]

    async def store(self, weights, wout, emb):
        """Write the layers' weights (``weights[l][name]``, FP32 words of the matrices of
        LAYER_MATRICES; BF16 values when packed), the output projection (vocab x d), the
        embeddings (vocab x d FP32) and the programs."""
        s = self.shape
        if len(weights) != s.layers:
            raise ValueError(f"decoder: weights of {len(weights)} layers, expected {s.layers}")
        image = np.zeros(self.weights.words, np.uint32)
        for l, layer in enumerate(weights):
            for name, _, _ in LAYER_MATRICES:
                packed = self._matrix_kernel(name).pack_w(layer[name])
                image[self.w_offset[l, name]:][:len(packed)] = packed
        await self.dev.write(self.weights, image)
        await self.dev.write(self.wout, self.router.gemv.pack_w(wout))
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

    def _layer(self, l, t):
        """(kernel, offsets) of layer ``l`` at position ``t``, in order."""
        slot = {n: self.slot[l, n] for n in LAYER_SLOTS}
        x = self.slot[l - 1, "x"] if l else self.slot[None, "x0"]
        K, att = self.kernels, self.length_kernels(t + 1)
        wo = {n: self.w_offset[l, n] for n, _, _ in LAYER_MATRICES}
        kc, vt = l * self.k_layer, l * self.v_layer
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
            (K["relu"], dict(x=slot["u"], y=slot["g"])),
            (K["w2"], dict(w=wo["w2"], x=slot["g"], y=slot["m"])),
            (K["add"], dict(a=slot["x1"], b=slot["m"], y=slot["x"])),
        ]
        return steps

    def steps(self, t):
        """Every kernel of the token at position ``t`` with its offsets: the layers, the
        final norm, the output projection and the argmax."""
        if not 0 <= t < self.shape.tokens:
            raise ValueError(f"decoder: position {t!r}; 0 .. {self.shape.tokens - 1} (the "
                             f"KV cache holds {self.shape.tokens} tokens)")
        out = [st for l in range(self.shape.layers) for st in self._layer(l, t)]
        last, hf = self.slot[self.shape.layers - 1, "x"], self.slot[None, "hf"]
        return out + [(self.kernels["norm"], dict(x=last, y=hf)),
                      (self.router.gemv, dict(x=hf)), (self.router.argmax, {})]

    def token(self, t, token):
        """The launch list of the token at position ``t`` whose input is ``token``: a copy
        record of its embedding into ``x0``, then every kernel of :meth:`steps` (a program
        loaded again only where it differs from the one before)."""
        if not self.loaded:
            raise RuntimeError("decoder: store() the weights before a token")
        if not 0 <= token < self.shape.vocab:
            raise ValueError(f"decoder: token {token!r}; 0 .. {self.shape.vocab - 1}")
        v = self.vec
        src = Buffer("hbm", self.emb.addr + token * v, v, f"embedding {token}")
        dst = Buffer("hbm", self.act.addr + self.slot[None, "x0"], v, "x0")
        out, prev = [self.dev.copy(src, dst)], None
        for kernel, ops in self.steps(t):
            p = kernel.program
            out.append(self.loaded[id(p)].launch(offsets=_offsets(kernel, **ops),
                                                 reload=p is not prev))
            prev = p
        return out

    async def next_token(self):
        """The token the last list chose (the argmax's key word decoded)."""
        return expert_of((await self.dev.read(self.choice))[0])

    async def read(self, layer, name, n=None):
        """Activation ``name`` of ``layer`` (None: ``x0``, ``hf``): its first ``n`` words
        (default the slot)."""
        words = await self.dev.read(self.act)
        off = self.slot[layer, name]
        return words[off:off + (self.vec if n is None else n)]
