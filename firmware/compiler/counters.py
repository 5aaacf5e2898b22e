"""Counter chains (``hdl.counters.CounterChain``, used by PCU headers and PMU/AGCU
address pipelines): readable descriptions, validation, packing and the reference
sequence. Errors are raised as the caller's error class, prefixed with where the chain is."""

from dataclasses import dataclass

from hdl.counters import COUNTER_BITS, MAX_COUNTERS, ChainConfig
from hdl.params import RduParams

__all__ = ["Counter", "check_chain", "pack_chain", "chain_steps"]

_SMIN, _SMAX = -(1 << (COUNTER_BITS - 1)), (1 << (COUNTER_BITS - 1)) - 1
_STRIDE_MAX = (1 << (COUNTER_BITS - 1)) - 1


@dataclass(frozen=True)
class Counter:
    """``for v in range(min, max, stride)``."""
    min: int
    max: int
    stride: int = 1


def check_chain(counters, lanes, error=ValueError, prefix=""):
    """``counters`` as a list, or ``error`` naming the counter and field."""
    counters = list(counters)
    if len(counters) > MAX_COUNTERS:
        raise error(f"{prefix}counters: {len(counters)} nested counters, a chain has "
                    f"{MAX_COUNTERS}")
    for i, c in enumerate(counters):
        where = f"{prefix}counter {i}" + (" (innermost)" if i == len(counters) - 1 else "")
        for name in ("min", "max", "stride"):
            if not isinstance(getattr(c, name), int):
                raise error(f"{where}: {name} must be an integer, got "
                            f"{getattr(c, name)!r}")
        if not (_SMIN <= c.min <= _SMAX and _SMIN <= c.max <= _SMAX):
            raise error(f"{where}: range [{c.min}, {c.max}) exceeds INT32")
        if c.stride < 1 or c.stride > _STRIDE_MAX:
            raise error(f"{where}: stride {c.stride} must be in 1..{_STRIDE_MAX}")
        if c.min >= c.max:
            raise error(f"{where}: empty range [{c.min}, {c.max})")
        step = c.stride * (lanes if i == len(counters) - 1 else 1)
        if c.max - 1 + step + c.stride * (lanes - 1) > _SMAX:
            raise error(f"{where}: values past max overflow INT32 "
                                  f"(max {c.max}, step {step})")
    return counters


def pack_chain(counters, params: RduParams, error=ValueError, prefix="", lanes=None) -> int:
    """Config bits of a counter chain (``ChainConfig``) of ``lanes`` (default the PCU's)
    lanes; ``[]`` leaves it unused."""
    counters = check_chain(counters, params.pcu_lanes if lanes is None else lanes, error,
                           prefix)
    ctr = [{"min": c.min, "max": c.max, "stride": c.stride} for c in counters]
    ctr += [{"min": 0, "max": 0, "stride": 0}] * (MAX_COUNTERS - len(ctr))
    return ChainConfig.const({"depth": len(counters), "ctr": ctr}).as_value().value


def chain_steps(counters, lanes, error=ValueError, prefix=""):
    """Reference: the elements a chain emits, as dicts of ``value`` (list), ``lane``
    (list), ``mask`` (int), ``wrap`` (int) and ``last`` (bool)."""
    counters = check_chain(counters, lanes, error, prefix)
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
