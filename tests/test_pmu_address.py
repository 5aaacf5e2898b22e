"""PMU address pipeline: programs (tier 1) and the RTL in the Amaranth simulator (tier 2)
against ``access_reference`` under back-pressure."""

import random
import re

import numpy as np
import pytest

from firmware.compiler.counters import Counter
from firmware.compiler.pmu import AccessPattern, PmuProgramError, access_reference, pack_access
from hdl.params import PRESETS
from hdl.pmu.address import AddressGen
from hdl.pmu.config import address_layout
from tb.lib.payload import from_ints, unpack, words_of
from tb.lib.pysim import collect, configure, drive, simulator

SMALL = PRESETS["small"]
SEED = 9


@pytest.mark.parametrize("pattern,message", [
    (AccessPattern(()), "read.counters: an access pattern needs at least one counter"),
    (AccessPattern((Counter(0, 4, 0),)), "read.counter 0 (innermost): stride 0"),
    (AccessPattern((Counter(0, 8),), lane_offset=(1, 2)), "read.lane_offset: 2 offsets for 8"),
    (AccessPattern((Counter(0, 8),), lane_offset=(0,) * 7 + (40000,)),
     "read.lane_offset[7]: 40000 must be an integer in -32768..32767"),
    (AccessPattern((Counter(0, 8),), lo=5, hi=5), "read: empty predicate range [5, 5)"),
    (AccessPattern((Counter(0, 8),), base=1 << 40), "read.base: 1099511627776 must be an INT32"),
    (AccessPattern((Counter(0, 8),), scalar_hi=True, scalar_level=2),
     "read.scalar_level: 2 is not a counter (0..0)"),
    (AccessPattern((Counter(0, 2), Counter(0, 8)), repeat=(1,)),
     "read.repeat: 1 is not an outer counter (0..0)"),
])
def test_bad_access_patterns(pattern, message):
    with pytest.raises(PmuProgramError, match=re.escape(message)):
        pack_access(pattern, SMALL, "read")


PATTERNS = [
    AccessPattern((Counter(0, 64),)),                                  # a linear stream
    AccessPattern((Counter(0, 8), Counter(0, 64, 8)), base=100),       # column walk, 8x8
    AccessPattern((Counter(0, 3), Counter(0, 5, 2), Counter(0, 13)),   # ragged, 3 deep
                  lane_offset=tuple(range(0, 16, 2)), lo=30, hi=200),  # predicated
    AccessPattern((Counter(-20, 20, 7), Counter(0, 8)), base=-5, lo=0),
    AccessPattern((Counter(0, 3), Counter(0, 4), Counter(0, 16)), repeat=(0,)),
    AccessPattern((Counter(0, 3), Counter(0, 20)), repeat=(0,), scalar_base=True,
                  scalar_hi=True, scalar_level=1),            # per-window base and bound
    AccessPattern((Counter(0, 2), Counter(0, 2), Counter(0, 8)), scalar_hi=True),
]
#: What each pattern's scalar input supplies (per window: base offset, then hi).
SCALARS = {5: [100, 112, 200, 215, (-5) & 0xFFFFFFFF, 10], 6: [7]}


def test_address_pipeline_matches_reference():
    dut = AddressGen(SMALL)
    layout = address_layout(SMALL)
    state = {}

    async def bench(ctx):
        await configure(ctx, dut, state["config"])
        await drive(ctx, dut.s, state["scalars"], random.Random(state["seed"]), 0.5,
                    max_wait=20 * state["n"] + 50)

    async def sink(ctx):
        await collect(ctx, dut.o, state["n"], random.Random(state["seed"]), 0.4,
                      max_cycles=10 * state["n"] + 50, seed=state["seed"], out=state["got"])
        assert not ctx.get(dut.busy)

    sim = simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.add_testbench(sink)
    for k, pattern in enumerate(PATTERNS):
        scalars = SCALARS.get(k, [])
        want = access_reference(pattern, SMALL, scalars=scalars)
        state.update(config=pack_access(pattern, SMALL), n=len(want["mask"]), got=[],
                     seed=SEED + k, scalars=scalars)
        if k:
            sim.reset()
        sim.run()
        got = unpack(layout, from_ints(state["got"], words_of(layout)))
        assert np.array_equal(got["addr"], (want["addr"] & 0xFFFFFFFF).astype(np.uint32)), k
        for key in ("mask", "wrap", "last"):
            assert np.array_equal(got[key], want[key]), (k, key)
