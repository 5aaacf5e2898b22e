"""Stream drivers for the Amaranth Python simulator (tier-2 tests of small blocks).

:func:`drive` feeds payloads into a ``stream.Signature`` input with seeded random idle
cycles; :func:`collect` drains an output stream with seeded random back-pressure, fails
(never hangs) when outputs stop coming, and checks that nothing extra appears after the
expected count. :func:`run_stream` runs both around a one-input, one-output block;
:func:`run_pipeline` drives a bare fixed-latency unit with random ``en`` stalls.
"""

import random

from amaranth import Value
from amaranth.sim import Simulator

from hdl.clockgate import ungated

__all__ = ["simulator", "simulate", "configure", "drive", "collect", "run_stream", "run_pipeline", "StreamTimeout"]


class StreamTimeout(AssertionError):
    pass


def simulator(dut):
    """An Amaranth ``Simulator`` of ``dut``, elaborated with its clock gates open
    (``hdl.clockgate``: the Python simulator cannot run a derived clock race-free)."""
    with ungated():
        return Simulator(dut)


def simulate(dut, *testbenches, background=(), vcd=None):
    """Run ``testbenches`` (async functions of ``ctx``) on ``dut`` with a clock until
    they all return; ``background`` ones (models that never return) run alongside."""
    sim = simulator(dut)
    sim.add_clock(1e-8)
    for tb in testbenches:
        sim.add_testbench(tb)
    for tb in background:
        sim.add_testbench(tb, background=True)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()


async def configure(ctx, dut, config):
    """Load ``config`` bits into ``dut.config``, then pulse ``dut.start`` for a cycle."""
    ctx.set(Value.cast(dut.config), config)
    await ctx.tick()
    ctx.set(dut.start, 1)
    await ctx.tick()
    ctx.set(dut.start, 0)


async def drive(ctx, port, payloads, rng, idle=0.0, max_wait=None):
    """Offer ``payloads`` in order; with ``max_wait``, fail (never hang) when one waits
    longer than that many cycles for ``ready``."""
    for k, x in enumerate(payloads):
        while rng.random() < idle:
            await ctx.tick()
        ctx.set(port.valid, 1)
        ctx.set(Value.cast(port.payload), x)
        waited = 0
        while True:
            _, _, ready = await ctx.tick().sample(port.ready)
            if ready:
                break
            waited += 1
            if max_wait is not None and waited > max_wait:
                raise StreamTimeout(f"input {k} of {len(payloads)} not taken in {max_wait} "
                                    f"cycles")
        ctx.set(port.valid, 0)


async def collect(ctx, port, n, rng, backpressure=0.0, *, max_cycles, drain_cycles=20,
                  seed=None, out=None):
    """Payload integers of ``n`` transfers on ``port`` (appended to ``out`` if given)."""
    got = [] if out is None else out
    cycles = extra = 0
    while len(got) < n or extra < drain_cycles:
        if len(got) >= n:
            extra += 1
        ctx.set(port.ready, rng.random() >= backpressure)
        _, _, valid, ready, payload = await ctx.tick().sample(
            port.valid, port.ready, Value.cast(port.payload))
        cycles += 1
        if valid and ready:
            got.append(payload)
        if cycles > max_cycles:
            raise StreamTimeout(f"{len(got)} of {n} outputs after {max_cycles} cycles "
                                f"(seed {seed})")
    assert len(got) == n, f"{len(got)} outputs, expected exactly {n} (seed {seed})"
    return got


def run_stream(dut, inputs, n_out, *, seed, i="i", o="o", idle=0.3, backpressure=0.3,
               max_cycles=None, drain_cycles=20, vcd=None):
    port_i, port_o = getattr(dut, i), getattr(dut, o)
    rng_i, rng_o = random.Random(seed), random.Random(seed ^ 0x5EED)
    max_cycles = max_cycles or 50 + 10 * (len(inputs) + n_out)
    got = []

    async def producer(ctx):
        await drive(ctx, port_i, inputs, rng_i, idle)

    async def consumer(ctx):
        await collect(ctx, port_o, n_out, rng_o, backpressure, max_cycles=max_cycles,
                      drain_cycles=drain_cycles, seed=seed, out=got)

    simulate(dut, producer, consumer, vcd=vcd)
    return got


def run_pipeline(unit, inputs, *, seed, stall=0.3, output="r"):
    """Results of a fixed-latency unit (``en``, ``LATENCY``, inputs named by ``inputs``'
    keys): input k enters on the k-th enabled edge and its result is read after
    ``LATENCY`` further enabled edges. ``en`` is low with probability ``stall``."""
    rng = random.Random(seed)
    n = len(next(iter(inputs.values())))
    latency = unit.LATENCY
    out = [None] * n

    async def tb(ctx):
        entered = 0
        while entered < n + latency:
            en = rng.random() >= stall
            ctx.set(unit.en, en)
            for name, col in inputs.items():
                port = Value.cast(getattr(unit, name))
                if en and entered < n:
                    ctx.set(port, int(col[entered]))
                else:   # what is presented while stalled must not leak into results
                    ctx.set(port, rng.getrandbits(len(port)))
            await ctx.tick()
            if en:
                entered += 1
                k = entered - latency
                if 0 <= k < n:
                    out[k] = ctx.get(getattr(unit, output))

    sim = simulator(unit)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return out
