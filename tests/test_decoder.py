"""Tier 1: the decoder's kernels (RMSNorm, residual add, strided GEMV) and whole tokens of
LLM decode on the reference backend, each step within its float64 bound."""

import asyncio

import numpy as np
import pytest

from firmware.decoder import LOOP_MODES, Decoder, DecoderShape
from firmware.kernels.elementwise import compile_add, compile_silu, silu_bound
from firmware.kernels.gemv import compile_gemv
from firmware.kernels.rmsnorm import compile_rmsnorm, rmsnorm_bound
from firmware.runtime.memory import Allocator
from firmware.runtime.launch import Copy
from firmware.runtime.reference import ReferenceDevice
from hdl.params import PRESETS
from tb.lib.decoder import check_batch, decoder_weights
from tb.lib.gemv import gemv_error

SMALL = PRESETS["small"]


def _f32(rng, *shape, scale=1.0):
    return (rng.normal(0, scale, shape)).astype(np.float32).view(np.uint32)


@pytest.mark.parametrize("seed,rows,n", [(1, 1, 5), (2, 3, 37), (3, 2, 200)])
def test_rmsnorm_reference_is_within_its_float64_bound(seed, rows, n):
    rng = np.random.default_rng(seed)
    al = Allocator(SMALL)
    k = compile_rmsnorm(SMALL, rows, n, x=al.alloc("hbm", 4096), y=al.alloc("hbm", 4096))
    x = _f32(rng, rows, n, scale=3.0)
    got = k.reference(SMALL, x).view(np.float32).astype(np.float64)
    xf = x.view(np.float32).astype(np.float64)
    want = xf / np.sqrt(np.mean(xf * xf, axis=1, keepdims=True) + 1e-6)
    err = np.abs(got - want) / np.abs(want)
    assert err.max() <= rmsnorm_bound(n, SMALL.pcu_lanes), (seed, err.max())
    # Not exact either (the bound is not vacuous): rsqrt and the sums round.
    assert err.max() > 0, seed


def test_silu_reference_is_within_its_float64_bound():
    rng = np.random.default_rng(6)
    al = Allocator(SMALL)
    k = compile_silu(SMALL, 600, x=al.alloc("hbm", 640), y=al.alloc("hbm", 640))
    x = np.concatenate([rng.normal(0, 4, 590), [0.0, -0.0, 1e-30, 80, -80, 30, -30, 87,
                                                 -87]]).astype(np.float32)
    got = k.reference(SMALL, x.view(np.uint32)).view(np.float32).astype(np.float64)
    xf = x.astype(np.float64)
    want = xf / (1 + np.exp(-xf))
    err = np.abs(got - want)
    assert (err <= silu_bound(xf) * np.abs(want)).all(), np.max(err / silu_bound(xf))
    assert err.max() > 0      # not exact: the bound is not vacuous


def test_add_reference_is_the_rounded_sum():
    rng = np.random.default_rng(4)
    al = Allocator(SMALL)
    k = compile_add(SMALL, 45, a=al.alloc("hbm", 64), b=al.alloc("hbm", 64),
                    y=al.alloc("hbm", 64))
    a, b = _f32(rng, 45), _f32(rng, 45)
    want = (a.view(np.float32) + b.view(np.float32)).view(np.uint32)
    assert (k.reference(SMALL, a, b) == want).all()


def test_gemv_with_row_and_output_strides_reads_a_column_window():
    """``V p`` over the first ``k`` columns of a wider matrix (row stride) into every
    ``y_stride``-th word (a column of V^T): the reference backend's memory equals W x."""
    rng = np.random.default_rng(5)
    dev = ReferenceDevice(SMALL)
    n, k, wide, ys = 12, 5, 16, 3
    w = dev.alloc.alloc("hbm", n * wide, "w")
    x, y = dev.alloc.alloc("hbm", 8, "x"), dev.alloc.alloc("hbm", n * ys, "y")
    g = compile_gemv(SMALL, n, k, w=w, x=x, y=y, w_stride=wide, y_stride=ys)
    wm = np.zeros((n, wide), np.uint32)
    wm[:, :k] = _f32(rng, n, k)
    xv = _f32(rng, k)

    async def go():
        await dev.write(w, wm)
        await dev.write(x, g.pack_x(xv))
        await dev.run([(await dev.load(g.program)).launch()])
        return await dev.read(y)
    out = asyncio.run(go()).reshape(n, ys)
    assert not out[:, 1:].any(), "words between the strided outputs were written"
    err, bound = gemv_error(SMALL, wm[:, :k], xv, out[:, 0])
    assert (err <= bound).all()
    with pytest.raises(ValueError, match="w_stride"):
        compile_gemv(SMALL, n, k, w=w, x=x, y=y, w_stride=4)


def _generate(shape, seed, params=SMALL):
    """Every token of ``shape`` on the reference backend (sequence b from token b), each
    step of each sequence checked."""
    rng = np.random.default_rng(seed)
    dev = ReferenceDevice(params)
    dec = Decoder(dev, shape)
    ws, wout, emb = decoder_weights(rng, shape)

    async def go():
        await dec.store(ws, wout, emb)
        token, out = list(range(shape.batch)), []
        for t in range(shape.tokens):
            launches = dec.token(t, token)
            await dev.run(launches)
            nxt = await dec.next_tokens()
            bufs = [await dev.read(b) for b in (dec.act, dec.kc, dec.vt, dec.logits)]
            check_batch(params, dec, ws, wout, t, bufs, nxt, f"seed {seed}, position {t}")
            out.append((launches, nxt))
            token = nxt
        return out
    return dec, asyncio.run(go())


@pytest.mark.parametrize("seed,d,hidden,layers,tokens,packed,batch,act", [
    (11, 20, 36, 1, 3, True, 1, "silu"),       # d not a multiple of the lanes
    (12, 32, 64, 2, 12, True, 1, "silu"),      # a long cache: 12 tokens, scores over 2 vectors
    (13, 16, 24, 2, 1, False, 1, "relu"),      # a cache of one token, FP32 weights, ReLU
    (14, 24, 40, 1, 3, True, 5, "silu"),       # a batch of five sequences
])
def test_tokens_on_the_reference_backend_are_within_every_steps_bound(
        seed, d, hidden, layers, tokens, packed, batch, act):
    shape = DecoderShape(d, hidden, layers, tokens, vocab=8, packed=packed, batch=batch,
                         act=act)
    dec, out = _generate(shape, seed)
    for launches, nxt in out:
        # A copy record of each embedding, 14 kernels a layer, norm + logits + argmax,
        # each kernel looped over the batch.
        assert all(isinstance(r, Copy) for r in launches[:batch])
        assert len(launches) == batch + 14 * layers + 3, (seed, len(launches))
        assert all(r.iterations == batch for r in launches[batch:]), seed
        assert len(nxt) == batch and all(0 <= k < shape.vocab for k in nxt)


def test_decoder_refuses_what_the_machine_cannot_hold():
    with pytest.raises(ValueError, match="vocabulary of 9"):
        DecoderShape(16, 16, 1, 2, vocab=9).check(SMALL)
    with pytest.raises(ValueError, match="does not fit a PMU"):
        DecoderShape(16, 5000, 1, 2, vocab=8).check(SMALL)
    with pytest.raises(ValueError, match="tokens"):
        DecoderShape(16, 16, 1, 0, vocab=8)
    # 9 copies + 31 kernels looped fit a list of 256 records; a launch a sequence does not.
    DecoderShape(16, 16, 2, 2, vocab=8, batch=9).check(SMALL)
    with pytest.raises(ValueError, match=r"288 records a position \(resident"):
        DecoderShape(16, 16, 2, 2, vocab=8, batch=9).check(SMALL, ("resident",))
    dec = Decoder(ReferenceDevice(SMALL), DecoderShape(16, 16, 1, 2, vocab=8))
    with pytest.raises(RuntimeError, match="store"):
        dec.token(0, [0])
    with pytest.raises(ValueError, match="position 2"):
        dec.steps(2)


def test_a_batch_looped_or_launched_a_sequence_gives_the_same_bits():
    """Every mode of LOOP_MODES on the reference backend: the same next tokens and the
    same final buffers; looped lists have one launch a kernel, the others one a sequence,
    reload lists loading every program."""
    shape = DecoderShape(16, 24, 2, 2, vocab=8, batch=3)
    runs = {}
    for mode in LOOP_MODES:
        dev = ReferenceDevice(SMALL)
        dec = Decoder(dev, shape)
        ws, wout, emb = decoder_weights(np.random.default_rng(15), shape)

        async def go():
            await dec.store(ws, wout, emb)
            token, out = [0, 1, 2], []
            for t in range(shape.tokens):
                launches = dec.token(t, token, mode=mode)
                await dev.run(launches)
                token = await dec.next_tokens()
                out.append((launches, token))
            return out, [await dev.read(b) for b in (dec.act, dec.kc, dec.vt, dec.logits)]
        runs[mode] = asyncio.run(go())
    (looped, want), kernels = runs["looped"], 14 * shape.layers + 3
    for mode, (out, bufs) in runs.items():
        assert [tok for _, tok in out] == [tok for _, tok in looped], mode
        assert all((a == b).all() for a, b in zip(bufs, want)), mode
        launches = [r for r in out[0][0] if not isinstance(r, Copy)]
        assert len(launches) == kernels * (1 if mode == "looped" else shape.batch), mode
        loads = sum(r.beats > 0 for r in launches)
        assert loads == (len(launches) if mode == "reload" else kernels), (mode, loads)
