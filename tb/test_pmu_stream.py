"""cocotb: one PMU on Verilator, bit-exact against ``pmu_reference``.

Arguments (the test's dataclass in :mod:`tb.lib.args`): ``config``/``params``; ``case``: ``transpose`` (L x L tiles
written by rows, read by columns), ``linear`` (read in write order) or ``random`` (random
strides, per-lane offsets and bank bits, predicated to the tile); ``tiles``,
``nbuf``, ``bank_bits`` (``chosen`` or ``default``), ``seed``, ``idle``, ``backpressure``.
Outputs: cycles, vectors read, vectors per cycle, read/write conflict cycles.
"""

import random

import cocotb
import numpy as np

from firmware.compiler.counters import Counter
from firmware.compiler.pmu import (AccessPattern, BankBits, PmuProgram, access_reference,
                                   choose_bank_bits, pack_pmu, pmu_reference)
from hdl.packet import vector_layout
from hdl.pmu.config import addr_bits
from hdl.pmu.config import bank_bits as nbits
from tb.lib.args import PmuArgs
from tb.lib.harness import TbHarness, write_outputs
from tb.lib.payload import pack, unpack


def random_read(rng, tiles, L):
    """Random strided reads with random per-lane offsets, lanes outside the tile dropped."""
    stride, steps = rng.randint(1, 2 * L), rng.randint(1, 2 * L)
    offsets = tuple(rng.randrange(-L, L * L) for _ in range(L))
    return AccessPattern((Counter(0, tiles), Counter(0, steps), Counter(0, L * stride, stride)),
                         repeat=(0,), lane_offset=offsets, lo=0, hi=L * L)


def program_for(case, tiles, nbuf, bank_bits, params, seed=1):
    L = params.pcu_lanes
    write = AccessPattern((Counter(0, tiles), Counter(0, L * L)), repeat=(0,))
    if case == "random":
        rng = random.Random(seed)
        top = addr_bits(params) - nbits(params)
        shift = rng.randint(0, top)
        fold = rng.choice([None, *[f for f in range(top + 1)
                                   if f >= shift + nbits(params) or f + nbits(params) <= shift]])
        return PmuProgram(write, random_read(rng, tiles, L), BankBits(shift, fold), nbuf=nbuf,
                          buf_words=L * L, w_level=1, r_level=1)
    if case == "transpose":
        read = AccessPattern((Counter(0, tiles), Counter(0, L), Counter(0, L * L, L)),
                             repeat=(0,))
    else:
        read = write
    bits = BankBits()
    if bank_bits == "chosen":
        bits = choose_bank_bits([access_reference(write, params)["addr"],
                                 access_reference(read, params)["addr"]], params)
    return PmuProgram(write, read, bits, nbuf=nbuf, buf_words=L * L, w_level=1, r_level=1)


@cocotb.test()
async def pmu_stream(dut):
    args = PmuArgs.from_env()
    params = args.machine()
    L = params.pcu_lanes
    seed, tiles, nbuf = args.seed, args.tiles, args.nbuf
    idle, bp = args.idle, args.backpressure
    case = args.case
    program = program_for(case, tiles, nbuf, args.bank_bits, params, seed)
    nrng = np.random.default_rng(seed)
    vin = nrng.integers(0, 1 << 32, (tiles * L, L), dtype=np.uint64).astype(np.uint32)
    want = pmu_reference(program, params, vin)
    dut._log.info(f"pmu {case}: {tiles} tiles, {nbuf} buffers, bank bits "
                  f"{program.bank_bits}, seed {seed}")
    vec = vector_layout(L)
    tb = await TbHarness.started(dut, pack_pmu(program, params))
    tb.load("vin", pack(vec, {"data": vin, "mask": np.full(len(vin), (1 << L) - 1)}),
            seed=seed, valid_probability=1 - idle)
    n = len(want["mask"])
    tb.expect("vout", n, seed=seed + 1, ready_probability=1 - bp)
    cycles, wall = await tb.run(timeout_cycles=40 * n + 2000)
    assert not int(tb.port("busy").value), "PMU still busy after its last vector"
    got = unpack(vec, await tb.dump("vout"))
    on = ((want["mask"][:, None] >> np.arange(L)) & 1).astype(bool)
    bad = np.argwhere(on & (got["data"] != want["data"]))
    write_outputs(cycles=cycles, wall_s=wall, vectors=n, vectors_per_cycle=n / cycles,
                  r_conflicts=int(tb.port("r_conflicts").value),
                  w_conflicts=int(tb.port("w_conflicts").value), mismatches=len(bad))
    for key in ("mask", "last"):
        assert np.array_equal(got[key], want[key]), f"{key} differs (seed {seed})"
    assert not len(bad), (f"{len(bad)} words differ (seed {seed}); first {bad[0]}: "
                          f"{got['data'][tuple(bad[0])]:#x} != {want['data'][tuple(bad[0])]:#x}")
