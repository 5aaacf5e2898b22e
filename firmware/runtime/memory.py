"""Device memory: a bump allocator over the HBM and DDR regions of the memory map."""

from hdl.memory.config import MAX_BURST, MemoryMap

__all__ = ["OutOfMemory", "Buffer", "Allocator"]


class OutOfMemory(MemoryError):
    """An allocation larger than what is left of its region; the message says how much."""


class Buffer:
    """``words`` 32-bit words at global word address ``addr`` in ``region``."""

    def __init__(self, region, addr, words, name=""):
        self.region, self.addr, self.words, self.name = region, addr, words, name

    def __repr__(self):
        return f"Buffer({self.name!r}, {self.region}, addr={self.addr:#x}, words={self.words})"


class Allocator:
    """Buffers are aligned to a MAX_BURST block of beats (so a burst never straddles two
    buffers and bursts start block-aligned)."""

    def __init__(self, params):
        self.map = mm = MemoryMap(params)
        self.align = MAX_BURST * mm.words
        self.next = {r.name: r.base * mm.words for r in mm.regions}
        self.end = {r.name: r.end * mm.words for r in mm.regions}

    def mark(self):
        """Where the next buffers go; :meth:`release` frees every buffer allocated since."""
        return dict(self.next)

    def release(self, mark):
        self.next = dict(mark)

    def alloc(self, region, words, name=""):
        if region not in self.next:
            raise ValueError(f"no memory region {region!r}; known: {', '.join(self.next)}")
        if words < 1:
            raise ValueError(f"buffer {name!r}: {words} words")
        addr = self.next[region]
        top = addr + -(-words // self.align) * self.align
        if top > self.end[region]:
            left = self.end[region] - addr
            raise OutOfMemory(f"buffer {name!r} of {words} words does not fit in {region}: "
                              f"{left} words left of {self.end[region] - self.map.region(region).base * self.map.words}")
        self.next[region] = top
        return Buffer(region, addr, words, name)
