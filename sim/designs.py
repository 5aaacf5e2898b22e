"""Simulation tops the CLI, the bench and the tests share: name -> how to build it."""

import functools
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from hdl.params import RduParams

from . import toolchain
from .build import Build, build
from .harness import DEFAULT_DEPTH, Harness
from .verilog import to_verilog

__all__ = ["Design", "DESIGNS", "harness_for", "build_design"]


@dataclass(frozen=True)
class Design:
    name: str
    make: Callable[[RduParams], object]     # params -> Amaranth component
    depths: dict = field(default_factory=dict)
    description: str = ""
    timed: bool = False          # harness records per-word cycles (see sim.harness)
    default_depth: int = DEFAULT_DEPTH


def _fpu(params):
    from hdl.numerics.fpu import Fpu
    return Fpu(lanes=params.pcu_lanes)


def _pcu(params):
    from hdl.pcu.pcu import Pcu
    return Pcu(params)


def _pmu(params):
    from hdl.pmu.pmu import Pmu
    from hdl.shared import Standalone, unit_module_name
    # Through the shared-module path the tile uses (one Verilog module per unit type).
    return Standalone(unit_module_name("pmu", params), lambda: Pmu(params))


def _rdn(params):
    from hdl.rdn.rdn import Rdn
    return Rdn(params)


def _socket(params):
    from hdl.socket import Socket
    return Socket(params)


def _memory(params):
    from hdl.memsys import MemorySystem
    return MemorySystem(params)


_PCU_DEPTH = 1 << 13
#: Host-link streams hold a 1 MiB transfer (the expert-switch bench).
HOST_DEPTH = 1 << 15
#: Vector packets per AGCU stream (vin, vout) in one run.
AGCU_DEPTH = 1 << 12
#: Every RDN stream port gets a source or sink this deep (packets per test run).
RDN_DEPTH = 1 << 10

DESIGNS = {
    "fpu": Design("fpu", _fpu, {"i": 1 << 17, "o": 1 << 17},
                  "every numerics unit, pcu_lanes wide, behind one ready/valid stream"),
    "pcu": Design("pcu", _pcu, {k: _PCU_DEPTH for k in ("vin0", "vin1", "sin0", "vout", "sout")},
                  "one PCU (SIMD or systolic) with its input and output streams"),
    "pmu": Design("pmu", _pmu, {"vin": _PCU_DEPTH, "vout": _PCU_DEPTH, "wsin": 1 << 10,
                                "rsin": 1 << 10},
                  "one PMU (banks, address pipelines, N-buffering) with its vector streams"),
    "rdn": Design("rdn", _rdn, {}, "the RDN: vector, scalar and control fabrics of the grid, "
                  "every unit-side and edge port a stream", timed=True, default_depth=RDN_DEPTH),
    "socket": Design("socket", _socket, {"host__req": 1 << 12, "host__wdata": HOST_DEPTH,
                                         "host__resp": HOST_DEPTH, "dma": 16},
                     "the socket: tile, AGCUs, memory system, kernel sequencer and config "
                     "controller behind the host registers", default_depth=16),
    "memory": Design("memory", _memory, {"host__req": 1 << 12, "host__wdata": HOST_DEPTH,
                                         "host__resp": HOST_DEPTH, "dma": 16},
                     "the memory system: HBM and DDR stubs (backing stores in the testbench), "
                     "host link, DMA engine, top-level network, AGCUs with their RDN-side "
                     "vector streams", timed=True, default_depth=AGCU_DEPTH),
}

_HDL = Path(__file__).resolve().parent.parent / "hdl"


def _hdl_digest():
    """The HDL sources and the Verilog conversion (``sim/verilog.py``)."""
    h = hashlib.sha256()
    for f in sorted(_HDL.rglob("*.py")):
        h.update(str(f.relative_to(_HDL)).encode())
        h.update(f.read_bytes())
    h.update((Path(__file__).parent / "verilog.py").read_bytes())
    return h.hexdigest()


def design_verilog(name: str, params: RduParams) -> str:
    """Verilog of design ``name``, cached on disk by the HDL sources and the parameters
    (elaborating the whole RDN takes about 20 s)."""
    import amaranth
    key = hashlib.sha256(repr((name, params, _hdl_digest(), amaranth.__version__))
                         .encode()).hexdigest()[:24]
    path = toolchain.cache_root() / "verilog" / f"{name}-{key}.v"
    if path.exists():
        return path.read_text()
    text = to_verilog(DESIGNS[name].make(params))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return text


@functools.lru_cache(maxsize=8)
def harness_for(name: str, params: RduParams) -> Harness:
    """The simulation top of design ``name`` (memoized: Verilog generation takes seconds)."""
    if name not in DESIGNS:
        raise KeyError(f"unknown design {name!r}; known: {', '.join(DESIGNS)}")
    d = DESIGNS[name]
    return Harness(design_verilog(name, params), depths=d.depths, timed=d.timed,
                   default_depth=d.default_depth)


def build_design(name: str, params: RduParams, *, flow="fast", waves=False, log=None) -> Build:
    return build(harness_for(name, params), flow=flow, waves=waves, log=log)
