"""Positions on the tile's grid: the one coordinate type of placement, routing, the
bitstream and the reports.

``Coord(row, col)``: row 0 is the top (north) row, column 0 the west column. A switch sits
at every position, beside the unit there; the RDN's dimension-order routing moves along
columns (x = ``col``) first, then rows (y = ``row``).
"""

from typing import NamedTuple

__all__ = ["Coord", "is_pcu", "grid_coords"]


class Coord(NamedTuple):
    """A grid position: ``row`` (y, southwards) and ``col`` (x, eastwards)."""
    row: int
    col: int

    @property
    def x(self):
        return self.col

    @property
    def y(self):
        return self.row

    def hops(self, other):
        """Links between this position and ``other`` on a dimension-order path."""
        return abs(self.row - other.row) + abs(self.col - other.col)

    def __str__(self):
        return f"(row {self.row}, col {self.col})"


def is_pcu(r, c):
    """Position (row r, column c) holds a PCU (else a PMU): a checkerboard."""
    return (r + c) % 2 == 0


def grid_coords(params, kind=None):
    """Every position of the grid of ``params``, row-major; only PCU or PMU positions
    where ``kind`` is "pcu" or "pmu"."""
    return [Coord(r, c) for r in range(params.rows) for c in range(params.cols)
            if kind is None or (kind == "pcu") == is_pcu(r, c)]
