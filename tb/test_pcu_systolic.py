"""cocotb: one PCU in systolic mode on Verilator computing C = A x B, bit-exact against
``systolic_reference`` and ``gemm_reference``, close to float64.

Arguments (the test's dataclass in :mod:`tb.lib.args`): ``config`` (preset or TOML) or ``params`` (a dict), ``m``, ``n``, ``k``, ``seed``,
``idle``, ``backpressure``, ``row_scale`` (divide each row of C by a scalar: the tail
scaled by rcp of sin0, one scalar per row shared by all column tiles). Outputs: cycles, MACs the array performed, utilization =
MACs / (stages x lanes x cycles), mismatches.
"""

import dataclasses

import cocotb
import numpy as np

from firmware import numerics as N
from firmware.compiler.pcu import (Tail, gemm_reference, gemm_result, gemm_streams, pack_systolic,
                                   systolic_reference, systolic_tile_rows)
from hdl.packet import vector_layout
from tb.lib.args import PcuGemmArgs
from tb.lib.harness import TbHarness, write_outputs
from tb.lib.payload import pack, unpack


@cocotb.test()
async def pcu_gemm(dut):
    args = PcuGemmArgs.from_env()
    params = args.machine()
    m, n, k = args.m, args.n, args.k
    seed = args.seed
    idle, bp = args.idle, args.backpressure
    lanes = params.pcu_lanes
    nrng = np.random.default_rng(seed)
    a = nrng.normal(0, 1, (m, k)).astype(np.float32).view(np.uint32) & 0xFFFF0000
    b = nrng.normal(0, 1, (k, n)).astype(np.float32).view(np.uint32) & 0xFFFF0000
    prog, vin0, vin1 = gemm_streams(a, b, params)
    sums = None
    if args.row_scale:
        nt = -(-n // lanes)
        prog = dataclasses.replace(prog, tail=Tail(scale="SIN", row_fn="RCP"), scale_tiles=nt)
        sums = nrng.uniform(0.5, 100, prog.tiles // nt * prog.rows).astype(np.float32)\
            .view(np.uint32)
    want = systolic_reference(prog, params, vin0, vin1, sums)
    dut._log.info(f"gemm {m}x{n}x{k} on {params.pcu_stages}x{lanes}: {prog.tiles} tiles, "
                  f"seed {seed}")

    vec = vector_layout(lanes)
    tb = await TbHarness.started(dut, pack_systolic(prog, params))
    tb.load("vin0", pack(vec, {"data": vin0}), seed=seed, valid_probability=1 - idle)
    tb.load("vin1", pack(vec, {"data": vin1}), seed=seed + 1, valid_probability=1 - idle)
    if sums is not None:
        tb.load("sin0", sums[:, None], seed=seed + 3, valid_probability=1 - idle)
    tb.expect("vout", len(want["mask"]), seed=seed + 2, ready_probability=1 - bp)
    cycles, wall = await tb.run(timeout_cycles=20 * len(vin0) + 4000)
    assert not int(tb.port("busy").value), "PCU still busy after its last row"
    got = unpack(vec, await tb.dump("vout"))
    for key in ("mask", "last"):
        assert np.array_equal(got[key], want[key]), f"{key} differs (seed {seed})"
    cols = min(n, lanes)
    bad = np.argwhere(got["data"][:, :cols] != want["data"][:, :cols])
    macs = prog.tiles * systolic_tile_rows(params) * lanes * k
    write_outputs(cycles=cycles, wall_s=wall, macs=macs, useful_macs=m * n * k,
                  utilization=macs / (params.pcu_stages * lanes * cycles),
                  mismatches=len(bad), results=m * n)
    if len(bad):
        i, l = bad[0]
        raise AssertionError(f"{len(bad)} results differ (seed {seed}); first: row {i} lane "
                             f"{l}: {got['data'][i, l]:#x}, expected {want['data'][i, l]:#x}")
    c = gemm_result(got["data"], m, n, params)
    ref = gemm_reference(a, b)
    fa, fb = N.from_bits(a).astype(np.float64), N.from_bits(b).astype(np.float64)
    # Exact BF16 products, one FP32 rounding per accumulation: |error| <= k ulp-ish.
    bound = k * 2.0 ** -24 * (np.abs(fa) @ np.abs(fb))
    exact = fa @ fb
    scale = np.abs(fa) @ np.abs(fb)
    if sums is not None:
        # Row i times rcp(sums[i]) (rcp within TAIL_ULP_BOUND ulp, one product rounding).
        r = N.rcp(sums[:m])
        ref = N.fp32_mul(ref, np.broadcast_to(r[:, None], ref.shape))
        s = N.from_bits(sums[:m]).astype(np.float64)[:, None]
        bound = (bound + np.abs(exact) * 2.0 ** -23 * (N.TAIL_ULP_BOUND + 0.5) * 1.01) / s
        exact, scale = exact / s, scale / s
    assert np.array_equal(c, ref), "reassembled C differs from gemm_reference"
    err = np.abs(N.from_bits(c).astype(np.float64) - exact)
    # Relative to the sum of |products| (C itself can cancel to ~0).
    write_outputs(max_abs_err=float(err.max()),
                  max_rel_err=float(np.max(err / np.where(scale > 0, scale, 1))))
    assert np.all(err <= bound), f"C differs from float64 beyond {k} roundings (seed {seed})"
