"""Numbers the hardware and its reference share: the canonical NaNs and the coefficient
tables of the tail functions (``exp2``, ``rcp``, ``rsqrt``).

The HDL (``hdl/numerics/tail.py``) builds its ROMs from :data:`TABLES` and evaluates
:meth:`InterpTable.evaluate`'s integer recipe; ``firmware.numerics`` (the bit-exact
reference) imports them from here, so the hardware depends on no software.
"""

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["QNAN32", "QNAN16", "ONE32", "INF32", "InterpTable", "TABLES", "EXP2_FRAC"]

QNAN32 = 0x7FC00000
QNAN16 = 0x7FC0
ONE32 = 0x3F800000
INF32 = 0x7F800000


_CHEB = [(1 - math.cos((2 * i + 1) * math.pi / 6)) / 2 for i in range(3)]


@dataclass(frozen=True)
class InterpTable:
    """Piecewise-quadratic approximation of ``g(u)`` on ``[0, 1)``, ``0 <= g < 1``.

    ``segments`` segments, each with coefficients ``c0, c1, c2`` in units of
    ``2**-FRAC``. A point is given as a segment index and a ``d_bits``-bit offset ``d``
    inside the segment. :meth:`evaluate` is the exact integer recipe the HDL follows::

        t1 = (c2 * d) >> d_bits
        t2 = ((c1 + t1) * d) >> d_bits
        y  = c0 + t2
        fraction = clamp((y + 2**(FRAC-24)) >> (FRAC-23), 0, 2**23 - 1)
    """
    name: str
    d_bits: int
    c0: np.ndarray
    c1: np.ndarray
    c2: np.ndarray

    FRAC = 30

    @property
    def segments(self):
        return len(self.c0)

    @classmethod
    def fit(cls, name, func, segments, d_bits):
        """Interpolate ``func`` (vectorized, on ``[0, 1)``) through Chebyshev nodes."""
        s = np.arange(segments, dtype=np.float64)
        u0, u1, u2 = _CHEB
        y0, y1, y2 = (func((s + u) / segments) for u in (u0, u1, u2))
        d01 = (y1 - y0) / (u1 - u0)
        d12 = (y2 - y1) / (u2 - u1)
        a2 = (d12 - d01) / (u2 - u0)
        c2 = a2
        c1 = d01 - a2 * (u0 + u1)
        c0 = y0 - d01 * u0 + a2 * u0 * u1
        q = lambda c: np.round(c * 2.0 ** cls.FRAC).astype(np.int64)
        return cls(name, d_bits, q(c0), q(c1), q(c2))

    def evaluate(self, index, d):
        index = np.asarray(index, np.int64)
        d = np.asarray(d, np.int64)
        t1 = (self.c2[index] * d) >> self.d_bits
        t2 = ((self.c1[index] + t1) * d) >> self.d_bits
        y = self.c0[index] + t2
        frac = (y + (1 << (self.FRAC - 24))) >> (self.FRAC - 23)
        return np.clip(frac, 0, (1 << 23) - 1)

    def widths(self):
        """(c0 unsigned bits, c1 signed bits, c2 signed bits) needed to hold the table."""
        sbits = lambda c: int(max(int(np.max(c)), -int(np.min(c)) - 1, 0)).bit_length() + 1
        return int(np.max(self.c0)).bit_length(), sbits(self.c1), sbits(self.c2)


def _make_tables():
    # rcp: 1/(1.m) = (2/(1+m)) / 2; the table holds 2/(1+m) - 1 (m = 0 is exact, special).
    rcp = InterpTable.fit("rcp", lambda m: 2.0 / (1.0 + m) - 1.0, 128, 16)
    # rsqrt: even exponent -> 2/sqrt(1+m) - 1, odd exponent -> sqrt(2)/sqrt(1+m) - 1.
    ev = InterpTable.fit("rsqrt_even", lambda m: 2.0 / np.sqrt(1.0 + m) - 1.0, 128, 16)
    od = InterpTable.fit("rsqrt_odd", lambda m: np.sqrt(2.0) / np.sqrt(1.0 + m) - 1.0, 128, 16)
    rsqrt = InterpTable("rsqrt", 16, np.concatenate([ev.c0, od.c0]),
                        np.concatenate([ev.c1, od.c1]), np.concatenate([ev.c2, od.c2]))
    exp2 = InterpTable.fit("exp2", lambda f: np.exp2(f) - 1.0, 128, 23)
    return {"rcp": rcp, "rsqrt": rsqrt, "exp2": exp2}


TABLES = _make_tables()

#: exp2 converts its input to fixed point with this many fraction bits.
EXP2_FRAC = 30
