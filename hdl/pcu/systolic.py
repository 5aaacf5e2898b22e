"""Systolic mode of a PCU body: the operand network, accumulate loop, capture and drain of
an output-stationary ``stages`` x ``lanes`` FMA array.

Each functional unit (FU) ``(s, l)`` holds ``P = systolic_interleave()`` accumulators in
its FMA pipeline: the FMA loop (operand in to result out) is ``P`` cycles, so an FU
rotates over ``P`` output rows and still issues one MAC per cycle. A tile is therefore
``P * stages`` rows by ``lanes`` columns; output row ``r = j * stages + s`` lives in FU row
``s``, slot ``j``. One tile takes ``k`` accumulation steps of ``P`` cycles each; in cycle
``j`` of step ``kk``:

- ``a`` (the A column, from the left): lane ``s`` carries ``A[j * stages + s, kk]``;
- ``b`` (the B row, from the top): taken at ``j = 0`` and held for the step,
  ``B[kk, l]`` in lane ``l``.

A enters row ``s`` skewed by ``s`` cycles and moves one FU right per cycle; B enters
column ``l`` skewed by ``l`` and moves one FU down per cycle, so FU ``(s, l)`` sees the
matching pair. Each accumulator computes, in order of ``kk``,
``c = fma(A[r, kk], B[kk, l], c)`` from ``c = +0`` (``firmware.numerics.simd_fma``).

When a tile's last step leaves an FU, its ``P`` results shift into that FU's capture
bank; a completed bank is copied to the drain buffer in one cycle and drained one row per
cycle into the tail while the next tile accumulates. The array stalls as a whole (never
with a bubble inside a tile, which would break the accumulate loop) when A or B is
missing mid-tile, or when a completed bank cannot yet be copied out; between tiles it
inserts bubbles so that tiles start at least ``P + stages + lanes`` cycles apart (a
short tile must not overwrite a bank still being filled).
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.counters import ITER_BITS, runs_after_first
from hdl.numerics.pipeline import Stages

from .alu import Alu
from .config import TILE_COUNT_BITS, systolic_config_layout, systolic_interleave

__all__ = ["Systolic"]


class Systolic(wiring.Component):
    """Operands for the body's FU grid in systolic mode, and the drained result rows.

    ``array_en`` drives the body's enable; ``sys_a/b/c`` its operands; ``fu_r`` its
    results. ``o_*`` is the drained row stream (one row per cycle while ``o_ready``),
    ``o_last`` on the final row of the final tile. ``busy`` from ``start`` until then.
    ``repeat`` (with ``start``; 0 counts as 1): the tiles run that many times back to back
    (kernel looping); ``o_last`` only on the final repeat's final row.
    """

    def __init__(self, params):
        self.params = params
        self.lanes, self.stages = params.pcu_lanes, params.pcu_stages
        self.P = systolic_interleave()
        self.MIN_PERIOD = self.P + self.stages + self.lanes
        vec = data.ArrayLayout(32, self.lanes)
        grid = data.ArrayLayout(vec, self.stages)
        super().__init__({
            "config": In(systolic_config_layout(params)),
            "start": In(1), "repeat": In(ITER_BITS), "busy": Out(1),
            "a": In(stream.Signature(vec)), "b": In(stream.Signature(vec)),
            "array_en": Out(1),
            "sys_a": Out(grid), "sys_b": Out(grid), "sys_c": Out(grid), "fu_r": In(grid),
            "o_valid": Out(1), "o_ready": In(1), "o": Out(vec), "o_mask": Out(self.lanes),
            "o_last": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        S, L, P = self.stages, self.lanes, self.P
        cfg = self.config
        en = self.array_en

        # --- injection: tiles x k steps x P slots ---------------------------------
        active = Signal()
        k = Signal(cfg.k.shape())
        j = Signal(range(P))
        tile = Signal(TILE_COUNT_BITS)
        since = Signal(range(self.MIN_PERIOD + 1))
        b_hold = Signal(data.ArrayLayout(32, L))
        tile_start = (k == 0) & (j == 0)
        step_ok = self.a.valid & (self.b.valid | (j != 0))
        freeze = Signal()
        fire = Signal()
        m.d.comb += [
            en.eq(~freeze & (~active | tile_start | step_ok)),
            fire.eq(en & active & step_ok & (~tile_start | (since == self.MIN_PERIOD))),
            self.a.ready.eq(fire), self.b.ready.eq(fire & (j == 0)),
        ]
        in_left = Signal(ITER_BITS)           # repeats of the tiles after this one
        reps = runs_after_first(self.repeat)
        with m.If(self.start & ~active & ~self.busy):
            m.d.sync += [active.eq(cfg.tiles != 0), k.eq(0), j.eq(0), tile.eq(0),
                         since.eq(self.MIN_PERIOD), in_left.eq(reps)]
        with m.Elif(en):
            with m.If(fire & tile_start):
                m.d.sync += since.eq(1)
            with m.Elif(since != self.MIN_PERIOD):
                m.d.sync += since.eq(since + 1)
            with m.If(fire):
                m.d.sync += j.eq(j + 1)
                with m.If(j == 0):
                    m.d.sync += b_hold.eq(self.b.payload)
                with m.If(j == P - 1):
                    m.d.sync += [j.eq(0), k.eq(k + 1)]
                    with m.If(k == cfg.k - 1):
                        m.d.sync += [k.eq(0), tile.eq(tile + 1)]
                        with m.If(tile == cfg.tiles - 1):
                            m.d.sync += tile.eq(0)
                            with m.If(in_left == 0):
                                m.d.sync += active.eq(0)
                            with m.Else():
                                m.d.sync += in_left.eq(in_left - 1)

        b_now = Signal(data.ArrayLayout(32, L))
        m.d.comb += b_now.eq(self.b.payload)
        with m.If(j != 0):
            m.d.comb += b_now.eq(b_hold)
        flags = data.StructLayout({"valid": 1, "first": 1, "last": 1})
        inj = Signal(flags)
        m.d.comb += [inj.valid.eq(fire), inj.first.eq(k == 0), inj.last.eq(k == cfg.k - 1)]

        # --- skew and neighbour registers ------------------------------------------
        st = Stages(m, en, "sys")
        cap_pending = []
        last_fu = None
        banks = [[None] * L for _ in range(S)]
        for s in range(S):
            a_val = st.delay(self.a.payload[s], s, name=f"skew_a{s}")
            a_flags = st.delay(inj, s, name=f"skew_f{s}")
            for l in range(L):
                a_val = st.reg(a_val, name=f"a_{s}_{l}")
                a_flags = st.reg(a_flags, name=f"f_{s}_{l}")
                m.d.comb += [self.sys_a[s][l].eq(a_val),
                             self.sys_c[s][l].eq(Mux(a_flags.first, 0, self.fu_r[s][l]))]
                done = st.delay(a_flags.valid & a_flags.last, Alu.LATENCY,
                                name=f"done_{s}_{l}")
                cap_pending.append(done)
                bank = [Signal(32, name=f"bank_{s}_{l}_{i}") for i in range(P)]
                with m.If(en & done):
                    m.d.sync += [bank[i].eq(bank[i + 1]) for i in range(P - 1)]
                    m.d.sync += bank[P - 1].eq(self.fu_r[s][l])
                banks[s][l] = bank
                if s == S - 1 and l == L - 1:
                    last_fu = done
        for l in range(L):
            b_val = st.delay(b_now[l], l, name=f"skew_b{l}")
            for s in range(S):
                b_val = st.reg(b_val, name=f"b_{s}_{l}")
                m.d.comb += self.sys_b[s][l].eq(b_val)

        self._drain(m, banks, last_fu, cap_pending, freeze, reps)
        return m

    def _drain(self, m, banks, last_fu, cap_pending, freeze, reps):
        """Bank complete -> drain buffer -> result rows, one per cycle; ``running`` (busy)
        from ``start`` until the final repeat's final row left."""
        S, L, P = self.stages, self.lanes, self.P
        cfg, en = self.config, self.array_en
        captured = Signal(range(P + 1))
        bank_full = Signal()
        buf_full = Signal()
        row = Signal(range(P * S))
        drained = Signal(TILE_COUNT_BITS)
        buf = [[[Signal(32, name=f"buf_{s}_{l}_{i}") for i in range(P)] for l in range(L)]
               for s in range(S)]
        m.d.comb += freeze.eq(bank_full & buf_full & Cat(*cap_pending).any())
        with m.If(en & last_fu):
            m.d.sync += captured.eq(captured + 1)
            with m.If(captured == P - 1):
                m.d.sync += [captured.eq(0), bank_full.eq(1)]
        copy = bank_full & ~buf_full
        with m.If(copy):
            m.d.sync += [bank_full.eq(0), buf_full.eq(1)]
            m.d.sync += [buf[s][l][i].eq(banks[s][l][i])
                         for s in range(S) for l in range(L) for i in range(P)]

        drain = self.o_valid & self.o_ready
        out_left = Signal(ITER_BITS)          # repeats to drain after this one
        m.d.comb += [self.o_valid.eq(buf_full), self.o_mask.eq(cfg.mask),
                     self.o_last.eq((row == cfg.rows - 1) & (drained == cfg.tiles - 1) &
                                    (out_left == 0))]
        with m.Switch(row):
            for r in range(P * S):
                # The last row is the default: row never exceeds it.
                with (m.Case(r) if r < P * S - 1 else m.Default()):
                    m.d.comb += [self.o[l].eq(buf[r % S][l][r // S]) for l in range(L)]
        with m.If(drain):
            m.d.sync += row.eq(row + 1)
            with m.If(row == cfg.rows - 1):
                m.d.sync += [row.eq(0), buf_full.eq(0), drained.eq(drained + 1)]
                with m.If(drained == cfg.tiles - 1):
                    m.d.sync += [drained.eq(0), out_left.eq(out_left - 1)]
        running = Signal()
        with m.If(self.start & ~running):
            m.d.sync += [running.eq(cfg.tiles != 0), drained.eq(0), out_left.eq(reps)]
        with m.Elif(drain & self.o_last):
            m.d.sync += running.eq(0)
        m.d.comb += self.busy.eq(running)

