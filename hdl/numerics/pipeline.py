"""Building blocks shared by the pipelined arithmetic units.

Every arithmetic unit is a fixed-latency pipeline that advances when its ``en`` input is
high (a global stall, driven by back-pressure). :class:`Stages` registers values under
that enable; :func:`fp32_fields` and :func:`fp32_pack` name the FP32 fields once.
"""

from amaranth import Cat, Module, Mux, Signal, Value
from amaranth.lib import data

__all__ = ["Fp32", "Bf16", "Stages", "QNAN32", "QNAN16", "fp32_pack", "saturate"]

#: FP32 and BF16 bit layouts (LSB first).
Fp32 = data.StructLayout({"frac": 23, "exp": 8, "sign": 1})
Bf16 = data.StructLayout({"frac": 7, "exp": 8, "sign": 1})

QNAN32 = 0x7FC00000
QNAN16 = 0x7FC0


class Stages:
    """Registers values of a stall-able pipeline.

    ``reg(value)`` returns a signal that takes ``value`` on the next clock edge on which
    ``en`` is high. ``delay(value, n)`` chains ``n`` such registers.
    """

    def __init__(self, m: Module, en: Value, prefix: str = "s"):
        self.m = m
        self.en = en
        self.prefix = prefix
        self._count = 0

    def reg(self, value, name=None):
        if name is None:
            name = f"{self.prefix}{self._count}"
            self._count += 1
        shape = value.shape() if isinstance(value, data.View) else Value.cast(value).shape()
        sig = Signal(shape, name=name)
        with self.m.If(self.en):
            self.m.d.sync += sig.eq(value)
        return sig

    def delay(self, value, n, name=None):
        for i in range(n):
            value = self.reg(value, name=None if name is None else f"{name}_d{i + 1}")
        return value


def fp32_pack(sign, exp, frac):
    """Concatenate FP32 fields (``exp`` and ``frac`` truncated to their widths)."""
    return Cat(frac[:23], exp[:8], sign)


def saturate(value, lo, hi):
    return Mux(value < lo, lo, Mux(value > hi, hi, value))
