"""The one source of truth for every size in OpenRDU.

HDL elaborates from an :class:`RduParams` and firmware plans from the same object.
Two named presets follow ARCHITECTURE.md section 2: ``small`` (default, used by the
regression) and ``plasticine`` (the scale check). A TOML file can start from a preset
(``base = "small"``) and override any field.
"""

import dataclasses
import tomllib
from pathlib import Path

__all__ = ["RduParams", "ParamError", "PRESETS", "RANGES", "load_params", "BURST_BITS",
           "MAX_BURST", "CONFIG_UNITS", "ranges_table"]

#: Beats per memory request: 1 .. MAX_BURST (a protocol constant of the top-level network;
#: memories are laid out in blocks of MAX_BURST beats). Here, below every unit, because
#: the parameter checks need it too.
BURST_BITS = 4
MAX_BURST = 1 << BURST_BITS


class ParamError(ValueError):
    """An impossible or inconsistent parameter value; the message names the field."""


def _is_pow2(n):
    return isinstance(n, int) and n > 0 and (n & (n - 1)) == 0


#: Ids on the config bus (``hdl.configbus.UNIT_BITS``; here, below every unit, because the
#: parameter checks need it): a tile unit and three switches per grid position, then one
#: per AGCU; the last id is the program checksum's.
CONFIG_UNITS = 1 << 10

#: Every integer field's accepted range (inclusive) and what bounds it. The cross-field
#: rules are in :meth:`RduParams.__post_init__`; the README's table is this one.
RANGES = {
    "rows": (1, 16, "grid rows; unit ids: 4 x rows x cols + agcus <= 1023"),
    "cols": (1, 16, "grid columns; unit ids: 4 x rows x cols + agcus <= 1023"),
    "pcu_lanes": (2, 64, "power of two; the reduction tree needs at least 2 lanes"),
    "pcu_stages": (1, 16, "the systolic array is stages x lanes; <= pcu_lanes"),
    "pcu_fifo_depth": (2, 256, "an input FIFO streams at full rate with 2"),
    "pmu_banks": (2, 64, "power of two, >= pcu_lanes"),
    "pmu_bank_words": (16, 1 << 16, "power of two; a PMU holds <= 64 x 2**16 words"),
    "rdn_buffer_depth": (1, 64, "packets per switch input; 3 stream at full rate"),
    "rdn_flows": (2, 64, "power of two: flow-table entries of a switch input"),
    "rdn_tracks": (1, 16, "control-token tracks per link"),
    "agcus": (1, 32, "on the west and east edges: <= 2 x rows"),
    "agcu_tags": (2, 64, "power of two: 6-bit request tags"),
    "agcu_segments": (1, 64, "segment-table entries"),
    "agcu_stores": (1, 4, "store streams per AGCU"),
    "dma_tags": (2, 64, "power of two: 6-bit request tags"),
    "hbm_channels": (1, 16, "power of two"),
    "hbm_bytes_per_cycle": (4, 256, "power of two: one network beat, at least one 32-bit word"),
    "hbm_latency": (1, 100_000, "cycles"),
    "hbm_capacity": (1 << 12, 1 << 30, "power of two bytes; the testbench holds it in RAM"),
    "hbm_outstanding": (1, 256, "requests queued per channel"),
    "ddr_bytes_per_cycle": (4, 256, "power of two, at least one 32-bit word, "
                                    "<= hbm_bytes_per_cycle"),
    "ddr_latency": (1, 100_000, "cycles"),
    "ddr_capacity": (1 << 12, 1 << 30, "power of two bytes; the testbench holds it in RAM"),
    "ddr_outstanding": (1, 256, "requests queued"),
    "host_bytes_per_cycle": (1, 256, "power of two, <= hbm_bytes_per_cycle"),
    "host_latency": (1, 100_000, "cycles"),
    "mem_jitter": (0, 1023, "2**k - 1 extra cycles at most"),
}
#: ``clock_ghz``'s range (a float: only reports use it).
CLOCK_RANGE = (1e-3, 100.0)


@dataclasses.dataclass(frozen=True)
class RduParams:
    """Sizes of one RDU socket.

    Attributes
    ----------
    rows, cols : int
        Unit grid; PCUs and PMUs alternate in a checkerboard.
    pcu_lanes, pcu_stages : int
        SIMD lanes and pipeline stages of a PCU (the systolic array is stages x lanes).
    pcu_fifo_depth : int
        Elements buffered by each PCU input FIFO.
    pmu_banks, pmu_bank_words : int
        SRAM banks of a PMU and 32-bit words per bank.
    rdn_buffer_depth : int
        Packets buffered by every RDN switch input (the credits of the link feeding it);
        at least 3 for one packet per cycle per link (the credit loop is 3 cycles).
    rdn_flows : int
        Entries of each switch input's flow table (flow ids 0 .. rdn_flows-1).
    rdn_tracks : int
        1-bit control-token tracks per direction on every link of the control fabric.
    agcus : int
        Address generator / coalescing units, attached on the west and east edges.
    agcu_tags, agcu_segments : int
        Bursts an AGCU keeps in flight (its reorder buffer holds that many bursts) and
        entries of its segment table.
    agcu_stores : int
        Store streams of an AGCU (1 .. 4): each takes the packets of one arriving flow,
        so that many producers' results leave through one AGCU.
    dma_tags : int
        Bursts the DMA engine keeps in flight.
    hbm_channels, hbm_bytes_per_cycle, hbm_latency, hbm_capacity, hbm_outstanding :
        HBM controller stub: channels, bytes per cycle per channel, read latency in
        cycles, total bytes, requests queued per channel. One HBM channel beat is also
        the width of the top-level network.
    ddr_bytes_per_cycle, ddr_latency, ddr_capacity, ddr_outstanding :
        DDR controller stub (one channel).
    host_bytes_per_cycle, host_latency :
        Host link.
    mem_jitter : int
        Extra latency of each HBM / DDR request, pseudo-random in 0 .. mem_jitter
        (2**k - 1; 0 = fixed latency). Channels still answer in order, so requests to
        different channels come back out of order.
    clock_ghz : float
        Nominal clock used only to convert cycles to time in reports.
    """

    name: str = "custom"
    rows: int = 2
    cols: int = 4
    pcu_lanes: int = 8
    pcu_stages: int = 4
    pcu_fifo_depth: int = 4
    pmu_banks: int = 8
    pmu_bank_words: int = 1024
    rdn_buffer_depth: int = 4
    rdn_flows: int = 16
    rdn_tracks: int = 2
    agcus: int = 2
    agcu_tags: int = 16
    agcu_segments: int = 4
    agcu_stores: int = 3
    dma_tags: int = 16
    hbm_channels: int = 2
    hbm_bytes_per_cycle: int = 32
    hbm_latency: int = 64
    hbm_capacity: int = 4 << 20
    hbm_outstanding: int = 8
    ddr_bytes_per_cycle: int = 8
    ddr_latency: int = 150
    ddr_capacity: int = 16 << 20
    ddr_outstanding: int = 8
    host_bytes_per_cycle: int = 2
    host_latency: int = 500
    mem_jitter: int = 0
    clock_ghz: float = 1.0

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ParamError(f"name: must be a non-empty string, got {self.name!r}")
        for name, (lo, hi, why) in RANGES.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ParamError(f"{name}: must be an integer, got {value!r}")
            if not lo <= value <= hi:
                sign = "must be positive" if value <= 0 < lo else "out of range"
                raise ParamError(f"{name}: {sign}: {lo} .. {hi} ({why}), got {value}")
        c = self.clock_ghz
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not \
                CLOCK_RANGE[0] <= c <= CLOCK_RANGE[1]:      # NaN fails both comparisons
            raise ParamError(f"clock_ghz: must be a positive number {CLOCK_RANGE[0]} .. "
                             f"{CLOCK_RANGE[1]}, got {c!r}")
        units = 4 * self.rows * self.cols + self.agcus
        if units > CONFIG_UNITS - 1:
            raise ParamError(f"rows x cols, agcus: 4 x {self.rows} x {self.cols} + {self.agcus} "
                             f"= {units} config units; the config bus addresses "
                             f"{CONFIG_UNITS - 1} (and the program checksum)")
        for name in ("pcu_lanes", "pmu_banks", "pmu_bank_words", "hbm_channels",
                     "hbm_bytes_per_cycle", "ddr_bytes_per_cycle", "host_bytes_per_cycle",
                     "hbm_capacity", "ddr_capacity", "rdn_flows", "agcu_tags", "dma_tags"):
            if not _is_pow2(getattr(self, name)):
                raise ParamError(f"{name}: must be a power of two, got {getattr(self, name)}")
        if self.pmu_banks < self.pcu_lanes:
            raise ParamError(
                f"pmu_banks: {self.pmu_banks} banks cannot serve one {self.pcu_lanes}-lane "
                f"vector per cycle; need pmu_banks >= pcu_lanes")
        if self.pcu_stages > self.pcu_lanes:
            raise ParamError(
                f"pcu_stages: {self.pcu_stages} stages, more than the {self.pcu_lanes} lanes "
                f"(pcu_lanes): in systolic mode A's vector carries one value per stage; need "
                f"pcu_stages <= pcu_lanes")
        if self.rows * self.cols < 2:
            raise ParamError(f"rows x cols: the grid needs at least one PCU and one PMU, "
                             f"got {self.rows} x {self.cols}")
        if self.agcus > 2 * self.rows:
            raise ParamError(f"agcus: {self.agcus} AGCUs do not fit on the west and east edges "
                             f"of a {self.rows}-row grid (at most {2 * self.rows})")
        if self.hbm_capacity < self.hbm_channels * self.hbm_bytes_per_cycle:
            raise ParamError("hbm_capacity: smaller than one transfer across all channels")
        for name in ("ddr_bytes_per_cycle", "host_bytes_per_cycle"):
            if getattr(self, name) > self.hbm_bytes_per_cycle:
                raise ParamError(f"{name}: {getattr(self, name)} B exceeds the top-level "
                                 f"network beat (hbm_bytes_per_cycle = "
                                 f"{self.hbm_bytes_per_cycle} B)")
        beat_block = MAX_BURST * self.hbm_bytes_per_cycle
        if self.hbm_capacity % (beat_block * self.hbm_channels) or self.ddr_capacity % beat_block:
            raise ParamError(f"hbm_capacity / ddr_capacity: must be whole {beat_block}-byte "
                             f"bursts on every channel")
        if self.mem_jitter & (self.mem_jitter + 1):
            raise ParamError(f"mem_jitter: must be 2**k - 1 (0, 1, 3, 7, ...), got "
                             f"{self.mem_jitter}")

    # Derived sizes -------------------------------------------------------------------

    @property
    def pcus(self):
        """Number of PCUs in the checkerboard (position (r, c) is a PCU when r + c is even)."""
        return (self.rows * self.cols + 1) // 2

    @property
    def pmus(self):
        return self.rows * self.cols // 2

    @property
    def macs_per_pcu(self):
        return self.pcu_lanes * self.pcu_stages

    @property
    def hbm_peak_bytes_per_cycle(self):
        return self.hbm_channels * self.hbm_bytes_per_cycle

    def replace(self, **changes):
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        return dataclasses.asdict(self)

    # Loading -------------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, mapping, *, source="mapping"):
        mapping = dict(mapping)
        base_name = mapping.pop("base", None)
        if base_name is not None and not isinstance(base_name, str):
            raise ParamError(f"base: must be a preset name (a string: "
                             f"{', '.join(map(repr, PRESETS))}) in {source}, got {base_name!r}")
        if base_name is not None and base_name not in PRESETS:
            raise ParamError(f"base: unknown preset {base_name!r} in {source}; "
                             f"known: {', '.join(PRESETS)}")
        base = PRESETS[base_name] if base_name is not None else cls()
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(mapping) - known)
        if unknown:
            raise ParamError(f"{unknown[0]}: unknown parameter in {source}; "
                             f"known: {', '.join(sorted(known))}")
        return dataclasses.replace(base, **mapping)

    @classmethod
    def from_toml(cls, path):
        path = Path(path)
        try:
            with path.open("rb") as f:
                mapping = tomllib.load(f)
        except FileNotFoundError:
            raise ParamError(f"config file {path} does not exist") from None
        except IsADirectoryError:
            raise ParamError(f"config file {path} is a directory, not a TOML file") from None
        except OSError as e:
            raise ParamError(f"config file {path} cannot be read: {e.strerror}") from None
        except UnicodeDecodeError as e:
            raise ParamError(f"config file {path} is not UTF-8 text (byte {e.start}: "
                             f"{e.reason}); TOML files are UTF-8") from None
        except tomllib.TOMLDecodeError as e:
            raise ParamError(f"config file {path} is not valid TOML: {e}") from None
        mapping.setdefault("name", path.stem)
        return cls.from_mapping(mapping, source=str(path))


PRESETS = {
    "small": RduParams(name="small"),
    # Between the two: small's units on a 4 x 4 grid (8 PCUs, 8 PMUs) with an AGCU on
    # every edge row and HBM channels to match — to see kernels spread as the array grows.
    "medium": RduParams(name="medium", rows=4, cols=4, agcus=4, hbm_channels=4,
                        hbm_capacity=8 << 20, hbm_outstanding=8),
    "plasticine": RduParams(
        name="plasticine", rows=4, cols=8, pcu_lanes=16, pcu_stages=6,
        pmu_banks=16, pmu_bank_words=4096, agcus=4,
        hbm_channels=4, hbm_bytes_per_cycle=64, hbm_latency=100, hbm_capacity=16 << 20,
        hbm_outstanding=16,
        ddr_bytes_per_cycle=16, ddr_latency=200, ddr_capacity=64 << 20,
        host_bytes_per_cycle=4, host_latency=1000),
}


def ranges_table():
    """The README's table of the config fields: each preset's value, the accepted range
    and what bounds it (from :data:`RANGES`; the cross-field rules are checked in
    :meth:`RduParams.__post_init__` and named in its messages)."""
    names = list(PRESETS)
    lines = [f"| field | {' | '.join(names)} | range | rule |",
             f"|---|{'---|' * len(names)}---|---|"]
    for field, (lo, hi, why) in RANGES.items():
        vals = " | ".join(str(getattr(PRESETS[n], field)) for n in names)
        lines.append(f"| `{field}` | {vals} | {lo} .. {hi} | {why} |")
    vals = " | ".join(str(PRESETS[n].clock_ghz) for n in names)
    lines.append(f"| `clock_ghz` | {vals} | {CLOCK_RANGE[0]} .. {CLOCK_RANGE[1]} | GHz, a "
                 f"finite number; reports only |")
    return "\n".join(lines) + "\n"


def load_params(name_or_path="small"):
    """A preset by name, or a TOML file by path."""
    if isinstance(name_or_path, RduParams):
        return name_or_path
    if name_or_path in PRESETS:
        return PRESETS[name_or_path]
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return RduParams.from_toml(path)
    raise ParamError(f"config: {name_or_path!r} is neither a preset ({', '.join(PRESETS)}) "
                     f"nor a TOML file")
