"""Waveforms of socket runs: which units are traced, and a GTKWave save file to read them.

:func:`wave_units` names every unit of the socket (``seq``, ``pcu0``, ``pmu0``, ...,
``vsw0`` / ``ssw0`` for the vector / scalar switch at row-major position 0, ``agcu0``,
``hbm0``, ``ddr0``, ``dma``) with its scope in the dump; :func:`trace_selection` turns a
``--waves-units`` list and a cycle window into what the simulator records (those units
in full, every other unit at its ports).

:func:`write_gtkw` reads the dump itself (FST or VCD, with ``pywellen``), so every signal
the save file names exists. One group per unit: its handshakes, control and counters;
stream payloads split into header fields and lanes by the HDL's packet layouts, 32-bit
lanes shown as FP32 numbers through a translate-filter process written beside the save
file (``fp32_filter.py``); the inside of a fully traced unit as one closed sub-group per
sub-module. Named markers at each program load's end and each kernel iteration's start
and done (read from the sequencer's counters in the dump), the view zoomed to the run.
"""

import functools
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from amaranth.lib import data

from hdl.counters import chain_output_layout
from hdl.packet import scalar_layout, vector_layout
from hdl.packet import scalar_packet_layout, vector_packet_layout
from hdl.rdn.config import switch_counters_layout
from hdl.tile import tile_units

from .harness import TIME_UNITS_PER_CYCLE
from .tracesel import TraceSelection

__all__ = ["WaveUnit", "wave_units", "trace_selection", "read_dump", "Dump", "payload_fields",
           "run_markers", "write_gtkw", "natural_key", "FP32_FILTER"]

TOP = "tb_top.dut"
FP32_FILTER = Path(__file__).resolve().parent / "fp32_filter.py"
#: GTKWave trace flags (its analyzer.h): hex, binary, right-justified, process-filtered,
#: blank line, closed group, group begin / end.
_HEX, _BIN, _RJUST, _PFILTER = 0x2, 0x8, 0x20, 0x4000
_BLANK, _CLOSED, _GRP_BEGIN, _GRP_END = 0x200, 0x400000, 0x800000, 0x1000000
#: Window the zoom fits the run into (pixels of the wave pane at the saved window size).
_WINDOW, _WAVE_PIXELS = (1600, 900), 800
_MARKERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class WaveUnit:
    name: str        # what --waves-units takes
    title: str       # the save file's group title
    scope: str       # dotted scope in the dump
    tile: bool = False


def wave_units(params) -> list[WaveUnit]:
    """Every unit of the socket, in save-file order."""
    out = [WaveUnit("seq", "seq: kernel sequencer", f"{TOP}.seq")]
    for u in tile_units(params):
        out.append(WaveUnit(u.name, f"{u.name}: {u.kind.upper()} ({u.row},{u.col})",
                            f"{TOP}.tile.{u.instance}", tile=True))
    for fabric, short in (("vec", "vsw"), ("sca", "ssw")):
        for k in range(params.rows * params.cols):
            r, c = divmod(k, params.cols)
            out.append(WaveUnit(f"{short}{k}", f"{short}{k}: {fabric} switch ({r},{c})",
                                f"{TOP}.tile.rdn.{fabric}.sw_{r}_{c}"))
    out += [WaveUnit(f"agcu{k}", f"agcu{k}: AGCU {k}", f"{TOP}.mem.agcu{k}")
            for k in range(params.agcus)]
    out += [WaveUnit(f"hbm{ch}", f"hbm{ch}: HBM channel {ch}", f"{TOP}.mem.hbm{ch}")
            for ch in range(params.hbm_channels)]
    out += [WaveUnit("ddr0", "ddr0: DDR channel", f"{TOP}.mem.ddr0"),
            WaveUnit("dma", "dma: DMA engine", f"{TOP}.mem.dma")]
    return out


def trace_selection(params, units=None, from_cycle=None, to_cycle=None) -> TraceSelection:
    """The units named in ``units`` (default: every PCU and PMU, and the sequencer) traced
    in full, every other unit of :func:`wave_units` and the socket's own level at their
    ports, within ``[from_cycle, to_cycle]``. An unknown name is refused, naming the
    known ones."""
    known = {u.name: u for u in wave_units(params)}
    if units is None:
        units = ["seq"] + [u.name for u in known.values() if u.tile]
    bad = [n for n in units if n not in known]
    if bad:
        raise ValueError(f"unknown unit(s) {', '.join(bad)} for --waves-units; this config "
                         f"has {', '.join(known)}")
    full = tuple(known[n].scope for n in dict.fromkeys(units))
    ports = []
    for u in known.values():
        if u.scope not in full:
            # A PCU or PMU is a hierarchical block: its ports are also traced on its own
            # top level (``unit``). Verilator's FST writer fails on a block instance with
            # no traced signal at all (vector range error at the first dump).
            ports += [u.scope, f"{u.scope}.unit"] if u.tile else [u.scope]
    return TraceSelection(full=full, ports=("tb_top", TOP, f"{TOP}.tile", f"{TOP}.mem", *ports),
                          from_cycle=from_cycle, to_cycle=to_cycle)


# --- reading the dump ----------------------------------------------------------------

@dataclass
class Dump:
    """A waveform's signals: {dotted name: width}, its time span, and value changes."""
    path: Path
    widths: dict
    start: int
    end: int
    _vars: dict          # name -> pywellen variable

    def changes(self, name):
        """[(time, value)] of signal ``name`` (integers; X/Z read as None)."""
        var = self._vars[name]
        return [(t, v if isinstance(v, int) else None) for t, v in var.tv]

    def under(self, scope):
        """{name relative to ``scope``: width} of every signal inside ``scope``."""
        prefix = scope + "."
        return {n[len(prefix):]: w for n, w in self.widths.items() if n.startswith(prefix)}


def read_dump(path) -> Dump:
    """Parse a VCD or FST waveform (the whole header and the value changes it needs later
    are read by ``pywellen``, a strict parser: a malformed dump raises)."""
    import pywellen
    wave = pywellen.Waveform(str(path))
    variables = {v.full_name: v for v in wave.all_vars()}
    clk = variables.get("tb_top.clk")     # toggles every half cycle: the dump's span
    span = [t for t, _ in clk.tv] if clk is not None else []
    start, end = (span[0], span[-1]) if span else (0, 0)
    return Dump(Path(path), {n: v.bitwidth for n, v in variables.items()}, start, end,
                variables)


# --- what a payload holds --------------------------------------------------------------

def _leaves(layout, prefix="", base=0):
    """[(name, offset, width)] of the leaf fields of a data layout."""
    out = []
    for key, field in data.Layout.cast(layout):
        name = f"{prefix}[{key}]" if isinstance(key, int) else (f"{prefix}.{key}" if prefix
                                                                 else key)
        if isinstance(field.shape, data.Layout):
            out += _leaves(field.shape, name, base + field.offset)
        else:
            out.append((name, base + field.offset, field.width))
    return out


def payload_fields(params, width, lanes=False):
    """[(field name, lsb, width)] of a packet or vector of ``width`` bits, from the HDL's
    layouts (vector / scalar packets with their RDN header, vectors with mask and last, a
    counter chain's step), or None. ``lanes``: also a bare array of ``pcu_lanes`` words
    (``data[i]``; inside a PCU or PMU, where such a stream is lane data)."""
    fields = _fields_of_width(params, width, lanes)
    return None if fields is None else list(fields)


@functools.lru_cache(maxsize=None)
def _fields_of_width(params, width, lanes):
    """:func:`payload_fields`, once per (params, width, lanes): a save file asks for
    thousands of signals."""
    layouts = [vector_packet_layout(params), scalar_packet_layout(params),
               vector_layout(params.pcu_lanes), scalar_layout,
               chain_output_layout(params.pcu_lanes)]
    if lanes:
        layouts.append(data.StructLayout({"data": data.ArrayLayout(32, params.pcu_lanes)}))
    for layout in layouts:
        if data.Layout.cast(layout).size == width:
            return tuple(_leaves(layout))
    return None


# --- markers -------------------------------------------------------------------------

def _runs(changes):
    """(first, last) times of each run of a counter's +1 steps on consecutive cycles."""
    runs = []
    prev_v = None
    for t, v in changes:
        if v is not None and prev_v is not None and v == prev_v + 1:
            if runs and t - runs[-1][1] <= TIME_UNITS_PER_CYCLE:
                runs[-1] = (runs[-1][0], t)
            else:
                runs.append((t, t))
        prev_v = v
    return runs


def run_markers(dump):
    """[(time, label)]: each program load's end, each kernel iteration's start and done,
    from the sequencer's ``load_cycles`` / ``exec_cycles`` counters (counting cycles
    only in those phases), in time order; [] if the dump lacks them."""
    marks = []
    names = {f"{TOP}.seq.load_cycles": ("loaded",), f"{TOP}.seq.exec_cycles": ("start", "done")}
    for name, labels in names.items():
        if name not in dump.widths:
            continue
        for k, (first, last) in enumerate(_runs(dump.changes(name)), 1):
            if len(labels) == 1:
                marks.append((last + TIME_UNITS_PER_CYCLE, f"{labels[0]}-{k}"))
            else:
                marks += [(first, f"{labels[0]}-{k}"), (last + TIME_UNITS_PER_CYCLE,
                                                         f"{labels[1]}-{k}")]
    return sorted(marks)


# --- the save file ---------------------------------------------------------------------

#: Signals at a unit's own level worth a line: handshakes, control, counters, state.
_PORT_SIGNALS = re.compile(
    r"(__valid$|__ready$|__payload$|^start$|^busy$|^done$|^full$|^fault|^bursts$|^cycles$|"
    r"_bytes$|fsm_state$|_cycles$|^launched$|^iterations$|^error$|^dropped$|credit|"
    r"^counters$|^writes$|^tok_in$|^tok_out$|conflicts$|^reordered$|^busy_cycles$)")
#: Inside a fully traced unit: everything but clocks, resets and the configuration.
_SKIP_INSIDE = re.compile(r"(^|_)(clk|rst)(_\d+)?$|(^|_)config(_\d+)?$|^u_|^cfg$")


class _Writer:
    def __init__(self, params, dump, filt):
        self.params, self.dump, self.filter = params, dump, filt
        self.lines, self.flags = [], None

    def flag(self, value):
        if value != self.flags:
            self.lines.append(f"@{value:x}")
            self.flags = value

    def group(self, title, closed=False):
        self.flag(_BLANK | _GRP_BEGIN | (_CLOSED if closed else 0))
        self.lines.append(f"-{title}")

    def end(self, title, closed=False):
        self.flag(_BLANK | _GRP_END | (_CLOSED if closed else 0))
        self.lines.append(f"-{title}")

    def format(self, width, fp32):
        """Flags for the next trace: binary bits, hex vectors, FP32 through the filter."""
        if fp32:
            self.flag(_HEX | _RJUST | _PFILTER)
            self.lines.append(f"^>1 {self.filter}")
        else:
            self.flag(_BIN | _RJUST if width == 1 else _HEX | _RJUST)

    def signal(self, full, width, fp32=False):
        self.format(width, fp32)
        self.lines.append(full + (f"[{width - 1}:0]" if width > 1 else ""))

    def bits(self, title, full, width, lsb, n, fp32):
        """A vector of bits [lsb, lsb + n) of ``full`` (GTKWave counts from the MSB)."""
        src = f"{full}[{width - 1}:0]"
        self.format(max(n, 2), fp32)          # a vector even when one bit wide
        self.lines.append(f"#{{{title}}} " + " ".join(
            f"({width - 1 - b}){src}" for b in range(lsb + n - 1, lsb - 1, -1)))

    def payload(self, full, width, closed=True, lanes=False):
        fields = payload_fields(self.params, width, lanes)
        if fields is None:
            self.signal(full, width)
            return
        self.group(full.rsplit(".", 1)[-1], closed=closed)
        for name, lsb, w in fields:
            self.bits(f"{full}.{name}", full, width, lsb, w, fp32=(w == 32 and "data" in name))
        self.end(full.rsplit(".", 1)[-1], closed=closed)

    def counters(self, full, width):
        layout = switch_counters_layout()
        if data.Layout.cast(layout).size != width:
            self.signal(full, width)
            return
        self.group("port counters", closed=True)
        for name, lsb, w in _leaves(layout):
            self.bits(f"{full}.{name}", full, width, lsb, w, fp32=False)
        self.end("port counters", closed=True)

    def line(self, full, width, open_payload=False, lanes=False):
        leaf = full.rsplit(".", 1)[-1]
        if leaf.endswith("__payload") or payload_fields(self.params, width, lanes):
            self.payload(full, width, closed=not open_payload, lanes=lanes)
        elif leaf == "counters":
            self.counters(full, width)
        else:
            self.signal(full, width)


#: The shared-module wrappers around a tile unit (``hdl.shared``): its real top level.
_UNIT_BODY = "unit.unit"


def _inside(w, scope, sub, lanes=False):
    """The signals of a fully traced unit below its own level: its top level and each
    direct sub-module as a closed group (deeper ones are in the dump, not the view)."""
    scopes = {}
    for name, width in sub.items():
        head, _, leaf = name.rpartition(".")
        if head == _UNIT_BODY.split(".")[0] or _SKIP_INSIDE.search(leaf):
            continue                       # the wrapper's copies of the ports
        rel = head[len(_UNIT_BODY) + 1:] if head.startswith(_UNIT_BODY + ".") else \
            ("top level" if head == _UNIT_BODY else head)
        if "." in rel:
            continue
        scopes.setdefault((head, rel), []).append((leaf, width))
    for head, rel in sorted(scopes):
        closed = rel.rsplit(".", 1)[-1] not in _OPEN_INSIDE
        w.group(f"inside: {rel}", closed=closed)
        families = {}
        for leaf, width in sorted(scopes[head, rel]):
            families.setdefault(re.sub(r"\d+", "N", leaf), []).append((leaf, width))
        for family, members in sorted(families.items()):
            if len(members) < _FAMILY:
                for leaf, width in members:
                    w.line(f"{scope}.{head}.{leaf}", width, lanes=lanes)
                continue
            # An array of registers (accumulators, lanes, banks): one closed group, its
            # 32-bit words as FP32 numbers.
            w.group(f"{family} x{len(members)}", closed=True)
            for leaf, width in sorted(members, key=lambda m: natural_key(m[0])):
                w.signal(f"{scope}.{head}.{leaf}", width, fp32=width == 32)
            w.end(f"{family} x{len(members)}", closed=True)
        w.end(f"inside: {rel}", closed=closed)


#: Sub-modules whose group opens: the counter chains, the systolic array's control, the
#: PMU's address pipelines.
_OPEN_INSIDE = ("chain", "systolic", "rgen", "wgen")
#: Signals named alike (``bank_0_3_1`` ...) at least this many go in a group of their own.
_FAMILY = 8


def natural_key(name):
    """Sort key that orders ``pcu2`` before ``pcu10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def write_gtkw(params, wave: Path, out: Path, *, used=None, units=None):
    """Write the save file ``out`` for the dump ``wave`` (and ``fp32_filter.py`` beside
    it); ``used``: names of the units the run used (their groups open, others closed);
    ``units``: the groups (default: the socket's :func:`wave_units`). Returns ``out``."""
    wave, out = Path(wave), Path(out)
    dump = read_dump(wave)
    filt = out.parent / FP32_FILTER.name
    shutil.copyfile(FP32_FILTER, filt)
    filt.chmod(0o755)
    w = _Writer(params, dump, filt.resolve())
    span = max(1, dump.end - dump.start)
    zoom = -math.log2(span * 200 / _WAVE_PIXELS)
    marks = run_markers(dump)[:len(_MARKERS)]
    head = [f'[dumpfile] "{wave.resolve()}"', f"[savefile] \"{out.resolve()}\"",
            f"[timestart] {dump.start}", f"[size] {_WINDOW[0]} {_WINDOW[1]}", "[pos] -1 -1",
            f"*{zoom:.6f} -1 " + " ".join(str(t) for t, _ in marks)
            + " -1" * (len(_MARKERS) - len(marks))]
    head += [f"[markername] {_MARKERS[i]}{label}" for i, (_, label) in enumerate(marks)]
    head += ["[sst_width] 260", "[signals_width] 380", "[sst_expanded] 1"]
    for u in units or wave_units(params):
        sub = dump.under(u.scope)
        if not sub:
            continue
        # The sequencer's phases are the markers; a used tile unit opens with its
        # stream payloads' lanes as numbers.
        closed = u.name == "seq" or (used is not None and u.name not in used)
        w.group(u.title, closed=closed)
        ports = [(leaf, width) for leaf, width in sorted(sub.items())
                 if "." not in leaf and _PORT_SIGNALS.search(leaf)]
        for leaf, width in ports:                      # control, handshakes, counters
            if not leaf.endswith("__payload"):
                w.line(f"{u.scope}.{leaf}", width)
        _inside(w, u.scope, {n: wd for n, wd in sub.items() if "." in n}, lanes=u.tile)
        for leaf, width in ports:                      # then the streams' contents
            if leaf.endswith("__payload"):
                w.line(f"{u.scope}.{leaf}", width, open_payload=u.tile)
        w.end(u.title, closed=closed)
    out.write_text("\n".join(head + w.lines) + "\n")
    return out


def save_file_signals(text):
    """The dump signals a save file refers to: [(name, msb or None)] (vectors of bits
    name their parent vector)."""
    out = []
    for line in text.splitlines():
        if not line or line[0] in "@-*[^":
            continue
        refs = line.split()[1:] if line.startswith("#{") else [line]
        for ref in refs:
            ref = re.sub(r"^\(\d+\)", "", ref)
            m = re.match(r"^(.*)\[(\d+):0\]$", ref)
            out.append((m.group(1), int(m.group(2))) if m else (ref, None))
    return out
