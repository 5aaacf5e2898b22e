"""A socket run's timeline, recorded by the testbench (``python -m sim run --trace``).

Two kinds of record, appended as JSON lines to the file ``OPENRDU_TIMELINE`` names
(``RESOLUTION:PATH``), the cycle of each (``t``) from ``tb_top``'s counter:

* **edges**, exact to the cycle: every change of the sequencer's ``activity`` (record
  fetch, program load, arguments, kernel, copy, clear) and of the ``unit_busy`` /
  ``agcu_busy`` / ``dma_busy`` status registers — value-change callbacks, so a Python
  wakeup per change, none per cycle;
* **samples** every ``RESOLUTION`` cycles while the sequencer is busy (and at its start and
  end): the raw cumulative counters a trace needs per interval — each unit's busy cycles,
  its output's stall cycles, its inputs' starve cycles and packets (its switch's local
  ports), every
  switch's packets in, every memory channel's bytes, the sequencer's cycle counters.

``sim/timeline.py`` turns the file into a Perfetto trace and a picture; nothing here
changes the run (the recorder only reads).
"""

import json
import os
from pathlib import Path

import cocotb
from amaranth.lib import data
from cocotb.triggers import FallingEdge, First, RisingEdge, Timer, ValueChange

from hdl.memory.config import MemoryMap
from hdl.rdn.config import LINKS, LOCAL_OUT, N_IN, switch_counters_layout
from hdl.socket import counters_layout, host_port

from .args import ENV_TIMELINE

__all__ = ["ENV_TIMELINE", "TimelineRecorder", "start_timeline"]


def _field(layout, *path):
    """(offset, width) of the field at ``path`` (names and indices) inside ``layout``."""
    offset, shape = 0, data.Layout.cast(layout)
    for key in path:
        f = shape[key]
        offset += f.offset
        shape = f.shape
        if isinstance(shape, data.Layout) or not hasattr(shape, "width"):
            shape = data.Layout.cast(shape)
    width = shape.size if isinstance(shape, data.Layout) else shape.width
    return offset, width


def _bits(value, where):
    offset, width = where
    return (value >> offset) & ((1 << width) - 1)


class TimelineRecorder:
    def __init__(self, tb, params, resolution, path):
        if resolution < 1:
            raise ValueError(f"timeline resolution {resolution}: a number of cycles >= 1")
        self.tb, self.params, self.resolution = tb, params, resolution
        self.path = Path(path)
        self.path.write_text("")
        self._lines = []
        n = params.rows * params.cols
        ctr, sw = counters_layout(params), switch_counters_layout()
        self._busy = [_field(ctr, "unit_busy", k) for k in range(n)]
        self._seq = {k: _field(ctr, "seq", k) for k in
                     ("launched", "load_cycles", "exec_cycles", "copy_cycles", "cycles")}
        self._mem = {r.name: [(_field(ctr, r.name, c, "read"), _field(ctr, r.name, c, "write"))
                              for c in range(r.channels)] for r in MemoryMap(params).regions}
        self._stall = _field(sw, "inp", LINKS, "stall")
        self._starve = [_field(sw, "out", LINKS + i, "starve") for i in range(LOCAL_OUT)]
        self._into = [_field(sw, "out", LINKS + i, "packets") for i in range(LOCAL_OUT)]
        self._packets = [_field(sw, "inp", i, "packets") for i in range(N_IN)]
        self._ctr = self._reg("counters")
        self._vec = [self._reg("vec_counters", k) for k in range(n)]
        self._head = {"params": params.name, "rows": params.rows, "cols": params.cols,
                      "agcus": params.agcus, "resolution": resolution,
                      "clock_ghz": params.clock_ghz}

    def _reg(self, name, index=None):
        return self.tb.port(host_port(self.params, name, index))

    def _now(self):
        return int(self.tb.dut.cycle.value)

    def _emit(self, **record):
        self._lines.append(json.dumps({"t": self._now(), **record}, separators=(",", ":")))

    def _flush(self):
        with self.path.open("a") as f:
            f.write("".join(line + "\n" for line in self._lines))
        self._lines.clear()

    def start(self):
        self._lines.append(json.dumps({"head": self._head}))
        self._flush()
        for name in ("activity", "unit_busy", "agcu_busy", "dma_busy"):
            cocotb.start_soon(self._edges(name))
        cocotb.start_soon(self._sampler())

    async def _edges(self, name):
        sig = self._reg(name)
        last = None
        while True:
            v = int(sig.value)
            if v != last:
                self._emit(**{name: v})
                last = v
            await ValueChange(sig)

    def sample(self):
        """The counters now, as one record."""
        c = int(self._ctr.value)
        vec = [int(h.value) for h in self._vec]
        self._emit(sample={
            "busy": [_bits(c, f) for f in self._busy],
            "stall": [_bits(v, self._stall) for v in vec],
            "starve": [[_bits(v, f) for f in self._starve] for v in vec],
            "into": [[_bits(v, f) for f in self._into] for v in vec],
            "packets": [sum(_bits(v, f) for f in self._packets) for v in vec],
            "mem": {r: [[_bits(c, rd), _bits(c, wr)] for rd, wr in chans]
                    for r, chans in self._mem.items()},
            "seq": {k: _bits(c, f) for k, f in self._seq.items()},
        })

    async def _sampler(self):
        busy = self._reg("busy")
        period = self.tb.period * self.resolution
        while True:
            if not int(busy.value):
                await RisingEdge(busy)
            self._emit(list="start")
            self.sample()
            while True:
                fired = await First(Timer(period, unit="ns"), FallingEdge(busy))
                self.sample()
                if not isinstance(fired, Timer):
                    break
            self._emit(list="end")
            self._flush()


def start_timeline(tb, params):
    """Start a recorder when the launcher asked for one (``OPENRDU_TIMELINE``); None else."""
    spec = os.environ.get(ENV_TIMELINE)
    if not spec:
        return None
    resolution, _, path = spec.partition(":")
    rec = TimelineRecorder(tb, params, int(resolution), path)
    rec.start()
    return rec
