"""The configuration bus: how a bitstream reaches every unit's config register.

The config controller turns a bitstream into *config beats* {unit, index, data}: word
``index`` (32 bits, little-endian order) of the config register of unit ``unit``. Every
unit holds a :class:`ConfigTarget` that listens on the bus and keeps its register; the
register's layout is the unit's own config layout (``pcu_config_layout`` and so on), so
bit positions are defined once, by the HDL, and firmware packs with the same layout.
"""

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.params import CONFIG_UNITS

__all__ = ["UNIT_BITS", "INDEX_BITS", "COUNT_BITS", "BEAT_WORDS", "CHECK_UNIT",
           "config_beat_layout", "config_words", "ConfigTarget", "ConfigLoader"]

#: Config targets addressable on one bus (the parameter checks bound the grid by it).
UNIT_BITS = (CONFIG_UNITS - 1).bit_length()
#: 32-bit words per config register (up to 2**INDEX_BITS).
INDEX_BITS = 8

config_beat_layout = data.StructLayout({
    "data": unsigned(32), "index": unsigned(INDEX_BITS), "unit": unsigned(UNIT_BITS),
})

#: 32-bit words per config beat in a bitstream held in memory.
BEAT_WORDS = (config_beat_layout.size + 31) // 32
#: Config beats in one program load: 1 .. 2**COUNT_BITS - 1.
COUNT_BITS = 20
#: The bus id no unit has: a program's two check beats (index 0, 1), its last, carry the
#: sums of every beat before them (see :class:`ConfigLoader`).
CHECK_UNIT = (1 << UNIT_BITS) - 1


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
        if not 0 <= unit < CHECK_UNIT:
            raise ValueError(f"config unit {unit} outside 0 .. {CHECK_UNIT - 1}")
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


class ConfigLoader(wiring.Component):
    """The config controller's datapath: memory beats of a bitstream (``words`` 32-bit
    words each, config beats packed ``BEAT_WORDS`` words apart, as
    ``firmware/compiler/bitstream.py`` lays them out) -> one config beat per cycle on
    ``bus``. ``start`` with ``count`` begins a load of ``count`` config beats; the
    rest of the last memory beat is dropped. ``busy`` until the last beat is out.

    The program checksum: over the beats before the check beats, ``s1 += data + (index |
    unit << INDEX_BITS)`` and ``s2 += s1`` (mod 2**32); the program's last two beats (unit
    ``CHECK_UNIT``, index 0 and 1) carry ``s1`` and ``s2``. ``sum_error`` (after a load):
    they were missing, out of place or different — any one flipped bit of a program changes
    ``s1``. The beats went out on the bus all the same (the sequencer starts nothing then).

    Attributes
    ----------
    beats : In(stream(32 x words))      memory beats, in order.
    bus : Out(stream(config_beat_layout))
    start : In(1);  count : In(COUNT_BITS);  busy, sum_error : Out(1)
    """

    def __init__(self, words):
        if words % BEAT_WORDS:
            raise ValueError(f"a memory beat of {words} words holds no whole number of "
                             f"{BEAT_WORDS}-word config beats")
        self.words = words
        super().__init__({"beats": In(stream.Signature(unsigned(32 * words))),
                          "bus": Out(stream.Signature(config_beat_layout)),
                          "start": In(1), "count": In(COUNT_BITS), "busy": Out(1),
                          "sum_error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        per = self.words // BEAT_WORDS
        left = Signal(COUNT_BITS)
        j = Signal(range(per))
        m.d.comb += self.busy.eq(left != 0)
        with m.If(self.start):
            m.d.sync += [left.eq(self.count), j.eq(0)]
        m.d.comb += [
            self.bus.payload.eq(self.beats.payload.word_select(j, 32 * BEAT_WORDS)),
            self.bus.valid.eq(self.busy & self.beats.valid),
        ]
        with m.If(self.bus.valid & self.bus.ready):
            m.d.sync += left.eq(left - 1)
            last_piece = (j == per - 1) | (left == 1)
            m.d.comb += self.beats.ready.eq(last_piece)
            m.d.sync += j.eq(Mux(last_piece, 0, j + 1))
        self._checksum(m)
        return m

    def _checksum(self, m):
        s1, s2, checks, bad = Signal(32), Signal(32), Signal(2), Signal()
        b = self.bus.payload
        with m.If(self.start):
            m.d.sync += [s1.eq(0), s2.eq(0), checks.eq(0), bad.eq(0)]
        with m.Elif(self.bus.valid & self.bus.ready):
            with m.If(b.unit == CHECK_UNIT):
                want = Mux(b.index == 0, s1, s2)
                with m.If((b.index != checks) | (checks == 2) | (b.data != want)):
                    m.d.sync += bad.eq(1)
                m.d.sync += checks.eq(Mux(checks == 2, 2, checks + 1))
            with m.Else():
                s1_next = (s1 + b.data + Cat(b.index, b.unit))[:32]
                m.d.sync += [s1.eq(s1_next), s2.eq(s2 + s1_next)]
                with m.If(checks != 0):         # a beat after the check beats
                    m.d.sync += bad.eq(1)
        m.d.comb += self.sum_error.eq(bad | (checks != 2))
