"""Memory-system layouts: requests and responses of a memory channel (the top-level
network's transactions), and the DRAM port of a channel.

A *beat* is what a channel moves per cycle (``bytes_per_cycle`` bytes, a whole number of
32-bit words); addresses on a channel count beats. A request asks for ``len + 1`` beats
starting at ``addr``; a write request is followed by that many beats on the write-data
stream, each with a word mask. Every request gets responses with its ``tag``: a read one
beat each, a write one acknowledgement once all its beats are stored.
"""

from dataclasses import dataclass

from amaranth import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.params import BURST_BITS, MAX_BURST   # beats per request: 1 .. MAX_BURST

__all__ = ["BURST_BITS", "MAX_BURST", "TAG_BITS", "beat_words", "beat_addr_bits",
           "req_layout", "wdata_layout", "resp_layout", "Region", "MemoryMap",
           "mem_port_signature", "dma_desc_layout"]

#: Request tags (an AGCU has at most 2**TAG_BITS requests in flight).
TAG_BITS = 6


def beat_words(bytes_per_cycle):
    if bytes_per_cycle % 4:
        raise ValueError(f"a channel beat must be whole 32-bit words, got {bytes_per_cycle} B")
    return bytes_per_cycle // 4


def beat_addr_bits(beats):
    """Width of a beat address into ``beats`` beats."""
    return max(1, (beats - 1).bit_length())


def req_layout(addr_bits, tag_bits=TAG_BITS):
    return data.StructLayout({
        "addr": unsigned(addr_bits),
        "len": unsigned(BURST_BITS),
        "write": unsigned(1),
        "tag": unsigned(tag_bits),
    })


def wdata_layout(words):
    return data.StructLayout({"data": data.ArrayLayout(32, words), "mask": unsigned(words)})


def resp_layout(words, tag_bits=TAG_BITS):
    """A read beat (``last`` on the final beat of the burst) or a write acknowledgement
    (``write`` = 1, ``last`` = 1, no data)."""
    return data.StructLayout({
        "data": data.ArrayLayout(32, words),
        "tag": unsigned(tag_bits),
        "write": unsigned(1),
        "last": unsigned(1),
    })


@dataclass(frozen=True)
class Region:
    """One memory controller in the global address space: ``beats`` beats from ``base``
    (network beats of ``MemoryMap.beat_bytes``); a beat takes ``interval`` cycles on
    each of its ``channels``."""
    name: str
    base: int
    beats: int
    channels: int
    interval: int
    latency: int
    outstanding: int

    @property
    def end(self):
        return self.base + self.beats

    def channel_of(self, beat):
        """(channel, beat within the channel) of region-relative ``beat`` (ints or numpy
        arrays): channels interleave by blocks of MAX_BURST beats (decoded by the Tln)."""
        block, off = beat // MAX_BURST, beat % MAX_BURST
        return block % self.channels, (block // self.channels) * MAX_BURST + off


class MemoryMap:
    """The global address space of the top-level network, in beats of one HBM channel
    (``beat_bytes``, ``words`` 32-bit words): HBM from 0, DDR right after it.

    DDR moves ``ddr_bytes_per_cycle`` per cycle, so a network beat takes
    ``beat_bytes / ddr_bytes_per_cycle`` cycles there; the host link likewise.
    """

    def __init__(self, params):
        self.beat_bytes = params.hbm_bytes_per_cycle
        self.words = beat_words(self.beat_bytes)
        hbm_beats = params.hbm_capacity // self.beat_bytes
        self.regions = (
            Region("hbm", 0, hbm_beats, params.hbm_channels, 1, params.hbm_latency,
                   params.hbm_outstanding),
            Region("ddr", hbm_beats, params.ddr_capacity // self.beat_bytes, 1,
                   self.beat_bytes // params.ddr_bytes_per_cycle, params.ddr_latency,
                   params.ddr_outstanding),
        )
        self.beats = self.regions[-1].end
        self.addr_bits = beat_addr_bits(self.beats)
        self.host_interval = self.beat_bytes // params.host_bytes_per_cycle
        self.host_latency = params.host_latency

    def region(self, name):
        for r in self.regions:
            if r.name == name:
                return r
        raise KeyError(f"no memory region {name!r}; regions: "
                       f"{', '.join(r.name for r in self.regions)}")

    def locate(self, beat):
        """(region, beat within it) of global beat address ``beat``."""
        for r in self.regions:
            if r.base <= beat < r.end:
                return r, beat - r.base
        raise ValueError(f"beat address {beat:#x} is outside memory (0 .. {self.beats:#x})")


def mem_port_signature(addr_bits, words, tag_bits=TAG_BITS):
    """A requester's port to memory (AGCU, DMA engine, host link -> network -> controller):
    requests and write beats out, responses in."""
    return wiring.Signature({
        "req": Out(stream.Signature(req_layout(addr_bits, tag_bits))),
        "wdata": Out(stream.Signature(wdata_layout(words))),
        "resp": In(stream.Signature(resp_layout(words, tag_bits))),
    })


def dma_desc_layout(addr_bits, words):
    """A DMA descriptor: copy ``count`` 32-bit words from beat address ``src`` to beat
    address ``dst`` (global, beat aligned); the last beat is written with a word mask."""
    return data.StructLayout({
        "src": unsigned(addr_bits),
        "dst": unsigned(addr_bits),
        "count": unsigned(addr_bits + (words - 1).bit_length() + 1),
    })
