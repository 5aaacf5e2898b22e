"""What the kernels built of placed pipelines share: the AGCU configs of a placed kernel,
tiles shared out over pipelines in blocks, and the estimate of a two-stage pipeline's
cycles (a kernel's plan ranks its candidates by it before placing them)."""

from firmware.compiler.agcu import Segment, pack_agcu
from firmware.compiler.place import agcu

__all__ = ["blocks", "agcu_programs", "two_stage_cycles"]


def blocks(total, parts):
    """(first, count) of each of ``parts`` contiguous blocks of ``total`` tiles, the first
    ``total % parts`` one longer (query or row tiles shared out over pipelines)."""
    per, extra = divmod(total, parts)
    out, first = [], 0
    for i in range(parts):
        n = per + (i < extra)
        out.append((first, n))
        first += n
    return out


def agcu_programs(params, layout, loads, stores, prologues=None):
    """The AGCU configs ({AGCU: config}) of a placed kernel: ``loads`` {AGCU: (access,
    buffer, words, flow)} (the load stream with the flow's header); ``prologues`` likewise
    for ``load2``, read before the load in every iteration; ``stores`` a list of
    (AGCU, access, buffer, words, flow), in each AGCU's stream order — its first result
    flow through ``store``, the next ones through ``store2`` .. by the flow id they arrive
    with. One segment per buffer, the whole buffer (kernel looping steps through it); the
    ``words`` the tensor needs must fit in it."""
    vec, out, prologues = layout.vec, {}, prologues or {}
    for _, buf, words, _ in [*loads.values(), *prologues.values(), *(st[1:] for st in stores)]:
        if words > buf.words:
            raise ValueError(f"buffer {buf.name!r} of {buf.words} words is too small: the "
                             f"kernel needs {words}")
    for ag in sorted(set(loads) | {st[0] for st in stores}):
        segs, streams = [], {}

        def segment(buf):
            seg = Segment(buf.addr, buf.words)
            if seg not in segs:
                segs.append(seg)
            return segs.index(seg)
        for name, table in (("load", loads), ("load2", prologues)):
            if ag in table:
                acc, buf, _, flow = table[ag]
                streams[name] = (acc, segment(buf))
                streams["hdr" if name == "load" else "hdr2"] = vec.headers[flow]
        placed = [(acc, segment(buf), flow)
                  for _, acc, buf, _, flow in (st for st in stores if st[0] == ag)]
        edge = layout.endpoint(params, agcu(ag))
        by_flow = [(acc, seg, vec.arrivals[flow][edge]) for acc, seg, flow in placed[1:]]
        out[ag] = pack_agcu(params, store=placed[0][:2] if placed else None,
                            by_flow=by_flow, segments=segs, **streams)[0]
    return out


def two_stage_cycles(tiles, first, second):
    """Cycles a pipeline of two arrays takes at least for ``tiles`` tiles, ``first`` and
    ``second`` cycles per tile each: every tile through the slower one, plus one tile of
    the other (the pipeline's fill or drain)."""
    return tiles * max(first, second) + min(first, second)
