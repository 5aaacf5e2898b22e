"""Composition of Experts on the three-tier memory (ARCHITECTURE.md §9).

A request's input goes through the router first (:mod:`firmware.kernels.router`: a GEMV
over the experts' router weights and an argmax, on the device); the host reads the
choice and serves the request with that expert.

``experts`` experts live in DDR; HBM holds ``slots`` of them. Each expert is a small
decoder stand-in: ``layers`` GEMV layers of ``d`` x ``d`` weights (BF16, two per word when
``packed``), each layer's input the one before's output — one chained kernel-looped
launch (:mod:`firmware.kernels.gemv`). The firmware keeps an LRU map of experts to slots
(:class:`ExpertCache`): a request for a cached expert (a hit) is its launch alone; a miss
puts a copy record first, the sequencer having the DMA engine copy the expert DDR -> HBM
into the least recently used slot — no host involved. One program serves every slot: its
weight streams cover the whole slot area and each launch's offsets pick the slot (it is
loaded again after each routing, whose kernels take the tile in between).
"""

from dataclasses import dataclass

import numpy as np

from firmware.decoder import Decoder
from firmware.kernels.gemv import GemvShape, compile_gemv
from firmware.kernels.router import compile_router, expert_of, router_shape
from firmware.runtime.memory import Buffer

__all__ = ["ExpertCache", "CoeShape", "Experts", "DecoderExperts", "router_weights",
           "request_input"]


def router_weights(rng, experts, d, packed=True):
    """Router weights (``experts`` x ``d`` FP32 words, BF16 values when ``packed``) whose
    rows are orthonormal where ``d`` >= ``experts`` (random otherwise): an input near row
    e (:func:`request_input`) is routed to expert e with a wide margin."""
    a = rng.normal(0, 1, (d, experts))
    w = (np.linalg.qr(a)[0].T if d >= experts else a.T / np.sqrt(d)).astype(np.float32)
    bits = w.view(np.uint32)
    return bits & np.uint32(0xFFFF0000) if packed else bits


def request_input(rng, router, expert, noise=0.1):
    """An input (``d`` FP32 words) meant for ``expert``: its router row, scaled to the
    size of a unit-normal input, plus noise."""
    w = np.asarray(router, np.uint32)[expert].view(np.float32).astype(np.float64)
    d = len(w)
    x = w * np.sqrt(d) / max(np.linalg.norm(w), 1e-30) + rng.normal(0, noise, d)
    return x.astype(np.float32).view(np.uint32)


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
    (x, then each layer's output, a vector slot each), the router's weights, logits and
    choice, and the compiled programs."""

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
        self._router_buffers(params)
        self.cache = ExpertCache(shape.slots)
        self.loaded = self.routing = None
        self.on_tile = None                  # the program our last list left loaded

    def _router_buffers(self, params):
        e, d, packed = self.shape.experts, self.shape.d, self.shape.packed
        rs = router_shape(params, e, d, packed)
        alloc = self.dev.alloc.alloc
        self.router_w = alloc("hbm", rs.w_words, "router weights")
        self.logits = alloc("hbm", rs.y_words, "router logits")
        self.choice = alloc("hbm", 1, "router choice")
        self.router = compile_router(params, e, d, w=self.router_w, x=self.xy,
                                     logits=self.logits, choice=self.choice, packed=packed)

    def expert_image(self, weights):
        """One expert's ``layers`` weight matrices (FP32 words; BF16 values when packed)
        as its words in memory."""
        w = np.asarray(weights, np.uint32).reshape(self.shape.layers, self.shape.d, -1)
        return np.concatenate([np.pad(self.gemv.pack_w(m), (0, self.layer_words -
                                                            self.gemv_shape.w_words))
                               for m in w])

    async def store(self, experts, router):
        """Write every expert's weights (``experts[e]``: its layers' matrices) to DDR, the
        router's (``experts`` x ``d``) to HBM and the programs to HBM."""
        if len(experts) != self.shape.experts:
            raise ValueError(f"coe: weights of {len(experts)} experts, expected "
                             f"{self.shape.experts}")
        await self.dev.write(self.ddr, np.concatenate([self.expert_image(w) for w in experts]))
        await self.dev.write(self.router_w, self.router.gemv.pack_w(router))
        self.loaded = await self.dev.load(self.gemv.program)
        self.routing = [await self.dev.load(p) for p in self.router.programs]

    def route(self):
        """The launch list that routes the request whose input is in the activation
        buffer: the router GEMV (logits), then the argmax (the choice word)."""
        if self.routing is None:
            raise RuntimeError("coe: store() the experts before routing")
        self.on_tile = self.routing[-1].program
        return [p.launch() for p in self.routing]

    async def chosen(self):
        """The expert the last routing list chose (its choice word decoded)."""
        return expert_of((await self.dev.read(self.choice))[0])

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
                                    chained=True, reload=self.on_tile is not self.gemv.program)
        self.on_tile = self.gemv.program
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


class DecoderExperts:
    """Composition of Experts whose experts are decoders (:mod:`firmware.decoder`): each
    expert's weights — every layer's matrices and its output projection, one
    ``Decoder.expert_image`` — in DDR, ``slots`` of them in the decoder's weight slots in
    HBM (LRU); one set of decoder programs serves every slot (the launch offsets pick it).
    A request's input vector is the first position's input (its ``x0``); the router reads
    it there, the chosen expert then generates ``tokens`` tokens from it."""

    def __init__(self, dev, experts, slots, shape):
        if isinstance(experts, bool) or not isinstance(experts, int) or experts < 1:
            raise ValueError(f"coe: {experts!r} experts; at least 1")
        if shape.batch != 1:
            raise ValueError(f"coe: decoder experts serve one request at a time (batch 1, "
                             f"not {shape.batch})")
        if isinstance(slots, int) and slots > experts:
            raise ValueError(f"coe: {slots} HBM slots for {experts} experts; at most one "
                             f"slot per expert")
        self.dev, self.experts, self.shape = dev, experts, shape
        self.cache = ExpertCache(slots)
        self.dec = Decoder(dev, shape, slots=slots)
        params, d = dev.params, shape.d
        self.ddr = dev.alloc.alloc("ddr", experts * self.dec.expert_words, "experts")
        rs = router_shape(params, experts, d, shape.packed)
        alloc = dev.alloc.alloc
        self.router_w = alloc("hbm", rs.w_words, "router weights")
        self.logits = alloc("hbm", rs.y_words, "router logits")
        self.choice = alloc("hbm", 1, "router choice")
        self.router = compile_router(params, experts, d, w=self.router_w, x=self.dec.act,
                                     logits=self.logits, choice=self.choice,
                                     packed=shape.packed)
        self.routing = None

    async def store(self, experts, router, emb):
        """Every expert's weights (``experts[e]`` = (layers' weights, output projection),
        as ``Decoder.expert_image`` takes them) into DDR, the router's (``experts`` x d)
        and the embeddings into HBM, and the programs."""
        if len(experts) != self.experts:
            raise ValueError(f"coe: weights of {len(experts)} experts, expected "
                             f"{self.experts}")
        await self.dev.write(self.ddr, np.concatenate(
            [self.dec.expert_image(w, wout) for w, wout in experts]))
        await self.dev.write(self.router_w, self.router.gemv.pack_w(router))
        await self.dec.setup(emb)
        self.routing = [await self.dev.load(p) for p in self.router.programs]

    async def write_input(self, x):
        """The request's input vector (d FP32 words) into the first position's input."""
        await self.dev.write(Buffer("hbm", self.dec.act.addr + self.dec.slot[None, "x0"],
                                    self.shape.d, "x0"), x)

    def route(self):
        """The launch list that routes the request whose input is written: the router
        GEMV over the input, then the argmax."""
        if self.routing is None:
            raise RuntimeError("coe: store() the experts before routing")
        gemv, argmax = self.routing
        return [
            gemv.launch(offsets={key: self.dec.slot[None, "x0"]
                                 for key in self.router.gemv.streams["x"]}),
            argmax.launch()]

    async def chosen(self):
        return expert_of((await self.dev.read(self.choice))[0])

    def request(self, expert):
        """(list, slot, hit) of a request of ``expert``, routed: a miss copies the expert
        DDR -> its HBM slot by a copy record; then the first position runs from the input
        in ``x0`` with the slot's weights (the next ones: ``dec.token(t, [token], slot)``)."""
        if not 0 <= expert < self.experts:
            raise ValueError(f"coe: expert {expert!r}; 0 .. {self.experts - 1}")
        slot, hit = self.cache.lookup(expert)
        w = self.dec.expert_words
        src = Buffer("ddr", self.ddr.addr + expert * w, w, f"expert {expert}")
        copies = [] if hit else [self.dev.copy(src, self.dec.slot_buffer(slot))]
        return copies + self.dec.token(0, None, slot), slot, hit
