"""Composition of Experts on the three-tier memory (ARCHITECTURE.md §9).

``experts`` experts live in DDR; HBM holds ``slots`` of them. Each expert is a small
decoder stand-in: ``layers`` GEMV layers of ``d`` x ``d`` weights (BF16, two per word when
``packed``), each layer's input the one before's output — one chained kernel-looped
launch (:mod:`firmware.kernels.gemv`). The firmware keeps an LRU map of experts to slots
(:class:`ExpertCache`): a request for a cached expert (a hit) is its launch alone; a miss
puts a copy record first, the sequencer having the DMA engine copy the expert DDR -> HBM
into the least recently used slot — no host involved. One program serves every slot: its
weight streams cover the whole slot area and each launch's offsets pick the slot, so the
program is loaded once (by the first request) and stays resident.
"""

from dataclasses import dataclass

import numpy as np

from firmware.kernels.gemv import GemvShape, compile_gemv
from firmware.runtime.memory import Buffer

__all__ = ["ExpertCache", "CoeShape", "Experts"]


class ExpertCache:
    """Which expert each of ``slots`` HBM slots holds, least recently used evicted."""

    def __init__(self, slots):
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise ValueError(f"expert cache: {slots!r} slots; at least 1")
        self.owner = [None] * slots          # the expert in each slot
        self.order = []                      # used slots, least recently used first

    def lookup(self, expert):
        """(slot, hit) for a request of ``expert``, which is then the most recently used:
        its slot if cached, else a free slot or the least recently used one's."""
        if expert in self.owner:
            slot, hit = self.owner.index(expert), True
        else:
            slot = self.owner.index(None) if None in self.owner else self.order[0]
            hit = False
        self.owner[slot] = expert
        if slot in self.order:
            self.order.remove(slot)
        self.order.append(slot)
        return slot, hit


@dataclass(frozen=True)
class CoeShape:
    experts: int
    slots: int
    d: int
    layers: int
    packed: bool = True

    def __post_init__(self):
        for name in ("experts", "slots", "d", "layers"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"coe: {name} = {v!r} must be a positive integer")
        if self.slots > self.experts:
            raise ValueError(f"coe: {self.slots} HBM slots for {self.experts} experts; at "
                             f"most one slot per expert")


class Experts:
    """The experts of ``shape`` on device ``dev`` (either backend: the same calls give the
    same addresses): their weights in DDR, the HBM slot area, one activation buffer
    (x, then each layer's output, a vector slot each) and the compiled program."""

    def __init__(self, dev, shape: CoeShape):
        self.dev, self.shape = dev, shape
        params, al = dev.params, dev.alloc.align
        self.gemv_shape = sh = GemvShape.of(params, shape.d, shape.d, packed=shape.packed)
        self.layer_words = -(-sh.w_words // al) * al
        self.expert_words = shape.layers * self.layer_words
        self.vec = max(-(-sh.kp // al), -(-sh.y_words // al)) * al
        self.ddr = dev.alloc.alloc("ddr", shape.experts * self.expert_words, "experts")
        self.hbm = dev.alloc.alloc("hbm", shape.slots * self.expert_words, "expert slots")
        self.xy = dev.alloc.alloc("hbm", self.vec * (shape.layers + 1), "activations")
        self.gemv = compile_gemv(params, shape.d, shape.d, w=self.hbm, x=self.xy, y=self.xy,
                                 packed=shape.packed)
        self.cache = ExpertCache(shape.slots)
        self.loaded = None
        self.resident = False                # the program is on the tile (after a request)

    def expert_image(self, weights):
        """One expert's ``layers`` weight matrices (FP32 words; BF16 values when packed)
        as its words in memory."""
        w = np.asarray(weights, np.uint32).reshape(self.shape.layers, self.shape.d, -1)
        return np.concatenate([np.pad(self.gemv.pack_w(m), (0, self.layer_words -
                                                            self.gemv_shape.w_words))
                               for m in w])

    async def store(self, experts):
        """Write every expert's weights (``experts[e]``: its layers' matrices) to DDR and
        the program to HBM."""
        if len(experts) != self.shape.experts:
            raise ValueError(f"coe: weights of {len(experts)} experts, expected "
                             f"{self.shape.experts}")
        await self.dev.write(self.ddr, np.concatenate([self.expert_image(w) for w in experts]))
        self.loaded = await self.dev.load(self.gemv.program)

    def _slot(self, buf, index):
        w = self.expert_words
        return Buffer(buf.region, buf.addr + index * w, w, f"{buf.name} {index}")

    def request(self, expert):
        """The launch list of a request of ``expert`` (its input already in the activation
        buffer): (list, slot, hit). A miss copies the expert into its slot first."""
        if not 0 <= expert < self.shape.experts:
            raise ValueError(f"coe: expert {expert!r}; 0 .. {self.shape.experts - 1}")
        if self.loaded is None:
            raise RuntimeError("coe: store() the experts before a request")
        slot, hit = self.cache.lookup(expert)
        sh, vec = self.gemv_shape, self.vec
        stores = [sh.stream_of(p) for p in range(sh.shares)]
        base = {**{(s, "load"): slot * self.expert_words for s in range(sh.streams)},
                **{key: vec for key in stores}}
        step = {(0, "load2"): vec, **{(s, "load"): self.layer_words for s in range(sh.streams)},
                **{key: vec for key in stores}}
        launch = self.loaded.launch(iterations=self.shape.layers, offsets=base, strides=step,
                                    chained=True, reload=not self.resident)
        self.resident = True
        copies = [] if hit else [self.dev.copy(self._slot(self.ddr, expert),
                                               self._slot(self.hbm, slot))]
        return copies + [launch], slot, hit

    async def write_input(self, x):
        """The request's input vector (``d`` FP32 words) into the activation buffer."""
        await self.dev.write(self.xy, self.gemv.pack_x(x))

    async def read_outputs(self):
        """Every layer's output of the last request: (layers, d) FP32 words."""
        words = await self.dev.read(self.xy)
        return words[self.vec:].reshape(self.shape.layers, self.vec)[:, :self.shape.d]
