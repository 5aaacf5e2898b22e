"""Graphs of common models, for the CLI, the benches and the tests."""

from .ir import Graph

__all__ = ["mlp"]


def mlp(m, k, hidden, n, *, bias=True, relu=True):
    """``y = relu?(x @ w1 + b1) @ w2``: inputs ``x`` (m, k), ``w1`` (k, hidden), ``b1``
    (hidden,) with ``bias``, ``w2`` (hidden, n); output ``y``."""
    g = Graph("mlp")
    b1 = g.input("b1", (hidden,)) if bias else None
    h = g.matmul(g.input("x", (m, k)), g.input("w1", (k, hidden)), bias=b1, relu=relu,
                 out="h")
    g.matmul(h, g.input("w2", (hidden, n)), out="y")
    return g
