"""Memory-system layouts: requests and responses of a memory channel (the top-level
network's transactions), and the DRAM port of a channel.

A *beat* is what a channel moves per cycle (``bytes_per_cycle`` bytes, a whole number of
32-bit words); addresses on a channel count beats. A request asks for ``len + 1`` beats
starting at ``addr``; a write request is followed by that many beats on the write-data
stream, each with a word mask. Every request gets responses with its ``tag``: a read one
beat each, a write one acknowledgement once all its beats are stored.
"""

from amaranth import unsigned
from amaranth.lib import data

__all__ = ["BURST_BITS", "MAX_BURST", "TAG_BITS", "beat_words", "beat_addr_bits",
           "req_layout", "wdata_layout", "resp_layout"]

#: Beats per request: 1 .. MAX_BURST.
BURST_BITS = 4
MAX_BURST = 1 << BURST_BITS
#: Request tags (an AGCU has at most 2**TAG_BITS requests in flight).
TAG_BITS = 6


def beat_words(bytes_per_cycle):
    if bytes_per_cycle % 4:
        raise ValueError(f"a channel beat must be whole 32-bit words, got {bytes_per_cycle} B")
    return bytes_per_cycle // 4


def beat_addr_bits(capacity_bytes, bytes_per_cycle):
    return max(1, (capacity_bytes // bytes_per_cycle - 1).bit_length())


def req_layout(addr_bits):
    return data.StructLayout({
        "addr": unsigned(addr_bits),
        "len": unsigned(BURST_BITS),
        "write": unsigned(1),
        "tag": unsigned(TAG_BITS),
    })


def wdata_layout(words):
    return data.StructLayout({"data": data.ArrayLayout(32, words), "mask": unsigned(words)})


def resp_layout(words):
    """A read beat (``last`` on the final beat of the burst) or a write acknowledgement
    (``write`` = 1, ``last`` = 1, no data)."""
    return data.StructLayout({
        "data": data.ArrayLayout(32, words),
        "tag": unsigned(TAG_BITS),
        "write": unsigned(1),
        "last": unsigned(1),
    })
