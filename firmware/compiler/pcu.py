"""PCU programs: readable descriptions, validated, packed with the HDL's config layouts.

So far: the header counter chain, and the reference of the body's functional unit. A
program that cannot be expressed raises
:class:`PcuProgramError` naming the part and field.
"""

from dataclasses import dataclass

import numpy as np

from hdl.params import RduParams
from hdl.pcu.config import COUNTER_BITS, MAX_COUNTERS, ChainConfig

__all__ = ["PcuProgramError", "Counter", "pack_chain", "chain_steps", "alu_reference"]

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


# --- body functional unit -------------------------------------------------------------

def alu_reference(op, a, b, c):
    """Bit-exact result of ``AluOp`` ``op`` (array of opcodes) on uint32 operands."""
    from firmware import numerics as N
    from hdl.pcu.alu import AluOp
    op, a, b, c = (np.asarray(x, np.uint32) for x in (op, a, b, c))
    table = {
        AluOp.PASS: lambda: a,
        AluOp.FMA: lambda: N.simd_fma(a, b, c),
        AluOp.ADD: lambda: N.fp32_add(a, b),
        AluOp.SUB: lambda: N.fp32_sub(a, b),
        AluOp.MUL: lambda: N.fp32_mul(a, b),
        AluOp.MAX: lambda: N.fp32_max(a, b),
        AluOp.MIN: lambda: N.fp32_min(a, b),
        AluOp.CMP_EQ: lambda: N.fp32_cmp(a, b, N.CmpOp.EQ),
        AluOp.CMP_LT: lambda: N.fp32_cmp(a, b, N.CmpOp.LT),
        AluOp.CMP_LE: lambda: N.fp32_cmp(a, b, N.CmpOp.LE),
        AluOp.SELECT: lambda: N.select(c, a, b),
        AluOp.AND: lambda: a & b,
        AluOp.OR: lambda: a | b,
        AluOp.XOR: lambda: a ^ b,
        AluOp.SHL: lambda: N.shl(a, b),
        AluOp.SHR: lambda: N.shr(a, b),
        AluOp.IADD: lambda: N.i32_add(a, b),
        AluOp.IMUL: lambda: N.i32_mul(a, b),
        AluOp.ILT: lambda: N.i32_lt(a, b),
    }
    out = np.zeros(op.shape, dtype=np.uint32)
    for code, fn in table.items():
        sel = op == code.value
        if sel.any():
            out[sel] = np.broadcast_to(fn(), op.shape)[sel]
    return out
