"""The Composition-of-Experts router: ``choice = argmax(Wr x)`` on the device.

Two kernels, run as one launch list: the router GEMV (:mod:`.gemv`, ``experts`` outputs,
``d`` inputs) writes the logits to HBM, then the argmax kernel reads them back as one
vector (``experts`` <= the lanes) into one PCU in SIMD mode and writes one word, the
chosen expert encoded as an FP32 key:

* the header's cross-lane ``MAX`` of the logits is broadcast (``Src.RED``);
* stage 0 ``CMP_LT(logit, max)``: 1.0 where a lane is not a maximum, else +0.0;
* stage 1 ``SELECT``: a lane that is a maximum keeps its index (``Src.CTR``, an integer),
  the others take ``K``;
* stage 2 ``XOR`` with ``K = 0x4B7FFFFF``: index ``i`` becomes the FP32 value
  ``2**23 + (2**23 - 1 - i)``, ``K`` becomes +0.0;
* the tail's ``MAX`` reduction over the valid lanes picks the largest key, that of the
  first maximal lane (``numpy.argmax``'s choice), and the store path writes it.

:func:`expert_of` decodes the key. ``NaN`` logits compare false and count as maxima (the
reference does the same).
"""

from dataclasses import dataclass

import numpy as np

from firmware.compiler.agcu import TensorAccess
from firmware.compiler.counters import Counter
from firmware.compiler.pcu import SimdProgram, Stage, Tail, pack_simd, simd_reference
from firmware.compiler.place import VFlow, agcu, place_and_route, port
from firmware.compiler.program import kernel_program, stream_words

from .gemv import GemvShape, compile_gemv
from .pipelines import agcu_programs

__all__ = ["KEY", "expert_of", "Router", "compile_argmax", "router_shape", "compile_router"]

#: The key constant: ``XOR`` with it maps index i to 2**23 + (2**23 - 1 - i).
KEY = 0x4B7FFFFF


def expert_of(word):
    """The expert index an argmax key word encodes."""
    word = int(word)
    if not 0x4B000000 <= word <= KEY:
        raise ValueError(f"router: {word:#010x} is not an argmax key")
    return KEY - word


def _argmax_program(n):
    return SimdProgram(
        counters=(Counter(0, n, 1),),
        stages=(Stage("CMP_LT", "VIN0", "RED"),
                Stage("SELECT", "IMM", "CTR", "PREV", imm=KEY),
                Stage("XOR", "PREV", "IMM", imm=KEY)),
        red="MAX", reduce="MAX", tail=Tail(), rows_out=True)


@dataclass(frozen=True)
class Argmax:
    program: object
    simd: SimdProgram
    n: int

    #: The AGCU streams of each operand (the keys of a launch's offsets).
    streams = {"x": ((0, "load"),), "y": ((1, "store"),)}

    def reference(self, params, words):
        """The key word the kernel stores for ``n`` FP32 words."""
        v = np.zeros(params.pcu_lanes, np.uint32)
        v[:self.n] = np.asarray(words, np.uint32).reshape(self.n)
        return simd_reference(self.simd, params, vin0=v.reshape(1, -1))["sdata"][:1]


def compile_argmax(params, n, *, x, y):
    """The first index of the largest of ``n`` FP32 words in ``x`` (``n`` <= the lanes),
    as a key word (:func:`expert_of`) in ``y``."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= params.pcu_lanes:
        raise ValueError(f"argmax: {n!r} values; 1 .. {params.pcu_lanes} (one vector)")
    if params.agcus < 2:
        raise ValueError("the argmax kernel needs two AGCUs")
    simd = _argmax_program(n)
    layout = place_and_route(params, "argmax", {"pcu": "pcu"}, vec=[
        VFlow("x", agcu(0), (port("pcu", 0),)), VFlow("y", port("pcu"), (agcu(1),))])
    x_acc, y_acc = TensorAccess((n,), (1,)), TensorAccess((1,), (1,))
    agcus = agcu_programs(params, layout, {0: (x_acc, x, n, "x")}, [(1, y_acc, y, 1, "y")])
    parts = {"pcus": layout.configs("pcu", {"pcu": pack_simd(simd, params)}),
             "agcus": agcus, "vec": layout.vec, "layout": layout}
    kernel = Argmax(None, simd, n)

    def execute(mem, args):
        words = mem[stream_words(x, args, (0, "load"), x_acc)]
        mem[stream_words(y, args, (1, "store"), y_acc)] = kernel.reference(params, words)
    return Argmax(kernel_program(params, "argmax", **parts, execute=execute, partial=True),
                  simd, n)


@dataclass(frozen=True)
class Router:
    """The router's two kernels (``gemv``, ``argmax``) and the buffers between them."""
    gemv: object
    argmax: Argmax
    logits: object

    @property
    def programs(self):
        return [self.gemv.program, self.argmax.program]

    def reference(self, params, w_words, x_words):
        """(logit words, the chosen expert) as the device computes them."""
        logits = self.gemv.reference(params, w_words, x_words)[:self.argmax.n]
        return logits, expert_of(self.argmax.reference(params, logits)[0])


def router_shape(params, experts, d, packed=False):
    """The router GEMV's shape: a few rows, so two PCUs (one AGCU stream when packed) are
    enough — and the partial bitstreams of both kernels write only their own units."""
    shares = min(2, GemvShape.of(params, experts, d, packed=packed).shares)
    return GemvShape.of(params, experts, d, shares, packed)


def compile_router(params, experts, d, *, w, x, logits, choice, packed=False):
    """The router over ``experts`` experts for ``d``-word inputs: weights ``w`` (laid out
    by the GEMV's ``pack_w``), the input ``x``, the ``logits`` buffer between the two
    kernels and the ``choice`` word."""
    if not 1 <= experts <= params.pcu_lanes:
        raise ValueError(f"router: {experts} experts; the argmax takes 1 .. "
                         f"{params.pcu_lanes} (one vector of the lanes)")
    sh = router_shape(params, experts, d, packed)
    gemv = compile_gemv(params, experts, d, w=w, x=x, y=logits, packed=packed,
                        shares=sh.shares, partial=True)
    return Router(gemv, compile_argmax(params, experts, x=logits, y=choice), logits)
