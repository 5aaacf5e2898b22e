"""Elementwise kernels: ``y = relu?(x * scale + bias)`` and ``y = a + b`` streamed
through one PCU, ``y = silu(x)`` through three.

Dataflow: AGCU 0's load stream (west edge) reads ``x`` -> the PCU's ``vin0``; the PCU's
``vout`` -> AGCU 1's store stream (east edge) writes ``y``. One kernel iteration
processes ``n`` words; kernel looping walks further slices by the AGCU argument strides.
"""

import math
from dataclasses import dataclass

import numpy as np

from firmware import numerics as N
from firmware.compiler.agcu import Segment, TensorAccess, pack_agcu
from firmware.compiler.counters import Counter
from firmware.compiler.pcu import SimdProgram, Stage, Tail, pack_simd, simd_reference
from firmware.compiler.place import VFlow, agcu, place_and_route, port
from firmware.compiler.program import kernel_program, stream_words

from .pipelines import agcu_programs
from .softmax import row_kernel_reference

__all__ = ["ScaleBias", "compile_scale_bias", "Add", "compile_add", "Silu", "compile_silu",
           "silu_bound"]

@dataclass(frozen=True)
class ScaleBias:
    """The compiled kernel: its program, and its parts (``pcus``, ``agcus``, ``vec`` as
    ``kernel_program`` takes them) with the PCU program for the reference."""
    program: object
    simd: SimdProgram
    n: int
    parts: dict

    #: The AGCU streams of each operand (the keys of a launch's offsets).
    streams = {"x": ((0, "load"),), "y": ((1, "store"),)}

    def reference(self, params, x):
        """Bit-exact result for input words ``x`` (n,) uint32."""
        return _simd(params, self.simd, np.asarray(x, np.uint32))


def compile_scale_bias(params, n, *, x, y, scale=1.0, bias=0.0, relu=False, partial=False):
    """``y[i] = relu?(x[i] * scale + bias)`` for ``n`` FP32 words; ``x``, ``y``: the
    buffers (``firmware.runtime.memory.Buffer``) each iteration's window starts in;
    ``partial``: a partial bitstream (``kernel_program``)."""
    if params.agcus < 2:
        raise ValueError("the elementwise kernel needs two AGCUs")
    simd = SimdProgram(counters=(Counter(0, n, 1),),
                       stages=(Stage("MUL", "VIN0", "IMM", imm=float(scale)),
                               Stage("ADD", "PREV", "IMM", imm=float(bias))),
                       tail=Tail(relu=relu))
    layout = place_and_route(params, "scale_bias", {"pcu": "pcu"}, vec=[
        VFlow("x", agcu(0), (port("pcu", 0),)), VFlow("y", port("pcu"), (agcu(1),))])
    vec = layout.vec
    if vec.headers["y"] != {"dyn": 0, "flow": 0, "x": 0, "y": 0, "port": 0}:
        raise AssertionError("a unit's output flow must have id 0 at its switch")
    access = TensorAccess((n,), (1,))
    agcus = {
        0: pack_agcu(params, load=(access, 0), segments=[Segment(x.addr, x.words)],
                     hdr=vec.headers["x"])[0],
        1: pack_agcu(params, store=(access, 0), segments=[Segment(y.addr, y.words)])[0],
    }
    parts = {"pcus": layout.configs("pcu", {"pcu": pack_simd(simd, params)}),
             "agcus": agcus, "vec": vec, "layout": layout}

    def execute(mem, args):
        src = mem[stream_words(x, args, (0, "load"), access)]
        mem[stream_words(y, args, (1, "store"), access)] = _simd(params, simd, src)
    return ScaleBias(kernel_program(params, "scale_bias", **parts, execute=execute,
                                    partial=partial), simd, n, parts)


def _simd(params, simd, words):
    """The SIMD program on ``words`` as the AGCU packs them (LANES per packet, the last
    one partial); the words stored back."""
    return row_kernel_reference(params, words, 1, len(words), lambda v: simd_reference(
        simd, params, vin0=v)["data"]).reshape(-1)


@dataclass(frozen=True)
class Add:
    """The compiled ``y = a + b`` kernel: its program and PCU program."""
    program: object
    simd: SimdProgram
    n: int

    #: The AGCU streams of each operand (the keys of a launch's offsets).
    streams = {"a": ((0, "load"),), "b": ((1, "load"),), "y": ((1, "store"),)}

    def reference(self, params, a, b):
        """Bit-exact ``a + b`` for ``n`` FP32 words each."""
        L = params.pcu_lanes
        v = np.zeros((2, -(-self.n // L) * L), np.uint32)
        v[0, :self.n], v[1, :self.n] = a, b
        return simd_reference(self.simd, params, vin0=v[0].reshape(-1, L),
                              vin1=v[1].reshape(-1, L))["data"].reshape(-1)[:self.n]


def compile_add(params, n, *, a, b, y, partial=False):
    """``y[i] = a[i] + b[i]`` for ``n`` FP32 words (a residual connection): AGCU 0 loads
    ``a`` into the PCU's ``vin0``, AGCU 1 loads ``b`` into ``vin1`` and stores ``y``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"add: n = {n!r} must be a positive integer")
    if params.agcus < 2:
        raise ValueError("the add kernel needs two AGCUs")
    simd = SimdProgram(counters=(Counter(0, n, 1),), stages=(Stage("ADD", "VIN0", "VIN1"),),
                       inputs=frozenset({"vin0", "vin1"}))
    layout = place_and_route(params, "add", {"pcu": "pcu"}, vec=[
        VFlow("a", agcu(0), (port("pcu", 0),)), VFlow("b", agcu(1), (port("pcu", 1),)),
        VFlow("y", port("pcu"), (agcu(1),))])
    access = TensorAccess((n,), (1,))
    agcus = agcu_programs(params, layout, {0: (access, a, n, "a"), 1: (access, b, n, "b")},
                          [(1, access, y, n, "y")])
    parts = {"pcus": layout.configs("pcu", {"pcu": pack_simd(simd, params)}),
             "agcus": agcus, "vec": layout.vec, "layout": layout}
    kernel = Add(None, simd, n)

    def execute(mem, args):
        va = mem[stream_words(a, args, (0, "load"), access)]
        vb = mem[stream_words(b, args, (1, "load"), access)]
        mem[stream_words(y, args, (1, "store"), access)] = kernel.reference(params, va, vb)
    return Add(kernel_program(params, "add", **parts, execute=execute, partial=partial),
               simd, n)


#: log2(e): exp(-x) = exp2(x * -LOG2E).
LOG2E = math.log2(math.e)


def silu_programs(n):
    """The three PCU programs of ``y = x * sigmoid(x)`` over ``n`` words: ``exp``
    (``exp2(x * -log2 e)`` = exp(-x)), ``rcp`` (``1 / (1 + e)``, the sigmoid) and ``mul``
    (the sigmoid times x)."""
    chain = (Counter(0, n, 1),)
    return {
        "exp": SimdProgram(chain, (Stage("MUL", "VIN0", "IMM", imm=-LOG2E),),
                           tail=Tail(func="EXP2")),
        "rcp": SimdProgram(chain, (Stage("ADD", "VIN0", "IMM", imm=1.0),), tail=Tail(func="RCP")),
        "mul": SimdProgram(chain, (Stage("MUL", "VIN0", "VIN1"),),
                           inputs=frozenset({"vin0", "vin1"})),
    }


def silu_bound(x):
    """Relative error bound of each ``silu(x)`` against float64 (u = 2^-24, a half ulp):
    ``-log2 e`` as an FP32 immediate and the product each round by u, a relative change of
    the exponent t = -x log2 e that exp2 turns into 2 ln2 |t| u = 2 |x| u; exp2 and rcp
    TAIL_ULP_BOUND ulp each (2 TAIL_ULP_BOUND u); ``1 + e`` and the final product u each —
    the sum's relative error at most that of e (e / (1 + e) <= 1) plus u. Valid while
    exp(-x) stays finite (x > -88) and for normal x and results (subnormals are read as
    zero and results below 2^-126 flushed: an absolute error below 2^-126 there); the
    factor 1 + 1e-4 covers the products of these terms (below the bound itself, < 1e-4
    there)."""
    x = np.abs(np.asarray(x, np.float64))
    return 2.0 ** -24 * (2 * x + 4 * N.TAIL_ULP_BOUND + 2) * (1 + 1e-4)


@dataclass(frozen=True)
class Silu:
    """The compiled SiLU kernel: its program and PCU programs."""
    program: object
    programs: dict
    n: int

    #: The AGCU streams of each operand (the keys of a launch's offsets).
    streams = {"x": ((0, "load"),), "y": ((1, "store"),)}

    def reference(self, params, x):
        """Bit-exact ``silu(x)`` for ``n`` FP32 words."""
        return _silu(params, self.programs, np.asarray(x, np.uint32))


def _silu(params, programs, words):
    def three(v):
        e = simd_reference(programs["exp"], params, vin0=v)["data"]
        s = simd_reference(programs["rcp"], params, vin0=e)["data"]
        return simd_reference(programs["mul"], params, vin0=s, vin1=v)["data"]
    return row_kernel_reference(params, words, 1, len(words), three).reshape(-1)


def compile_silu(params, n, *, x, y, partial=False):
    """``y[i] = x[i] * sigmoid(x[i])`` for ``n`` FP32 words (the SiLU of Llama's MLP) on
    three PCUs: AGCU 0 multicasts x to the ``exp`` PCU and to the ``mul`` PCU's second
    input; ``exp`` -> ``rcp`` -> ``mul``'s first input; ``mul`` -> AGCU 1's store."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"silu: n = {n!r} must be a positive integer")
    if params.agcus < 2:
        raise ValueError("the silu kernel needs two AGCUs")
    programs = silu_programs(n)
    layout = place_and_route(params, "silu", {u: "pcu" for u in programs}, vec=[
        VFlow("x", agcu(0), (port("exp", 0), port("mul", 1))),
        VFlow("e", port("exp"), (port("rcp", 0),)),
        VFlow("s", port("rcp"), (port("mul", 0),)),
        VFlow("y", port("mul"), (agcu(1),))])
    access = TensorAccess((n,), (1,))
    agcus = agcu_programs(params, layout, {0: (access, x, n, "x")}, [(1, access, y, n, "y")])
    parts = {"pcus": layout.configs("pcu", {u: pack_simd(p, params)
                                            for u, p in programs.items()}),
             "agcus": agcus, "vec": layout.vec, "layout": layout}

    def execute(mem, args):
        src = mem[stream_words(x, args, (0, "load"), access)]
        mem[stream_words(y, args, (1, "store"), access)] = _silu(params, programs, src)
    return Silu(kernel_program(params, "silu", **parts, execute=execute, partial=partial),
                programs, n)
