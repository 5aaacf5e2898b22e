"""The configuration bus: how a bitstream reaches every unit's config register.

The config controller turns a bitstream into *config beats* {unit, index, data}: word
``index`` (32 bits, little-endian order) of the config register of unit ``unit``. Every
unit holds a :class:`ConfigTarget` that listens on the bus and keeps its register; the
register's layout is the unit's own config layout (``pcu_config_layout`` and so on), so
bit positions are defined once, by the HDL, and firmware packs with the same layout.
"""

from amaranth import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["UNIT_BITS", "INDEX_BITS", "config_beat_layout", "config_words", "ConfigTarget"]

#: Config targets addressable on one bus.
UNIT_BITS = 10
#: 32-bit words per config register (up to 2**INDEX_BITS).
INDEX_BITS = 8

config_beat_layout = data.StructLayout({
    "data": unsigned(32), "index": unsigned(INDEX_BITS), "unit": unsigned(UNIT_BITS),
})


def config_words(layout):
    """32-bit words of a config register of ``layout``."""
    n = (data.Layout.cast(layout).size + 31) // 32
    if n > 1 << INDEX_BITS:
        raise ValueError(f"a config register of {data.Layout.cast(layout).size} bits needs "
                         f"{n} words; the bus addresses {1 << INDEX_BITS}")
    return n


class ConfigTarget(wiring.Component):
    """Unit ``unit``'s config register, written a word at a time from the bus (always
    ready; beats for other units pass by). ``writes`` counts the words it took.

    Attributes
    ----------
    bus : In(stream(config_beat_layout))
    config : Out(layout)
    writes : Out(16)
    """

    def __init__(self, layout, unit):
        if not 0 <= unit < 1 << UNIT_BITS:
            raise ValueError(f"config unit {unit} outside 0 .. {(1 << UNIT_BITS) - 1}")
        self.layout, self.unit = layout, unit
        self.words = config_words(layout)
        super().__init__({"bus": In(stream.Signature(config_beat_layout)),
                          "config": Out(layout), "writes": Out(16)})

    def elaborate(self, platform):
        m = Module()
        size = data.Layout.cast(self.layout).size
        b = self.bus.payload
        mine = Signal()
        m.d.comb += [self.bus.ready.eq(1), mine.eq(self.bus.valid & (b.unit == self.unit))]
        value = self.config.as_value()
        for k in range(self.words):
            hi = min(size, 32 * (k + 1))
            with m.If(mine & (b.index == k)):
                m.d.sync += value[32 * k:hi].eq(b.data[:hi - 32 * k])
        with m.If(mine):
            m.d.sync += self.writes.eq(self.writes + 1)
        return m
