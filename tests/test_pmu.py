"""PMU top: N-buffered streams through write and read pipelines (tier 1 programs, tier 2
RTL in the Amaranth simulator against ``pmu_reference`` with idle input and back-pressure)."""

import random
import re

import numpy as np
import pytest

from firmware.compiler.counters import Counter
from firmware.compiler.pmu import (AccessPattern, PmuProgram, PmuProgramError,
                                   access_reference, choose_bank_bits, pack_pmu, pmu_reference)
from hdl.params import PRESETS
from hdl.packet import vector_layout
from hdl.pmu.pmu import Pmu
from amaranth.hdl import Value

from tb.lib.payload import from_ints, pack, to_ints, unpack, words_of
from tb.lib.pysim import collect, configure, drive, simulate

SMALL = PRESETS["small"]
PMU = SMALL.replace(pmu_bank_words=64)
L = PMU.pcu_lanes
SEED = 21


def transpose_program(tiles, nbuf, params=PMU):
    """Tiles of L x L words written by rows and read by columns, one tile per buffer
    window, bank bits chosen so both directions are conflict-free."""
    write = AccessPattern((Counter(0, tiles), Counter(0, L * L)), repeat=(0,))
    read = AccessPattern((Counter(0, tiles), Counter(0, L), Counter(0, L * L, L)), repeat=(0,))
    bits = choose_bank_bits([access_reference(write, params)["addr"],
                             access_reference(read, params)["addr"]], params)
    return PmuProgram(write, read, bits, nbuf=nbuf, buf_words=L * L, w_level=1, r_level=1)


@pytest.mark.parametrize("kwargs,message", [
    ({"nbuf": 5}, "nbuf: 5 must be 1..4"),
    ({"nbuf": 2, "buf_words": 400}, "buf_words: 400 x 2 buffers must fit the PMU's 512 words"),
    ({"buf_words": 32}, "write: addresses 0..63 leave the buffer [0, 32)"),
    ({"w_level": 0}, "windows: the write pattern fills 1 buffers, the read pattern drains 3"),
    ({"r_level": 3}, "r_level: 3 is not a counter of the read pattern"),
])
def test_bad_pmu_programs(kwargs, message):
    base = transpose_program(3, 1)
    fields = {k: getattr(base, k) for k in base.__dataclass_fields__}
    fields.update(kwargs)
    with pytest.raises(PmuProgramError, match=re.escape(message)):
        pack_pmu(PmuProgram(**fields), PMU)


def run_pmu(program, vin, seed, idle=0.3, backpressure=0.3, iters=1):
    """``program`` on the RTL PMU over ``vin``, ``iters`` times back to back (kernel
    looping: ``vin`` holds every iteration's input); the vectors out, the reference of
    those iterations (``last`` on the final vector only) and the conflict count."""
    dut = Pmu(PMU)
    vec = vector_layout(L)
    per = np.asarray(vin).reshape(iters, -1, L)
    refs = [pmu_reference(program, PMU, x) for x in per]
    want = {key: np.concatenate([r[key] for r in refs]) for key in ("data", "mask", "last")}
    want["last"][:-1] = 0
    got, state = [], {}

    async def bench(ctx):
        ctx.set(dut.iters, iters)
        await configure(ctx, dut, pack_pmu(program, PMU))
        await drive(ctx, dut.vin, to_ints(pack(vec, {"data": vin, "mask": np.full(len(vin),
                    (1 << L) - 1)})), random.Random(seed), idle)

    async def sink(ctx):
        n = len(want["mask"])
        await collect(ctx, dut.vout, n, random.Random(seed + 1), backpressure,
                      max_cycles=30 * n + 200, seed=seed, out=got)
        assert not ctx.get(dut.busy), "busy after the last vector"
        state["rc"] = ctx.get(dut.r_conflicts)

    simulate(dut, bench, sink)
    return unpack(vec, from_ints(got, words_of(vec))), want, state


@pytest.mark.parametrize("nbuf,tiles", [(1, 2), (2, 3), (3, 1)])
def test_kernel_looping_repeats_the_program_without_a_gap(nbuf, tiles):
    """``iters`` = 3: the PMU runs its program three times back to back; the buffers
    carry on, so the writer fills the next iteration's tiles while the reader drains this
    one's — every iteration's vectors as its own run gives them, one ``last`` at the end."""
    iters = 3
    nrng = np.random.default_rng(SEED + 10 * nbuf + tiles)
    data = nrng.integers(0, 1 << 32, (iters * tiles * L, L), dtype=np.uint64).astype(np.uint32)
    got, want, _ = run_pmu(transpose_program(tiles, nbuf), data, SEED + nbuf, iters=iters)
    for key in ("data", "mask", "last"):
        assert np.array_equal(got[key], want[key]), (key, nbuf, tiles)


@pytest.mark.parametrize("nbuf", [1, 2, 3])
def test_transpose_through_n_buffers(nbuf):
    tiles = 4
    nrng = np.random.default_rng(SEED + nbuf)
    data = nrng.integers(0, 1 << 32, (tiles, L, L), dtype=np.uint64).astype(np.uint32)
    program = transpose_program(tiles, nbuf)
    got, want, state = run_pmu(program, data.reshape(tiles * L, L), SEED + nbuf)
    assert np.array_equal(want["data"], data.transpose(0, 2, 1).reshape(tiles * L, L))
    for key in ("data", "mask", "last"):
        assert np.array_equal(got[key], want[key]), key
    assert state["rc"] == 0, "column reads conflicted under the chosen bank bits"


def test_predicated_interleave_across_two_pmus():
    """A tensor twice the PMU's capacity streamed to two PMUs (as the network would
    multicast it): each keeps the half inside its predicate range, rebased to its own
    addresses (the other half would alias onto it without predication); the two
    read-backs reassemble the tensor exactly."""
    nrng = np.random.default_rng(SEED)
    cap = PMU.pmu_banks * PMU.pmu_bank_words
    tensor = nrng.integers(0, 1 << 32, (2 * cap // L, L), dtype=np.uint64).astype(np.uint32)
    halves = []
    for k in range(2):
        write = AccessPattern((Counter(0, 2 * cap),), base=-cap * k, lo=0, hi=cap)
        read = AccessPattern((Counter(0, cap),))
        program = PmuProgram(write, read)
        got, want, _ = run_pmu(program, tensor, SEED + k)
        assert np.array_equal(got["data"], want["data"]), k
        halves.append(got["data"])
    assert np.array_equal(np.concatenate(halves), tensor)


@pytest.mark.parametrize("lag", [0, 2])
def test_read_flow_tags_each_pass(lag):
    """``read_flow``: every row of a tile read twice, alternating flows 0 and 1
    (``vout_flow`` beside each vector), under back-pressure. With a lag the second read
    is ``lag`` rows ahead (the flow id is the pass counter's value shifted down) and the
    steps past the tile's rows, predicated off, send nothing (``skip_empty``) — the final
    step among them."""
    tiles = 3
    write = AccessPattern((Counter(0, tiles), Counter(0, L * L)), repeat=(0,))
    if lag:
        read = AccessPattern((Counter(0, tiles), Counter(-lag * L, L * L, L),
                              Counter(0, lag * L + 1, lag * L), Counter(0, L)),
                             repeat=(0,), lo=0, hi=L * L)
        program = PmuProgram(write, read, nbuf=2, buf_words=L * L, w_level=1, r_level=1,
                             read_flow=2, read_flow_shift=(lag * L).bit_length() - 1,
                             skip_empty=True)
    else:
        read = AccessPattern((Counter(0, tiles), Counter(0, L * L, L), Counter(0, 2),
                              Counter(0, L)), repeat=(0, 2))
        program = PmuProgram(write, read, nbuf=2, buf_words=L * L, w_level=1, r_level=1,
                             read_flow=2)
    rng = np.random.default_rng(SEED)
    vin = rng.integers(0, 1 << 32, (tiles * L, L), dtype=np.uint64).astype(np.uint32)
    want = pmu_reference(program, PMU, vin)
    # Each row once by each flow: flow 1 (row r + lag) runs lag rows ahead of flow 0.
    flows = list(want["flow"])
    assert len(flows) == 2 * tiles * L and flows.count(0) == flows.count(1) == tiles * L
    first = [flows.index(f) for f in (0, 1)]
    assert first == ([0, 1] if not lag else [lag, 0])
    dut = Pmu(PMU)
    vec = vector_layout(L)
    got, state = [], {}

    async def bench(ctx):
        await configure(ctx, dut, pack_pmu(program, PMU))
        await drive(ctx, dut.vin, to_ints(pack(vec, {"data": vin, "mask": np.full(len(vin),
                    (1 << L) - 1)})), random.Random(SEED), 0.3)

    async def sink(ctx):
        r = random.Random(SEED + 1)
        for _ in range(4000):
            ctx.set(dut.vout.ready, r.random() >= 0.4)
            _, _, valid, ready, payload, flow = await ctx.tick().sample(
                dut.vout.valid, dut.vout.ready, Value.cast(dut.vout.payload), dut.vout_flow)
            if valid and ready:
                got.append((payload, flow))
            if len(got) == len(flows):
                break
        for _ in range(10):
            await ctx.tick()
        state["busy"] = ctx.get(dut.busy)

    simulate(dut, bench, sink)
    assert len(got) == len(flows), f"{len(got)} of {len(flows)} vectors"
    data = unpack(vec, from_ints([p for p, _ in got], words_of(vec)))["data"]
    assert np.array_equal(data, want["data"])
    assert [f for _, f in got] == list(flows), "vectors left by the wrong flow"
    assert not state["busy"], "busy after the last vector"
    with pytest.raises(PmuProgramError, match="read_flow: 4 is not a counter"):
        pack_pmu(PmuProgram(write, read, nbuf=2, buf_words=L * L, w_level=1, r_level=1,
                            read_flow=4), PMU)
