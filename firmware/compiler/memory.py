"""Memory-system programs: addresses in the global memory map and DMA descriptors,
packed with the HDL's layouts (``hdl.memory.config``). Errors name the problem."""

from hdl.memory.config import MemoryMap, dma_desc_layout

__all__ = ["MemoryProgramError", "word_address", "dma_descriptor", "pack_dma"]


class MemoryProgramError(ValueError):
    """A memory access or copy the hardware cannot do; the message says why."""


def word_address(params, region, offset_words=0):
    """Global word address of ``offset_words`` into region ``"hbm"`` or ``"ddr"``."""
    mm = MemoryMap(params)
    try:
        r = mm.region(region)
    except KeyError as e:
        raise MemoryProgramError(str(e.args[0])) from None
    if not 0 <= offset_words < r.beats * mm.words:
        raise MemoryProgramError(f"{region}: word offset {offset_words} outside 0 .. "
                           f"{r.beats * mm.words - 1}")
    return r.base * mm.words + offset_words


def dma_descriptor(params, src, dst, count):
    """Field values of a DMA copy of ``count`` 32-bit words from global word address
    ``src`` to ``dst``. Both must be beat aligned (the engine moves whole beats and masks
    only the words past the end of the last one)."""
    mm = MemoryMap(params)
    W = mm.words
    for name, a in (("src", src), ("dst", dst)):
        if isinstance(a, bool) or not isinstance(a, int) or a < 0:
            raise MemoryProgramError(f"DMA {name}: {a!r} is not a word address")
        if a % W:
            raise MemoryProgramError(f"DMA {name}: word address {a:#x} is not aligned to a "
                               f"{W}-word ({mm.beat_bytes} B) beat")
    if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
        raise MemoryProgramError(f"DMA count: {count!r} must be a positive number of words")
    beats = -(-count // W)
    for name, a in (("src", src), ("dst", dst)):
        if a // W + beats > mm.beats:
            raise MemoryProgramError(f"DMA {name}: {count} words from {a:#x} run past the end of "
                               f"memory ({mm.beats * W:#x} words)")
    if src // W < dst // W + beats and dst // W < src // W + beats:
        raise MemoryProgramError(f"DMA: source {src:#x} and destination {dst:#x} overlap "
                           f"({count} words); bursts may complete in any order")
    return {"src": src // W, "dst": dst // W, "count": count}


def pack_dma(params, src, dst, count):
    """The descriptor as an integer in ``dma_desc_layout``."""
    mm = MemoryMap(params)
    fields = dma_descriptor(params, src, dst, count)
    return dma_desc_layout(mm.addr_bits, mm.words).const(fields).as_value().value
