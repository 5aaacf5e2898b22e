"""The device API on the simulated socket (cocotb on Verilator).

``RtlDevice`` drives the socket design's host registers through a ``tb.lib.harness``
``TbHarness`` (given, not imported: firmware does not depend on the testbench); memory
is written and read by backdoor (initial data is not part of a kernel's cycles), kernels
are loaded and run by the kernel sequencer — program load and execution are simulated
cycles, read back from the counters.
"""

from hdl.rdn.config import switch_counters_layout
from hdl.sequencer import SeqError, SeqPhase
from hdl.socket import counters_layout, host_port
from hdl.tile import is_pcu

from .device import Device, DeviceError, LoadedProgram
from .launch import Copy, launch_words

__all__ = ["DeviceError", "LoadedProgram", "RtlDevice", "decode"]


def decode(layout, value):
    """A register value of ``layout`` as nested dicts / lists of ints."""
    from amaranth.lib import data

    def walk(v):
        if not isinstance(v, data.Const):
            return int(v)
        layout = v.shape()
        if isinstance(layout, data.ArrayLayout):
            return [walk(v[i]) for i in range(layout.length)]
        return {name: walk(v[name]) for name, _ in layout}
    return walk(data.Layout.cast(layout).from_bits(value))


#: SeqPhase as a message says it.
_PHASES = {SeqPhase.RECORD: "the record fetch", SeqPhase.PROGRAM: "the program load",
           SeqPhase.KERNEL: "the kernel", SeqPhase.COPY: "the copy"}


class RtlDevice(Device):
    def __init__(self, tb, params, image):
        super().__init__(params)
        self.tb, self.image = tb, image
        #: An error cleared the datapath (programs included): the next list's first
        #: launch must load its program.
        self.cleared = False
        self._handles = {}

    def _reg(self, name, index=None):
        """The testbench handle of host register ``name`` (``hdl.socket.host_registers``),
        looked up once (the register map is built per lookup)."""
        h = self._handles.get((name, index))
        if h is None:
            h = self._handles[(name, index)] = self.tb.port(host_port(self.params, name, index))
        return h

    async def _store(self, addr, words):
        await self.image.write(self.tb, addr, words)

    async def _load(self, addr, n):
        return await self.image.read(self.tb, addr, n)

    async def run(self, launches, *, timeout_cycles=1 << 24, kernel_timeout=1 << 20,
                  poll=256):
        """Run ``launches`` (a list of :class:`Launch`) on the sequencer; returns the
        counters after. ``kernel_timeout`` (cycles, 0 = none) is the sequencer's own
        per-iteration watchdog (a kernel that stalls stops with TIMEOUT);
        ``timeout_cycles`` bounds the whole wait here."""
        self._check_launches(launches)
        first = next((x for x in launches if not isinstance(x, Copy)), None)
        if self.cleared and first is not None and first.beats == 0:
            raise DeviceError("the last error cleared the datapath and its programs: the "
                              "first launch after it must load its program (reload=True)")
        self.cleared = False
        return await self.run_records(launch_words(self.params, launches), len(launches),
                                      timeout_cycles=timeout_cycles,
                                      kernel_timeout=kernel_timeout, poll=poll)

    async def run_records(self, words, count, *, timeout_cycles=1 << 24,
                          kernel_timeout=1 << 20, poll=256, at=None):
        """:meth:`run` on ``count`` records already packed into ``words`` (a test's way
        to hand the hardware a record firmware would refuse); ``at``: the beat address the
        sequencer reads them from instead of the launch area (nothing written then)."""
        if at is None:
            await self.write(self.launch_area, words)
            at = self.launch_area.addr // self.map.words
        tb = self.tb
        self._reg("launches").value = at
        self._reg("count").value = count
        self._reg("timeout").value = kernel_timeout
        await tb.cycles(2)
        self._reg("go").value = 1
        await tb.cycles(1)
        self._reg("go").value = 0
        await tb.cycles(4)
        waited = 0
        while int(self._reg("busy").value):
            if waited >= timeout_cycles:
                raise DeviceError(f"the sequencer is still busy after {timeout_cycles} cycles")
            await tb.cycles(poll)
            waited += poll
        err = SeqError(int(self._reg("error").value))
        if err != SeqError.NONE:
            self.cleared = True
            raise DeviceError(self._error_message(err))
        return await self.counters()

    def _error_message(self, err):
        """What stopped the sequencer, where, and the registers that say more."""
        p = self.params
        phase = _PHASES[SeqPhase(int(self._reg("phase").value))]
        if err == SeqError.FAULT:
            faults = int(self._reg("fault").value)
            detail = ", ".join(f"AGCU {k} at segment word {int(self._reg('fault_addr', k).value)}"
                               for k in range(p.agcus) if faults >> k & 1)
        elif err == SeqError.DMA:
            detail = "the DMA engine refused a copy record's descriptor"
        elif err == SeqError.MEMORY:
            beat = int(self._reg("decode_addr").value)
            detail = (f"a request outside memory at beat {beat:#x} (word {beat * self.map.words:#x}"
                      f"; memory ends at beat {self.map.beats:#x})")
        elif err == SeqError.CHECKSUM:
            detail = "program checksum: its check beats do not match its beats; nothing started"
        elif err == SeqError.LINK:
            bad = int(self._reg("credit_error").value)
            detail = "a switch input overran its buffer: " + ", ".join(
                f"{'vector' if k < p.rows * p.cols else 'scalar'} switch "
                f"{divmod(k % (p.rows * p.cols), p.cols)}" for k in range(2 * p.rows * p.cols)
                if bad >> k & 1)
        else:
            detail = "still busy: " + (", ".join(self._busy()) or "nothing")
        return f"kernel sequencer stopped: {err.name} in {phase}; {detail}"

    def _busy(self):
        """Names of the units and AGCUs busy now."""
        p = self.params
        units, agcus = int(self._reg("unit_busy").value), int(self._reg("agcu_busy").value)
        names = [f"{'PCU' if is_pcu(r, c) else 'PMU'} ({r},{c})"
                 for r in range(p.rows) for c in range(p.cols)
                 if units >> (r * p.cols + c) & 1]
        return names + [f"AGCU {k}" for k in range(p.agcus) if agcus >> k & 1]

    async def counters(self):
        """Every counter: ``counters_layout`` fields, and ``vec`` / ``sca``: per switch
        (row-major) its port counters."""
        out = decode(counters_layout(self.params), int(self._reg("counters").value))
        n = self.params.rows * self.params.cols
        for fabric in ("vec", "sca"):
            out[fabric] = [decode(switch_counters_layout(),
                                  int(self._reg(f"{fabric}_counters", k).value))
                           for k in range(n)]
        return out
