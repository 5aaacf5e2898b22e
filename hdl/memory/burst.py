"""Cutting transfers into bursts: a burst never crosses a MAX_BURST-beat block (channels
interleave by blocks, see :class:`~hdl.memory.config.MemoryMap`), so each burst ends at
the nearest block end of every address it moves through, or where the transfer ends.
One recipe for the kernel sequencer's program reads, the DMA engine and the AGCU's run
splitter."""

from amaranth import Mux, Signal

from .config import BURST_BITS, MAX_BURST

__all__ = ["block_room", "cut"]


def block_room(m, beat_addr, name):
    """Beats from ``beat_addr`` to the end of its MAX_BURST block (1 .. MAX_BURST)."""
    room = Signal(BURST_BITS + 1, name=name)
    m.d.comb += room.eq(MAX_BURST - beat_addr[:BURST_BITS])
    return room


def cut(m, left, room, name, shape=None):
    """The next burst of a transfer with ``left`` units to go and ``room`` units before the
    nearest block end: ``min(left, room)`` (of ``room``'s shape unless given)."""
    n = Signal(room.shape() if shape is None else shape, name=name)
    m.d.comb += n.eq(Mux(left < room, left, room))
    return n
