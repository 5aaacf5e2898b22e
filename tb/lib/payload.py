"""Stream payloads as numpy word arrays, packed by the HDL's own ``data`` layouts.

A row is one payload as little-endian 32-bit words. A field is either a scalar inside
one word (it may share the word, not straddle two), or a word-aligned array of 32-bit
elements (a column of shape (n, len)).
Bit positions come from the layout, never from hand-written shifts.
"""

import numpy as np
from amaranth.lib import data

__all__ = ["words_of", "pack", "unpack", "to_hex", "from_hex", "to_ints", "from_ints"]


def words_of(layout) -> int:
    return (data.Layout.cast(layout).size + 31) // 32


def _fields(layout, prefix="", base=0):
    """(name, word, shift, length or None, mask) per field; fields of a nested struct are
    named ``outer.inner``."""
    for name, field in data.Layout.cast(layout):
        shape = field.shape
        name, offset = prefix + name, base + field.offset
        if isinstance(shape, data.StructLayout):
            yield from _fields(shape, name + ".", offset)
        elif isinstance(shape, data.ArrayLayout):
            if offset % 32 or field.width != 32 * shape.length:
                raise ValueError(f"field {name!r}: only word-aligned arrays of 32-bit "
                                 f"elements are packed")
            yield name, offset // 32, 0, shape.length, 0xFFFFFFFF
        else:
            word, shift = divmod(offset, 32)
            if shift + field.width > 32:
                raise ValueError(f"field {name!r} at bits {offset}..."
                                 f"{offset + field.width - 1} straddles two words")
            yield name, word, shift, None, (1 << field.width) - 1


def pack(layout, columns: dict) -> np.ndarray:
    """(n, words) uint32 rows from named columns (missing fields are zero)."""
    n = len(next(iter(columns.values())))
    rows = np.zeros((n, words_of(layout)), dtype=np.uint32)
    for name, word, shift, length, mask in _fields(layout):
        if name not in columns:
            continue
        col = np.asarray(columns[name]).astype(np.uint64) & mask
        if length is None:
            rows[:, word] |= (col << shift).astype(np.uint32)
        else:
            rows[:, word:word + length] = col.reshape(n, length)
    return rows


def unpack(layout, rows: np.ndarray) -> dict:
    out = {}
    for name, word, shift, length, mask in _fields(layout):
        out[name] = ((rows[:, word] >> shift) & mask) if length is None \
            else rows[:, word:word + length].copy()
    return out


def to_hex(rows: np.ndarray, width: int) -> bytes:
    """``$readmemh`` text: one line per row, ``ceil(width/4)`` hex digits."""
    n, nw = rows.shape
    digits = (width + 3) // 4
    text = np.frombuffer(rows[:, ::-1].astype(">u4").tobytes().hex().encode(), dtype="S1")
    text = text.reshape(n, nw * 8)[:, nw * 8 - digits:]
    return np.hstack([text, np.full((n, 1), b"\n", dtype="S1")]).tobytes()


def from_hex(text: str, width: int) -> np.ndarray:
    """Rows from ``$writememh`` text (comment lines ignored)."""
    nw = (width + 31) // 32
    lines = [l for l in text.split() if not l.startswith("//")]
    if not lines:
        return np.zeros((0, nw), dtype=np.uint32)
    joined = "".join(l.rjust(nw * 8, "0") for l in lines)
    rows = np.frombuffer(bytes.fromhex(joined), dtype=">u4").reshape(len(lines), nw)
    return rows[:, ::-1].astype(np.uint32)


def to_ints(rows: np.ndarray) -> list:
    """Rows -> payload integers (for the Amaranth simulator drivers)."""
    return [sum(int(w) << (32 * k) for k, w in enumerate(row)) for row in rows]


def from_ints(values, words: int) -> np.ndarray:
    return np.array([[(v >> (32 * k)) & 0xFFFFFFFF for k in range(words)] for v in values],
                    dtype=np.uint32).reshape(len(values), words)
