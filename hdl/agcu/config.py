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

from hdl.memory.config import BURST_BITS, MemoryMap
from hdl.pcu.config import ChainConfig
from hdl.rdn.config import header_layout

__all__ = ["RUN_BITS", "word_bits", "segment_layout", "agcu_config_layout", "burst_layout"]

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


def agcu_config_layout(params):
    """``write`` = 0: memory -> vector packets (with header ``hdr``) on ``vout``;
    1: vector packets from ``vin`` -> memory. ``segment`` selects the entry of the
    segment table ``segments`` every address is checked against and translated by."""
    return data.StructLayout({
        "chain": ChainConfig,
        "run": unsigned(RUN_BITS),
        "write": unsigned(1),
        "segment": range(max(2, params.agcu_segments)),
        "segments": data.ArrayLayout(segment_layout(params), params.agcu_segments),
        "hdr": header_layout(params),
    })


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
