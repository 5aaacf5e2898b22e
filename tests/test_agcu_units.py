"""Tier 2: the AGCU's splitter, packer and unpacker in the Amaranth simulator, against
Python references, with random idle inputs and back-pressure."""

import random

import pytest

from firmware.compiler.agcu import run_bursts
from hdl.agcu.config import burst_layout
from hdl.agcu.pack import Packer, Unpacker, beat_words_layout
from hdl.agcu.splitter import BurstSplitter, run_layout
from hdl.memory.config import MemoryMap, wdata_layout
from hdl.packet import vector_layout
from hdl.params import PRESETS
from tb.lib.pysim import collect, drive, run_stream, simulate

SMALL = PRESETS["small"]
W = MemoryMap(SMALL).words


def _const(layout, fields):
    return layout.const(fields).as_value().value


def _splitter(runs, seg_base, seg_size, run, seed):
    dut = BurstSplitter(SMALL)
    bl = burst_layout(SMALL)
    got = []
    inside = [off for off in runs if off >= 0 and off + run <= seg_size]
    ok = []
    for off in runs:
        if off not in inside:
            break
        ok.append(off)
    want = []
    for k, off in enumerate(ok):
        bursts = run_bursts(W, seg_base + off, run)
        for j, (beat, ln, lo, hi) in enumerate(bursts):
            last = int(k == len(runs) - 1 and j == len(bursts) - 1)
            want.append((beat, ln, lo, hi, last))
    payloads = [_const(run_layout, {"offset": off, "last": int(k == len(runs) - 1)})
                for k, off in enumerate(runs)]

    async def tb(ctx):
        ctx.set(dut.seg.base, seg_base)
        ctx.set(dut.seg.size, seg_size)
        ctx.set(dut.run, run)
        await ctx.tick()
        await drive(ctx, dut.i, payloads, random.Random(seed), 0.3)

    async def sink(ctx):
        await collect(ctx, dut.o, len(want), random.Random(seed + 1), 0.4,
                      max_cycles=50 + 10 * len(want) + 5 * len(runs), seed=seed, out=got)
    faults = {}

    async def watch(ctx):
        async for _, _, fault, addr in ctx.tick().sample(dut.fault, dut.fault_addr):
            if fault:
                faults["addr"] = addr

    simulate(dut, tb, sink, background=[watch])
    views = [bl.from_bits(g) for g in got]
    return [(v.addr, v.len, v.lo, v.hi, v.last) for v in views], want, faults.get("addr")


def test_splitter_cuts_runs_into_block_bursts():
    for seed in range(4):
        rng = random.Random(seed)
        run = rng.choice([1, 3, 8, 37, 130, 300])
        base = rng.randrange(5000)
        runs = [rng.randrange(2000) for _ in range(12)]
        got, want, fault = _splitter(runs, base, 2000 + run, run, seed)
        assert fault is None and got == want, f"seed {seed}"


def test_splitter_fault_stops_at_the_first_word_outside():
    # Run 3 reaches from word 95 past the segment's 100 words: fault at word 100; the runs
    # after it (even those inside) are dropped.
    got, want, fault = _splitter([0, 40, 80, 95, 10], 777, 100, 10, seed=7)
    assert got == want and fault == 100
    assert len(want) == len(run_bursts(W, 777, 10)) + len(run_bursts(W, 817, 10)) + \
        len(run_bursts(W, 857, 10))


def _beats_of(words, rng, W=W):
    """The word stream cut into beats (of ``W`` words) with random lo/hi windows."""
    beats, k = [], 0
    while k < len(words):
        lo = rng.randrange(W)
        n = min(rng.randrange(1, W - lo + 1), len(words) - k)
        data = [rng.getrandbits(32) for _ in range(W)]
        data[lo:lo + n] = words[k:k + n]
        k += n
        beats.append({"data": data, "lo": lo, "hi": lo + n, "last": int(k == len(words))})
    return beats


#: (beat words, lanes): beats as wide as packets, narrower, and wider (a beat leaves as
#: several packets; several packets make one beat).
WIDTHS = [(W, SMALL.pcu_lanes), (8, 4), (16, 8), (8, 2), (2, 8)]


@pytest.mark.parametrize("W,L", WIDTHS)
def test_packer_packs_words_densely(W, L):
    for seed in range(4):
        rng = random.Random(seed)
        words = [rng.getrandbits(32) for _ in range(rng.randrange(1, 200))]
        beats = [_const(beat_words_layout(W), b) for b in _beats_of(words, rng, W)]
        n = -(-len(words) // L)
        got = run_stream(Packer(W, L), beats, n, seed=seed)
        vl = vector_layout(L)
        flat = []
        for k, g in enumerate(got):
            v = vl.from_bits(g)
            cnt = L if k < n - 1 else len(words) - L * (n - 1)
            assert v.mask == (1 << cnt) - 1 and v.last == int(k == n - 1), \
                f"seed {seed}, {W}-word beats, {L} lanes: packet {k}"
            flat += [v.data[j] for j in range(cnt)]
        assert flat == words, f"seed {seed}, {W}-word beats, {L} lanes"


@pytest.mark.parametrize("W,L", WIDTHS)
def test_unpacker_places_words_by_burst_and_masks_the_rest(W, L):
    bl = burst_layout(SMALL.replace(hbm_bytes_per_cycle=4 * W, ddr_bytes_per_cycle=4 * W,
                                    host_bytes_per_cycle=2))
    for seed in range(4):
        rng = random.Random(seed)
        bursts, want = [], []
        words = []
        for _ in range(10):
            phys, run = rng.randrange(4000), rng.randrange(1, 60)
            for beat, ln, lo, hi in run_bursts(W, phys, run):
                bursts.append(_const(bl, {"addr": beat, "len": ln, "lo": lo, "hi": hi}))
                for k in range(ln + 1):
                    a, b = (lo if k == 0 else 0), (hi if k == ln else W)
                    vals = [rng.getrandbits(32) for _ in range(b - a)]
                    words += vals
                    want.append((a, b, vals))
        n = -(-len(words) // L)
        packets = []
        for k in range(n):
            chunk = words[k * L:(k + 1) * L]
            packets.append(_const(vector_layout(L), {
                "data": chunk + [rng.getrandbits(32) for _ in range(L - len(chunk))],
                "mask": (1 << len(chunk)) - 1, "last": int(k == n - 1)}))
        dut = Unpacker(W, L, bl)
        got, done = [], []

        async def feed(ctx):
            await drive(ctx, dut.i, packets, random.Random(seed), 0.3)

        async def feed_bursts(ctx):
            await drive(ctx, dut.bursts, bursts, random.Random(seed + 1), 0.2)

        async def sink(ctx):
            await collect(ctx, dut.o, len(want), random.Random(seed + 2), 0.3,
                          max_cycles=2000, seed=seed, out=got)

        async def sink_done(ctx):
            await collect(ctx, dut.done, len(bursts), random.Random(seed + 3), 0.2,
                          max_cycles=2000, seed=seed, out=done)

        simulate(dut, feed, feed_bursts, sink, sink_done)
        wl = wdata_layout(W)
        for k, (g, (a, b, vals)) in enumerate(zip(got, want)):
            v = wl.from_bits(g)
            assert v.mask == ((1 << (b - a)) - 1) << a, f"seed {seed} beat {k}: mask"
            assert [v.data[j] for j in range(a, b)] == vals, f"seed {seed} beat {k}: data"
        assert done == bursts, f"seed {seed}: bursts done"


def test_splitter_zero_word_runs_yield_nothing():
    """A malformed program (run = 0; firmware never makes one) must not request beats."""
    got, want, fault = _splitter([0, 5, 9], 100, 50, 0, seed=3)
    assert got == [] and want == [] and fault is None
