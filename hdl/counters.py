"""Counter chains: up to four nested counters, the innermost unrolled across lanes,
streamed out one step per cycle with a ``last`` (done) flag — the PCU header's loop, the
PMU's address pipelines and the AGCU's address generator. Their layouts live here too."""

from amaranth import Array, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["MAX_COUNTERS", "COUNTER_BITS", "ITER_BITS", "CounterConfig", "ChainConfig",
           "chain_output_layout", "runs_after_first", "CounterChain"]

#: Nested counters in a PCU header chain (ARCHITECTURE.md section 4).
MAX_COUNTERS = 4
#: Counter values are INT32, like every address and integer in the machine.
COUNTER_BITS = 32
#: Kernel-looping iterations of one launch: 1 .. 2**ITER_BITS - 1 (every unit of a looped
#: kernel repeats its program that many times, see ``CounterChain.repeat``).
ITER_BITS = 16

#: One counter: ``for v in range(min, max, stride)`` (stride > 0).
CounterConfig = data.StructLayout({
    "min": signed(COUNTER_BITS),
    "max": signed(COUNTER_BITS),
    "stride": unsigned(COUNTER_BITS - 1),
})

#: ``depth`` nested counters, ``ctr[0]`` outermost, ``ctr[depth-1]`` innermost; the
#: innermost is unrolled across the lanes. ``depth = 0`` leaves the chain unused.
ChainConfig = data.StructLayout({
    "depth": unsigned(3),
    "ctr": data.ArrayLayout(CounterConfig, MAX_COUNTERS),
})


def runs_after_first(repeat):
    """The runs left once the first has begun, for a ``repeat`` count (0 counts as 1)."""
    return Mux(repeat == 0, 0, repeat - 1)


def chain_output_layout(lanes):
    """One step of a counter chain.

    ``value[i]`` is counter i (for the innermost: its lane-0 value), ``lane[l]`` the
    innermost counter seen by lane l (``value + l * stride``), ``mask`` the lanes inside
    the innermost range, ``wrap[i]`` set when counter i is at its last value (so the
    counters inside it restart next), and ``last`` on the chain's final step (the
    ``done`` token).
    """
    return data.StructLayout({
        "value": data.ArrayLayout(signed(COUNTER_BITS), MAX_COUNTERS),
        "lane": data.ArrayLayout(signed(COUNTER_BITS), lanes),
        "mask": unsigned(lanes),
        "wrap": unsigned(MAX_COUNTERS),
        "last": unsigned(1),
        "final": unsigned(1),
    })


class CounterChain(wiring.Component):
    """Nested loop generator.

    With ``config.depth = d`` the chain runs
    ``for c0 in range(min0, max0, stride0): ... for c[d-1] in range(min, max, stride*lanes)``
    and emits one :func:`chain_output_layout` element per innermost
    step: lane ``l`` sees ``c[d-1] + l*stride``, masked off past ``max``. A ``start``
    pulse (while not ``busy``) begins a run; the run's final element has ``last`` set.
    Empty ranges (``min >= max``) and ``depth = 0`` produce no elements (firmware
    rejects them). One element per cycle while ``o.ready`` is high.

    ``repeat`` (sampled with ``start``; 0 counts as 1) runs the whole chain that many
    times back to back, with no gap between runs: kernel looping, the loop as an outer
    counter of every unit. Each run's final element has ``last``; the final run's also
    ``final``.

    Parameters
    ----------
    lanes : int
        SIMD lanes (a power of two).
    """

    def __init__(self, lanes):
        if lanes & (lanes - 1):
            raise ValueError(f"lanes must be a power of two, got {lanes}")
        self.lanes = lanes
        super().__init__({
            "config": In(ChainConfig),
            "start": In(1),
            "repeat": In(ITER_BITS),
            "busy": Out(1),
            "o": Out(stream.Signature(chain_output_layout(lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        lanes_log2 = self.lanes.bit_length() - 1
        W = COUNTER_BITS + 2                      # headroom for value + step
        cur = [Signal(signed(COUNTER_BITS), name=f"ctr{i}") for i in range(MAX_COUNTERS)]
        running = Signal()
        runs_left = Signal(ITER_BITS)                 # runs after the current one

        active = [cfg.depth > i for i in range(MAX_COUNTERS)]
        inner = [cfg.depth == i + 1 for i in range(MAX_COUNTERS)]
        at_end, nexts = [], []
        for i in range(MAX_COUNTERS):
            c = cfg.ctr[i]
            step = Mux(inner[i], c.stride << lanes_log2, c.stride)
            nxt = Signal(signed(W), name=f"next{i}")
            m.d.comb += nxt.eq(cur[i] + step)
            end = Signal(name=f"at_end{i}")
            m.d.comb += end.eq(nxt >= c.max)
            at_end.append(end)
            nexts.append(nxt)

        # inside_done[i]: every active counter inside counter i is at its last value, so
        # counter i advances on this step; wrap[i]: counter i's whole loop ends here.
        inside_done, wrap = [], []
        for i in range(MAX_COUNTERS):
            inside = Signal(name=f"inside_done{i}")
            m.d.comb += inside.eq(Cat(*[~active[j] | at_end[j]
                                        for j in range(i + 1, MAX_COUNTERS)], 1).all())
            w = Signal(name=f"wrap{i}")
            m.d.comb += w.eq(active[i] & at_end[i] & inside)
            inside_done.append(inside)
            wrap.append(w)

        inner_idx = (cfg.depth - 1)[:2]
        inner_val = Array(cur)[inner_idx]
        inner_stride = Array(c.stride for c in cfg.ctr)[inner_idx]
        inner_max = Array(c.max for c in cfg.ctr)[inner_idx]
        p = self.o.payload
        for i in range(MAX_COUNTERS):
            m.d.comb += p.value[i].eq(Mux(active[i], cur[i], 0))
        for lane in range(self.lanes):
            v = Signal(signed(W), name=f"lane{lane}_value")
            m.d.comb += [v.eq(inner_val + inner_stride * lane), p.lane[lane].eq(v)]
            m.d.comb += p.mask[lane].eq(v < inner_max)
        m.d.comb += [p.wrap.eq(Cat(*wrap)), p.last.eq(wrap[0]),
                     p.final.eq(wrap[0] & (runs_left == 0)),
                     self.o.valid.eq(running), self.busy.eq(running)]

        with m.If(running):
            with m.If(self.o.ready):
                for i in range(MAX_COUNTERS):
                    with m.If(active[i] & inside_done[i]):
                        m.d.sync += cur[i].eq(Mux(at_end[i], cfg.ctr[i].min, nexts[i]))
                with m.If(wrap[0]):
                    with m.If(runs_left == 0):
                        m.d.sync += running.eq(0)
                    with m.Else():
                        m.d.sync += runs_left.eq(runs_left - 1)
        with m.Elif(self.start):
            nonempty = Cat(*[~active[i] | (cfg.ctr[i].min < cfg.ctr[i].max)
                             for i in range(MAX_COUNTERS)]).all()
            m.d.sync += [running.eq((cfg.depth != 0) & nonempty),
                         runs_left.eq(runs_after_first(self.repeat))]
            for i in range(MAX_COUNTERS):
                m.d.sync += cur[i].eq(cfg.ctr[i].min)
        return m
