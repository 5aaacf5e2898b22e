"""A picture of the array after a socket run: every PCU and PMU at its grid position with
the fraction of the kernel's cycles it was busy (from the ``unit_busy`` counters), the
AGCUs on their edges with their bursts. As text (printed by ``make sim``) and as an SVG
written beside the report."""

from html import escape

from hdl.rdn.config import W
from hdl.socket import agcu_position
from hdl.tile import tile_units

__all__ = ["array_cells", "array_text", "write_svg"]


def array_cells(params, report):
    """[(row, col, name, busy fraction or None)] for the tile (``name`` as in
    :func:`hdl.tile.tile_units`: pcu0, pmu0, ...), and {row: (west, east)} AGCU labels,
    from a report's counters (None: no counters in the report)."""
    counters = report.get("counters") or {}
    busy = counters.get("unit_busy")
    cycles = report.get("cycles") or 0
    if busy is None or not cycles:
        return None, None
    cells = []
    for u in tile_units(params):
        b = busy[u.row * params.cols + u.col]
        cells.append((u.row, u.col, u.name, min(1.0, b / cycles) if b else None))
    edges = {}
    for k, a in enumerate(counters.get("agcu") or []):
        side, row = agcu_position(params, k)
        west, east = edges.get(row, ("", ""))
        label = f"AGCU{k} ({a['bursts']} bursts)" if a.get("bursts") else f"AGCU{k}"
        edges[row] = (label, east) if side == W else (west, label)
    return cells, edges


def array_text(params, report):
    """The array as lines of text, or [] without counters."""
    cells, edges = array_cells(params, report)
    if cells is None:
        return []
    width = max([len(w) for w, _ in edges.values()] + [0])
    lines = [f"array: busy fraction of the {report['cycles']:,} kernel cycles "
             f"('-' = not used)"]
    for r in range(params.rows):
        west, east = edges.get(r, ("", ""))
        row = " | ".join(f"{name:<5} {'  -  ' if f is None else f'{f:5.2f}'}"
                         for rr, _, name, f in cells if rr == r)
        lines.append(f"{west:>{width}} {'>' if west else ' '} {row} {'<' if east else ''} {east}"
                     .rstrip())
    return lines


def write_svg(params, report, path):
    """An SVG of the array (cells shaded by busy fraction); returns ``path`` or None."""
    cells, edges = array_cells(params, report)
    if cells is None:
        return None
    cw, ch, margin = 110, 60, 150
    w, h = margin * 2 + cw * params.cols, 60 + ch * params.rows
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'font-family="monospace" font-size="12">',
           f'<text x="10" y="20">{escape(report.get("kernel", ""))} on '
           f'{escape(str(report.get("config", "")))}: busy fraction of '
           f'{report["cycles"]} cycles</text>']
    for r, c, name, f in cells:
        x, y = margin + c * cw, 40 + r * ch
        shade = 255 - int(200 * (f or 0))
        fill = (f"rgb(255,{shade},{shade})" if name.startswith("pcu")
                else f"rgb({shade},{shade},255)") \
            if f is not None else "rgb(240,240,240)"
        out += [f'<rect x="{x}" y="{y}" width="{cw - 6}" height="{ch - 6}" fill="{fill}" '
                f'stroke="black"/>',
                f'<text x="{x + 8}" y="{y + 22}">{name} ({r},{c})</text>',
                f'<text x="{x + 8}" y="{y + 42}">{"-" if f is None else f"{f:.2f}"}</text>']
    for r, (west, east) in edges.items():
        y = 40 + r * ch + ch // 2
        if west:
            out.append(f'<text x="8" y="{y}">{escape(west)} &#8594;</text>')
        if east:
            out.append(f'<text x="{margin + params.cols * cw + 4}" y="{y}">&#8592; '
                       f'{escape(east)}</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")
    return path
