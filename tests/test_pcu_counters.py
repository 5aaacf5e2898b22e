"""PCU header counter chain: firmware packing and errors (tier 1), and the RTL in the
Amaranth simulator against the firmware reference with back-pressure (tier 2)."""

import itertools
import random
import re

import pytest
from amaranth import Value

from firmware.compiler.counters import Counter, chain_steps, pack_chain
from firmware.compiler.pcu import PcuProgramError
from hdl.counters import MAX_COUNTERS, ChainConfig, chain_output_layout
from hdl.counters import CounterChain
from hdl.params import PRESETS
from tb.lib.pysim import collect, simulator

SMALL = PRESETS["small"]
SEED = 3


def brute_force(counters, lanes):
    """Independent model: plain nested loops over every (unrolled) iteration."""
    *outer, inner = counters
    inner_vals = list(range(inner.min, inner.max, inner.stride))
    out = []
    for prefix in itertools.product(*[range(c.min, c.max, c.stride) for c in outer]):
        for k in range(0, len(inner_vals), lanes):
            out.append((list(prefix) + [inner_vals[k]], inner_vals[k:k + lanes]))
    return out


def random_chain(rng, lanes):
    depth = rng.randint(1, MAX_COUNTERS)
    cs = []
    for i in range(depth):
        lo = rng.randint(-20, 20)
        stride = rng.choice([1, 1, 2, 3, 5])
        n = rng.randint(1, 3 if i < depth - 1 else 3 * lanes)
        cs.append(Counter(lo, lo + rng.randint((n - 1) * stride + 1, n * stride), stride))
    return cs


def test_reference_matches_nested_loops():
    rng = random.Random(SEED)
    for _ in range(300):
        lanes = rng.choice([2, 4, 8])
        cs = random_chain(rng, lanes)
        steps = chain_steps(cs, lanes)
        want = brute_force(cs, lanes)
        assert len(steps) == len(want), cs
        for s, (values, lane_vals) in zip(steps, want):
            assert s["value"][:len(cs)] == values
            k = len(lane_vals)
            assert s["lane"][:k] == lane_vals and s["mask"] == (1 << k) - 1
        assert [s["last"] for s in steps] == [False] * (len(steps) - 1) + [True]
        assert sum(1 for s in steps if s["wrap"] & (1 << (len(cs) - 1))) == \
            len(steps) // -(-len(range(cs[-1].min, cs[-1].max, cs[-1].stride)) // lanes)


def test_packing_uses_the_hdl_layout():
    cs = [Counter(-3, 7, 2), Counter(0, 100, 1)]
    view = ChainConfig.from_bits(pack_chain(cs, SMALL))
    assert view.depth == 2
    assert (view.ctr[0].min, view.ctr[0].max, view.ctr[0].stride) == (-3, 7, 2)
    assert (view.ctr[1].min, view.ctr[1].max, view.ctr[1].stride) == (0, 100, 1)
    assert ChainConfig.from_bits(pack_chain([], SMALL)).depth == 0


@pytest.mark.parametrize("counters,message", [
    ([Counter(0, 4)] * 5, "5 nested counters"),
    ([Counter(0, 4, 0)], "counter 0 (innermost): stride 0"),
    ([Counter(0, 4), Counter(5, 5)], "counter 1 (innermost): empty range [5, 5)"),
    ([Counter(3, 1), Counter(0, 4)], "counter 0: empty range"),
    ([Counter(0, 1 << 31)], "exceeds INT32"),
    ([Counter(0, (1 << 31) - 2, 1 << 20)], "overflow INT32"),
    ([Counter(0, 4.5)], "max must be an integer"),
])
def test_bad_chains_are_rejected(counters, message):
    with pytest.raises(PcuProgramError, match=re.escape(message)):
        pack_chain(counters, SMALL, PcuProgramError)
    with pytest.raises(ValueError, match=re.escape("write.")):
        pack_chain(counters, SMALL, prefix="write.")


def run_chain_rtl(lanes, programs, seed, backpressure, repeats=None):
    """Run each program (a counter list) on the RTL chain in turn, ``repeats[i]`` times
    back to back (kernel looping; default once); return the steps."""
    dut = CounterChain(lanes)
    layout = chain_output_layout(lanes)
    rng = random.Random(seed)
    params = SMALL.replace(pcu_lanes=lanes, pmu_banks=max(lanes, 8))
    results = []

    async def tb(ctx):
        for cs, rep in zip(programs, repeats or [1] * len(programs)):
            n = len(chain_steps(cs, lanes)) * max(rep, 1)
            ctx.set(Value.cast(dut.config), pack_chain(cs, params))
            ctx.set(dut.repeat, rep)
            for _ in range(rng.randint(0, 3)):
                await ctx.tick()
            assert not ctx.get(dut.busy)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            words = await collect(ctx, dut.o, n, rng, backpressure, max_cycles=20 * n + 50,
                                  seed=seed)
            assert not ctx.get(dut.busy), "busy after the last step"
            results.append([layout.from_bits(w) for w in words])

    sim = simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return results


@pytest.mark.parametrize("lanes", [4, 8])
def test_rtl_chain_matches_reference_under_backpressure(lanes):
    rng = random.Random(SEED + lanes)
    programs = [random_chain(rng, lanes) for _ in range(12)]
    programs.append([Counter(0, 1)])                                   # one step
    programs.append([Counter(-2, 9, 3), Counter(1, 3), Counter(0, 2), Counter(0, 3 * lanes)])
    for cs, got in zip(programs, run_chain_rtl(lanes, programs, SEED, backpressure=0.4)):
        want = chain_steps(cs, lanes)
        for k, (g, w) in enumerate(zip(got, want)):
            state = (list(g.value), list(g.lane), g.mask, g.wrap, bool(g.last))
            assert state == (w["value"], w["lane"], w["mask"], w["wrap"], w["last"]), \
                f"program {cs}, step {k} (seed {SEED})"
            assert bool(g.final) == w["last"], f"program {cs}, step {k} (seed {SEED})"


def test_rtl_chain_repeats_for_kernel_looping():
    """``repeat`` runs the chain that many times with no gap: every run ends in ``last``,
    only the final one in ``final`` (0 runs once, like 1)."""
    rng = random.Random(SEED + 7)
    programs = [random_chain(rng, 4) for _ in range(4)]
    repeats = [3, 1, 0, 2]
    for cs, rep, got in zip(programs, repeats,
                            run_chain_rtl(4, programs, SEED, 0.3, repeats=repeats)):
        want = chain_steps(cs, 4) * max(rep, 1)
        assert len(got) == len(want), (cs, rep)
        for k, (g, w) in enumerate(zip(got, want)):
            assert (list(g.value), g.mask, g.wrap, bool(g.last)) == \
                (w["value"], w["mask"], w["wrap"], w["last"]), \
                f"program {cs} x {rep}, step {k} (seed {SEED})"
            assert bool(g.final) == (k == len(want) - 1), \
                f"program {cs} x {rep}, step {k} (seed {SEED})"
