"""Bitstreams: unit config values -> the config beats of ``hdl.configbus``, as rows
packed with ``config_beat_layout`` (what the config controller streams from memory)."""

import numpy as np

from hdl.configbus import BEAT_WORDS, CHECK_UNIT, INDEX_BITS, config_beat_layout, config_words

__all__ = ["BitstreamError", "BEAT_WORDS", "config_beats", "bitstream_rows", "check_beats",
           "unit_values"]


class BitstreamError(ValueError):
    """A unit config that cannot be put on the bus; the message names the unit."""


def config_beats(unit, layout, value):
    """(unit, index, data) of every word of ``value`` (an int in ``layout``)."""
    from amaranth.lib import data
    size = data.Layout.cast(layout).size
    if not 0 <= unit < CHECK_UNIT:
        raise BitstreamError(f"unit {unit}: outside 0 .. {CHECK_UNIT - 1}")
    if not 0 <= value < 1 << size:
        raise BitstreamError(f"unit {unit}: config value does not fit its {size}-bit layout")
    try:
        n = config_words(layout)
    except ValueError as e:
        raise BitstreamError(f"unit {unit}: {e}") from None
    return [(unit, k, (value >> (32 * k)) & 0xFFFFFFFF) for k in range(n)]


def check_beats(beats):
    """The program's two check beats for config beats ``beats`` [(unit, index, data)]: the
    sums ``hdl.configbus.ConfigLoader`` forms as the beats go by (s1 += data + (index |
    unit << INDEX_BITS), s2 += s1, mod 2**32)."""
    s1 = s2 = 0
    for unit, index, word in beats:
        s1 = (s1 + word + (index | unit << INDEX_BITS)) & 0xFFFFFFFF
        s2 = (s2 + s1) & 0xFFFFFFFF
    return [(CHECK_UNIT, 0, s1), (CHECK_UNIT, 1, s2)]


def bitstream_rows(units):
    """``units``: {unit: (layout, value)} -> (n, BEAT_WORDS) uint32 rows, one config beat
    each (packed with ``config_beat_layout``), units ascending, words in index order, the
    two check beats last."""
    beats = [b for u in sorted(units) for b in config_beats(u, *units[u])]
    if not beats:
        raise BitstreamError("empty bitstream: no unit to configure")
    beats += check_beats(beats)
    rows = np.zeros((len(beats), BEAT_WORDS), dtype=np.uint32)
    for i, (unit, index, word) in enumerate(beats):
        v = config_beat_layout.const({"unit": unit, "index": index,
                                      "data": word}).as_value().value
        rows[i] = [(v >> (32 * k)) & 0xFFFFFFFF for k in range(BEAT_WORDS)]
    return rows


def unit_values(rows):
    """The inverse of :func:`bitstream_rows`: {unit: value} (each unit's words put back
    together) of bitstream ``rows``; BitstreamError if its check beats do not match."""
    beats = []
    for row in np.asarray(rows, np.uint32):
        b = config_beat_layout.from_bits(sum(int(w) << (32 * k) for k, w in enumerate(row)))
        beats.append((int(b.unit), int(b.index), int(b.data)))
    if len(beats) < 3 or beats[-2:] != check_beats(beats[:-2]):
        raise BitstreamError("bitstream: its check beats do not match its config beats")
    values = {}
    for unit, index, word in beats[:-2]:
        values[unit] = values.get(unit, 0) | word << (32 * index)
    return values
