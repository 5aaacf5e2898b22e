"""Writes over the host link (the socket's ``host`` port, the slow path into device
memory), timed in cycles: the baseline of an expert switch."""

import numpy as np

from hdl.memory.config import MAX_BURST, MemoryMap, req_layout, wdata_layout

from .payload import pack

__all__ = ["host_write"]


async def host_write(tb, params, addr, words):
    """Write ``words`` (whole ``MAX_BURST``-beat blocks) at global word address ``addr``
    (block aligned) from the host over the link, as bursts of ``MAX_BURST`` beats; returns
    the cycles from the first request to the last write's acknowledgement."""
    mm = MemoryMap(params)
    W = mm.words
    words = np.asarray(words, np.uint32).reshape(-1)
    block = MAX_BURST * W
    if addr % block or len(words) % block or not len(words):
        raise ValueError(f"host write of {len(words)} words at {addr:#x}: whole, aligned "
                         f"blocks of {block} words")
    beats, nreq = len(words) // W, len(words) // block
    tb.load("host__req", pack(req_layout(mm.addr_bits), {
        "addr": [addr // W + k * MAX_BURST for k in range(nreq)], "len": [MAX_BURST - 1] * nreq,
        "write": [1] * nreq, "tag": [k % 64 for k in range(nreq)]}))
    tb.load("host__wdata", pack(wdata_layout(W), {"data": words.reshape(beats, W),
                                                  "mask": [(1 << W) - 1] * beats}))
    tb.expect("host__resp", nreq)
    cycles, _ = await tb.run(timeout_cycles=64 * len(words) + 100 * params.host_latency)
    return cycles
