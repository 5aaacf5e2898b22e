"""Tier 1 + 2: bitstreams (firmware/compiler/bitstream.py) and the config bus target
(hdl/configbus.py): random unit configs, beats of several units interleaved in random
order with idle cycles, land bit-exactly in the right registers."""

import random

import numpy as np
import pytest
from amaranth import Module, Value

from firmware.compiler.bitstream import BitstreamError, bitstream_rows, config_beats
from hdl.configbus import (CHECK_UNIT, INDEX_BITS, ConfigLoader, ConfigTarget,
                           config_beat_layout)
from hdl.params import PRESETS
from hdl.agcu.config import agcu_config_layout
from hdl.pmu.config import pmu_config_layout
from tb.lib.pysim import collect, drive, simulate

SMALL = PRESETS["small"]


def test_bitstream_rows_pack_every_word_with_the_layout():
    rng = random.Random(1)
    lay = pmu_config_layout(SMALL)
    units = {u: (lay, rng.getrandbits(lay.size)) for u in (3, 0, 7)}
    rows = bitstream_rows(units)
    got = {}
    beats = []
    for r in rows:
        v = config_beat_layout.from_bits(int(r[0]) | int(r[1]) << 32)
        beats.append((int(v.unit), int(v.index), int(v.data)))
        got.setdefault(int(v.unit), {})[int(v.index)] = int(v.data)
    for u, (_, value) in units.items():
        words = got[u]
        assert sum(w << (32 * k) for k, w in words.items()) == value
    assert [u for u, _, _ in beats[:-2]] == sorted(sum(([u] * len(got[u]) for u in units), []))
    # The check beats, last: the sums over the beats before them, as written out here.
    s1 = s2 = 0
    for u, i, d in beats[:-2]:
        s1 = (s1 + d + (i | u << INDEX_BITS)) % 2**32
        s2 = (s2 + s1) % 2**32
    assert beats[-2:] == [(CHECK_UNIT, 0, s1), (CHECK_UNIT, 1, s2)]


def test_bitstream_errors_name_the_unit():
    lay = agcu_config_layout(SMALL)
    with pytest.raises(BitstreamError, match="unit 5: config value does not fit"):
        config_beats(5, lay, 1 << lay.size)
    with pytest.raises(BitstreamError, match="unit 4096"):
        config_beats(4096, lay, 0)
    with pytest.raises(BitstreamError, match="empty"):
        bitstream_rows({})


def test_config_targets_take_only_their_words():
    rng = random.Random(7)
    layouts = {2: pmu_config_layout(SMALL), 5: agcu_config_layout(SMALL)}
    first = {u: rng.getrandbits(l.size) for u, l in layouts.items()}
    second = {u: rng.getrandbits(l.size) for u, l in layouts.items()}
    beats = []
    for values in (first, second):
        b = [x for u, l in layouts.items() for x in config_beats(u, l, values[u])]
        b += [(9, k, rng.getrandbits(32)) for k in range(5)]      # another unit's beats
        rng.shuffle(b)
        beats.append([config_beat_layout.const({"unit": u, "index": i, "data": d})
                      .as_value().value for u, i, d in b])
    targets = {u: ConfigTarget(l, u) for u, l in layouts.items()}
    m = Module()
    for u, t in targets.items():
        m.submodules[f"t{u}"] = t
    got = {}

    async def tb(ctx):
        for k, values in enumerate((first, second)):
            for t in targets.values():
                await _feed(ctx, t, beats[k], random.Random(k))
            for u, t in targets.items():
                got[(k, u)] = ctx.get(Value.cast(t.config))
                assert ctx.get(t.writes) == (k + 1) * t.words

    simulate(m, tb)
    for k, values in enumerate((first, second)):
        for u in layouts:
            assert got[(k, u)] == values[u], (k, u)


async def _feed(ctx, target, beats, rng):
    await drive(ctx, target.bus, beats, rng, 0.3)
    await ctx.tick()


def _load(rows, words, count, seed):
    """Run a ConfigLoader over ``rows`` (bitstream rows, packed ``words`` a memory beat)
    for ``count`` config beats with random stalls on both sides; (config beats out,
    sum_error after)."""
    flat = np.asarray(rows, np.uint32).reshape(-1)
    flat = np.concatenate([flat, np.zeros(-len(flat) % words, np.uint32)])
    mem = [sum(int(w) << (32 * k) for k, w in enumerate(flat[i:i + words]))
           for i in range(0, len(flat), words)]
    dut = ConfigLoader(words)
    out = {}

    async def tb(ctx):
        ctx.set(dut.count, count)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        await drive(ctx, dut.beats, mem, random.Random(seed), 0.3, max_wait=1000)

    async def sink(ctx):
        out["beats"] = await collect(ctx, dut.bus, count, random.Random(seed + 1), 0.3,
                                     max_cycles=20 * count + 100, seed=seed)
        assert not ctx.get(dut.busy), f"seed {seed}: still busy after {count} beats"
        out["error"] = ctx.get(dut.sum_error)

    simulate(dut, tb, sink)
    return out["beats"], out["error"]


@pytest.mark.parametrize("seed", [3, 4])
def test_loader_checks_the_program_checksum(seed):
    """A whole bitstream passes; one flipped bit anywhere in its loaded words, or the
    check beats cut off, gives sum_error (the beats still go out: nothing starts)."""
    rng = random.Random(seed)
    lay = pmu_config_layout(SMALL)
    units = {u: (lay, rng.getrandbits(lay.size)) for u in rng.sample(range(40), 3)}
    rows = bitstream_rows(units)
    words = SMALL.hbm_bytes_per_cycle // 4
    beats, err = _load(rows, words, len(rows), seed)
    assert err == 0 and len(beats) == len(rows), f"seed {seed}: a good program refused"
    for _ in range(6):
        bad = rows.copy()
        # A bit of the program: one of a beat's config_beat_layout.size bits (the rest
        # of its BEAT_WORDS words is padding the loader never reads).
        r, w = rng.randrange(len(rows)), rng.randrange(rows.shape[1])
        bit = rng.randrange(min(32, config_beat_layout.size - 32 * w))
        bad[r, w] ^= np.uint32(1 << bit)
        assert _load(bad, words, len(rows), seed)[1] == 1, \
            f"seed {seed}: bit {bit} of word {w} of beat {r} flipped, not refused"
    assert _load(rows[:-2], words, len(rows) - 2, seed)[1] == 1, \
        f"seed {seed}: a program without its check beats accepted"
