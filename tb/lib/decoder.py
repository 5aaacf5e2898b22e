"""The decoder's test data and checks (``firmware.decoder``): seeded weights, and every
step of a token checked against float64 applied to the inputs the device read, within
each kernel's bound."""

import math

import numpy as np

from firmware.decoder import LAYER_MATRICES
from firmware.kernels.elementwise import silu_bound
from firmware.kernels.rmsnorm import rmsnorm_bound
from firmware.kernels.softmax import softmax_bound

from .gemv import gemv_error

__all__ = ["decoder_weights", "check_token", "check_batch"]

_SCALE = {"wq": 1.0, "wk": 1.0, "wv": 1.0, "wo": 0.5, "w1": 1.0, "w2": 0.5}


def _bf16(a, packed):
    a = np.asarray(a, np.float32).view(np.uint32)
    return a & np.uint32(0xFFFF0000) if packed else a


def decoder_weights(rng, shape):
    """(layers' {name: FP32 words}, output projection, embeddings) of ``shape``, normal
    with variance 1 / inputs (``wq`` also scaled by the attention's 1 / sqrt(d)); the
    matrices BF16 values when packed, the embeddings FP32."""
    layers = []
    for _ in range(shape.layers):
        layer = {}
        for name, n, k in LAYER_MATRICES:
            n, k = shape.size(n), shape.size(k)
            scale = _SCALE[name] * (shape.d ** -0.5 if name == "wq" else 1.0)
            layer[name] = _bf16(rng.normal(0, k ** -0.5, (n, k)) * scale, shape.packed)
        layers.append(layer)
    wout = _bf16(rng.normal(0, shape.d ** -0.5, (shape.vocab, shape.d)) * 4, shape.packed)
    emb = rng.normal(0, 1, (shape.vocab, shape.d)).astype(np.float32).view(np.uint32)
    return layers, wout, emb


def _f(words):
    return np.asarray(words, np.uint32).view(np.float32).astype(np.float64)


class _Checker:
    """Checks of one token's steps; ``worst`` the largest error relative to its bound."""

    def __init__(self, params, what):
        self.params, self.what, self.worst, self.worst_step = params, what, 0.0, None

    def within(self, step, err, bound):
        bad = np.nonzero(err > bound)[0]
        assert not len(bad), (f"{self.what}: {step}: output {bad[0]} off float64 by "
                              f"{err[bad[0]]:.3g}, bound {bound[bad[0]]:.3g}")
        r = float(np.max(err / np.maximum(bound, 1e-300)))
        if r >= self.worst:
            self.worst, self.worst_step = r, step

    def gemv(self, step, w, x, y):
        self.within(step, *gemv_error(self.params, w, x, y))

    def rmsnorm(self, step, x, y):
        xf = _f(x)
        want = xf / np.sqrt(np.mean(xf * xf) + 1e-6)
        self.within(step, np.abs(_f(y) - want),
                    rmsnorm_bound(len(xf), self.params.pcu_lanes) * np.abs(want))

    def add(self, step, a, b, y):
        want = _f(a) + _f(b)
        self.within(step, np.abs(_f(y) - want), 2.0 ** -24 * np.abs(want))

    def softmax(self, step, s, p):
        sf = _f(s)
        e = np.exp(sf - sf.max())
        want = e / e.sum()
        t_max = float(np.max(np.abs(sf - sf.max()))) * math.log2(math.e)
        bound = softmax_bound(t_max, len(sf), self.params.pcu_lanes) * want
        self.within(step, np.abs(_f(p) - want), bound)

    def relu(self, step, u, g):
        want = np.maximum(_f(u), 0.0)
        bad = np.nonzero(_f(g) != want)[0]
        assert not len(bad), f"{self.what}: {step}: output {bad[0]} is not relu of its input"

    def silu(self, step, u, g):
        uf = _f(u)
        want = uf / (1 + np.exp(-uf))
        # silu_bound, and 2^-126 where a subnormal is flushed.
        self.within(step, np.abs(_f(g) - want), silu_bound(uf) * np.abs(want) + 2.0 ** -126)


def check_batch(params, dec, weights, wout, t, bufs, tokens, what):
    """:func:`check_token` for every sequence of the batch: ``bufs`` the device's whole
    (act, kc, vt, logits) buffers, ``tokens`` the tokens chosen; returns the largest
    error as a fraction of its bound."""
    return max(check_token(params, dec, weights, wout, t,
                           *(dec.part(n, w, b) for n, w in zip(("act", "kc", "vt", "logits"),
                                                               bufs)),
                           tokens[b], f"{what}, sequence {b}")
               for b in range(dec.shape.batch))


def check_token(params, dec, weights, wout, t, act, kc, vt, logits, token, what):
    """Every step of the token at position ``t`` of one sequence (its part of the
    device's ``act``, K cache ``kc``, V^T cache ``vt`` and ``logits``, and the ``token``
    chosen) against float64 of the inputs the step read; returns the largest error as a
    fraction of its bound."""
    s, c = dec.shape, _Checker(params, what)
    d, f, n = s.d, s.hidden, t + 1

    def at(l, name, words):
        off = dec.slot[l, name]
        return act[off:off + words]
    for l in range(s.layers):
        w = weights[l]
        x = at(l - 1, "x", d) if l else at(None, "x0", d)
        h = at(l, "h", d)
        c.rmsnorm(f"layer {l} rmsnorm", x, h)
        c.gemv(f"layer {l} q", w["wq"], h, at(l, "q", d))
        k = kc[l * dec.k_layer:][:s.tokens * dec.k_row].reshape(s.tokens, dec.k_row)[:, :d]
        v = vt[l * dec.v_layer:][:d * dec.tp].reshape(d, dec.tp)
        c.gemv(f"layer {l} k", w["wk"], h, k[t])
        c.gemv(f"layer {l} v", w["wv"], h, v[:, t])
        c.gemv(f"layer {l} scores", k[:n], at(l, "q", d), at(l, "s", n))
        c.softmax(f"layer {l} softmax", at(l, "s", n), at(l, "p", n))
        c.gemv(f"layer {l} p v", v[:, :n], at(l, "p", n), at(l, "o", d))
        c.gemv(f"layer {l} o", w["wo"], at(l, "o", d), at(l, "a", d))
        c.add(f"layer {l} residual 1", x, at(l, "a", d), at(l, "x1", d))
        c.rmsnorm(f"layer {l} rmsnorm 2", at(l, "x1", d), at(l, "h2", d))
        c.gemv(f"layer {l} w1", w["w1"], at(l, "h2", d), at(l, "u", f))
        getattr(c, s.act)(f"layer {l} {s.act}", at(l, "u", f), at(l, "g", f))
        c.gemv(f"layer {l} w2", w["w2"], at(l, "g", f), at(l, "m", d))
        c.add(f"layer {l} residual 2", at(l, "x1", d), at(l, "m", d), at(l, "x", d))
    c.rmsnorm("final rmsnorm", at(s.layers - 1, "x", d), at(None, "hf", d))
    c.gemv("logits", wout, at(None, "hf", d), logits[:s.vocab])
    lf = _f(logits[:s.vocab])
    assert token == int(np.argmax(lf)), f"{what}: token {token}, the logits' argmax " \
        f"{int(np.argmax(lf))}"
    return c.worst

