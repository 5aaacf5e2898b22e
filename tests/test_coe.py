"""Tier 1: Composition of Experts in firmware — the LRU map of experts to HBM slots, the
launch lists of hits and misses, and a request sequence on the reference backend."""

import asyncio

import numpy as np
import pytest

from firmware.coe import CoeShape, ExpertCache, Experts, request_input, router_weights
from firmware.kernels.router import compile_argmax, expert_of
from firmware.runtime.memory import Allocator
from firmware.runtime.launch import Copy, Launch
from firmware.runtime.reference import ReferenceDevice
from hdl.params import PRESETS

SMALL = PRESETS["small"]


def test_expert_cache_evicts_the_least_recently_used_slot():
    c = ExpertCache(2)
    got = [c.lookup(e) for e in (5, 7, 5, 9, 7, 9, 5)]
    # 5 -> free slot 0, 7 -> free slot 1, 5 hit; 9 evicts 7 (slot 1, least recent);
    # 7 evicts 5 (slot 0); 9 hit; 5 evicts 7 (slot 0).
    assert got == [(0, False), (1, False), (0, True), (1, False), (0, False), (1, True),
                   (0, False)]
    assert c.owner == [5, 9]


def test_expert_cache_and_shape_refuse_bad_sizes():
    with pytest.raises(ValueError, match="slots"):
        ExpertCache(0)
    with pytest.raises(ValueError, match="at most one slot per expert"):
        CoeShape(experts=2, slots=3, d=16, layers=1)
    with pytest.raises(ValueError, match="layers"):
        CoeShape(experts=2, slots=1, d=16, layers=0)


def _weights(rng, shape):
    w = rng.normal(0, shape.d ** -0.5, (shape.experts, shape.layers, shape.d, shape.d))
    return (w.astype(np.float32).view(np.uint32) & 0xFFFF0000)


def test_requests_on_the_reference_backend_copy_misses_and_match_float64():
    seed = 3
    rng = np.random.default_rng(seed)
    shape = CoeShape(experts=3, slots=2, d=40, layers=2)
    dev = ReferenceDevice(SMALL)
    ex = Experts(dev, shape)
    ws = _weights(rng, shape)

    rw = router_weights(rng, shape.experts, shape.d)

    async def go():
        await ex.store(list(ws), rw)
        out = []
        for want in (0, 1, 0, 2, 1):
            xw = request_input(rng, rw, want)
            await ex.write_input(xw)
            await dev.run(ex.route())
            e = await ex.chosen()
            assert e == want, f"routed to {e}, meant for {want} (seed {seed})"
            launches, slot, hit = ex.request(e)
            await dev.run(launches)
            out.append((e, slot, hit, launches, xw.view(np.float32), await ex.read_outputs()))
        return out
    runs = asyncio.run(go())
    # LRU over two slots: 0 and 1 miss, 0 hits, 2 evicts 1, 1 evicts 0.
    assert [(slot, hit) for _, slot, hit, *_ in runs] == [
        (0, False), (1, False), (0, True), (1, False), (0, False)]
    for e, slot, hit, launches, x, ys in runs:
        assert [type(r) for r in launches] == [Launch] if hit else [Copy, Launch], seed
        assert launches[-1].offsets[0, "load"] == slot * ex.expert_words
        h = x.astype(np.float64)
        for i in range(shape.layers):
            w = ws[e, i].view(np.float32).astype(np.float64)
            got = ys[i].view(np.float32).astype(np.float64)
            # Each output within k + log2(lanes) + 1 FP32 roundings of sum |w h| (the
            # bound check_gemv derives), h being the device's own previous output.
            m = SMALL.pcu_lanes.bit_length() + -(-shape.d // SMALL.pcu_lanes)
            assert (np.abs(got - w @ h) <= m * 2.0 ** -24 * (np.abs(w) @ np.abs(h)) * 1.000001
                    ).all(), f"expert {e} layer {i} (seed {seed})"
            h = got
    slots = dev.memory[ex.hbm.addr:ex.hbm.addr + ex.hbm.words].reshape(2, -1)
    assert (slots[0] == ex.expert_image(ws[1])).all() and \
        (slots[1] == ex.expert_image(ws[2])).all(), "slots after the last copies"


def test_a_request_names_a_known_expert_after_the_weights_are_stored():
    ex = Experts(ReferenceDevice(SMALL), CoeShape(experts=2, slots=1, d=16, layers=1))
    with pytest.raises(RuntimeError, match="store"):
        ex.request(0)
    with pytest.raises(RuntimeError, match="store"):
        ex.route()
    rw = np.zeros((2, 16), np.uint32)
    asyncio.run(ex.store([np.zeros((1, 16, 16), np.uint32)] * 2, rw))
    with pytest.raises(ValueError, match="expert 2"):
        ex.request(2)
    with pytest.raises(ValueError, match="weights of 1 experts"):
        asyncio.run(ex.store([np.zeros((1, 16, 16), np.uint32)], rw))


def test_argmax_key_picks_the_first_largest_value():
    seed = 5
    rng = np.random.default_rng(seed)
    al = Allocator(SMALL)
    lanes = SMALL.pcu_lanes
    for n in (1, 3, lanes):
        k = compile_argmax(SMALL, n, x=al.alloc("hbm", n), y=al.alloc("hbm", 1))
        for t in range(50):
            v = rng.normal(0, 1, n).astype(np.float32)
            if t % 2:                                  # ties, negative values, zeros
                v[rng.integers(n)] = v.max()
                v[rng.integers(n)] = -0.0 if t % 4 == 1 else v[0]
            got = expert_of(k.reference(SMALL, v.view(np.uint32))[0])
            assert got == int(np.argmax(v)), f"{v} -> {got} (seed {seed})"
    with pytest.raises(ValueError, match=f"1 .. {lanes}"):
        compile_argmax(SMALL, lanes + 1, x=al.alloc("hbm", 16), y=al.alloc("hbm", 1))
    with pytest.raises(ValueError, match="not an argmax key"):
        expert_of(0x3F800000)


def test_coe_arguments_are_refused_before_any_model_is_built():
    from tb.lib.args import CoeArgs
    assert CoeArgs(requests=3, order="2, 0,2").expert_order() == [2, 0, 2]
    for bad, match in (({"order": "0,1"}, "must name 8 experts"),
                       ({"requests": 2, "order": "0,4"}, r"each 0 \.\. 3"),
                       ({"requests": 2, "order": "0;1"}, "comma-separated"),
                       ({"slots": 5}, "at most one slot per expert"),
                       ({"d": 100000}, "does not fit a PMU")):
        with pytest.raises(ValueError, match=match):
            CoeArgs(**bad)


def test_decoder_experts_switch_slots_and_generate_within_every_bound():
    """Composition of Experts with decoder experts on the reference backend: each request
    routed to the expert its input was made for, a miss copied DDR -> HBM first, and every
    position of its tokens within each step's float64 bound with that expert's weights."""
    from firmware.coe import DecoderExperts
    from firmware.decoder import DecoderShape
    from tb.lib.decoder import check_batch, decoder_weights
    seed = 7
    rng = np.random.default_rng(seed)
    shape = DecoderShape(d=24, hidden=32, layers=1, tokens=3, vocab=8)
    dev = ReferenceDevice(SMALL)
    ex = DecoderExperts(dev, 3, 2, shape)
    weights = [decoder_weights(rng, shape) for _ in range(3)]
    rw = router_weights(rng, 3, shape.d)

    async def go():
        await ex.store([(w, wout) for w, wout, _ in weights], rw, weights[0][2])
        got = []
        for want in (0, 1, 0, 2, 1):
            await ex.write_input(request_input(rng, rw, want))
            await dev.run(ex.route())
            e = await ex.chosen()
            assert e == want, f"routed to {e}, meant for {want} (seed {seed})"
            launches, slot, hit = ex.request(e)
            got.append((slot, hit, isinstance(launches[0], Copy)))
            ws, wout, _ = weights[e]
            for t in range(shape.tokens):
                await dev.run(launches)
                nxt = await ex.dec.next_tokens()
                bufs = [await dev.read(b) for b in (ex.dec.act, ex.dec.kc, ex.dec.vt,
                                                     ex.dec.logits)]
                check_batch(SMALL, ex.dec, ws, wout, t, bufs, nxt,
                            f"seed {seed}, expert {e}, position {t}")
                if t + 1 < shape.tokens:
                    launches = ex.dec.token(t + 1, nxt, slot)
        return got
    # LRU over two slots: 0, 1 miss; 0 hits; 2 evicts 1; 1 evicts 0 — a miss's list
    # starts with its copy record.
    assert asyncio.run(go()) == [(0, False, True), (1, False, True), (0, True, False),
                                 (1, False, True), (0, False, True)]
