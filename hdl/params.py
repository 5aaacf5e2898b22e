"""The one source of truth for every size in OpenRDU.

HDL elaborates from an :class:`RduParams` and firmware plans from the same object.
Two named presets follow ARCHITECTURE.md section 2: ``small`` (default, used by the
regression) and ``plasticine`` (the scale check). A TOML file can start from a preset
(``base = "small"``) and override any field.
"""

import dataclasses
import tomllib
from pathlib import Path

__all__ = ["RduParams", "ParamError", "PRESETS", "load_params", "BURST_BITS", "MAX_BURST"]

#: Beats per memory request: 1 .. MAX_BURST (a protocol constant of the top-level network;
#: memories are laid out in blocks of MAX_BURST beats). Here, below every unit, because
#: the parameter checks need it too.
BURST_BITS = 4
MAX_BURST = 1 << BURST_BITS


class ParamError(ValueError):
    """An impossible or inconsistent parameter value; the message names the field."""


def _is_pow2(n):
    return isinstance(n, int) and n > 0 and (n & (n - 1)) == 0


#: Fields where 0 is meaningful.
_MAY_BE_ZERO = {"mem_jitter"}


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
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type is int or f.type == "int":
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ParamError(f"{f.name}: must be an integer, got {value!r}")
                if value < 0 or (value == 0 and f.name not in _MAY_BE_ZERO):
                    raise ParamError(f"{f.name}: must be positive, got {value}")
        if not isinstance(self.clock_ghz, (int, float)) or self.clock_ghz <= 0:
            raise ParamError(f"clock_ghz: must be a positive number, got {self.clock_ghz!r}")
        for name in ("pcu_lanes", "pmu_banks", "pmu_bank_words", "hbm_channels",
                     "hbm_bytes_per_cycle", "ddr_bytes_per_cycle", "host_bytes_per_cycle",
                     "hbm_capacity", "ddr_capacity", "rdn_flows", "agcu_tags", "dma_tags"):
            if not _is_pow2(getattr(self, name)):
                raise ParamError(f"{name}: must be a power of two, got {getattr(self, name)}")
        if self.pcu_fifo_depth < 2:
            raise ParamError(f"pcu_fifo_depth: an input FIFO needs at least 2 entries to "
                             f"stream at full rate, got {self.pcu_fifo_depth}")
        if self.rdn_flows < 2:
            raise ParamError(f"rdn_flows: a flow table needs at least 2 entries, got {self.rdn_flows}")
        if self.pcu_lanes < 2:
            raise ParamError(f"pcu_lanes: the reduction tree needs at least 2 lanes, got {self.pcu_lanes}")
        if self.pmu_banks < self.pcu_lanes:
            raise ParamError(
                f"pmu_banks: {self.pmu_banks} banks cannot serve one {self.pcu_lanes}-lane "
                f"vector per cycle; need pmu_banks >= pcu_lanes")
        for name in ("hbm_bytes_per_cycle", "ddr_bytes_per_cycle"):
            if getattr(self, name) < 4:
                raise ParamError(f"{name}: must carry at least one 32-bit word per cycle, "
                                 f"got {getattr(self, name)}")
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
        if not 1 <= self.agcu_stores <= 4:
            raise ParamError(f"agcu_stores: must be 1 .. 4 store streams per AGCU, got "
                             f"{self.agcu_stores}")
        for name in ("agcu_tags", "dma_tags"):
            if not 2 <= getattr(self, name) <= 64:
                raise ParamError(f"{name}: must be 2 .. 64 (6-bit request tags), got "
                                 f"{getattr(self, name)}")

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
