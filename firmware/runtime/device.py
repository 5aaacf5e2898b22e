"""The device API both backends share: allocate, write, read, load, run, counters.

Backends: ``firmware.runtime.rtl.RtlDevice`` (the simulated socket) and
``firmware.runtime.reference.ReferenceDevice`` (numpy, each kernel's reference applied
to a memory image in the order the hardware streams it). The same calls in the same
order give the same buffer addresses on both, so their memories compare word for word.
Methods are coroutines (the RTL backend waits on the simulator).
"""

import numpy as np

from hdl.memory.config import MemoryMap
from hdl.sequencer import record_beats

from .launch import Copy, Launch, check_extents
from .memory import Allocator

__all__ = ["DeviceError", "LoadedProgram", "Device", "MAX_LAUNCHES"]

#: Launch records the list area holds.
MAX_LAUNCHES = 256


class DeviceError(RuntimeError):
    """The device reported an error (an AGCU fault, a kernel timeout, no program)."""


class LoadedProgram:
    """A kernel's bitstream in device memory."""

    def __init__(self, program, buffer):
        self.program, self.buffer = program, buffer

    def launch(self, *, iterations=1, offsets=None, strides=None, reload=True, chained=False):
        """A launch record of this program (see :class:`Launch`); arguments and strides
        that would take a stream outside its buffer in any iteration are refused
        (:class:`~firmware.runtime.launch.LaunchError`)."""
        p = self.program
        launch = Launch(self.buffer.addr, p.beats if reload else 0, p.units, p.agcus,
                        iterations, dict(offsets or {}), dict(strides or {}), chained)
        check_extents(p.name, getattr(p, "extents", {}), launch)
        return launch


class Device:
    def __init__(self, params):
        self.params = params
        self.map = MemoryMap(params)
        self.alloc = Allocator(params)
        self.launch_area = self.alloc.alloc(
            "hbm", MAX_LAUNCHES * record_beats(params) * self.map.words, "launch list")

    def _pad(self, values):
        """Whole memory beats (zero filled)."""
        v = np.asarray(values, np.uint32).reshape(-1)
        n = -(-len(v) // self.map.words) * self.map.words
        return np.concatenate([v, np.zeros(n - len(v), np.uint32)])

    async def write(self, buf, values):
        values = np.asarray(values, np.uint32).reshape(-1)
        if len(values) > buf.words:
            raise ValueError(f"{len(values)} words do not fit {buf}")
        await self._store(buf.addr, self._pad(values))

    async def read(self, buf, n=None):
        n = buf.words if n is None else n
        return (await self._load(buf.addr, -(-n // self.map.words) * self.map.words))[:n]

    async def run_programs(self, writes, programs, reads, *, launch_args=None, **run_args):
        """Write ``writes`` ([(buffer, words)]), load ``programs`` and run them as one
        launch list (``launch_args``: one dict of :meth:`LoadedProgram.launch` arguments
        per program, e.g. ``iterations``), then read ``reads`` ({name: buffer}); returns
        ({name: words}, counters) — a compiled graph's run on this device."""
        for buf, words in writes:
            await self.write(buf, words)
        launch_args = launch_args or [{}] * len(programs)
        if len(launch_args) != len(programs):
            raise ValueError(f"{len(launch_args)} launch argument sets for {len(programs)} "
                             f"programs")
        launches = [(await self.load(p)).launch(**kw) for p, kw in zip(programs, launch_args)]
        counters = await self.run(launches, **run_args)
        return {name: await self.read(buf) for name, buf in reads.items()}, counters

    @staticmethod
    def copy(src, dst, words=None):
        """A copy record (:class:`Copy`): the first ``words`` (default: all of ``src``)
        of buffer ``src`` into buffer ``dst`` by the DMA engine, issued by the
        sequencer between the launches of a list."""
        words = src.words if words is None else words
        if not 1 <= words <= min(src.words, dst.words):
            raise ValueError(f"copy of {words} words from {src} to {dst}: 1 .. "
                             f"{min(src.words, dst.words)}")
        return Copy(src.addr, dst.addr, words)

    async def load(self, program, region="hbm"):
        """Put ``program``'s bitstream in device memory (loading it onto the tile is part
        of the launch that runs it)."""
        words = program.rows.reshape(-1)
        buf = self.alloc.alloc(region, len(words), f"bitstream {program.name}")
        await self.write(buf, words)
        return LoadedProgram(program, buf)

    @staticmethod
    def _check_launches(launches):
        if not 1 <= len(launches) <= MAX_LAUNCHES:
            raise ValueError(f"{len(launches)} launches: 1 .. {MAX_LAUNCHES}")

    async def _store(self, addr, words):
        raise NotImplementedError

    async def _load(self, addr, n):
        raise NotImplementedError
