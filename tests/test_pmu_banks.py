"""PMU banked scratchpad: bank-bit programs (tier 1) and the RTL in the Amaranth simulator
(tier 2): every word read is the word written under random conflicts, idle inputs and
back-pressure; the conflict counters match the firmware's count."""

import random
import re

import numpy as np
import pytest
from amaranth import Value

from firmware.compiler.pmu import (BankBits, PmuProgramError, choose_bank_bits,
                                   conflict_cycles, offset_of, bank_of, pack_bank_bits)
from hdl.params import PRESETS
from hdl.pmu.banks import Banks
from hdl.pmu.config import read_data_layout, read_layout, write_layout
from tb.lib.payload import from_ints, pack, to_ints, unpack, words_of
from tb.lib.pysim import collect, drive, simulate

SMALL = PRESETS["small"]
PMU = SMALL.replace(pmu_bank_words=64)          # 8 banks x 64 words, 8 lanes
SEED = 3


@pytest.mark.parametrize("bits,message", [
    (BankBits(shift=11), "bank_bits.shift: 11 must be an integer in 0..10"),
    (BankBits(shift=-1), "bank_bits.shift: -1 must be"),
    (BankBits(shift=2, fold_shift=4), "bank_bits.fold_shift: bits [4, 7) overlap the bank"),
    (BankBits(shift=0, fold_shift="3"), "bank_bits.fold_shift: '3' must be an integer"),
])
def test_bad_bank_bits(bits, message):
    with pytest.raises(PmuProgramError, match=re.escape(message)):
        pack_bank_bits(bits, SMALL)


@pytest.mark.parametrize("bits", [BankBits(0), BankBits(3), BankBits(2, 5), BankBits(7, 0)])
def test_bank_mapping_is_one_to_one(bits):
    a = np.arange(SMALL.pmu_banks * SMALL.pmu_bank_words)
    key = bank_of(a, bits, SMALL) * SMALL.pmu_bank_words + offset_of(a, bits, SMALL)
    assert np.array_equal(np.sort(key), a)


def column_walk(rows, cols, lanes):
    """Read a row-major rows x cols tile by columns: lane l reads row l of a column."""
    return np.array([[l * cols + c for l in range(lanes)] for c in range(cols)]
                    * (rows // lanes))


def test_bank_bit_helper_removes_column_walk_conflicts():
    lanes = SMALL.pcu_lanes
    walk = column_walk(lanes, 8, lanes)
    rows = np.arange(64).reshape(8, 8)
    assert conflict_cycles(walk, BankBits(), SMALL) == 8 * (lanes - 1)
    bits = choose_bank_bits([walk, rows], SMALL)
    assert conflict_cycles(walk, bits, SMALL) == 0 and conflict_cycles(rows, bits, SMALL) == 0


def run_banks(params, bits, writes, reads, seed, idle=0.3, backpressure=0.3):
    """Stream ``writes`` (addr, data, mask rows), then ``reads`` (addr, mask rows)
    through :class:`Banks`; returns (read answers, write conflicts, read conflicts)."""
    dut = Banks(params)
    wl, rl, dl = write_layout(params), read_layout(params), read_data_layout(params)
    got = []
    state = {}

    async def bench(ctx):
        ctx.set(Value.cast(dut.config), pack_bank_bits(bits, params))
        await drive(ctx, dut.w, to_ints(pack(wl, writes)), random.Random(seed), idle)
        for _ in range(3):
            await ctx.tick()
        state["w"] = ctx.get(dut.w_conflicts)
        await drive(ctx, dut.r, to_ints(pack(rl, reads)), random.Random(seed + 1), idle)

    async def sink(ctx):
        n = len(reads["mask"])
        await collect(ctx, dut.rd, n, random.Random(seed + 2), backpressure,
                      max_cycles=20 * n + 20 * len(writes["mask"]) + 200, seed=seed, out=got)
        state["r"] = ctx.get(dut.r_conflicts)

    simulate(dut, bench, sink)
    return unpack(dl, from_ints(got, words_of(dl))), state["w"], state["r"]


def model(params, writes, reads):
    mem = {}
    for addr, data, mask in zip(writes["addr"], writes["data"], writes["mask"]):
        for l in range(params.pcu_lanes):
            if mask >> l & 1:
                mem[int(addr[l])] = int(data[l])
    return np.array([[mem.get(int(a), 0) for a in row] for row in reads["addr"]], np.uint32)


@pytest.mark.parametrize("bits", [BankBits(0), BankBits(2, 6)])
def test_every_word_read_is_the_word_written(bits):
    """Random addresses (so random conflicts and repeated addresses), random masks."""
    nrng = np.random.default_rng(SEED)
    L, words = PMU.pcu_lanes, PMU.pmu_banks * PMU.pmu_bank_words
    n = 60
    hot = nrng.integers(0, words, 24)           # a small set: conflicts and overwrites
    writes = {"addr": nrng.choice(hot, (n, L)), "mask": nrng.integers(0, 1 << L, n),
              "data": nrng.integers(0, 1 << 32, (n, L), dtype=np.uint64).astype(np.uint32)}
    writes["mask"][0] = (1 << L) - 1
    reads = {"addr": nrng.choice(hot, (n, L)), "mask": nrng.integers(0, 1 << L, n)}
    got, wc, rc = run_banks(PMU, bits, writes, reads, SEED)
    want = model(PMU, writes, reads)
    on = ((reads["mask"][:, None] >> np.arange(L)) & 1).astype(bool)
    assert np.array_equal(got["mask"], reads["mask"])
    assert np.array_equal(got["data"][on], want[on])
    assert wc == conflict_cycles(writes["addr"], bits, PMU, writes["mask"])
    assert rc == conflict_cycles(reads["addr"], bits, PMU, reads["mask"])


def test_column_walk_conflicts_in_rtl():
    """A column walk of a row-major 8x8 tile: 7 extra cycles per vector with the default
    bank bits, none with the helper's choice; the data is the same."""
    L = PMU.pcu_lanes
    tile = np.arange(64, dtype=np.uint32) * 3 + 1
    writes = {"addr": np.arange(64).reshape(8, L), "data": tile.reshape(8, L),
              "mask": np.full(8, (1 << L) - 1)}
    walk = column_walk(L, 8, L)
    reads = {"addr": walk, "mask": np.full(len(walk), (1 << L) - 1)}
    chosen = choose_bank_bits([walk, writes["addr"]], PMU)
    for bits, conflicts in ((BankBits(), 8 * (L - 1)), (chosen, 0)):
        got, _, rc = run_banks(PMU, bits, writes, reads, SEED, idle=0.0, backpressure=0.0)
        assert rc == conflicts, bits
        assert np.array_equal(got["data"], tile[walk]), bits
