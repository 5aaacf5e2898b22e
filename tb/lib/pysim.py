"""Stream drivers for the Amaranth Python simulator (tier-2 tests of small blocks).

:func:`run_stream` feeds payloads into a ``stream.Signature`` input with seeded random
idle cycles, drains an output stream with seeded random back-pressure, and returns the
output payloads as integers. It fails (never hangs) if outputs stop coming, and checks
that no extra output appears after the expected count.
"""

import random

from amaranth import Value
from amaranth.sim import Simulator

__all__ = ["run_stream", "StreamTimeout"]


class StreamTimeout(AssertionError):
    pass


def run_stream(dut, inputs, n_out, *, seed, i="i", o="o", idle=0.3, backpressure=0.3,
               max_cycles=None, drain_cycles=20, vcd=None):
    port_i, port_o = getattr(dut, i), getattr(dut, o)
    rng_i, rng_o = random.Random(seed), random.Random(seed ^ 0x5EED)
    max_cycles = max_cycles or 50 + 10 * (len(inputs) + n_out)
    got = []
    state = {"cycles": 0}

    async def producer(ctx):
        for x in inputs:
            while rng_i.random() < idle:
                await ctx.tick()
            ctx.set(port_i.valid, 1)
            ctx.set(Value.cast(port_i.payload), x)
            await ctx.tick().until(port_i.ready)
            ctx.set(port_i.valid, 0)

    async def consumer(ctx):
        extra = 0
        while len(got) < n_out or extra < drain_cycles:
            if len(got) >= n_out:
                extra += 1
            ctx.set(port_o.ready, rng_o.random() >= backpressure)
            _, _, valid, ready, payload = await ctx.tick().sample(
                port_o.valid, port_o.ready, Value.cast(port_o.payload))
            state["cycles"] += 1
            if valid and ready:
                got.append(payload)
            if state["cycles"] > max_cycles:
                raise StreamTimeout(f"{len(got)} of {n_out} outputs after {max_cycles} cycles "
                                    f"(seed {seed})")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    assert len(got) == n_out, f"{len(got)} outputs, expected exactly {n_out} (seed {seed})"
    return got
