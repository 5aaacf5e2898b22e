"""RMSNorm on the socket: ``Y[i, :] = X[i, :] * rsqrt(mean(X[i, :]^2) + eps)``.

The gain of Llama's RMSNorm is not applied here: it folds into the weights of the
projection that follows (``W diag(g)``), as a decoder's firmware does.

Two passes over each row, streamed through two PCUs and a PMU (the softmax kernel's
pattern, one pass shorter):

1. ``ms``   (PCU): per element ``x * x * (1 / n) + eps / n`` (three SIMD stages), the
   cross-lane sum of every vector folded over the row by the accumulator: one scalar
   per row, ``mean(x^2) + eps``.
2. ``norm`` (PCU): ``y = x * rsqrt(ms)`` — the tail scaled by ``rsqrt`` of the scalar
   input (``ScaleSrc.SIN``), one scalar held per row; the row read again from the PMU
   that buffers the rows while their sums are computed.

Dataflow: AGCU 0 loads X (rows padded to whole vectors) and multicasts it to the ``ms``
PCU and the row PMU; the ``norm`` PCU's rows go to AGCU 1's store stream (valid lanes
only).
"""

from dataclasses import dataclass

from firmware import numerics as N
from firmware.compiler.agcu import TensorAccess
from firmware.compiler.counters import Counter
from firmware.compiler.pcu import SimdProgram, Stage, Tail, pack_simd, simd_reference
from firmware.compiler.place import VFlow, agcu, place_and_route, port
from firmware.compiler.program import kernel_program, stream_words

from .pipelines import agcu_programs
from .softmax import row_buffer_pmu, row_kernel_reference, row_words

__all__ = ["RMSNORM_UNITS", "RmsNorm", "rmsnorm_programs", "rmsnorm_bound", "compile_rmsnorm"]

#: The kernel's logical units.
RMSNORM_UNITS = {"ms": "pcu", "rows_pmu": "pmu", "norm": "pcu"}


def rmsnorm_programs(rows, n, eps):
    """The two PCU programs of an RMSNorm over ``rows`` rows of ``n`` values."""
    chain = (Counter(0, rows), Counter(0, n))
    return {
        "ms": SimdProgram(chain, (Stage("MUL", "VIN0", "VIN0"),
                                  Stage("MUL", "PREV", "IMM", imm=1.0 / n),
                                  Stage("ADD", "PREV", "IMM", imm=float(eps) / n)),
                          reduce="ADD", accumulate=("ADD", 1)),
        "norm": SimdProgram(chain, (), frozenset({"vin0", "sin0"}), scalar_hold=1,
                            tail=Tail(scale="SIN", row_fn="RSQRT")),
    }


def rmsnorm_bound(n, lanes):
    """Relative error bound of an element against float64 (u = 2^-24, a half ulp): each
    term ``x^2 / n + eps / n`` is within 4u (the square, 1/n as an FP32 immediate, the
    product, the add — positive terms, so each rounding is relative to the result); the
    row sum of positive terms adds a tree over the lanes and one add per vector, (log2
    lanes + n / lanes) roundings of u; rsqrt halves that relative error and adds
    TAIL_ULP_BOUND ulp (2 TAIL_ULP_BOUND u); the final product u."""
    k = (lanes.bit_length() - 1) + -(-n // lanes)
    return 2.0 ** -24 * ((4 + k) / 2 + 2 * N.TAIL_ULP_BOUND + 1) * (1 + 1e-6)


@dataclass(frozen=True)
class RmsNorm:
    program: object
    programs: dict
    rows: int
    n: int

    #: The AGCU streams of each operand (the keys of a launch's offsets).
    streams = {"x": ((0, "load"),), "y": ((1, "store"),)}

    def reference(self, params, x):
        """Bit-exact Y (rows x n) for X (rows x n FP32 words)."""
        return row_kernel_reference(params, x, self.rows, self.n,
                                    lambda v: _reference(params, self.programs, v))


def _reference(params, programs, vectors):
    ms = simd_reference(programs["ms"], params, vin0=vectors)["sdata"]
    return simd_reference(programs["norm"], params, vin0=vectors, sin0=ms)["data"]


def compile_rmsnorm(params, rows, n, *, x, y, eps=1e-6, partial=False):
    """RMSNorm of each of ``rows`` rows of ``n`` FP32 values: row ``i`` of ``x`` at word
    ``i * xs`` (``n`` rounded up to whole vectors, the padding ignored), of ``y`` at word
    ``i * n`` (only the ``n`` values written)."""
    L = params.pcu_lanes
    xs = row_words(params, "rmsnorm", rows, n)
    if not eps >= 0:
        raise ValueError(f"rmsnorm: eps {eps!r} must be >= 0")
    if params.agcus < 2:
        raise ValueError("the rmsnorm kernel needs two AGCUs")
    programs = rmsnorm_programs(rows, n, eps)
    pmu = row_buffer_pmu(params, rows, n)
    layout = place_and_route(params, "rmsnorm", RMSNORM_UNITS, vec=[
        VFlow("x", agcu(0), (port("ms"), port("rows_pmu"))),
        VFlow("x_again", port("rows_pmu"), (port("norm"),)),
        VFlow("y", port("norm"), (agcu(1),)),
    ], sca=[VFlow("ms", port("ms"), (port("norm"),), rate=1 / -(-n // L))])
    load, store = TensorAccess((rows, xs), (xs, 1)), TensorAccess((rows, n), (n, 1))
    agcus = agcu_programs(params, layout, {0: (load, x, rows * xs, "x")},
                          [(1, store, y, rows * n, "y")])
    parts = {"pcus": layout.configs("pcu", {u: pack_simd(programs[u], params)
                                            for u in ("ms", "norm")}),
             "pmus": layout.configs("pmu", {"rows_pmu": pmu}),
             "agcus": agcus, "vec": layout.vec, "sca": layout.sca, "layout": layout}

    def execute(mem, args):
        v = mem[stream_words(x, args, (0, "load"), load)].reshape(-1, L)
        out = _reference(params, programs, v)
        mem[stream_words(y, args, (1, "store"), store)] = out.reshape(rows, xs)[:, :n] \
            .reshape(-1)
    return RmsNorm(kernel_program(params, "rmsnorm", **parts, execute=execute,
                                  partial=partial), programs, rows, n)
