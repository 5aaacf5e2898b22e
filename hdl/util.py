"""Small wiring helpers shared by the HDL."""

from amaranth.lib.wiring import Out

__all__ = ["forward"]


def forward(m, outer, inner):
    """Drive the ports of interface ``outer`` from ``inner`` (same signature) and back:
    a component passing a sub-component's ports through as its own."""
    mine = outer.signature.flatten(outer)
    theirs = inner.signature.flatten(inner)
    for (path, member, a), (_, _, b) in zip(mine, theirs):
        if member.flow == Out:
            m.d.comb += a.eq(b)
        else:
            m.d.comb += b.eq(a)
