"""The dataflow IR and its lowering, the top of the firmware stack: ``ir`` (tensors in HBM
or DDR, ops), ``lower`` (buffers in each tensor's layout, a kernel per op, one launch
list). Below it: kernels, the compiler, the runtime, numerics."""

from .ir import REGIONS, Graph, GraphError, Op, Tensor
from .lower import CompiledGraph, Layout, compile_graph
from .models import mlp

__all__ = ["REGIONS", "Graph", "GraphError", "Op", "Tensor", "CompiledGraph", "Layout",
           "compile_graph", "mlp"]
