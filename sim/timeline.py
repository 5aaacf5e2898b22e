"""A socket run's timeline (``python -m sim run KERNEL --trace``): the recorder's file
(``tb/lib/timeline.py``) turned into a Chrome / Perfetto trace (JSON: open it in
https://ui.perfetto.dev or chrome://tracing) and a picture of the same (PNG).

Tracks: the sequencer (its activity, exact to the cycle: record fetch, program load,
arguments, kernel, copy), the launch lists; per tile unit and AGCU its busy time (exact,
from the status registers), each busy stretch cut at the sampling resolution into
``busy`` (working), ``stall`` (its output blocked for at least half the interval) and
``starve`` (every input it uses empty for at least half of it); counter tracks of every memory
channel's bytes per cycle and of the busiest switches' packets per cycle.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from hdl.sequencer import SeqActivity
from hdl.socket import agcu_position
from hdl.tile import tile_units

__all__ = ["Timeline", "TraceFormatError", "read_timeline", "trace_events", "validate_trace",
           "write_trace", "write_png",
           "unit_states", "HOT_SWITCHES"]

#: Switches with a counter track of their own: the busiest (most packets) of the run.
HOT_SWITCHES = 4
#: A state a sampled interval of a busy unit is shown in when it holds for half of it.
_HALF = 0.5


@dataclass
class Timeline:
    head: dict
    edges: dict = field(default_factory=dict)      # name -> [(cycle, value)]
    samples: list = field(default_factory=list)    # [(cycle, sample dict, list index)]
    lists: list = field(default_factory=list)      # [(start cycle, end cycle)]
    end: int = 0

    def intervals(self, name, bit=None):
        """[(start, end)] where edge signal ``name`` (its ``bit``) was set."""
        out, since = [], None
        for t, v in self.edges.get(name, []):
            on = bool(v >> bit & 1) if bit is not None else bool(v)
            if on and since is None:
                since = t
            elif not on and since is not None:
                out.append((since, t))
                since = None
        if since is not None:
            out.append((since, self.end))
        return out

    def activity(self):
        """[(start, end, name)] of the sequencer's non-idle stretches (``record``,
        ``program load``, ``args``, ``kernel``, ``copy``, ``clear``)."""
        ch = self.edges.get("activity", [])
        return [(t, t1, SeqActivity(v).name.lower().replace("program", "program load"))
                for (t, v), (t1, _) in zip(ch, ch[1:] + [(self.end, 0)])
                if v != SeqActivity.IDLE.value and t1 > t]

    def launches(self):
        """Records each launch list ran (the sequencer's ``launched`` counter)."""
        first, last = {}, {}
        for _, smp, i in self.samples:
            first.setdefault(i, smp["seq"]["launched"])
            last[i] = smp["seq"]["launched"]
        return [last.get(i, 0) - first.get(i, 0) for i in range(len(self.lists))]

    def deltas(self):
        """[(t0, t1, earlier sample, later sample)]: consecutive samples of one list."""
        s = self.samples
        return [(a[0], b[0], a[1], b[1]) for a, b in zip(s, s[1:]) if a[2] == b[2]]


def read_timeline(path) -> Timeline:
    """The recorder's file as a :class:`Timeline`."""
    tl, current = None, -1
    for line in Path(path).read_text().splitlines():
        rec = json.loads(line)
        if "head" in rec:
            tl = Timeline(rec["head"])
            continue
        t = rec.pop("t")
        tl.end = max(tl.end, t)
        if "list" in rec:
            if rec["list"] == "start":
                current += 1
                tl.lists.append((t, t))
            else:
                tl.lists[current] = (tl.lists[current][0], t)
        elif "sample" in rec:
            tl.samples.append((t, rec["sample"], current))
        else:
            (name, v), = rec.items()
            tl.edges.setdefault(name, []).append((t, v))
    if tl is None:
        raise ValueError(f"{path}: not a timeline (no head record)")
    return tl


def _used_inputs(tl, k):
    """The local input ports of position ``k`` that received packets in the run (an
    unused port always 'starves')."""
    d = tl.deltas()
    ports = len(d[0][2]["into"][k]) if d else 0
    return [i for i in range(ports)
            if any(b["into"][k][i] != a["into"][k][i] for _, _, a, b in d)]


def unit_states(tl, k):
    """[(start, end, state)] of tile position ``k``: its busy time cut into ``busy`` /
    ``stall`` / ``starve`` by the sampled intervals (``stall``: its output blocked for half
    of the interval; else ``starve``: every input it uses empty for half of it), adjacent
    equal states merged."""
    used = _used_inputs(tl, k)
    cuts = []
    for t0, t1, a, b in tl.deltas():
        n = t1 - t0
        starve = min([b["starve"][k][i] - a["starve"][k][i] for i in used] or [0])
        state = "busy"
        if n and (b["stall"][k] - a["stall"][k]) >= _HALF * n:
            state = "stall"
        elif n and starve >= _HALF * n:
            state = "starve"
        cuts.append((t0, t1, state))
    out = []
    for b0, b1 in tl.intervals("unit_busy", k):
        pieces = [(max(b0, t0), min(b1, t1), s) for t0, t1, s in cuts if t0 < b1 and t1 > b0]
        covered = sum(e - s for s, e, _ in pieces)
        if covered < b1 - b0:        # busy outside any sampled interval (between lists)
            pieces = _fill(b0, b1, pieces)
        for s, e, st in pieces:
            if out and out[-1][2] == st and out[-1][1] == s:
                out[-1] = (out[-1][0], e, st)
            elif e > s:
                out.append((s, e, st))
    return out


def _fill(b0, b1, pieces):
    """``pieces`` of [b0, b1) with the gaps between them as ``busy``."""
    out, at = [], b0
    for s, e, st in sorted(pieces):
        if s > at:
            out.append((at, s, "busy"))
        out.append((s, e, st))
        at = e
    if at < b1:
        out.append((at, b1, "busy"))
    return out


def _names(params):
    """{tile position k: 'pcu0 (0,0)'}."""
    return {u.row * params.cols + u.col: f"{u.name} ({u.row},{u.col})" for u in tile_units(params)}


def trace_events(tl, params, title=""):
    """The Chrome trace JSON object (``traceEvents``; timestamps in microseconds at the
    config's clock, so one cycle is 1 ns at 1 GHz)."""
    us = 1.0 / (1000.0 * params.clock_ghz)
    ev = []

    def meta(pid, tid, kind, name, sort=None):
        ev.append({"ph": "M", "pid": pid, "tid": tid, "name": kind, "args": {"name": name}})
        if sort is not None:
            ev.append({"ph": "M", "pid": pid, "tid": tid, "name": "thread_sort_index",
                       "args": {"sort_index": sort}})

    def slice_(pid, tid, name, t0, t1, **args):
        ev.append({"ph": "X", "pid": pid, "tid": tid, "name": name, "ts": t0 * us,
                   "dur": (t1 - t0) * us, "args": {"cycle": t0, "cycles": t1 - t0, **args}})

    meta(1, 0, "process_name", f"sequencer {title}".strip())
    meta(1, 1, "thread_name", "activity", 1)
    meta(1, 2, "thread_name", "launch lists", 0)
    for t0, t1, act in tl.activity():
        slice_(1, 1, act, t0, t1)
    for i, (t0, t1) in enumerate(tl.lists):
        slice_(1, 2, f"launch list {i + 1}", t0, t1)
    meta(2, 0, "process_name", "tile units")
    for k, name in sorted(_names(params).items()):
        states = unit_states(tl, k)
        if not states:
            continue
        meta(2, k + 1, "thread_name", name, k)
        for t0, t1, st in states:
            slice_(2, k + 1, st, t0, t1)
    meta(3, 0, "process_name", "AGCUs and DMA")
    for a in range(params.agcus):
        side, row = agcu_position(params, a)
        meta(3, a + 1, "thread_name", f"agcu{a} (row {row})", a)
        for t0, t1 in tl.intervals("agcu_busy", a):
            slice_(3, a + 1, "busy", t0, t1)
    meta(3, params.agcus + 1, "thread_name", "dma", params.agcus)
    for t0, t1 in tl.intervals("dma_busy"):
        slice_(3, params.agcus + 1, "copy", t0, t1)
    ev += _counter_tracks(tl, params, us)
    return {"traceEvents": ev, "displayTimeUnit": "ns",
            "otherData": {"config": params.name, "resolution_cycles": tl.head["resolution"],
                          "clock_ghz": params.clock_ghz, "title": title}}


def _counter_tracks(tl, params, us):
    """Memory channels (bytes/cycle) and the busiest switches (packets/cycle), per interval."""
    ev = []
    for t0, t1, a, b in tl.deltas():
        if t1 <= t0:
            continue
        n = t1 - t0
        for region, chans in b["mem"].items():
            for c, (rd, wr) in enumerate(chans):
                ev.append({"ph": "C", "pid": 4, "name": f"{region}{c} bytes/cycle",
                           "ts": t0 * us, "args": {
                               "read": (rd - a["mem"][region][c][0]) / n,
                               "write": (wr - a["mem"][region][c][1]) / n}})
    hot = _hot_switches(tl)
    for t0, t1, a, b in tl.deltas():
        if t1 > t0:
            for k in hot:
                r, c = divmod(k, params.cols)
                ev.append({"ph": "C", "pid": 4, "name": f"switch ({r},{c}) packets/cycle",
                           "ts": t0 * us,
                           "args": {"in": (b["packets"][k] - a["packets"][k]) / (t1 - t0)}})
    if ev:
        ev.insert(0, {"ph": "M", "pid": 4, "tid": 0, "name": "process_name",
                      "args": {"name": "memory channels and switches"}})
    return ev


def _hot_switches(tl):
    """The HOT_SWITCHES vector switches with the most packets over the run's lists."""
    totals = {}
    for _, _, a, b in tl.deltas():
        for k, (x, y) in enumerate(zip(a["packets"], b["packets"])):
            totals[k] = totals.get(k, 0) + y - x
    ranked = sorted((k for k, v in totals.items() if v), key=lambda k: -totals[k])
    return sorted(ranked[:HOT_SWITCHES])


def write_trace(tl, params, path, title=""):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(trace_events(tl, params, title), separators=(",", ":")))
    return path


_COLORS = {"busy": "#3a9a4a", "stall": "#d6453d", "starve": "#f0a030",
           "record": "#e8d44d", "program load": "#4a78c8", "args": "#8fd3e8",
           "kernel": "#9a9a9a", "copy": "#9b59b6", "clear": "#000000"}


def _panels(tl, labels):
    """(title, t0, t1) per panel: a panel per launch list where there are few (titled by
    ``labels`` and its number of launches), else one."""
    if 1 <= len(tl.lists) <= 4:
        n = tl.launches()
        return [(f"{labels[i] if i < len(labels) else f'launch list {i + 1}'} "
                 f"({n[i]} launch{'es' if n[i] != 1 else ''})", t0, t1)
                for i, (t0, t1) in enumerate(tl.lists)]
    return [("the whole run", tl.lists[0][0] if tl.lists else 0, tl.end)]


def write_png(tl, params, path, labels=()):
    """The timeline as a picture: per panel (launch list) the sequencer's activity and
    each used unit's busy / stall / starve; panels share the cycle scale."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    names = _names(params)
    rows = [("sequencer", tl.activity())]
    rows += [(names[k], unit_states(tl, k)) for k in sorted(names)]
    rows += [(f"agcu{a}", [(s, e, "busy") for s, e in tl.intervals("agcu_busy", a)])
             for a in range(params.agcus)]
    rows = [(n, r) for n, r in rows if r]
    panels = _panels(tl, list(labels))
    width = max([b - a for _, a, b in panels] + [1])
    fig, axes = plt.subplots(len(panels), 1, squeeze=False,
                             figsize=(11, 0.9 + len(panels) * (0.28 * len(rows) + 0.7)))
    for ax, (title, p0, p1) in zip(axes[:, 0], panels):
        for y, (_, segs) in enumerate(rows):
            for s, e, st in segs:
                s, e = max(s, p0), min(e, p1)
                if e > s:
                    ax.broken_barh([(s - p0, e - s)], (y - 0.4, 0.8),
                                   color=_COLORS.get(st, "#555555"), linewidth=0)
        ax.set_yticks(range(len(rows)), [n for n, _ in rows], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, width)
        ax.set_title(f"{title}: {p1 - p0:,} cycles", fontsize=9, loc="left")
        ax.tick_params(axis="x", labelsize=7)
    axes[-1, 0].set_xlabel("cycles from the start of the launch list")
    used = sorted({st for _, segs in rows for *_, st in segs}, key=list(_COLORS).index)
    fig.legend(handles=[Patch(color=_COLORS[s], label=s) for s in used],
               loc="upper right", ncol=len(used), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


class TraceFormatError(ValueError):
    pass


def validate_trace(obj):
    """Check ``obj`` against the Chrome trace event format as this module writes it:
    ``traceEvents`` of metadata (M), complete (X) and counter (C) events with the fields
    each needs, numeric times (``dur`` >= 0), slices of one thread never overlapping, and
    every thread with slices named. Returns the number of events; raises
    :class:`TraceFormatError` naming the first bad event."""
    events = obj.get("traceEvents") if isinstance(obj, dict) else None
    if not isinstance(events, list):
        raise TraceFormatError("no traceEvents list")
    named, slices = set(), {}
    need = {"M": ("pid", "name", "args"), "X": ("pid", "tid", "name", "ts", "dur"),
            "C": ("pid", "name", "ts", "args")}
    for i, e in enumerate(events):
        ph = e.get("ph") if isinstance(e, dict) else None
        if ph not in need:
            raise TraceFormatError(f"event {i}: phase {ph!r} is not one of M, X, C")
        missing = [f for f in need[ph] if f not in e]
        if missing:
            raise TraceFormatError(f"event {i} ({ph}): no {', '.join(missing)}")
        if ph == "M" and e["name"] == "thread_name":
            named.add((e["pid"], e.get("tid")))
        for f in ("ts", "dur"):
            if f in e and (not isinstance(e[f], (int, float)) or e[f] < 0):
                raise TraceFormatError(f"event {i}: {f} {e[f]!r} is not a time >= 0")
        if ph == "C" and not all(isinstance(v, (int, float)) for v in e["args"].values()):
            raise TraceFormatError(f"event {i}: counter values must be numbers")
        if ph == "X":
            slices.setdefault((e["pid"], e["tid"]), []).append((e["ts"], e["ts"] + e["dur"], i))
    for (pid, tid), ss in slices.items():
        if (pid, tid) not in named:
            raise TraceFormatError(f"thread {pid}/{tid} has slices but no thread_name")
        ss.sort()
        for (_, end, _), (start, _, j) in zip(ss, ss[1:]):
            if start < end - 1e-9:
                raise TraceFormatError(f"event {j}: overlaps the slice before it on "
                                       f"thread {pid}/{tid}")
    return len(events)
