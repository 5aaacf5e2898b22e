"""The arguments of every cocotb test, typed, each knob with its one default.

A launcher (a pytest test, ``sim.run``, ``sim.bench``) builds the test's dataclass and
passes it to ``sim.cocotb_run.run_cocotb(args=...)``; the test reads it back with
``Cls.from_env()``. An unknown or mistyped argument is refused when the dataclass is
made, before any model is built; the CLI's options and their defaults come from the same
fields (:func:`options_of`).

:data:`TESTS` maps (module, testcase) to its dataclass.
"""

import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass, field

from firmware.coe import CoeShape
from firmware.decoder import LOOP_MODES, DecoderShape
from firmware.kernels.gemv import GemvShape
from hdl.pmu.config import MAX_BUFFERS

__all__ = ["TbArgs", "TESTS", "args_class", "tb_args", "options_of", "ENV_ARGS", "ENV_TIMELINE"]

#: The environment variable carrying the JSON of a test's arguments.
ENV_ARGS = "OPENRDU_TB_ARGS"
#: "RESOLUTION:PATH": the socket testbench records a timeline there (tb.lib.timeline).
ENV_TIMELINE = "OPENRDU_TIMELINE"


def arg(default, help_text="", *, lo=None, hi=None, choices=None):
    """A field with its default, the one-line help the CLI shows, and the values it
    accepts: ``lo`` .. ``hi`` (inclusive) or one of ``choices``."""
    meta = {"help": help_text, "lo": lo, "hi": hi, "choices": choices}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def _check_range(cls, f, value):
    """ValueError naming the test, the field and what it accepts, for a value outside."""
    m = f.metadata
    where = f"{cls.__name__}.{f.name}"
    if value is None or isinstance(value, (list, dict)):
        return
    if m.get("choices") is not None and value not in m["choices"]:
        raise ValueError(f"{where}: {value!r} is not one of {', '.join(map(str, m['choices']))}")
    if m.get("lo") is not None and value < m["lo"]:
        raise ValueError(f"{where}: {value!r} is below the smallest value, {m['lo']}")
    if m.get("hi") is not None and value > m["hi"]:
        raise ValueError(f"{where}: {value!r} is above the largest value, {m['hi']}")


def _check(cls, name, value, want):
    """``value`` of field ``name`` as type ``want`` (int, float, bool, str, list, dict or
    Optional of one), or TypeError naming the test and the field."""
    origin = typing.get_origin(want)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        want = next(t for t in typing.get_args(want) if t is not type(None))
        origin = typing.get_origin(want)
    base = origin or want
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if base is int and isinstance(value, bool):
        ok = False
    elif base is bool:
        ok = isinstance(value, bool) or value in (0, 1)
        value = bool(value) if ok else value
    else:
        ok = isinstance(value, base)
    if not ok:
        raise TypeError(f"{cls.__name__}.{name}: expected {getattr(base, '__name__', base)}, "
                        f"got {value!r}")
    return value


@dataclass(frozen=True)
class TbArgs:
    """What every test takes: the machine (``config`` preset/TOML, or ``params`` a dict
    of ``RduParams`` fields, which wins) and the random ``seed``."""
    MODULE: typing.ClassVar[str] = ""
    TESTCASE: typing.ClassVar[str | None] = None

    config: str = arg("small", "preset name or TOML file")
    params: dict | None = arg(None, "RduParams fields (overrides config)")
    seed: int = arg(1, "random seed", lo=0)

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = _check(type(self), f.name, getattr(self, f.name), hints[f.name])
            _check_range(type(self), f, value)
            object.__setattr__(self, f.name, value)

    def to_json(self):
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_env(cls):
        """The arguments the launcher gave (``run_cocotb(args=...)``)."""
        return cls(**json.loads(os.environ.get(ENV_ARGS, "{}")))

    def machine(self):
        """The ``RduParams`` the test runs on."""
        from hdl.params import RduParams, load_params
        return RduParams.from_mapping(self.params) if self.params else load_params(self.config)


@dataclass(frozen=True)
class Stalls(TbArgs):
    # Below 1: a driver that never sends (or a sink that never takes) would hang the run.
    idle: float = arg(0.0, "probability a driver withholds valid in a cycle", lo=0.0, hi=0.99)
    backpressure: float = arg(0.0, "probability a sink withholds ready", lo=0.0, hi=0.99)


# --- unit benches -----------------------------------------------------------------------

@dataclass(frozen=True)
class FpuArgs(Stalls):
    MODULE = "tb.test_fpu_stream"
    n: int = arg(100_000, "operand vectors", lo=1)
    lanes: int | None = arg(None, "lanes per vector (default: the config's pcu_lanes)", lo=1)


@dataclass(frozen=True)
class PcuSimdArgs(Stalls):
    MODULE = "tb.test_pcu_simd"
    case: str = arg("fma", "fma, dot, softmax, normalize or random",
                    choices=("fma", "dot", "softmax", "normalize", "random"))
    n: int = arg(4096, "iterations (one vector each)", lo=1)


@dataclass(frozen=True)
class PcuGemmArgs(Stalls):
    MODULE = "tb.test_pcu_systolic"
    m: int = arg(56, "rows of A and C", lo=1)
    n: int = arg(8, "columns of B and C", lo=1)
    k: int = arg(256, "the reduction length", lo=1)
    row_scale: bool = arg(False, "divide each row of C by a scalar from sin0")


@dataclass(frozen=True)
class PmuArgs(Stalls):
    MODULE = "tb.test_pmu_stream"
    case: str = arg("transpose", "transpose, linear or random",
                    choices=("transpose", "linear", "random"))
    tiles: int = arg(8, "tiles written and read", lo=1)
    nbuf: int = arg(2, "buffers the tiles rotate through", lo=1, hi=MAX_BUFFERS)
    bank_bits: str = arg("chosen", "chosen or default", choices=("chosen", "default"))


@dataclass(frozen=True)
class RdnTrafficArgs(Stalls):
    MODULE, TESTCASE = "tb.test_rdn", "rdn_traffic"
    flows: int = arg(12, "random flows per fabric", lo=1)
    packets: int = arg(20, "packets per flow", lo=1)
    throttle: list = arg([], "[fabric, source index, rate, burst] of throttled ports")


@dataclass(frozen=True)
class RdnControlArgs(TbArgs):
    MODULE, TESTCASE = "tb.test_rdn", "rdn_control"
    flows: int = arg(4, "random control flows", lo=1)
    cycles: int = arg(400, "cycles of random token pulses", lo=1)


@dataclass(frozen=True)
class RdnScenarioArgs(TbArgs):
    MODULE, TESTCASE = "tb.test_rdn", "rdn_scenario"
    flows: list = arg([], "flow specs")
    throttle: list = arg([], "[row, col, port, rate, burst] of throttled ports")
    throttle_to_rates: int | None = arg(None, "burst: every injection port throttled to "
                                             "the sum of its flows' planned rates")


# --- memory system ----------------------------------------------------------------------

@dataclass(frozen=True)
class DmaCopyArgs(TbArgs):
    MODULE, TESTCASE = "tb.test_memory", "dma_copy"
    count: int = arg(1000, "words copied", lo=1)


@dataclass(frozen=True)
class DmaErrorArgs(TbArgs):
    MODULE, TESTCASE = "tb.test_memory", "dma_error"


@dataclass(frozen=True)
class HostLinkArgs(Stalls):
    MODULE, TESTCASE = "tb.test_memory", "host_link"
    requests: int = arg(100, "random host reads and writes", lo=1)


@dataclass(frozen=True)
class CopyBandwidthArgs(TbArgs):
    MODULE, TESTCASE = "tb.test_memory", "copy_bandwidth"
    count: int = arg(4096, "words copied", lo=1)
    via: str = arg("dma", "dma (DDR -> HBM) or host (host -> HBM)", choices=("dma", "host"))


@dataclass(frozen=True)
class AgcuStreamArgs(Stalls):
    MODULE, TESTCASE = "tb.test_memory", "agcu_stream"
    cases: list = arg(["load"], "AGCU cases run one after another")


@dataclass(frozen=True)
class AgcuFaultArgs(TbArgs):
    MODULE, TESTCASE = "tb.test_memory", "agcu_fault"


@dataclass(frozen=True)
class AgcuBandwidthArgs(TbArgs):
    MODULE, TESTCASE = "tb.test_memory", "agcu_bandwidth"
    words: int = arg(4096, "words per AGCU", lo=1)
    write: bool = arg(False, "stores instead of loads")


# --- the socket -------------------------------------------------------------------------

@dataclass(frozen=True)
class ScaleBiasArgs(TbArgs):
    MODULE, TESTCASE = "tb.test_socket", "scale_bias"
    n: int = arg(256, "words per iteration", lo=1)
    iterations: int = arg(1, "slices stepped by the AGCU strides", lo=1)
    ddr: bool = arg(False, "y in DDR instead of HBM")


@dataclass(frozen=True)
class LoopingArgs(TbArgs):
    MODULE, TESTCASE = "tb.test_socket", "looping"
    n: int = arg(256, "words per iteration", lo=1)
    iterations: int = arg(4, "iterations (looped, then launched one by one)", lo=1)


@dataclass(frozen=True)
class GemmArgs(TbArgs):
    MODULE, TESTCASE = "tb.test_socket", "gemm"
    m: int = arg(56, "rows of A and C", lo=1)
    n: int = arg(24, "columns of B and C", lo=1)
    k: int = arg(64, "the reduction length", lo=1)
    bias: bool = arg(False, "fused bias epilogue, one per output column (0/1)")
    relu: bool = arg(False, "fused ReLU epilogue (0/1)")
    bf16: bool = arg(False, "fused BF16 convert epilogue (0/1)")
    pcus: int = arg(0, "PCUs sharing the column tiles (0: as many as the array and the "
                          "shape allow)", lo=0)
    a_rows: bool = arg(False, "A stored row-major, transposed on chip by a PMU")
    c_tiles: bool = arg(False, "C stored tile by tile (long store bursts) instead of "
                               "row-major (0/1)")


@dataclass(frozen=True)
class SoftmaxArgs(TbArgs):
    MODULE, TESTCASE = "tb.test_socket", "softmax"
    rows: int = arg(64, "rows", lo=1)
    n: int = arg(100, "values per row", lo=1)
    spread: float = arg(3.0, "standard deviation of the inputs", lo=0.0)


@dataclass(frozen=True)
class AttentionArgs(TbArgs):
    MODULE, TESTCASE = "tb.test_socket", "attention"
    seq: int = arg(128, "sequence length (queries = keys)", lo=1)
    head_dim: int = arg(32, "head dimension d", lo=1)
    unfused: bool = arg(True, "also run the unfused kernels and compare (0/1)")
    spread: float = arg(1.0, "standard deviation of Q, K and V", lo=0.0)


@dataclass(frozen=True)
class AttentionHeadsArgs(TbArgs):
    MODULE, TESTCASE = "tb.test_socket", "attention_heads"
    seq: int = arg(64, "sequence length", lo=1)
    head_dim: int = arg(16, "head dimension d", lo=1)
    heads: int = arg(2, "heads, looped and launched one by one", lo=1)


@dataclass(frozen=True)
class LayerLoopArgs(TbArgs):
    MODULE, TESTCASE = "tb.test_socket", "layer_loop"
    m: int = arg(1, "rows of A: the activations' rows (with weights_a: outputs per layer)",
                 lo=1)
    n: int = arg(8, "columns of B: outputs per layer (with weights_a: tokens)", lo=1)
    k: int = arg(64, "inputs per layer", lo=1)
    layers: int = arg(8, "layers (one weight set each)", lo=1)
    weights_a: bool = arg(False, "decode form: the weights are A (W^T, m x k), streamed, "
                                 "and the activations B (k x n) (0/1)")


@dataclass(frozen=True)
class GemvLoopArgs(TbArgs):
    MODULE, TESTCASE = "tb.test_socket", "gemv_loop"
    n: int = arg(64, "outputs per layer", lo=1)
    k: int = arg(64, "inputs per layer", lo=1)
    layers: int = arg(4, "layers (weights, input and output each their own)", lo=1)
    shares: int = arg(0, "PCUs sharing the rows, one per AGCU, or two with packed (0: as "
                         "many as there are AGCUs for)", lo=0)
    packed: bool = arg(False, "BF16 weights stored two per word, each word feeding two PCUs "
                              "(0/1)")
    chain: bool = arg(False, "each layer's input is the layer before's output (n = k), "
                             "through HBM: the looped launch is chained (0/1)")
    ddr: bool = arg(False, "the weights start in DDR: the looped run's list begins with a "
                           "copy record, the sequencer's DMA copy into HBM (0/1)")
    partial: bool = arg(False, "a partial bitstream: only the kernel's own units and "
                               "switches (0/1)")

    def __post_init__(self):
        super().__post_init__()
        if self.chain and self.n != self.k:
            raise ValueError(f"GemvLoopArgs.chain: each layer's output is the next one's "
                             f"input, so n must equal k (got n = {self.n}, k = {self.k})")


@dataclass(frozen=True)
class CoeArgs(TbArgs):
    MODULE, TESTCASE = "tb.test_socket", "coe"
    experts: int = arg(4, "experts kept in DDR", lo=1)
    slots: int = arg(2, "expert slots in HBM (an LRU cache of experts)", lo=1)
    requests: int = arg(8, "requests served, each by one expert", lo=1)
    d: int = arg(64, "an expert's layer width (d x d weights a layer)", lo=1)
    layers: int = arg(2, "layers of an expert (one chained looped launch)", lo=1)
    packed: bool = arg(True, "BF16 weights two per word (0/1)")
    decoder: bool = arg(False, "each expert a decoder (LAYERS layers of width D, MLP HIDDEN, "
                               "TOKENS tokens generated a request) instead of a GEMV chain "
                               "(0/1)")
    hidden: int = arg(64, "a decoder expert's MLP width", lo=1)
    tokens: int = arg(2, "tokens a decoder expert generates a request", lo=1)
    order: str = arg("", "the experts the requests' inputs are meant for (each input near "
                         "that expert's router row; the router on the device chooses), comma "
                         "separated (empty: drawn from the seed, expert e with weight "
                         "1 / (e + 1))")

    def __post_init__(self):
        super().__post_init__()
        CoeShape(self.experts, self.slots, self.d, self.layers, self.packed)
        GemvShape.of(self.machine(), self.d, self.d, packed=self.packed)     # fits a PMU
        if self.decoder:
            DecoderShape(self.d, self.hidden, self.layers, self.tokens, 8,
                         self.packed).check(self.machine())
        order = self.expert_order()
        if order is not None and (len(order) != self.requests or
                                  not all(0 <= e < self.experts for e in order)):
            raise ValueError(f"CoeArgs.order: {self.order!r} must name {self.requests} "
                             f"experts (the requests), each 0 .. {self.experts - 1}")

    def expert_order(self):
        """The experts of ``order`` as ints (None: drawn from the seed)."""
        if not self.order.strip():
            return None
        try:
            return [int(e) for e in self.order.split(",")]
        except ValueError:
            raise ValueError(f"CoeArgs.order: {self.order!r} is not a comma-separated list "
                             f"of expert numbers") from None


@dataclass(frozen=True)
class DecoderArgs(TbArgs):
    MODULE, TESTCASE = "tb.test_socket", "decoder"
    d_model: int = arg(32, "model width (one attention head of d_model)", lo=1)
    hidden: int = arg(64, "MLP hidden width", lo=1)
    layers: int = arg(2, "decoder layers", lo=1)
    tokens: int = arg(4, "tokens generated in a row (the KV cache length)", lo=1)
    batch: int = arg(1, "sequences decoded together (kernel looping over the batch; "
                        "sequence b starts from token (first + b) mod vocab)", lo=1, hi=64)
    vocab: int = arg(8, "vocabulary (at most the lanes: the argmax is one vector)", lo=2)
    first: int = arg(0, "the first input token", lo=0)
    packed: bool = arg(True, "BF16 weights two per word (0/1)")
    act: str = arg("silu", "the MLP's activation: silu (three PCUs) or relu (one)",
                   choices=("silu", "relu"))
    partial: bool = arg(True, "partial bitstreams: each kernel's writes only its own units "
                              "and switches (0: whole bitstreams) (0/1)")
    looping: bool = arg(True, "also run the positions as a launch per sequence (program "
                              "resident, then reloaded): the same bits, and the speedup of "
                              "looping over the batch; batch > 1 only) (0/1)")

    def shape(self):
        return DecoderShape(self.d_model, self.hidden, self.layers, self.tokens, self.vocab,
                            self.packed, self.batch, self.act)

    def __post_init__(self):
        super().__post_init__()
        looped = self.looping and self.batch > 1
        self.shape().check(self.machine(), LOOP_MODES if looped else ("looped",))
        if self.first >= self.vocab:
            raise ValueError(f"DecoderArgs.first: token {self.first}; 0 .. {self.vocab - 1}")


@dataclass(frozen=True)
class GraphArgs(TbArgs):
    MODULE, TESTCASE = "tb.test_socket", "graph"
    m: int = arg(8, "rows of x", lo=1)
    n: int = arg(8, "columns of w (unused by the attention graph: 0)", lo=0)
    k: int = arg(32, "the reduction length", lo=1)
    attention: bool = arg(False, "the attention graph instead of the GEMM one")
    proj: int = arg(0, "the attention graph's head followed by an output projection of "
                       "this many columns instead of a softmax and an elementwise op "
                       "(0: none)", lo=0)


@dataclass(frozen=True)
class MlpArgs(TbArgs):
    MODULE, TESTCASE = "tb.test_socket", "mlp"
    m: int = arg(112, "rows of X", lo=1)
    k: int = arg(64, "inputs (columns of X)", lo=1)
    hidden: int = arg(64, "hidden units (columns of W1)", lo=1)
    n: int = arg(64, "outputs (columns of W2)", lo=1)
    bias: bool = arg(True, "the first layer adds a bias (0/1)")


@dataclass(frozen=True)
class FaultArgs(TbArgs):
    MODULE, TESTCASE = "tb.test_socket", "fault"
    n: int = arg(64, "words of the faulting access", lo=1)


@dataclass(frozen=True)
class DmaRefusedArgs(TbArgs):
    MODULE, TESTCASE = "tb.test_socket", "dma_refused"
    n: int = arg(40, "words of the refused copy", lo=1)


@dataclass(frozen=True)
class FaultsArgs(TbArgs):
    MODULE, TESTCASE = "tb.test_socket", "faults"
    n: int = arg(40, "words of each faulting kernel's slice", lo=1)


@dataclass(frozen=True)
class StressArgs(TbArgs):
    MODULE, TESTCASE = "tb.test_socket", "stress"
    cases: str = arg("gemm,softmax,attention,mlp,loop,decode", "the kernels, comma separated "
                     "(gemm, softmax, attention, mlp, loop, decode), each at a shape drawn from the seed")
    runs: int = arg(3, "runs of each kernel (new inputs, start phase and stalls each)", lo=1)
    phase: int = arg(4096, "a run starts 0 .. phase - 1 cycles late (the memory latency "
                     "generators at another point)", lo=1)
    throttle: float = arg(0.5, "probability that a run puts a random token bucket on each "
                          "port the kernel injects from", lo=0.0, hi=1.0)

    def __post_init__(self):
        super().__post_init__()
        from tb.lib.stress import CASES
        names = [c.strip() for c in self.cases.split(",")]
        bad = [c for c in names if c not in CASES]
        if bad or len(set(names)) != len(names):
            raise ValueError(f"StressArgs.cases: {self.cases!r}; distinct names of "
                             f"{', '.join(CASES)}")


@dataclass(frozen=True)
class TimeoutArgs(TbArgs):
    MODULE, TESTCASE = "tb.test_socket", "timeout"
    n: int = arg(64, "words the writer waits for", lo=1)


TESTS = {(c.MODULE, c.TESTCASE): c for c in (
    FpuArgs, PcuSimdArgs, PcuGemmArgs, PmuArgs, RdnTrafficArgs, RdnControlArgs,
    RdnScenarioArgs, DmaCopyArgs, DmaErrorArgs, HostLinkArgs, CopyBandwidthArgs,
    AgcuStreamArgs, AgcuFaultArgs, AgcuBandwidthArgs, ScaleBiasArgs, LoopingArgs, GemmArgs,
    FaultsArgs, StressArgs,
    SoftmaxArgs, AttentionArgs, AttentionHeadsArgs, LayerLoopArgs, GemvLoopArgs, CoeArgs, DecoderArgs, GraphArgs,
    MlpArgs,
    FaultArgs, DmaRefusedArgs, TimeoutArgs)}


def args_class(module, testcase=None):
    """The dataclass of test ``testcase`` of cocotb module ``module``."""
    try:
        return TESTS[module, testcase]
    except KeyError:
        known = ", ".join(f"{m}:{t}" if t else m for m, t in TESTS)
        raise KeyError(f"no arguments defined for {module}:{testcase}; known: {known}") from None


def tb_args(module, testcase=None, **values):
    """``args_class(module, testcase)(**values)``; TypeError names an unknown argument."""
    cls = args_class(module, testcase)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise TypeError(f"{cls.__name__} ({module}:{testcase}): unknown arguments {unknown}; "
                        f"known: {sorted(names)}")
    return cls(**values)


def options_of(cls, names):
    """[(name, type, default, help)] of fields ``names`` of ``cls``, for a CLI."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = []
    for n in names:
        f, t = fields[n], hints[n]
        default = int(f.default) if t is bool else f.default     # CLI flags take 0/1
        out.append((n, int if t is bool else t, default, f.metadata.get("help", "")))
    return out
