"""Simulation tops the CLI, the bench and the tests share: name -> how to build it."""

import functools
from dataclasses import dataclass, field
from typing import Callable

from hdl.params import RduParams

from .build import Build, build
from .harness import Harness
from .verilog import to_verilog

__all__ = ["Design", "DESIGNS", "harness_for", "build_design"]


@dataclass(frozen=True)
class Design:
    name: str
    make: Callable[[RduParams], object]     # params -> Amaranth component
    depths: dict = field(default_factory=dict)
    description: str = ""


def _fpu(params):
    from hdl.numerics.fpu import Fpu
    return Fpu(lanes=params.pcu_lanes)


def _pcu(params):
    from hdl.pcu.pcu import Pcu
    return Pcu(params)


def _pmu(params):
    from hdl.pmu.pmu import Pmu
    return Pmu(params)


_PCU_DEPTH = 1 << 13

DESIGNS = {
    "fpu": Design("fpu", _fpu, {"i": 1 << 17, "o": 1 << 17},
                  "every numerics unit, pcu_lanes wide, behind one ready/valid stream"),
    "pcu": Design("pcu", _pcu, {k: _PCU_DEPTH for k in ("vin0", "vin1", "sin0", "vout", "sout")},
                  "one PCU (SIMD or systolic) with its input and output streams"),
    "pmu": Design("pmu", _pmu, {"vin": _PCU_DEPTH, "vout": _PCU_DEPTH, "wsin": 1 << 10,
                                "rsin": 1 << 10},
                  "one PMU (banks, address pipelines, N-buffering) with its vector streams"),
}


@functools.lru_cache(maxsize=8)
def harness_for(name: str, params: RduParams) -> Harness:
    """The simulation top of design ``name`` (memoized: Verilog generation takes seconds)."""
    if name not in DESIGNS:
        raise KeyError(f"unknown design {name!r}; known: {', '.join(DESIGNS)}")
    d = DESIGNS[name]
    return Harness(to_verilog(d.make(params)), depths=d.depths)


def build_design(name: str, params: RduParams, *, flow="fast", waves=False, log=None) -> Build:
    return build(harness_for(name, params), flow=flow, waves=waves, log=log)
