"""cocotb: the whole socket on Verilator — program load from HBM by the config
controller, kernels run by the kernel sequencer, results read from device memory.

Arguments (``test_args``): ``config``/``params``, ``seed``, and per test:

* ``scale_bias``: ``n`` words, ``iterations``: y = relu(x * scale + bias) through one
  PCU, looped over ``iterations`` slices with the AGCU strides; bit-exact against the
  reference, close to float64 numpy; program-load cycles = config beats (+ latency).
* ``looping``: the same ``iterations`` slices once by kernel looping (one launch, one
  program load) and once as separate launches (reloading the program each time): same
  results; looping loads the program once.
* ``fault``: an AGCU access outside its segment stops the sequencer with FAULT and the
  address; memory outside the segment unchanged.
* ``timeout``: a kernel whose writer waits for more data than the PCU sends stops with
  TIMEOUT instead of hanging.
"""

import random

import cocotb
import numpy as np

from firmware.compiler.agcu import Segment, TensorAccess, pack_agcu
from firmware.compiler.program import kernel_program
from firmware.kernels.elementwise import compile_scale_bias
from firmware.runtime.rtl import DeviceError, RtlDevice
from tb.lib.harness import TbHarness, test_args, test_params, write_outputs
from tb.lib.memimage import MemoryImage


async def _setup(dut):
    args = test_args()
    params = test_params(args)
    tb = TbHarness(dut)
    await tb.reset()
    dev = RtlDevice(tb, params, MemoryImage(params))
    return args, params, dev, random.Random(args.get("seed", 1))


def _floats(rng, n):
    return np.array([rng.gauss(0, 4) for _ in range(n)], np.float32).view(np.uint32)


def _check(got, want, x, scale, bias, what):
    bad = np.nonzero(got != want)[0]
    assert not len(bad), (f"{what}: {len(bad)} words differ from the reference, first at "
                          f"{bad[0]}: {got[bad[0]]:#010x} != {want[bad[0]]:#010x}")
    exact = np.maximum(x.view(np.float32).astype(np.float64) * scale + bias, 0)
    err = np.abs(got.view(np.float32) - exact)
    # Two FP32 roundings (product, sum): within 2 ulp of the larger magnitude involved.
    tol = 2 * np.spacing(np.maximum(np.abs(exact), np.abs(x.view(np.float32) * scale))
                         .astype(np.float32)).astype(np.float64)
    worst = int(np.argmax(err - tol))
    assert (err <= tol).all(), f"{what}: word {worst} off float64 by {err[worst]:g}"


@cocotb.test()
async def scale_bias(dut):
    args, params, dev, rng = await _setup(dut)
    n, iters = args["n"], args.get("iterations", 1)
    scale, bias = rng.uniform(-3, 3), rng.uniform(-2, 2)
    x = dev.alloc.alloc("hbm", n * iters, "x")
    y = dev.alloc.alloc("ddr" if args.get("ddr") else "hbm", n * iters, "y")
    xs = _floats(rng, n * iters)
    await dev.write(x, xs)
    k = compile_scale_bias(params, n, x=x, y=y, scale=scale, bias=bias, relu=True)
    prog = await dev.load(k.program)
    c = await dev.run([prog.launch(iterations=iters, strides=(n, n))])
    got = await dev.read(y, n * iters)
    want = np.concatenate([k.reference(params, xs[i * n:(i + 1) * n]) for i in range(iters)])
    _check(got, want, xs, np.float32(scale), np.float32(bias), "scale_bias")
    seq = c["seq"]
    assert seq["launched"] == 1 and seq["iterations"] == iters
    # The config bus takes one beat per cycle: a load is never faster than its beats.
    assert seq["load_cycles"] >= k.program.beats
    assert c["unit_busy"][0] > 0 and not any(c["unit_busy"][1:]), c["unit_busy"]
    assert c["vec"][0]["out"][4]["packets"] == iters * -(-n // params.pcu_lanes)
    write_outputs(load_cycles=seq["load_cycles"], exec_cycles=seq["exec_cycles"],
                  cycles=seq["cycles"], beats=k.program.beats)


@cocotb.test()
async def looping(dut):
    args, params, dev, rng = await _setup(dut)
    n, iters = args["n"], args["iterations"]
    x = dev.alloc.alloc("hbm", n * iters, "x")
    y1 = dev.alloc.alloc("hbm", n * iters, "y looped")
    y2 = dev.alloc.alloc("hbm", n * iters, "y launches")
    xs = _floats(rng, n * iters)
    await dev.write(x, xs)
    k1 = compile_scale_bias(params, n, x=x, y=y1, scale=1.5, bias=-0.25)
    k2 = compile_scale_bias(params, n, x=x, y=y2, scale=1.5, bias=-0.25)
    p1, p2 = await dev.load(k1.program), await dev.load(k2.program)
    c1 = await dev.run([p1.launch(iterations=iters, strides=(n, n))])
    looped = await dev.read(y1, n * iters)
    c2 = await dev.run([p2.launch(offsets=(i * n, i * n)) for i in range(iters)])
    separate = await dev.read(y2, n * iters)
    assert (looped == separate).all(), "kernel looping and separate launches differ"
    want = np.concatenate([k1.reference(params, xs[i * n:(i + 1) * n]) for i in range(iters)])
    assert (looped == want).all(), "looped results differ from the reference"
    load1 = c1["seq"]["load_cycles"]
    load2 = c2["seq"]["load_cycles"] - load1
    assert load2 >= iters * k2.program.beats > load1 >= k1.program.beats
    write_outputs(looped_cycles=c1["seq"]["cycles"],
                  launches_cycles=c2["seq"]["cycles"] - c1["seq"]["cycles"],
                  looped_load=load1, launches_load=load2)


async def _expect_error(dev, prog, code, **kw):
    try:
        await dev.run([prog.launch()], **kw)
    except DeviceError as e:
        assert code in str(e), e
        return str(e)
    raise AssertionError(f"the sequencer reported no {code}")


@cocotb.test()
async def fault(dut):
    args, params, dev, rng = await _setup(dut)
    n = args["n"]
    x = dev.alloc.alloc("hbm", 2 * n, "x")
    y = dev.alloc.alloc("hbm", 2 * n, "y")
    guard = _floats(rng, 2 * n)
    await dev.write(y, guard)
    k = compile_scale_bias(params, n, x=x, y=y)
    # The writer's segment is one word short: the last run must fault, and nothing of it
    # may be written.
    agcus = dict(k.parts["agcus"])
    agcus[1] = pack_agcu(params, TensorAccess((n,), (1,)), write=True,
                         segments=[Segment(y.addr, n - 1)], check_bounds=False)[0]
    prog = await dev.load(kernel_program(params, "fault", **{**k.parts, "agcus": agcus}))
    msg = await _expect_error(dev, prog, "FAULT", kernel_timeout=50000)
    assert "AGCU 1" in msg, msg
    got = await dev.read(y, 2 * n)
    assert (got[n - 1:] == guard[n - 1:]).all(), "memory outside the segment was written"


@cocotb.test()
async def timeout(dut):
    args, params, dev, rng = await _setup(dut)
    n = args["n"]
    x = dev.alloc.alloc("hbm", 2 * n, "x")
    y = dev.alloc.alloc("hbm", 2 * n, "y")
    k = compile_scale_bias(params, n, x=x, y=y)
    # The writer expects twice what the PCU sends: it would wait forever.
    agcus = dict(k.parts["agcus"])
    agcus[1] = pack_agcu(params, TensorAccess((2 * n,), (1,)), write=True,
                         segments=[Segment(y.addr, 2 * n)])[0]
    prog = await dev.load(kernel_program(params, "timeout", **{**k.parts, "agcus": agcus}))
    await _expect_error(dev, prog, "TIMEOUT", kernel_timeout=5000)
