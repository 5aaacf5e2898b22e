"""AGCU configuration and internal layouts: defined here once, used by the HDL and packed
by firmware (``firmware/compiler/agcu.py``).

An AGCU access walks a tensor as *runs*: ``run`` consecutive 32-bit words starting at a
segment-relative word offset given by the sum of the counter chain's values (the outer
dimensions, each counter stepping by its stride in words). A 1-D tensor is one run; a
4-D one is three counters around the innermost contiguous dimension; a non-contiguous
innermost dimension is a counter with runs of one word.
"""

from amaranth import unsigned
from amaranth.lib import data

from hdl.counters import MAX_COUNTERS, ChainConfig
from hdl.memory.config import BURST_BITS, MemoryMap
from hdl.packet import header_layout

__all__ = ["RUN_BITS", "word_bits", "segment_layout", "access_layout", "agcu_config_layout",
           "agcu_args_layout", "burst_layout"]

#: Words per run: 1 .. 2**RUN_BITS - 1.
RUN_BITS = 24


def word_bits(params):
    """Width of a global word address."""
    mm = MemoryMap(params)
    return mm.addr_bits + (mm.words - 1).bit_length()


def segment_layout(params):
    """A segment: ``size`` words of memory from global word address ``base``."""
    wb = word_bits(params)
    return data.StructLayout({"base": unsigned(wb), "size": unsigned(wb + 1)})


def access_layout(params):
    """One stream of an AGCU: ``en``; the counter chain whose values, where ``addr_en``
    is set, sum to each run's start (a counter with its bit clear only repeats: a
    stride-0 dimension); ``run`` words per run; ``segment``, the entry of the segment
    table every address is checked against and translated by."""
    return data.StructLayout({
        "en": unsigned(1),
        "chain": ChainConfig,
        "addr_en": unsigned(MAX_COUNTERS),
        "run": unsigned(RUN_BITS),
        "segment": range(max(2, params.agcu_segments)),
    })


def agcu_config_layout(params):
    """``load``: memory -> vector packets (with header ``hdr``) on ``vout``; ``store``:
    vector packets from ``vin`` -> memory. Both streams run at once."""
    return data.StructLayout({
        "load": access_layout(params),
        "store": access_layout(params),
        "segments": data.ArrayLayout(segment_layout(params), params.agcu_segments),
        "hdr": header_layout(params),
    })


def agcu_args_layout(params):
    """A kernel's arguments to one AGCU: words added to the base of each stream's segment
    (set by the kernel sequencer, stepped per iteration by kernel looping)."""
    wb = word_bits(params)
    return data.StructLayout({"load": unsigned(wb), "store": unsigned(wb)})


def burst_layout(params):
    """One burst of a run: beats ``addr .. addr + len`` (global beat address, inside one
    MAX_BURST block); the run's words are ``lo ..`` of the first beat through
    ``.. hi - 1`` of the last; ``last`` marks the transfer's final burst."""
    mm = MemoryMap(params)
    wb = (mm.words - 1).bit_length()
    return data.StructLayout({
        "addr": unsigned(mm.addr_bits), "len": unsigned(BURST_BITS),
        "lo": unsigned(max(1, wb)), "hi": unsigned(wb + 1), "last": unsigned(1),
    })
