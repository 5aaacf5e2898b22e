"""PCU configuration layouts: defined here once, used by the HDL and packed by
``firmware/compiler/pcu.py``."""

from amaranth import signed, unsigned
from amaranth.lib import data

__all__ = ["MAX_COUNTERS", "COUNTER_BITS", "CounterConfig", "ChainConfig", "chain_output_layout"]

#: Nested counters in a PCU header chain (ARCHITECTURE.md section 4).
MAX_COUNTERS = 4
#: Counter values are INT32, like every address and integer in the machine.
COUNTER_BITS = 32

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
    })
