"""``python -m sim explain KERNEL``: what the compiler made of a kernel — the partition
into kernels (for a graph), each kernel's placement on the grid and its flows."""

from .run import KERNELS, _options, mlp_partitions

__all__ = ["explain"]


def explain(name, params, options=None):
    """The report as lines of text; ValueError for a kernel the socket does not run."""
    k = KERNELS.get(name)
    if k is None or k.programs is None:
        socket = sorted(n for n, x in KERNELS.items() if x.programs is not None)
        raise ValueError(f"explain: {name!r} is not a socket kernel; socket kernels: "
                         f"{', '.join(socket)}")
    opts = _options(k, options)
    lines = [f"{name} {opts} on {params.name} ({params.rows} x {params.cols} grid, "
             f"{params.agcus} AGCUs)"]
    if name == "mlp":
        for mode, cg in mlp_partitions(params, opts).items():
            ops = [op for op, _ in cg.kernels]
            lines.append(f"partition ({mode}): {len(cg.graph.ops)} graph ops -> {len(ops)} "
                         f"kernel(s): " + "; ".join(f"{op.name} ({op.kind})" for op in ops))
    for prog in k.programs(params, opts):
        lines.append("")
        lay = prog.layout
        lines.append(f"kernel {prog.name}: {prog.beats} config beats"
                     + ("" if lay is None else f", {len(lay.at)} units placed"))
        if lay is not None:
            lines += ["  " + row for row in lay.grid(params)]
            lines += ["  " + f for f in lay.flow_lines(params)]
    return lines
