"""Pipelined FP32 adder."""

from amaranth import C, Cat, Module, Mux, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .pipeline import Stages, round_and_pack

__all__ = ["FpAdd"]


class FpAdd(wiring.Component):
    """FP32 ``a + b``, or ``a - b`` when ``sub`` is high.

    Round to nearest even, subnormal inputs read as zero, tiny results flushed to zero,
    canonical NaN; bit-exact with ``firmware.numerics.fp32_add``.

    Pipeline (one result per cycle while ``en`` is high): unpack and order by magnitude |
    align with sticky and add | normalize | round and pack, with a register after each
    step for ``latency`` = 4 (the default). Lower latencies drop the inner registers
    (3: after align and normalize; 2: after align; 1: output register only), trading
    clock period for depth, e.g. for a one-element-per-cycle accumulator.
    """

    LATENCY = 4
    _REGISTERED = {4: {0, 1, 2}, 3: {1, 2}, 2: {1}, 1: set()}

    def __init__(self, latency=4):
        if latency not in self._REGISTERED:
            self._MustUse__silence = True        # never built: no "unused" warning
            raise ValueError(f"FpAdd latency must be 1..4, got {latency}")
        self.LATENCY = latency
        super().__init__({"en": In(1), "a": In(32), "b": In(32), "sub": In(1), "r": Out(32)})

    def elaborate(self, platform):
        m = Module()
        st = Stages(m, self.en, "add")
        keep = self._REGISTERED[self.LATENCY]

        def wire(value, name=None):
            # An unregistered boundary is still a named net: reusing the bare expression
            # would copy its whole tree into every use.
            sig = Signal(Value.cast(value).shape(), name=name)
            m.d.comb += sig.eq(value)
            return sig

        def boundary(k):
            return st.reg if k in keep else wire
        r0, r1, r2 = boundary(0), boundary(1), boundary(2)

        # Stage 0: unpack (DAZ), classify, order by magnitude.
        a = self.a
        b = Cat(self.b[:31], self.b[31] ^ self.sub)
        sa, ea, fa = a[31], a[23:31], Mux(a[23:31] == 0, 0, a[:23])
        sb, eb, fb = b[31], b[23:31], Mux(b[23:31] == 0, 0, b[:23])
        nan = ((ea == 255) & (fa != 0)) | ((eb == 255) & (fb != 0)) | \
              ((ea == 255) & (eb == 255) & (sa != sb))
        swap = Cat(fb, eb) > Cat(fa, ea)
        sx, ex, fx = Mux(swap, sb, sa), Mux(swap, eb, ea), Mux(swap, fb, fa)
        sy, ey, fy = Mux(swap, sa, sb), Mux(swap, ea, eb), Mux(swap, fa, fb)
        d = Signal(8)
        m.d.comb += d.eq(ex - ey)
        s0_sx, s0_ex = r0(sx), r0(ex)
        s0_mx = r0(Mux(ex == 0, 0, Cat(fx, C(1, 1))))
        s0_my = r0(Mux(ey == 0, 0, Cat(fy, C(1, 1))))
        s0_d = r0(Mux(d > 27, 27, d)[:5])
        s0_sub = r0(sx != sy)
        s0_nan = r0(nan)

        # Stage 1: align the smaller operand (keeping a sticky bit) and add.
        mx3 = Cat(C(0, 3), s0_mx)
        my3 = Cat(C(0, 3), s0_my)
        shifted = Signal(27)
        m.d.comb += shifted.eq(my3 >> s0_d)
        sticky = (shifted << s0_d)[:27] != my3
        my_al = shifted | sticky
        total = Mux(s0_sub, (mx3 - my_al)[:28], mx3 + my_al)
        s1_sum = r1(total[:28])
        s1_ex, s1_sx, s1_sub, s1_nan = r1(s0_ex), r1(s0_sx), r1(s0_sub), r1(s0_nan)

        # Stage 2: normalize (right by one on carry, left by the leading-zero count).
        carry = s1_sum[27]
        s_c = wire(Mux(carry, Cat(s1_sum[1] | s1_sum[0], s1_sum[2:28]), s1_sum[:27]))
        # Leading zeros and the left shift at once, in five levels (16, 8, 4, 2, 1): at
        # each, a value whose top bits are all zero moves up by that many.
        v = Cat(C(0, 5), s_c)                  # s_c's top bit at bit 31
        zeros = []
        for k in (16, 8, 4, 2, 1):
            z = wire(v[32 - k:] == 0)
            v = wire(Mux(z, (v << k)[:32], v))
            zeros.append(z)
        lz = wire(Mux(s_c == 0, 0, Cat(*reversed(zeros))))
        s2_sig = r2(v[5:32])
        s2_exp = r2((s1_ex + carry - lz).as_signed())
        s2_zero = r2(s_c == 0)
        s2_sx, s2_sub, s2_nan = r2(s1_sx), r2(s1_sub), r2(s1_nan)
        s2_xinf = r2(s1_ex == 255)

        # Stage 3: round to nearest even, overflow to infinity, flush tiny results.
        mant, grs = s2_sig[3:27], s2_sig[:3]
        up = (grs > 4) | ((grs == 4) & mant[0])
        result = round_and_pack(m, sign=s2_sx, exp=s2_exp, mant=mant, up=up, nan=s2_nan,
                                inf=s2_xinf, zero=s2_zero, zero_sign=s2_sx & ~s2_sub)
        m.d.comb += self.r.eq(st.reg(result, "add_r"))
        return m
