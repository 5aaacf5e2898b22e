"""AGCU packer and unpacker: memory beats <-> dense vector packets."""

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.memory.config import wdata_layout
from hdl.packet import vector_layout

__all__ = ["beat_words_layout", "Packer", "Unpacker"]


def beat_words_layout(words):
    """A memory beat whose words ``lo .. hi - 1`` belong to the transfer; ``last`` on the
    transfer's final beat."""
    wb = (words - 1).bit_length()
    return data.StructLayout({"data": data.ArrayLayout(32, words), "lo": unsigned(max(1, wb)),
                              "hi": unsigned(wb + 1), "last": unsigned(1)})


def _prefix_mask(n, width):
    """``n`` low bits set (0 <= n <= width)."""
    return (Const(1, width + 1) << n) - 1


class Packer(wiring.Component):
    """Beats in, vector packets out: the transfer's words in order, ``lanes`` per packet,
    the final packet (``last``) masked to the words left. A beat is taken while less than
    a packet's words wait; a beat wider than a packet leaves as several packets, one per
    cycle (beats of ``words`` <= ``lanes``: one beat per cycle).

    ``busy``: a packet is waiting to leave (words still short of a packet are not
    counted; a transfer cut short by a fault leaves them behind, ``start`` drops them).
    """

    def __init__(self, words, lanes):
        self.words, self.lanes = words, lanes
        super().__init__({"i": In(stream.Signature(beat_words_layout(words))),
                          "o": Out(stream.Signature(vector_layout(lanes))),
                          "start": In(1), "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        W, L = self.words, self.lanes
        acc = Signal(32 * (L + W))
        fill = Signal(range(L + W + 1))
        # The transfer's last beat is in ``acc``: what is left there leaves, the last
        # packet marked, before the next transfer's beats come in.
        ending = Signal()
        o = self.o
        can, drain = Signal(), Signal()
        m.d.comb += [can.eq(~o.valid | o.ready),
                     drain.eq((fill >= L) | (ending & (fill != 0))),
                     self.busy.eq(o.valid | drain)]
        with m.If(o.valid & o.ready):
            m.d.sync += o.valid.eq(0)

        b = self.i.payload
        n = Signal(range(W + 1))
        placed = Signal(32 * (L + W))
        new = Signal(32 * (L + W))
        total = Signal(range(L + W + 1))
        m.d.comb += [
            n.eq(b.hi - b.lo),
            placed.eq(_low_words(b.data.as_value() >> _words(b.lo), n, W) << _words(fill)),
            new.eq(acc | placed),
            total.eq(fill + n),
            self.i.ready.eq(can & ~drain),
        ]
        with m.If(drain):
            with m.If(can):
                tail = fill <= L
                m.d.sync += [o.valid.eq(1), o.payload.data.eq(acc[:32 * L]),
                             o.payload.mask.eq(Mux(tail, _prefix_mask(fill, L), (1 << L) - 1)),
                             o.payload.last.eq(ending & tail),
                             acc.eq(acc >> (32 * L)), fill.eq(Mux(tail, 0, fill - L)),
                             ending.eq(ending & ~tail)]
        with m.Elif(self.i.valid & self.i.ready):
            with m.If(total >= L):
                m.d.sync += [o.valid.eq(1), o.payload.data.eq(new[:32 * L]),
                             o.payload.mask.eq((1 << L) - 1),
                             o.payload.last.eq(b.last & (total == L)),
                             acc.eq(new >> (32 * L)), fill.eq(total - L),
                             ending.eq(b.last & (total > L))]
            with m.Elif(b.last):
                m.d.sync += [o.valid.eq(1), o.payload.data.eq(new[:32 * L]),
                             o.payload.mask.eq(_prefix_mask(total, L)), o.payload.last.eq(1),
                             acc.eq(0), fill.eq(0)]
            with m.Else():
                m.d.sync += [acc.eq(new), fill.eq(total)]
        with m.If(self.start):
            m.d.sync += [acc.eq(0), fill.eq(0), ending.eq(0)]
        return m


def _words(n):
    """A shift amount of ``n`` 32-bit words."""
    return Cat(Const(0, 5), n)


def _low_words(value, n, width):
    """The low ``n`` 32-bit words of ``value`` (``width`` words), the rest zero."""
    return Cat(Mux(w < n, value[32 * w:32 * (w + 1)], 0) for w in range(width))


class Unpacker(wiring.Component):
    """Vector packets and write bursts in, masked memory beats out: each burst's beats
    take the next words of the packet stream into positions ``lo ..`` of its first beat
    through ``.. hi - 1`` of its last; other words are masked off. A packet's words are
    its low lanes up to the first clear mask bit (a beat wider than a packet gathers
    several). ``done`` (a stream) gives each burst once its last beat has left.
    """

    def __init__(self, words, lanes, burst_layout):
        self.words, self.lanes = words, lanes
        super().__init__({"i": In(stream.Signature(vector_layout(lanes))),
                          "bursts": In(stream.Signature(burst_layout)),
                          "o": Out(stream.Signature(wdata_layout(words))),
                          "done": Out(stream.Signature(burst_layout)),
                          "start": In(1)})

    def elaborate(self, platform):
        m = Module()
        W, L = self.words, self.lanes
        acc = Signal(32 * (L + W))
        fill = Signal(range(L + W + 1))
        k = Signal(len(self.bursts.payload.len))
        bu = self.bursts.payload
        lo = Signal(range(W))
        hi = Signal(range(W + 1))
        need = Signal(range(W + 1))
        final = Signal()
        m.d.comb += [
            final.eq(k == bu.len),
            lo.eq(Mux(k == 0, bu.lo, 0)),
            hi.eq(Mux(final, bu.hi, W)),
            need.eq(hi - lo),
        ]
        # A beat leaves when its words are here and the done queue can take the burst.
        go = Signal()
        m.d.comb += [
            go.eq(self.bursts.valid & (fill >= need) & (~final | self.done.ready)),
            self.o.valid.eq(go),
            self.o.payload.data.eq((acc << _words(lo))[:32 * W]),
            self.o.payload.mask.eq((_prefix_mask(need, W) << lo)[:W]),
            self.done.payload.eq(bu),
        ]
        fire = Signal()
        m.d.comb += [fire.eq(go & self.o.ready),
                     self.done.valid.eq(fire & final),
                     self.bursts.ready.eq(fire & final)]
        with m.If(fire):
            m.d.sync += k.eq(Mux(final, 0, k + 1))
        used = Signal(range(W + 1))
        m.d.comb += used.eq(Mux(fire, need, 0))
        rest = Signal(32 * (L + W))
        left = Signal(range(L + W + 1))
        m.d.comb += [rest.eq(acc >> _words(used)), left.eq(fill - used)]
        # Packets in while there is room.
        pk = self.i.payload
        cnt = Signal(range(L + 1))
        for j in range(L):
            with m.If(Cat(pk.mask[:j + 1]).all()):
                m.d.comb += cnt.eq(j + 1)
        m.d.comb += self.i.ready.eq(left + cnt <= L + W)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [acc.eq(rest | (_low_words(pk.data.as_value(), cnt, L) << _words(left))),
                         fill.eq(left + cnt)]
        with m.Else():
            m.d.sync += [acc.eq(rest), fill.eq(left)]
        with m.If(self.start):
            m.d.sync += [acc.eq(0), fill.eq(0), k.eq(0)]
        return m
