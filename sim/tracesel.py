"""Which part of a run a waveform records: scopes (in full or at their ports) and a cycle
window, passed to OpenRDU's Verilator main (``sim/verilator_main.cpp``)."""

from dataclasses import dataclass

from .harness import TIME_UNITS_PER_CYCLE

__all__ = ["TraceSelection", "FULL_DEPTH"]

#: Levels below a scope that "in full" covers (deeper than any unit's hierarchy).
FULL_DEPTH = 99


@dataclass(frozen=True)
class TraceSelection:
    """``full``: scopes traced with everything inside; ``ports``: scopes traced at their
    own level (a unit's ports and its top-level signals). Both empty: everything.
    ``from_cycle`` / ``to_cycle``: the window of clock cycles recorded (None = open)."""
    full: tuple = ()
    ports: tuple = ()
    from_cycle: int | None = None
    to_cycle: int | None = None

    def __post_init__(self):
        for name in ("from_cycle", "to_cycle"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise ValueError(f"{name} must be a cycle number >= 0, not {v!r}")
        if None not in (self.from_cycle, self.to_cycle) and self.from_cycle >= self.to_cycle:
            raise ValueError(f"the waveform window is empty: from cycle {self.from_cycle} "
                             f"to cycle {self.to_cycle}")

    def main_args(self) -> list[str]:
        args = []
        for scope in self.full:
            args += ["--trace-scope", f"{FULL_DEPTH}:{scope}"]
        for scope in self.ports:
            args += ["--trace-scope", f"1:{scope}"]
        if self.from_cycle is not None:
            args += ["--trace-from", str(self.from_cycle * TIME_UNITS_PER_CYCLE)]
        if self.to_cycle is not None:
            args += ["--trace-to", str(self.to_cycle * TIME_UNITS_PER_CYCLE)]
        return args
