"""Tier 1 + 2: bitstreams (firmware/compiler/bitstream.py) and the config bus target
(hdl/configbus.py): random unit configs, beats of several units interleaved in random
order with idle cycles, land bit-exactly in the right registers."""

import random

import pytest
from amaranth import Module, Value

from firmware.compiler.bitstream import BitstreamError, bitstream_rows, config_beats
from hdl.configbus import ConfigTarget, config_beat_layout
from hdl.params import PRESETS
from hdl.agcu.config import agcu_config_layout
from hdl.pmu.config import pmu_config_layout
from tb.lib.pysim import drive, simulate

SMALL = PRESETS["small"]


def test_bitstream_rows_pack_every_word_with_the_layout():
    rng = random.Random(1)
    lay = pmu_config_layout(SMALL)
    units = {u: (lay, rng.getrandbits(lay.size)) for u in (3, 0, 7)}
    rows = bitstream_rows(units)
    got = {}
    for r in rows:
        v = config_beat_layout.from_bits(int(r[0]) | int(r[1]) << 32)
        got.setdefault(int(v.unit), {})[int(v.index)] = int(v.data)
    for u, (_, value) in units.items():
        words = got[u]
        assert sum(w << (32 * k) for k, w in words.items()) == value
    assert [int(config_beat_layout.from_bits(int(r[0]) | int(r[1]) << 32).unit)
            for r in rows] == sorted(sum(([u] * len(got[u]) for u in units), []))


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
