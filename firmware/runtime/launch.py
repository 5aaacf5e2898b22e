"""Launch records for the kernel sequencer (``hdl.sequencer.launch_layout``)."""

from dataclasses import dataclass, field

import numpy as np

from hdl.agcu.config import streams, word_bits
from hdl.configbus import BEAT_WORDS, COUNT_BITS
from hdl.memory.config import MemoryMap
from hdl.counters import ITER_BITS
from hdl.sequencer import launch_layout, record_beats

from firmware.compiler.memory import MemoryProgramError, dma_descriptor

__all__ = ["LaunchError", "Launch", "Copy", "check_extents", "pack_launch", "launch_words",
           "record_words"]


class LaunchError(ValueError):
    """A launch the sequencer cannot run; the message says which field and why."""


@dataclass(frozen=True)
class Launch:
    """One launch record.

    ``program`` is the global word address of the kernel's bitstream (beat aligned) and
    ``beats`` its config beats, or ``beats`` = 0 to run the program already loaded.
    ``units`` / ``agcus`` are the masks of what starts; ``offsets[k, "load"]`` is the
    argument of AGCU k's load stream (words added to its segment base; ``"store"``,
    ``"store2"`` .. likewise) and ``strides[k, "load"]`` what each further iteration adds
    to it (missing entries are 0). ``iterations`` > 1 is kernel looping: one pipelined
    run of every unit (``hdl.sequencer``), the same results as that many launches of one
    iteration with offsets ``offset + i * stride``. ``chained``: the iterations pass data
    through memory (iteration i's loads read what iteration i-1 stored, e.g. a layer's
    input is the layer before's output): each load iteration waits until every AGCU's
    stores of the one before are acknowledged.
    """
    program: int
    beats: int
    units: int
    agcus: int
    iterations: int = 1
    offsets: dict = field(default_factory=dict)
    strides: dict = field(default_factory=dict)
    chained: bool = False


@dataclass(frozen=True)
class Copy:
    """A copy record: the sequencer has the DMA engine copy ``count`` words from global
    word address ``src`` to ``dst`` (both beat aligned, e.g. DDR -> HBM) and goes on to
    the next record when every word is written — no host involved. The loaded program
    stays loaded."""
    src: int
    dst: int
    count: int


def check_extents(name, extents, launch: Launch):
    """Refuse a launch whose arguments or kernel-looping strides take an AGCU stream of
    kernel ``name`` outside its buffer in any iteration (``extents``: the program's
    {(k, stream): (lo, hi, size)})."""
    last = launch.iterations - 1
    for (k, stream), (lo, hi, size) in sorted(extents.items()):
        off = launch.offsets.get((k, stream), 0)
        step = launch.strides.get((k, stream), 0)
        first, final = off + lo + min(0, last * step), off + hi + max(0, last * step)
        if first < 0 or final > size:
            i = last if (final > size) == (step > 0) else 0
            raise LaunchError(
                f"kernel {name!r}: AGCU {k} {stream}: with offset {off} and stride {step}, "
                f"iteration {i} of {launch.iterations} touches words "
                f"{off + lo + i * step} .. {off + hi + i * step - 1} of a {size}-word "
                f"buffer (kernel looping may not leave the buffer)")


def _pack_copy(params, copy: Copy) -> int:
    try:
        d = dma_descriptor(params, copy.src, copy.dst, copy.count)
    except MemoryProgramError as e:
        raise LaunchError(f"copy record: {e}") from None
    return launch_layout(params).const({"copy": 1, "program": d["src"], "dst": d["dst"],
                                        "count": d["count"]}).as_value().value


def pack_launch(params, launch: Launch) -> int:
    """A launch or copy record as an integer in ``launch_layout``."""
    if isinstance(launch, Copy):
        return _pack_copy(params, launch)
    mm = MemoryMap(params)
    a = params.agcus
    wmask = (1 << word_bits(params)) - 1
    if launch.program % mm.words:
        raise LaunchError(f"program word address {launch.program:#x} is not beat aligned "
                          f"({mm.words} words per beat)")
    if not 0 <= launch.beats < 1 << COUNT_BITS:
        raise LaunchError(f"{launch.beats} config beats: at most {(1 << COUNT_BITS) - 1}")
    end = launch.program + -(-launch.beats * BEAT_WORDS // mm.words) * mm.words
    if launch.program < 0 or (launch.beats and end > mm.beats * mm.words):
        raise LaunchError(f"program at word {launch.program:#x} ({launch.beats} config beats) "
                          f"runs past the end of memory (word {mm.beats * mm.words:#x})")
    if not 1 <= launch.iterations < 1 << ITER_BITS:
        raise LaunchError(f"{launch.iterations} iterations: 1 .. {(1 << ITER_BITS) - 1}")
    for name in ("offsets", "strides"):
        for key in getattr(launch, name):
            if not (isinstance(key, tuple) and len(key) == 2 and key[0] in range(a)
                    and key[1] in streams(params)):
                raise LaunchError(f"{name}: key {key!r} is not (AGCU 0 .. {a - 1}, "
                                  f"one of {', '.join(map(repr, streams(params)))})")

    def arg(k, stream):
        # Offsets and strides wrap modulo the address width (a negative stride walks
        # backwards).
        return {"offset": launch.offsets.get((k, stream), 0) & wmask,
                "stride": launch.strides.get((k, stream), 0) & wmask}
    value = {"program": launch.program // mm.words, "beats": launch.beats,
             "iterations": launch.iterations, "chained": int(bool(launch.chained)),
             "units": launch.units, "agcus": launch.agcus,
             "args": [{s: arg(k, s) for s in streams(params)} for k in range(a)]}
    return launch_layout(params).const(value).as_value().value


def launch_words(params, launches) -> np.ndarray:
    """The records as 32-bit words, each padded to ``record_beats`` memory beats."""
    if not launches:
        return np.zeros(0, np.uint32)
    return np.concatenate([record_words(params, pack_launch(params, launch))
                           for launch in launches])


def record_words(params, value) -> np.ndarray:
    """One packed record (an integer in ``launch_layout``) as its 32-bit words, padded to
    ``record_beats`` memory beats."""
    n = record_beats(params) * MemoryMap(params).words
    return np.array([(value >> (32 * k)) & 0xFFFFFFFF for k in range(n)], np.uint32)
