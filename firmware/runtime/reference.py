"""The numpy reference backend of the device API.

Memory is one array of 32-bit words (HBM then DDR, the global address space). Running a
launch list does what the kernel sequencer does — a launch with config beats selects
the program stored at its address, every iteration executes the kernel with the AGCU
arguments, then steps them by their strides — and executing a kernel applies its
reference (``KernelProgram.execute``) to the words its AGCU streams would read, in the
order they would stream them, storing where its store streams would write. No cycles
are modelled; results are bit-exact with the hardware.
"""

import numpy as np

from hdl.agcu.config import word_bits

from .device import Device, DeviceError
from .launch import Copy, pack_launch

__all__ = ["ReferenceDevice"]


class ReferenceDevice(Device):
    def __init__(self, params):
        super().__init__(params)
        self.memory = np.zeros(self.map.beats * self.map.words, np.uint32)
        self.programs = {}
        self.current = None              # the program on the tile (it stays between runs)

    async def _store(self, addr, words):
        self.memory[addr:addr + len(words)] = words

    async def _load(self, addr, n):
        return self.memory[addr:addr + n].copy()

    async def load(self, program, region="hbm"):
        loaded = await super().load(program, region)
        self.programs[loaded.buffer.addr] = program
        return loaded

    async def run(self, launches, **_):
        self._check_launches(launches)
        mask = (1 << word_bits(self.params)) - 1
        current = self.current
        for i, launch in enumerate(launches):
            if isinstance(launch, Copy):
                pack_launch(self.params, launch)          # refuses what the RTL refuses
                src = self.memory[launch.src:launch.src + launch.count].copy()
                self.memory[launch.dst:launch.dst + launch.count] = src
                continue
            if launch.beats:
                current = self.programs.get(launch.program)
                if current is None:
                    raise DeviceError(f"launch {i}: no program stored at word "
                                      f"{launch.program:#x}")
                self.current = current
            if current is None:
                raise DeviceError(f"launch {i}: no program loaded")
            if current.execute is None:
                raise DeviceError(f"kernel {current.name!r} has no reference")
            args = dict(launch.offsets)
            for _ in range(launch.iterations):
                current.execute(self.memory, args)
                args = {k: (args.get(k, 0) + launch.strides.get(k, 0)) & mask
                        for k in set(args) | set(launch.strides)}
        return {}
