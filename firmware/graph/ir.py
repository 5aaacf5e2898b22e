"""A small dataflow IR: tensors in HBM or DDR and the ops between them.

Build a graph with :class:`Graph` (``input``, ``matmul``, ``scale_bias``, ``softmax``,
``attention``); compile it
with :func:`firmware.graph.lower.compile_graph` and run it on either device backend.
Every mistake is a :class:`GraphError` naming the tensor or op.
"""

from dataclasses import dataclass, field

__all__ = ["GraphError", "Tensor", "Op", "Graph"]

REGIONS = ("hbm", "ddr")


class GraphError(ValueError):
    """A malformed graph; the message names the op or tensor."""


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple
    region: str = "hbm"
    producer: str | None = None          # op name; None for a graph input


@dataclass(frozen=True)
class Op:
    name: str
    kind: str                            # "matmul" | "scale_bias" | "softmax" | "attention"
                                         # ("mlp": two matmuls the compiler fused)
    inputs: tuple                        # tensor names
    output: str
    attrs: dict = field(default_factory=dict, compare=False)


class Graph:
    def __init__(self, name="graph"):
        self.name = name
        self.tensors: dict[str, Tensor] = {}
        self.ops: list[Op] = []          # in program order (each op after its inputs)

    def _new(self, name, shape, region, producer):
        if not isinstance(name, str) or not name:
            raise GraphError(f"tensor name {name!r}: a non-empty string")
        if name in self.tensors:
            raise GraphError(f"tensor {name!r} is defined twice")
        if region not in REGIONS:
            raise GraphError(f"tensor {name!r}: region {region!r} is not one of {REGIONS}")
        shape = tuple(shape)
        if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1
                            for d in shape):
            raise GraphError(f"tensor {name!r}: shape {shape} must be positive integers")
        t = self.tensors[name] = Tensor(name, shape, region, producer)
        return t

    def _get(self, t, op):
        name = t.name if isinstance(t, Tensor) else t
        if name not in self.tensors or (isinstance(t, Tensor) and self.tensors[name] != t):
            raise GraphError(f"{op}: tensor {name!r} is not in graph {self.name!r}")
        return self.tensors[name]

    def _op_name(self, name, kind):
        name = name or f"{kind}{len(self.ops)}"
        if any(o.name == name for o in self.ops):
            raise GraphError(f"op {name!r} is defined twice")
        return name

    def input(self, name, shape, region="hbm"):
        """A tensor the host writes before the run."""
        return self._new(name, shape, region, None)

    def matmul(self, a, b, *, bias=None, name=None, out=None, relu=False, bf16=False,
               region="hbm"):
        """``out = a @ b (+ bias)`` (FP32 accumulation of BF16 values; ``bias``: one value
        per output column, added after the sum), epilogue ReLU / BF16."""
        op = self._op_name(name, "matmul")
        a, b = self._get(a, op), self._get(b, op)
        if len(a.shape) != 2 or len(b.shape) != 2:
            raise GraphError(f"{op}: matmul takes 2-D tensors, got {a.name} {a.shape} and "
                             f"{b.name} {b.shape}")
        if a.shape[1] != b.shape[0]:
            raise GraphError(f"{op}: {a.name} {a.shape} @ {b.name} {b.shape}: inner "
                             f"dimensions differ")
        inputs = (a.name, b.name)
        if bias is not None:
            bias = self._get(bias, op)
            if bias.shape != (b.shape[1],):
                raise GraphError(f"{op}: bias {bias.name} {bias.shape} must have one value "
                                 f"per output column, ({b.shape[1]},)")
            inputs += (bias.name,)
        t = self._new(out or f"{op}.out", (a.shape[0], b.shape[1]), region, op)
        self.ops.append(Op(op, "matmul", inputs, t.name,
                           {"relu": bool(relu), "bf16": bool(bf16)}))
        return t

    def scale_bias(self, x, *, scale=1.0, bias=0.0, relu=False, name=None, out=None,
                   region="hbm"):
        """``out = relu?(x * scale + bias)`` elementwise (two FP32 roundings)."""
        op = self._op_name(name, "scale_bias")
        x = self._get(x, op)
        t = self._new(out or f"{op}.out", x.shape, region, op)
        self.ops.append(Op(op, "scale_bias", (x.name,), t.name,
                           {"scale": float(scale), "bias": float(bias), "relu": bool(relu)}))
        return t

    def softmax(self, x, *, scale=1.0, name=None, out=None, region="hbm"):
        """``out[i, :] = softmax(scale * x[i, :])`` over the last axis of a 2-D tensor."""
        op = self._op_name(name, "softmax")
        x = self._get(x, op)
        if len(x.shape) != 2:
            raise GraphError(f"{op}: softmax takes a 2-D tensor, got {x.name} {x.shape}")
        if not (isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale > 0):
            raise GraphError(f"{op}: scale {scale!r} must be a positive number")
        t = self._new(out or f"{op}.out", x.shape, region, op)
        self.ops.append(Op(op, "softmax", (x.name,), t.name, {"scale": float(scale)}))
        return t

    def attention(self, q, k, v, *, name=None, out=None, region="hbm"):
        """One head: ``out = softmax(q k^T / sqrt(d)) v`` for ``q``, ``k``, ``v`` of shape
        (seq, d), fused into one kernel."""
        op = self._op_name(name, "attention")
        q, k, v = (self._get(t, op) for t in (q, k, v))
        if len(q.shape) != 2 or not q.shape == k.shape == v.shape:
            raise GraphError(f"{op}: q, k, v must be 2-D and of one shape (seq, d), got "
                             f"{q.shape}, {k.shape}, {v.shape}")
        t = self._new(out or f"{op}.out", q.shape, region, op)
        self.ops.append(Op(op, "attention", (q.name, k.name, v.name), t.name))
        return t

    @property
    def inputs(self):
        return [t for t in self.tensors.values() if t.producer is None]

    @property
    def outputs(self):
        used = {i for o in self.ops for i in o.inputs}
        return [t for t in self.tensors.values() if t.producer and t.name not in used]
