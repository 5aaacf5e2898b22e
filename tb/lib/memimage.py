"""Global memory contents <-> the backing-store models of a memory-system design.

Addresses here are global 32-bit word addresses of the top-level network's space
(``hdl.memory.config.MemoryMap``): word ``a`` is word ``a % words`` of beat ``a // words``.
Loads and dumps go through the models' backdoor (``TbHarness.mem_load`` / ``mem_dump``),
one file per channel, no per-cycle Python.
"""

import numpy as np

from hdl.memory.config import MemoryMap

__all__ = ["MemoryImage"]


class MemoryImage:
    def __init__(self, params):
        self.map = MemoryMap(params)
        self.words = self.map.words

    def _pieces(self, word, n):
        """Per channel model: (name, channel beats, indices into the n words)."""
        W = self.words
        if word % W or n % W:
            raise ValueError(f"backdoor access must be whole beats ({W} words): word "
                             f"{word}, {n} words")
        beats = word // W + np.arange(n // W)
        if len(beats) and (beats[0] < 0 or beats[-1] >= self.map.beats):
            raise ValueError(f"words {word} .. {word + n - 1} outside memory")
        out = []
        for r in self.map.regions:
            sel = np.nonzero((beats >= r.base) & (beats < r.end))[0]
            if not len(sel):
                continue
            chan, local = r.channel_of(beats[sel] - r.base)
            for c in range(r.channels):
                k = chan == c
                if k.any():
                    out.append((f"{r.name}__{c}", local[k], sel[k]))
        return out

    async def write(self, tb, word, values):
        """Backdoor-store ``values`` (uint32) at global word address ``word``."""
        vals = np.asarray(values, dtype=np.uint32).reshape(-1, self.words)
        for name, local, idx in self._pieces(word, vals.size):
            # Runs of consecutive channel beats become one chunk each.
            cut = np.nonzero(np.diff(local) != 1)[0] + 1
            chunks = [(int(lb[0]), vals[ib]) for lb, ib in
                      zip(np.split(local, cut), np.split(idx, cut))]
            await tb.mem_load(name, chunks)

    async def read(self, tb, word, n):
        """``n`` uint32 words from global word address ``word``."""
        out = np.zeros((n // self.words, self.words), dtype=np.uint32)
        for name, local, idx in self._pieces(word, n):
            lo = int(local.min())
            rows = await tb.mem_dump(name, lo, int(local.max()) - lo + 1)
            out[idx] = rows[local - lo]
        return out.reshape(-1)
