"""Tier-2 harness for one PCU in the Amaranth simulator: runs programs one after another
on one compiled simulator with seeded idle inputs and back-pressure."""

import random

from amaranth import Value

from firmware.compiler.pcu import pack_simd, simd_reference
from hdl.packet import scalar_layout, vector_layout
from hdl.params import PRESETS
from hdl.pcu.pcu import Pcu

from .payload import from_ints, pack, to_ints, unpack, words_of
from .pysim import collect, configure, drive, simulator

__all__ = ["TINY", "simd_job", "run_pcu"]

#: A PCU small enough for the Python simulator: 2 lanes x 2 stages.
TINY = PRESETS["small"].replace(pcu_lanes=2, pcu_stages=2)


def simd_job(program, inputs, idle_input, params):
    """A ``run_pcu`` job for a SIMD program: config, input feeds, expected output count."""
    ref = simd_reference(program, params, **inputs)
    vec = vector_layout(params.pcu_lanes)
    scalar = program.reduce is not None and not program.vector_out
    feeds = {name: to_ints(pack(vec, {"data": inputs[name]}))
             for name in ("vin0", "vin1") if name in inputs}
    if "sin0" in inputs:
        feeds["sin0"] = [int(x) for x in inputs["sin0"]]
    return {"config": pack_simd(program, params), "feeds": feeds, "idle_input": idle_input,
            "out": "sout" if scalar else "vout",
            "n_out": len(ref["sdata"]) if scalar else len(ref["mask"])}


def run_pcu(params, jobs, seed, idle=0.3, backpressure=0.3):
    """Run ``jobs`` (dicts: ``config`` bits, ``feeds`` per input, ``out`` port and ``n_out``
    elements — or ``outs``, {port: elements} for programs with both outputs — and
    ``idle_input``) one after another on one Pcu in one Amaranth simulator
    (compiled once; ``reset`` between jobs). Returns the output rows of each job.
    ``idle_input`` names an input the program does not enable: it is offered more
    elements than its FIFO holds and must not be drained."""
    dut = Pcu(params)
    state = {}

    async def control(ctx):
        await configure(ctx, dut, state["config"])

    def feeder(name):
        async def run(ctx):
            payloads = state["feeds"].get(name)
            if payloads:
                await drive(ctx, getattr(dut, name), payloads,
                            random.Random(state["seed"] + len(name) * 31 + ord(name[-1])), idle)
        return run

    async def unused(ctx):
        name = state["idle_input"]
        if name is None:
            return
        port = getattr(dut, name)
        ctx.set(port.valid, 1)
        while len(state["accepted"]) < params.pcu_fifo_depth + 3:
            ctx.set(Value.cast(port.payload), len(state["accepted"]))
            _, _, ready = await ctx.tick().sample(port.ready)
            if ready:
                state["accepted"].append(1)
        ctx.set(port.valid, 0)

    def sink(port_name):
        async def run(ctx):
            n = state["outs"].get(port_name, 0)
            if not n:
                return
            await collect(ctx, getattr(dut, port_name), n,
                          random.Random(state["seed"] + len(port_name)), backpressure,
                          max_cycles=60 * n + 400, seed=state["seed"],
                          out=state["got"][port_name])
            state["sinks_done"] += 1
            if state["sinks_done"] == len(state["outs"]):
                assert not ctx.get(dut.busy), "busy after the last output"
            if state["idle_input"]:
                assert len(state["accepted"]) <= params.pcu_fifo_depth + 1, \
                    f"the disabled input {state['idle_input']} was drained"
        return run

    sim = simulator(dut)
    sim.add_clock(1e-8)
    for tb in (control, feeder("vin0"), feeder("vin1"), feeder("sin0"), sink("vout"),
               sink("sout")):
        sim.add_testbench(tb)
    sim.add_testbench(unused, background=True)
    results = []
    layouts = {"vout": vector_layout(params.pcu_lanes), "sout": scalar_layout}
    for k, job in enumerate(jobs):
        outs = job.get("outs") or {job["out"]: job["n_out"]}
        state.update(job, outs=outs, seed=seed + k, got={"vout": [], "sout": []},
                     accepted=[], sinks_done=0)
        if k:
            sim.reset()
        sim.run()
        got = {name: unpack(layouts[name], from_ints(state["got"][name], words_of(layouts[name])))
               for name in outs}
        results.append(got if "outs" in job else got[job["out"]])
    return results
