"""Tail functions exp2, rcp and rsqrt: table lookup plus quadratic interpolation.

The coefficient tables are ``hdl.numerics.tables.TABLES`` — the same numbers the reference
evaluates — stored in a ROM whose entry layout is sized from the table.
"""

from amaranth import C, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from .tables import EXP2_FRAC, TABLES, InterpTable

from .pipeline import QNAN32, Stages, fp32_pack

__all__ = ["Interpolator", "Exp2", "Rcp", "Rsqrt"]


def coefficient_layout(table: InterpTable):
    w0, w1, w2 = table.widths()
    return data.StructLayout({"c0": unsigned(w0), "c1": signed(w1), "c2": signed(w2)})


class Interpolator(wiring.Component):
    """Evaluates :meth:`hdl.numerics.tables.InterpTable.evaluate` bit-exactly.

    ``LATENCY`` = 4: ROM read | c2*d | (c1+t1)*d | c0+t2, round and clamp.
    """

    LATENCY = 4

    def __init__(self, table: InterpTable):
        self.table = table
        self.layout = coefficient_layout(table)
        super().__init__({
            "en": In(1),
            "index": In(range(table.segments)),
            "d": In(table.d_bits),
            "frac": Out(23),
        })

    def elaborate(self, platform):
        m = Module()
        t, L, F = self.table, self.table.d_bits, InterpTable.FRAC
        st = Stages(m, self.en, "interp")
        init = [{"c0": int(t.c0[i]), "c1": int(t.c1[i]), "c2": int(t.c2[i])}
                for i in range(t.segments)]
        m.submodules.rom = rom = memory.Memory(shape=self.layout, depth=t.segments, init=init)
        rd = rom.read_port(domain="sync")
        m.d.comb += [rd.addr.eq(self.index), rd.en.eq(self.en)]
        coef = rd.data
        d1 = st.reg(self.d)

        t1 = st.reg((coef.c2 * d1) >> L)
        c1_2, c0_2, d2 = st.reg(coef.c1), st.reg(coef.c0), st.reg(d1)

        t2 = st.reg(((c1_2 + t1) * d2) >> L)
        c0_3 = st.reg(c0_2)

        y = Signal(signed(F + 4))
        m.d.comb += y.eq(c0_3 + t2)
        rounded = (y + (1 << (F - 24))) >> (F - 23)
        frac = Mux(rounded < 0, 0, Mux(rounded > (1 << 23) - 1, (1 << 23) - 1, rounded))
        m.d.comb += self.frac.eq(st.reg(frac[:23], "interp_frac"))
        return m


class _TailUnit(wiring.Component):
    """An FP32 -> FP32 function built around an :class:`Interpolator`.

    Subclasses give ``front`` (input fields -> table index, offset and the side
    information the result needs) and ``pack`` (side information + fraction -> result).
    ``LATENCY`` = interpolator latency + 1 (the packing register).
    """

    LATENCY = Interpolator.LATENCY + 1
    TABLE = None

    en: In(1)
    a: In(32)
    r: Out(32)

    def elaborate(self, platform):
        m = Module()
        st = Stages(m, self.en, self.TABLE)
        m.submodules.interp = interp = Interpolator(TABLES[self.TABLE])
        x = self.a
        index, d, side = self.front(m, x[31], x[23:31], x[:23])
        m.d.comb += [interp.en.eq(self.en), interp.index.eq(index), interp.d.eq(d)]
        late = {k: st.delay(v, Interpolator.LATENCY, name=k) for k, v in side.items()}
        result = Signal(32)
        self.pack(m, result, late, interp.frac)
        m.d.comb += self.r.eq(st.reg(result, f"{self.TABLE}_r"))
        return m


def _sig(m, shape, value, name):
    s = Signal(shape, name=name)
    m.d.comb += s.eq(value)
    return s


class Rcp(_TailUnit):
    """``1 / x``; bit-exact with ``firmware.numerics.rcp``."""

    TABLE = "rcp"

    def front(self, m, s, e, f):
        field = _sig(m, signed(10), Mux(f == 0, 254 - e, 253 - e), "rcp_field")
        L = TABLES[self.TABLE].d_bits
        return f[L:], f[:L], {"s": s, "e": e, "fzero": f == 0, "fnz": f != 0, "field": field}

    def pack(self, m, result, v, frac):
        with m.If(v["e"] == 255):
            m.d.comb += result.eq(Mux(v["fnz"], QNAN32, fp32_pack(v["s"], C(0, 8), C(0, 23))))
        with m.Elif(v["e"] == 0):
            m.d.comb += result.eq(fp32_pack(v["s"], C(255, 8), C(0, 23)))
        with m.Elif(v["field"] <= 0):
            m.d.comb += result.eq(fp32_pack(v["s"], C(0, 8), C(0, 23)))
        with m.Else():
            m.d.comb += result.eq(fp32_pack(v["s"], v["field"][:8], Mux(v["fzero"], 0, frac)))


class Rsqrt(_TailUnit):
    """``1 / sqrt(x)``; bit-exact with ``firmware.numerics.rsqrt``."""

    TABLE = "rsqrt"

    def front(self, m, s, e, f):
        big_e = _sig(m, signed(10), e - 127, "rsqrt_e")
        odd = big_e[0]
        exact = ~odd & (f == 0)
        field = _sig(m, signed(10), Mux(exact, 127, 126) - (big_e >> 1), "rsqrt_field")
        L = TABLES[self.TABLE].d_bits
        return Cat(f[L:], odd), f[:L], {
            "s": s, "e": e, "fnz": f != 0, "exact": exact, "field": field}

    def pack(self, m, result, v, frac):
        with m.If(v["e"] == 255):
            m.d.comb += result.eq(Mux(v["fnz"] | v["s"], QNAN32, 0))
        with m.Elif(v["e"] == 0):
            m.d.comb += result.eq(fp32_pack(v["s"], C(255, 8), C(0, 23)))
        with m.Elif(v["s"]):
            m.d.comb += result.eq(QNAN32)
        with m.Else():
            m.d.comb += result.eq(fp32_pack(C(0, 1), v["field"][:8], Mux(v["exact"], 0, frac)))


class Exp2(_TailUnit):
    """``2 ** x``; bit-exact with ``firmware.numerics.exp2``.

    ``x`` becomes a signed fixed-point number with ``EXP2_FRAC`` fraction bits (low
    bits truncated); its integer part is the result exponent, its fraction indexes
    the table.
    """

    TABLE = "exp2"

    def front(self, m, s, e, f):
        mant = Cat(f, C(1, 1))
        lshift = e - (127 + 23 - EXP2_FRAC)
        rshift = (127 + 23 - EXP2_FRAC) - e
        mag = _sig(m, 38, Mux(lshift >= 0, mant << Mux(lshift > 13, 13, lshift)[:4],
                              mant >> Mux(rshift > 31, 31, rshift)[:5]), "exp2_mag")
        fixed = _sig(m, signed(40), Mux(s, -mag, mag), "exp2_fixed")
        n = fixed >> EXP2_FRAC
        fr = fixed[:EXP2_FRAC]
        field = _sig(m, signed(12), n + 127, "exp2_field")
        L = TABLES[self.TABLE].d_bits
        return fr[L:], fr[:L], {
            "s": s, "nan": (e == 255) & (f != 0), "big": e >= 127 + 7, "field": field}

    def pack(self, m, result, v, frac):
        with m.If(v["nan"]):
            m.d.comb += result.eq(QNAN32)
        with m.Elif(v["big"]):
            m.d.comb += result.eq(Mux(v["s"], 0, 0x7F800000))
        with m.Elif(v["field"] <= 0):
            m.d.comb += result.eq(0)
        with m.Elif(v["field"] >= 255):
            m.d.comb += result.eq(0x7F800000)
        with m.Else():
            m.d.comb += result.eq(fp32_pack(C(0, 1), v["field"][:8], frac))
