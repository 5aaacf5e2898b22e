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
from hdl.packet import flow_bits, header_layout

__all__ = ["RUN_BITS", "stores", "streams", "word_bits", "segment_layout", "access_layout",
           "agcu_config_layout", "agcu_args_layout", "burst_layout"]

#: Words per run: 1 .. 2**RUN_BITS - 1.
RUN_BITS = 24



def stores(params):
    """The store streams of an AGCU: ``store`` (the packets no other store stream takes),
    ``store2`` .. (each the packets of one arriving flow id)."""
    return ("store",) + tuple(f"store{i}" for i in range(2, params.agcu_stores + 1))


def streams(params):
    """The streams of an AGCU, each with its own access and kernel argument: ``load``,
    ``load2`` (the prologue of each load, e.g. a layer's activations before its weights)
    and the stores."""
    return ("load", "load2") + stores(params)


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
    """``load``: memory -> vector packets (with header ``hdr``) on ``vout``; ``load2``
    likewise with header ``hdr2``, run before ``load`` in every iteration (its whole
    access, then ``load``'s: one ordered read stream, so neither can overtake the other);
    ``store``: vector packets from ``vin`` -> memory; ``store2`` .. likewise, each for the
    packets that arrive with flow id ``store2_flow`` .. (the RDN delivers each flow into
    an edge port with an id of its own), so several producers' results can share one
    AGCU. The load and the store streams run at once."""
    extra = stores(params)[1:]
    return data.StructLayout({
        **{name: access_layout(params) for name in streams(params)},
        **{f"{name}_flow": unsigned(flow_bits(params)) for name in extra},
        "segments": data.ArrayLayout(segment_layout(params), params.agcu_segments),
        "hdr": header_layout(params), "hdr2": header_layout(params),
    })


def agcu_args_layout(params):
    """A kernel's arguments to one AGCU: words added to the base of each stream's segment
    (set by the kernel sequencer, stepped per iteration by kernel looping)."""
    wb = word_bits(params)
    return data.StructLayout({name: unsigned(wb) for name in streams(params)})


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
