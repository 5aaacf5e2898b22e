"""PCU configuration layouts: defined here once, used by the HDL and packed by
``firmware/compiler/pcu.py``."""

from amaranth import signed, unsigned
from amaranth.lib import data, enum

from .alu import AluOp
from .reduce import ReduceOp

__all__ = ["MAX_COUNTERS", "COUNTER_BITS", "CounterConfig", "ChainConfig", "chain_output_layout",
           "VECTOR_INPUTS", "SCALAR_INPUTS", "Src", "StageConfig", "pcu_config_layout",
           "vector_layout", "scalar_layout"]

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


#: Vector and scalar input ports of a PCU header.
VECTOR_INPUTS = 2
SCALAR_INPUTS = 1


class Src(enum.Enum, shape=3):
    """Where a stage operand comes from."""
    PREV = 0      # the previous stage's result (stage 0: vector input 0)
    VIN0 = 1      # vector input 0, this iteration's element
    VIN1 = 2      # vector input 1
    SIN0 = 3      # scalar input 0, broadcast to every lane
    CTR = 4       # the innermost counter as seen by the lane (INT32)
    IMM = 5       # the stage's immediate, broadcast
    ZERO = 6


StageConfig = data.StructLayout({
    "op": AluOp, "a": Src, "b": Src, "c": Src, "imm": unsigned(32),
})


def pcu_config_layout(params):
    """Configuration of one PCU (SIMD mode so far).

    ``vin_en`` / ``sin_en``: which inputs an iteration consumes (one element from each
    enabled input per innermost counter step; the chain sets the iteration count).
    ``reduce``: reduce each result vector across its lanes and emit it on ``sout``.
    ``acc``: fold those per-iteration values over a window that closes when counter
    ``acc.level`` wraps, and emit one value per window on ``sout``.
    """
    return data.StructLayout({
        "chain": ChainConfig,
        "stage": data.ArrayLayout(StageConfig, params.pcu_stages),
        "vin_en": unsigned(VECTOR_INPUTS),
        "sin_en": unsigned(SCALAR_INPUTS),
        "reduce": data.StructLayout({"en": unsigned(1), "op": ReduceOp}),
        "acc": data.StructLayout({"en": unsigned(1), "op": ReduceOp,
                                  "level": range(MAX_COUNTERS)}),
    })


def vector_layout(lanes):
    """A vector packet between units: LANES words, the valid-lane mask, and the last flag
    of the producing loop (the ``done`` token rides on the final vector)."""
    return data.StructLayout({
        "data": data.ArrayLayout(32, lanes), "mask": unsigned(lanes), "last": unsigned(1),
    })


#: A scalar packet: one word and the last flag of the producing loop.
scalar_layout = data.StructLayout({"data": unsigned(32), "last": unsigned(1)})
