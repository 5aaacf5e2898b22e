"""Bitstreams: unit config values -> the config beats of ``hdl.configbus``, as rows
packed with ``config_beat_layout`` (what the config controller streams from memory)."""

import numpy as np

from hdl.configbus import BEAT_WORDS, UNIT_BITS, config_beat_layout, config_words

__all__ = ["BitstreamError", "BEAT_WORDS", "config_beats", "bitstream_rows"]


class BitstreamError(ValueError):
    """A unit config that cannot be put on the bus; the message names the unit."""


def config_beats(unit, layout, value):
    """(unit, index, data) of every word of ``value`` (an int in ``layout``)."""
    from amaranth.lib import data
    size = data.Layout.cast(layout).size
    if not 0 <= unit < 1 << UNIT_BITS:
        raise BitstreamError(f"unit {unit}: outside 0 .. {(1 << UNIT_BITS) - 1}")
    if not 0 <= value < 1 << size:
        raise BitstreamError(f"unit {unit}: config value does not fit its {size}-bit layout")
    try:
        n = config_words(layout)
    except ValueError as e:
        raise BitstreamError(f"unit {unit}: {e}") from None
    return [(unit, k, (value >> (32 * k)) & 0xFFFFFFFF) for k in range(n)]


def bitstream_rows(units):
    """``units``: {unit: (layout, value)} -> (n, BEAT_WORDS) uint32 rows, one config beat
    each (packed with ``config_beat_layout``), units ascending, words in index order."""
    beats = [b for u in sorted(units) for b in config_beats(u, *units[u])]
    if not beats:
        raise BitstreamError("empty bitstream: no unit to configure")
    rows = np.zeros((len(beats), BEAT_WORDS), dtype=np.uint32)
    for i, (unit, index, word) in enumerate(beats):
        v = config_beat_layout.const({"unit": unit, "index": index,
                                      "data": word}).as_value().value
        rows[i] = [(v >> (32 * k)) & 0xFFFFFFFF for k in range(BEAT_WORDS)]
    return rows
