"""PCU programs: readable descriptions, validated, packed with the HDL's config layouts.

So far: the header counter chain. A program that cannot be expressed raises
:class:`PcuProgramError` naming the part and field.
"""

from dataclasses import dataclass

from hdl.params import RduParams
from hdl.pcu.config import COUNTER_BITS, MAX_COUNTERS, ChainConfig

__all__ = ["PcuProgramError", "Counter", "pack_chain", "chain_steps"]

_SMIN, _SMAX = -(1 << (COUNTER_BITS - 1)), (1 << (COUNTER_BITS - 1)) - 1
_STRIDE_MAX = (1 << (COUNTER_BITS - 1)) - 1


class PcuProgramError(ValueError):
    """A PCU program the hardware cannot run; the message names where and why."""


@dataclass(frozen=True)
class Counter:
    """``for v in range(min, max, stride)``."""
    min: int
    max: int
    stride: int = 1


def _check_chain(counters, lanes):
    counters = list(counters)
    if len(counters) > MAX_COUNTERS:
        raise PcuProgramError(f"counters: {len(counters)} nested counters, the header has "
                              f"{MAX_COUNTERS}")
    for i, c in enumerate(counters):
        where = f"counter {i}" + (" (innermost)" if i == len(counters) - 1 else "")
        for name in ("min", "max", "stride"):
            if not isinstance(getattr(c, name), int):
                raise PcuProgramError(f"{where}: {name} must be an integer, got "
                                      f"{getattr(c, name)!r}")
        if not (_SMIN <= c.min <= _SMAX and _SMIN <= c.max <= _SMAX):
            raise PcuProgramError(f"{where}: range [{c.min}, {c.max}) exceeds INT32")
        if c.stride < 1 or c.stride > _STRIDE_MAX:
            raise PcuProgramError(f"{where}: stride {c.stride} must be in 1..{_STRIDE_MAX}")
        if c.min >= c.max:
            raise PcuProgramError(f"{where}: empty range [{c.min}, {c.max})")
        step = c.stride * (lanes if i == len(counters) - 1 else 1)
        if c.max - 1 + step + c.stride * (lanes - 1) > _SMAX:
            raise PcuProgramError(f"{where}: values past max overflow INT32 "
                                  f"(max {c.max}, step {step})")
    return counters


def pack_chain(counters, params: RduParams) -> int:
    """Config bits of a counter chain (``ChainConfig``); ``[]`` leaves it unused."""
    counters = _check_chain(counters, params.pcu_lanes)
    ctr = [{"min": c.min, "max": c.max, "stride": c.stride} for c in counters]
    ctr += [{"min": 0, "max": 0, "stride": 0}] * (MAX_COUNTERS - len(ctr))
    return ChainConfig.const({"depth": len(counters), "ctr": ctr}).as_value().value


def chain_steps(counters, lanes):
    """Reference: the elements a chain emits, as dicts of ``value`` (list), ``lane``
    (list), ``mask`` (int), ``wrap`` (int) and ``last`` (bool)."""
    counters = _check_chain(counters, lanes)
    d = len(counters)
    if d == 0:
        return []
    ranges = [range(c.min, c.max, c.stride * (lanes if i == d - 1 else 1))
              for i, c in enumerate(counters)]
    steps = []

    def walk(level, prefix):
        r = ranges[level]
        for k, v in enumerate(r):
            values = prefix + [v]
            if level + 1 < d:
                walk(level + 1, values)
                continue
            inner = counters[-1]
            lane = [v + l * inner.stride for l in range(lanes)]
            mask = sum(1 << l for l in range(lanes) if lane[l] < inner.max)
            # wrap[i]: counters i..d-1 are all at their last value.
            at_last = [values[j] == ranges[j][-1] for j in range(d)]
            wrap = sum(1 << i for i in range(d) if all(at_last[i:]))
            steps.append({"value": values + [0] * (MAX_COUNTERS - d), "lane": lane,
                          "mask": mask, "wrap": wrap, "last": bool(wrap & 1)})

    walk(0, [])
    return steps
