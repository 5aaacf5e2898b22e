"""PCU configuration layouts: defined here once, used by the HDL and packed by
``firmware/compiler/pcu.py``."""

from amaranth import signed, unsigned
from amaranth.lib import data, enum

from hdl.counters import (COUNTER_BITS, MAX_COUNTERS, ChainConfig, CounterConfig,
                          chain_output_layout)
from hdl.numerics.ops import Op
from hdl.packet import scalar_layout, vector_layout

from .alu import Alu
from .reduce import ReduceOp

__all__ = ["VECTOR_INPUTS", "SCALAR_INPUTS", "Src", "StageConfig", "Mode", "Unpack", "TailFunc",
           "ScaleSrc", "TailConfig", "systolic_interleave", "systolic_config_layout",
           "TILE_COUNT_BITS", "pcu_config_layout", "side_layout"]

#: Vector and scalar input ports of a PCU header.
VECTOR_INPUTS = 2
SCALAR_INPUTS = 1


def side_layout(lanes):
    """The side band of a vector element through header, body and tail: its ``valid``,
    lane ``mask``, ``last`` element and the counter ``wrap`` bits of its iteration."""
    return data.StructLayout({"valid": 1, "mask": lanes, "last": 1, "wrap": MAX_COUNTERS})


class Src(enum.Enum, shape=3):
    """Where a stage operand comes from."""
    PREV = 0      # the previous stage's result (stage 0: vector input 0)
    VIN0 = 1      # vector input 0, this iteration's element
    VIN1 = 2      # vector input 1
    SIN0 = 3      # scalar input 0, broadcast to every lane
    CTR = 4       # the innermost counter as seen by the lane (INT32)
    IMM = 5       # the stage's immediate, broadcast
    ZERO = 6
    RED = 7       # the header's cross-lane reduction of vector input 0, broadcast


StageConfig = data.StructLayout({
    "op": Op, "a": Src, "b": Src, "c": Src, "imm": unsigned(32),
})


class Mode(enum.Enum, shape=1):
    """How the body's functional-unit grid is used."""
    SIMD = 0       # one op per stage across the lanes, a pipeline of stages
    SYSTOLIC = 1   # an output-stationary stages x lanes FMA array


class TailFunc(enum.Enum, shape=2):
    """A tail function (``firmware.numerics`` exp2 / rcp / rsqrt) or none."""
    NONE = 0
    EXP2 = 1
    RCP = 2
    RSQRT = 3


class ScaleSrc(enum.Enum, shape=2):
    """The tail's scale factor."""
    NONE = 0       # no scaling
    IMM = 1        # the tail immediate
    ROW = 2        # row_fn of the vector's own cross-lane reduction (e.g. 1 / sum)
    SIN = 3        # row_fn of the scalar input that goes with the vector (e.g. 1 / sum
                   # computed elsewhere): SIMD: the iteration's sin0; systolic: one scalar
                   # per output row, reused for ``scale_tiles`` consecutive tiles


#: The tail, after the body: ``f = func(x)`` per lane; ``row = reduce(f)`` over the valid
#: lanes (``red_op``; also what the scalar output carries); ``y = f * scale`` with the
#: scale from :class:`ScaleSrc` (``ROW``: ``row_fn(row)``, ``SIN``: ``row_fn(scalar)``,
#: broadcast); ``relu``:
#: ``max(y, +0)``; ``bf16``: round to BF16 (the lane keeps the value as FP32, low half 0).
TailConfig = data.StructLayout({
    "func": TailFunc, "red_op": ReduceOp, "row_fn": TailFunc, "scale": ScaleSrc,
    "imm": unsigned(32), "relu": unsigned(1), "bf16": unsigned(1),
})

#: Tile counts of a systolic run are this wide.
TILE_COUNT_BITS = 16


def systolic_interleave():
    """Accumulators per systolic FU: the FMA loop latency, so that each FU issues one MAC
    per cycle, rotating over this many independent output rows."""
    return Alu.LATENCY


def systolic_config_layout(params):
    """Systolic mode: ``tiles`` tiles of ``k`` accumulation steps each; every tile drains
    ``rows`` (<= interleave x stages) output rows whose ``mask`` marks the valid columns.
    With the tail's ``ScaleSrc.SIN``, ``scale_tiles`` consecutive tiles share one scalar
    per output row (taken from ``sin0`` once, e.g. a row's softmax sum for every column
    tile of that row)."""
    rows = systolic_interleave() * params.pcu_stages
    return data.StructLayout({
        "k": unsigned(COUNTER_BITS - 1), "tiles": unsigned(TILE_COUNT_BITS),
        "rows": range(rows + 1), "mask": unsigned(params.pcu_lanes),
        "scale_tiles": unsigned(TILE_COUNT_BITS),
    })


class Unpack(enum.Enum, shape=2):
    """How vector input 0's words are read (``pcu_config_layout``'s ``unpack``)."""
    NONE = 0      # FP32 words as they come
    HIGH = 1      # the high BF16 of each word
    LOW = 2       # the low BF16 of each word


def pcu_config_layout(params):
    """Configuration of one PCU.

    ``mode``: SIMD or systolic body (``systolic`` holds the latter's shape).
    ``vin_en`` / ``sin_en``: which inputs an iteration consumes (one element from each
    enabled input per innermost counter step; the chain sets the iteration count).
    ``sin_hold``: with ``en``, the scalar input is held and popped only on the last step
    of each window of counter ``level`` (one scalar per row instead of per iteration).
    ``hred``: the op of the header's cross-lane reduction of vector input 0 (``Src.RED``).
    ``tail``: the tail functions (:data:`TailConfig`).
    ``vout_en``: emit result vectors on ``vout``.
    ``reduce``: with ``en``, emit the tail's cross-lane reduction of each vector on ``sout``.
    ``acc``: fold those per-iteration values over a window that closes when counter
    ``acc.level`` wraps, and emit one value per window on ``sout``.
    ``unpack``: vector input 0 carries packed BF16 (two per 32-bit word, as stored in
    memory): ``HIGH`` takes each word's high half, ``LOW`` its low half, as the FP32 value
    with those 16 bits on top (two consumers of one stream each take their half).
    ``row_vout``: those scalar results leave on ``vout`` instead of ``sout``, each as a
    vector packet with lane 0 only (mask 1) — the store path of row results: an AGCU
    store packs such packets densely into memory beats (with ``vout_en`` off).
    ``tok``: with ``en``, every window of counter ``level`` waits for one token on
    ``tok_in`` before its first step; ``tok_out`` pulses once a window's last step has
    taken its inputs (the producer may refill that buffer).
    """
    level = data.StructLayout({"en": unsigned(1), "level": range(MAX_COUNTERS)})
    return data.StructLayout({
        "mode": Mode,
        "chain": ChainConfig,
        "stage": data.ArrayLayout(StageConfig, params.pcu_stages),
        "systolic": systolic_config_layout(params),
        "vin_en": unsigned(VECTOR_INPUTS),
        "sin_en": unsigned(SCALAR_INPUTS),
        "sin_hold": level,
        "hred": ReduceOp,
        "tail": TailConfig,
        "vout_en": unsigned(1),
        "reduce": data.StructLayout({"en": unsigned(1)}),
        "acc": data.StructLayout({"en": unsigned(1), "op": ReduceOp,
                                  "level": range(MAX_COUNTERS)}),
        "row_vout": unsigned(1),
        "unpack": Unpack,
        "tok": level,
    })

