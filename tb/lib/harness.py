"""cocotb side of the simulation top built by ``sim/harness.py``.

A test loads each source stream by backdoor (a hex file read by ``$readmemh``), sets
seeds and idle/back-pressure rates, starts, and awaits one ``tb_done`` edge: no Python
runs per clock cycle. Afterwards it checks that no sink received more than expected
and reads the sinks back (``$writememh``).
"""

import json
import os
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import First, RisingEdge, Timer

from .payload import from_hex, to_hex

__all__ = ["TbHarness", "write_outputs", "rate_of"]


_OUTPUTS = {}


def write_outputs(**values):
    """Results for the launcher (``TestRun.outputs``); calls add to earlier ones."""
    _OUTPUTS.update(values)
    path = os.environ.get("OPENRDU_TB_OUT")
    if path:
        Path(path).write_text(json.dumps(_OUTPUTS, indent=1))


def rate_of(probability: float) -> int:
    """Per-cycle probability -> the 9-bit rate of the HDL drivers (256 = always)."""
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability {probability} outside [0, 1]")
    return round(probability * 256)


class TbHarness:
    def __init__(self, dut):
        self.dut = dut
        manifest = json.loads(Path(os.environ["OPENRDU_HARNESS"]).read_text())
        self.period = manifest["clock_period_ns"]
        self.streams = {s["name"]: s for s in manifest["streams"]}
        self.timed = manifest.get("timed", False)
        self.memories = {m["name"]: m for m in manifest.get("memories", [])}
        self.expected = {}
        self._clocked = False

    def _stream(self, name, kind):
        s = self.streams.get(name)
        if s is None or s["kind"] != kind:
            have = [n for n, v in self.streams.items() if v["kind"] == kind]
            raise KeyError(f"no {kind} stream {name!r}; the design has {have}")
        return s

    def sig(self, name):
        return getattr(self.dut, name)

    def port(self, name):
        """The tb_top variable of design port ``name`` (inputs reach the design one
        cycle after they are written)."""
        return getattr(self.dut, f"io_{name}")

    async def reset(self, cycles=4):
        """Reset the design and the stream drivers (again: a fresh run in the same
        simulation, memories of the backing-store models kept)."""
        if os.environ.get("OPENRDU_FLOW") == "default" and not self._clocked:
            Clock(self.dut.clk, self.period, unit="ns").start()
            self._clocked = True
        self.dut.tb_start.value = 0
        self.expected.clear()
        self.dut.rst_req.value = 1
        await Timer(cycles * self.period, unit="ns")
        self.dut.rst_req.value = 0
        await Timer(2 * self.period, unit="ns")

    def load(self, name, rows, *, seed=1, valid_probability=1.0, when=None):
        """Queue payload ``rows`` ((n, words) uint32, see ``tb.lib.payload``) on source
        stream ``name``. In a timed harness, ``when[i]`` is the first cycle (from the
        start) row i may be offered (default: at once)."""
        s = self._stream(name, "source")
        if self.timed:
            release = np.zeros(len(rows)) if when is None else np.asarray(when)
            if len(release) != len(rows):
                raise ValueError(f"stream {name}: {len(release)} release cycles for "
                                 f"{len(rows)} payloads")
            Path(f"{name}.when.hex").write_bytes(
                to_hex(release.astype(np.uint32).reshape(-1, 1), 32))
        elif when is not None:
            raise ValueError("release cycles need a timed harness (Design.timed)")
        if len(rows) > s["depth"]:
            raise ValueError(f"stream {name}: {len(rows)} payloads exceed the source depth "
                             f"{s['depth']}")
        if rows.shape[1] != (s["width"] + 31) // 32:
            raise ValueError(f"stream {name}: rows of {rows.shape[1]} words for a "
                             f"{s['width']}-bit payload")
        Path(f"{name}.hex").write_bytes(to_hex(rows, s["width"]))
        self.sig(f"{name}_count").value = len(rows)
        self.sig(f"{name}_seed").value = seed & 0xFFFFFFFF
        self.sig(f"{name}_rate").value = rate_of(valid_probability)

    def expect(self, name, count, *, seed=2, ready_probability=1.0):
        self._stream(name, "sink")
        self.expected[name] = count
        self.sig(f"{name}_expect").value = count
        self.sig(f"{name}_seed").value = seed & 0xFFFFFFFF
        self.sig(f"{name}_rate").value = rate_of(ready_probability)

    @classmethod
    async def started(cls, dut, config):
        """A harness on ``dut``, reset, configured with ``config`` and started."""
        tb = cls(dut)
        await tb.reset()
        await tb.configure(config)
        return tb

    async def configure(self, config, *, start="start"):
        """Load configuration bits into port ``config``, then pulse ``start``."""
        self.port("config").value = config
        await self.cycles(2)
        self.port(start).value = 1
        await self.cycles(1)
        self.port(start).value = 0

    async def cycles(self, n):
        """Let ``n`` clock cycles pass (one timer, no per-cycle Python)."""
        await Timer(n * self.period, unit="ns")

    async def run(self, timeout_cycles, drain_cycles=64):
        """Start every source and wait until every sink has its expected count.

        Returns (cycles, wall seconds) from start to done; the backdoor load is not
        counted. Fails, never hangs, when a stream stalls;
        fails when any sink receives more than expected during ``drain_cycles`` after.
        """
        dut = self.dut
        dut.tb_load.value = 1
        await Timer(self.period, unit="ns")
        dut.tb_load.value = 0
        await Timer(self.period, unit="ns")
        start = int(dut.cycle.value)
        dut.tb_start.value = 1
        t0 = time.perf_counter()
        await First(RisingEdge(dut.tb_done), Timer(timeout_cycles * self.period, unit="ns"))
        wall = time.perf_counter() - t0
        if not int(dut.tb_done.value):
            state = ", ".join(f"{n}: {int(self.sig(n + '_received').value)}/{c}"
                              for n, c in self.expected.items())
            raise AssertionError(f"timeout after {timeout_cycles} cycles; received {state}")
        cycles = int(dut.cycle.value) - start
        await Timer(drain_cycles * self.period, unit="ns")
        for n, c in self.expected.items():
            got = int(self.sig(f"{n}_received").value)
            assert got == c, f"sink {n}: {got} words received, expected exactly {c}"
        return cycles, wall

    async def _write_files(self):
        """Pulse ``tb_dump``: sinks (and timed sources) write their memories to files."""
        await _pulse(self.dut.tb_dump)

    async def dump(self, name):
        """The payload rows sink ``name`` received, in order."""
        s = self._stream(name, "sink")
        await self._write_files()
        n = min(self.expected.get(name, 0), s["depth"])
        if n == 0:
            return from_hex("", s["width"])
        return from_hex(Path(f"{name}.hex").read_text(), s["width"])[:n]

    async def times(self, name):
        """Timed harness: the cycle (from the start) each word of stream ``name`` was
        accepted (source) or arrived (sink), as an int64 array."""
        if not self.timed:
            raise ValueError("per-word cycles need a timed harness (Design.timed)")
        s = self.streams[name]
        await self._write_files()
        if s["kind"] == "source":
            n, path = int(self.sig(f"{name}_sent").value), Path(f"{name}.acc.hex")
        else:
            n, path = int(self.sig(f"{name}_received").value), Path(f"{name}.at.hex")
        n = min(n, s["depth"])
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        return from_hex(path.read_text(), 32)[:n, 0].astype(np.int64)

    # --- backing stores (tb/lib/mem_model.sv) -------------------------------------------

    def _memory(self, name):
        mem = self.memories.get(name)
        if mem is None:
            raise KeyError(f"no memory model {name!r}; the design has {sorted(self.memories)}")
        return mem

    async def mem_load(self, name, chunks):
        """Backdoor-write ``chunks`` [(beat, rows (n, words) uint32), ...] into memory
        model ``name`` (other beats keep their contents)."""
        mem = self._memory(name)
        parts = []
        for beat, rows in chunks:
            rows = np.asarray(rows, dtype=np.uint32).reshape(-1, mem["words"])
            _check_beats(name, mem, beat, len(rows))
            if len(rows):
                parts += [f"@{beat:x}\n".encode(), to_hex(rows, 32 * mem["words"])]
        Path(f"{name}.mem.hex").write_bytes(b"".join(parts))
        await _pulse(self.sig(f"{name}_load"))

    async def mem_dump(self, name, beat, n):
        """Rows (n, words) of memory model ``name`` from ``beat``."""
        mem = self._memory(name)
        if n <= 0:
            return np.zeros((0, mem["words"]), dtype=np.uint32)
        _check_beats(name, mem, beat, n)
        self.sig(f"{name}_lo").value = beat
        self.sig(f"{name}_hi").value = beat + n - 1
        await Timer(1, unit="ns")
        await _pulse(self.sig(f"{name}_dump"))
        rows = from_hex(Path(f"{name}.dump.hex").read_text(), 32 * mem["words"])
        if len(rows) != n:
            raise AssertionError(f"memory {name}: dump gave {len(rows)} beats, wanted {n}")
        return rows


async def _pulse(sig):
    """A 1 ns pulse on a backdoor trigger (``always @(posedge ...)`` in the HDL drivers)."""
    sig.value = 1
    await Timer(1, unit="ns")
    sig.value = 0
    await Timer(1, unit="ns")


def _check_beats(name, mem, beat, n):
    if beat < 0 or beat + n > 1 << mem["addr_bits"]:
        raise ValueError(f"memory {name}: beats {beat} .. {beat + n - 1} outside 0 .. "
                         f"{(1 << mem['addr_bits']) - 1}")
