"""Building blocks shared by the pipelined arithmetic units.

Every arithmetic unit is a fixed-latency pipeline that advances when its ``en`` input is
high (a global stall, driven by back-pressure). :class:`Stages` registers values under
that enable; :func:`fp32_pack` and :func:`round_and_pack` build FP32 results.
"""

from amaranth import C, Cat, Module, Mux, Signal, Value, signed
from amaranth.lib import data

from .tables import QNAN16, QNAN32

__all__ = ["Stages", "QNAN32", "QNAN16", "fp32_pack", "round_and_pack", "select_aligned"]


class Stages:
    """Registers values of a stall-able pipeline.

    ``reg(value)`` returns a signal that takes ``value`` on the next clock edge on which
    ``en`` is high. ``delay(value, n)`` chains ``n`` such registers. The registers are
    in clock domain ``domain``.
    """

    def __init__(self, m: Module, en: Value, prefix: str = "s", domain: str = "sync"):
        self.m = m
        self.en = en
        self.prefix = prefix
        self.domain = domain
        self._count = 0

    def reg(self, value, name=None):
        if name is None:
            name = f"{self.prefix}{self._count}"
            self._count += 1
        shape = value.shape() if isinstance(value, data.View) else Value.cast(value).shape()
        sig = Signal(shape, name=name)
        with self.m.If(self.en):
            self.m.d[self.domain] += sig.eq(value)
        return sig

    def delay(self, value, n, name=None):
        for i in range(n):
            value = self.reg(value, name=None if name is None else f"{name}_d{i + 1}")
        return value


def fp32_pack(sign, exp, frac):
    """Concatenate FP32 fields (``exp`` and ``frac`` truncated to their widths)."""
    return Cat(frac[:23], exp[:8], sign)


def round_and_pack(m, *, sign, exp, mant, up, nan, inf, zero, zero_sign=None):
    """FP32 result of a rounded significand, with the special cases in priority order
    NaN > infinite operand > zero result > overflow (infinity) > tiny (FTZ) > normal.

    ``mant`` is 24 bits with its leading one at bit 23, ``up`` the round increment,
    ``exp`` the signed biased exponent before rounding. Returns a 32-bit signal.
    """
    rounded = Signal(25)
    m.d.comb += rounded.eq(mant + up)
    e = Signal(signed(12))
    m.d.comb += e.eq(exp + rounded[24])
    frac = Mux(rounded[24], rounded[1:24], rounded[:23])
    result = Signal(32)
    with m.If(nan):
        m.d.comb += result.eq(QNAN32)
    with m.Elif(inf):
        m.d.comb += result.eq(fp32_pack(sign, C(255, 8), C(0, 23)))
    with m.Elif(zero):
        m.d.comb += result.eq(fp32_pack(sign if zero_sign is None else zero_sign, C(0, 8), C(0, 23)))
    with m.Elif(e >= 255):
        m.d.comb += result.eq(fp32_pack(sign, C(255, 8), C(0, 23)))
    with m.Elif(e <= 0):
        m.d.comb += result.eq(fp32_pack(sign, C(0, 8), C(0, 23)))
    with m.Else():
        m.d.comb += result.eq(fp32_pack(sign, e[:8], frac))
    return result


def select_aligned(m, st, op, latency, results, width=32):
    """Result of a multi-unit lane: each unit's output delayed to ``latency`` (delay
    lines shared by ops of one unit), chosen by ``op`` delayed by ``latency``; unlisted
    opcodes give 0.

    ``results`` maps opcode -> (unit output, unit latency).
    """
    delayed = {}
    for out, lat in results.values():
        if id(out) not in delayed:
            if lat > latency:
                raise ValueError(f"unit latency {lat} exceeds the lane latency {latency}")
            delayed[id(out)] = st.delay(out, latency - lat)
    op_out = st.delay(op, latency, name=f"{st.prefix}_op")
    r = Signal(width, name=f"{st.prefix}_result")
    with m.Switch(op_out):
        for code, (out, _) in results.items():
            with m.Case(code):
                m.d.comb += r.eq(delayed[id(out)])
        with m.Default():
            m.d.comb += r.eq(0)
    return r
