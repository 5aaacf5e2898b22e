"""AGCU access programs: a strided tensor (up to 4-D) in a memory segment -> the AGCU's
counter chain, run length and segment table, packed with ``hdl.agcu.config``. Errors
name the problem."""

from dataclasses import dataclass

import numpy as np

from hdl.agcu.config import RUN_BITS, agcu_config_layout
from hdl.pcu.config import MAX_COUNTERS

from .counters import Counter, check_chain, chain_steps, pack_chain

__all__ = ["AgcuProgramError", "Segment", "TensorAccess", "AgcuProgram", "lower_access",
           "access_words", "pack_agcu", "run_bursts"]

MAX_DIMS = 4


class AgcuProgramError(ValueError):
    """An access the AGCU cannot make; the message says which field and why."""


@dataclass(frozen=True)
class Segment:
    """``size`` words of memory from global word address ``base``."""
    base: int
    size: int


@dataclass(frozen=True)
class TensorAccess:
    """Element ``(i0, .., i{d-1})`` (outermost first) is the word at segment-relative
    offset ``offset + sum(i_k * strides[k])``, visited in row-major order."""
    shape: tuple
    strides: tuple
    offset: int = 0


@dataclass(frozen=True)
class AgcuProgram:
    counters: tuple          # firmware.compiler.counters.Counter, outermost first
    run: int                 # contiguous words per chain step

    @property
    def words(self):
        n = self.run
        for c in self.counters:
            n *= len(range(c.min, c.max, c.stride))
        return n


def _check_access(a):
    if not isinstance(a.shape, tuple) or not isinstance(a.strides, tuple):
        raise AgcuProgramError("shape and strides must be tuples")
    if not 1 <= len(a.shape) <= MAX_DIMS:
        raise AgcuProgramError(f"shape {a.shape}: 1 to {MAX_DIMS} dimensions")
    if len(a.strides) != len(a.shape):
        raise AgcuProgramError(f"strides {a.strides} do not match shape {a.shape}")
    for k, (n, s) in enumerate(zip(a.shape, a.strides)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise AgcuProgramError(f"shape[{k}] = {n!r}: must be a positive integer")
        if isinstance(s, bool) or not isinstance(s, int) or s < 1:
            raise AgcuProgramError(f"strides[{k}] = {s!r}: must be a positive number of "
                                   f"words (the AGCU counters step forwards)")
    if isinstance(a.offset, bool) or not isinstance(a.offset, int) or a.offset < 0:
        raise AgcuProgramError(f"offset {a.offset!r}: must be a non-negative word offset")


def lower_access(access: TensorAccess) -> AgcuProgram:
    """Runs and counters: the innermost dimension is a run if its stride is 1, and outer
    dimensions contiguous with the run are folded into it; every other dimension of
    size > 1 is a counter (the offset rides on the outermost)."""
    _check_access(access)
    dims = list(zip(access.shape, access.strides))
    run = 1
    if dims[-1][1] == 1:
        run = dims.pop()[0]
        while dims and dims[-1][1] == run:
            run *= dims.pop()[0]
    dims = [(n, s) for n, s in dims if n > 1]
    if len(dims) > MAX_COUNTERS:
        raise AgcuProgramError(f"access {access.shape} / {access.strides} needs {len(dims)} "
                               f"counters after folding contiguous dimensions; the AGCU "
                               f"chain has {MAX_COUNTERS}")
    if run >= 1 << RUN_BITS:
        raise AgcuProgramError(f"a contiguous run of {run} words exceeds the AGCU's "
                               f"{(1 << RUN_BITS) - 1}")
    counters = [Counter(0, n * s, s) for n, s in dims] or [Counter(0, 1, 1)]
    c0 = counters[0]
    counters[0] = Counter(access.offset, access.offset + c0.max, c0.stride)
    check_chain(counters, 1, AgcuProgramError, "AGCU ")
    return AgcuProgram(tuple(counters), run)


def access_words(access: TensorAccess) -> np.ndarray:
    """Reference: the segment-relative word offset of every element, in visit order."""
    _check_access(access)
    idx = np.zeros(1, dtype=np.int64) + access.offset
    for n, s in zip(access.shape, access.strides):
        idx = (idx[:, None] + np.arange(n, dtype=np.int64)[None, :] * s).reshape(-1)
    return idx


def _run_starts(prog: AgcuProgram):
    return [sum(st["value"]) for st in chain_steps(list(prog.counters), 1)]


def pack_agcu(params, access: TensorAccess, *, write: bool, segments, segment=0, hdr=None,
              check_bounds=True):
    """The AGCU config (``agcu_config_layout``) as an integer, and the lowered program.

    ``segments`` is the segment table (:class:`Segment` list, at most ``agcu_segments``),
    ``segment`` the entry the access uses. With ``check_bounds`` an access reaching
    outside its segment is refused here; without, the AGCU's own check faults at run
    time (tests of the fault path)."""
    from hdl.memory.config import MemoryMap
    prog = lower_access(access)
    mm = MemoryMap(params)
    total = mm.beats * mm.words
    if not 1 <= len(segments) <= params.agcu_segments:
        raise AgcuProgramError(f"segment table of {len(segments)} entries; the AGCU has "
                               f"{params.agcu_segments}")
    for k, sg in enumerate(segments):
        if not (0 <= sg.base and 0 < sg.size and sg.base + sg.size <= total):
            raise AgcuProgramError(f"segment {k}: words {sg.base:#x} + {sg.size:#x} are not "
                                   f"inside memory ({total:#x} words)")
    if not 0 <= segment < len(segments):
        raise AgcuProgramError(f"segment {segment}: the table has {len(segments)} entries")
    if check_bounds:
        hi = max(_run_starts(prog)) + prog.run
        if hi > segments[segment].size:
            raise AgcuProgramError(f"access {access.shape} / {access.strides} + "
                                   f"{access.offset} reaches word {hi - 1} of segment "
                                   f"{segment}, which has {segments[segment].size} words")
    layout = agcu_config_layout(params)
    seg_list = [{"base": s.base, "size": s.size} for s in segments]
    seg_list += [{"base": 0, "size": 0}] * (params.agcu_segments - len(seg_list))
    chain = pack_chain(list(prog.counters), params, AgcuProgramError, "AGCU ", lanes=1)
    fields = {"run": prog.run, "write": int(write), "segment": segment,
              "segments": seg_list, "hdr": hdr or {}}
    value = layout.const(fields).as_value().value
    value |= chain << layout["chain"].offset
    return value, prog


def run_bursts(words, phys, run):
    """Reference of the AGCU's splitter: the bursts ``(beat, len, lo, hi)`` of ``run``
    words from global word address ``phys`` with ``words`` words per beat — cut at
    MAX_BURST-beat block boundaries and at the end of the run."""
    from hdl.memory.config import MAX_BURST
    out = []
    while run:
        beat, lo = divmod(phys, words)
        room = (MAX_BURST - beat % MAX_BURST) * words - lo
        take = min(run, room)
        nbeats = -(-(lo + take) // words)
        out.append((beat, nbeats - 1, lo, lo + take - (nbeats - 1) * words))
        phys += take
        run -= take
    return out
