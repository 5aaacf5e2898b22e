"""The pattern compute unit: header (input FIFOs, counter chain, control tokens, operand
reduction), body (SIMD pipeline or systolic array), tail, vector and scalar outputs."""

from amaranth import Array, DomainRenamer, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.clockgate import activity_domain
from hdl.counters import ITER_BITS, CounterChain
from hdl.numerics.pipeline import Stages
from hdl.packet import scalar_layout, vector_layout
from hdl.params import RduParams

from .accum import Accumulator
from .alu import Alu
from .body import Body
from .config import (Mode, ScaleSrc, Unpack, pcu_config_layout, side_layout,
                     systolic_interleave)
from .reduce import ReduceTree
from .systolic import Systolic
from .tail import Tail

__all__ = ["Pcu"]

#: Control tokens a PCU can hold before it uses them.
TOKEN_BITS = 8
#: The header's operand reduction uses one-cycle adders: it sits in front of the body
#: and adds log2(lanes) cycles.
HRED_ADD_LATENCY = 1


class Pcu(wiring.Component):
    """One PCU.

    SIMD mode: after ``start``, every step of the counter chain is one iteration: it takes
    one element from each enabled input (``config.vin_en``, ``config.sin_en``; a held
    scalar input only on the last step of its window), runs it through the body and the
    tail, and emits one vector on ``vout`` with the chain's lane mask; the final vector
    carries ``last`` (the ``done`` token). With ``config.reduce`` the tail's row reduction
    of each vector goes to ``sout``; with ``config.acc`` those values are folded and one
    value per window (closed by counter ``acc.level`` wrapping) goes to ``sout``.

    Systolic mode: see :mod:`hdl.pcu.systolic`; A arrives on ``vin0``, B on ``vin1``,
    result rows leave through the tail on ``vout``.

    An iteration fires only when every input it needs has data and the outputs can
    advance, so nothing is lost or duplicated under back-pressure. ``busy`` is high from
    ``start`` until the last element has left; ``done`` pulses then. ``tok_in`` pulses
    add control tokens (``config.tok``); ``tok_out`` pulses when a token window's last
    step has taken its inputs.

    ``iters`` (with ``start``): kernel looping, the program runs that many times back to
    back (the counter chain or the systolic tiles repeat, nothing resets in between);
    only the final iteration's last element carries ``last``.
    """

    def __init__(self, params: RduParams):
        self.params = params
        lanes = params.pcu_lanes
        vec = vector_layout(lanes)
        self.LATENCY = self.latency(params)
        super().__init__({
            "config": In(pcu_config_layout(params)),
            "start": In(1),
            "iters": In(ITER_BITS),
            "busy": Out(1),
            "done": Out(1),
            "tok_in": In(1),
            "tok_out": Out(1),
            "vin0": In(stream.Signature(vec)),
            "vin1": In(stream.Signature(vec)),
            "sin0": In(stream.Signature(32)),
            "vout": Out(stream.Signature(vec)),
            "sout": Out(stream.Signature(scalar_layout)),
        })

    @staticmethod
    def latency(params):
        """Enabled cycles from the header firing an iteration to its vector entering the
        output FIFO (SIMD mode): header reduction + body + tail."""
        return (ReduceTree.latency(params.pcu_lanes, HRED_ADD_LATENCY) +
                params.pcu_stages * Alu.LATENCY + Tail.latency(params.pcu_lanes))

    def elaborate(self, platform):
        m = Module()
        p = self.params
        cfg = self.config
        vec = vector_layout(p.pcu_lanes)
        systolic = cfg.mode == Mode.SYSTOLIC

        fifos = self._input_fifos(m, vec)
        vin0 = self._unpacked(m, data.View(vec, fifos["vin0"].r_data), vec)
        vin1 = data.View(vec, fifos["vin1"].r_data)

        m.submodules.chain = chain = CounterChain(p.pcu_lanes)
        m.submodules.body = body = Body(p.pcu_lanes, p.pcu_stages)
        sa, tail = Systolic(p), Tail(p.pcu_lanes)
        # The systolic array's control and the tail tick only while they have work.
        m.submodules.systolic = DomainRenamer(activity_domain(
            m, "systolic", 1, sa.start | sa.busy, 1)[0])(sa)
        en, vout, sout = self._output_fifos(m, vec)
        tail_domain, tail_en = activity_domain(m, "tail", en, tail.i_side.valid, tail.LATENCY)
        m.submodules.tail = DomainRenamer(tail_domain)(tail)
        m.d.comb += tail.en.eq(tail_en)
        m.submodules.acc = acc = Accumulator()
        hred = ReduceTree(p.pcu_lanes, add_latency=HRED_ADD_LATENCY)

        pops = self._header(m, chain, fifos, en, systolic)
        m.d.comb += [
            sa.a.valid.eq(fifos["vin0"].r_rdy), sa.a.payload.eq(vin0.data),
            sa.b.valid.eq(fifos["vin1"].r_rdy), sa.b.payload.eq(vin1.data),
            fifos["vin0"].r_en.eq(Mux(systolic, sa.a.ready, pops["vin0"])),
            fifos["vin1"].r_en.eq(Mux(systolic, sa.b.ready, pops["vin1"])),
        ]
        hst, late = self._header_reduction(m, hred, chain, fifos, vin0, vin1, en, pops["fire"])
        self._body(m, body, sa, hred, late, en, systolic)
        sin_simd, scalar, scale_ok = self._scale_scalars(m, sa, fifos, hst, late, en, body,
                                                         systolic, pops["sin0"])
        self._tail(m, tail, sa, body, en, systolic, scale_ok, scalar, sin_simd, vout)
        self._row_results(m, acc, tail, en, sout, vout)
        self._busy(m, chain, sa, systolic)
        return m

    def _input_fifos(self, m, vec):
        """The header's input FIFOs, filled from the ports."""
        fifos = {}
        for name, port, width in (("vin0", self.vin0, vec.size), ("vin1", self.vin1, vec.size),
                                  ("sin0", self.sin0, 32)):
            f = fifo.SyncFIFOBuffered(width=width, depth=self.params.pcu_fifo_depth)
            m.submodules[f"{name}_fifo"] = f
            wiring.connect(m, wiring.flipped(port), f.w_stream)
            fifos[name] = f
        return fifos

    def _unpacked(self, m, vin0, vec):
        """Vector input 0 as the body takes it: FP32 words, or the high / low BF16 half of
        each packed word (``config.unpack``)."""
        out = Signal(vec)
        unpack = self.config.unpack
        m.d.comb += out.mask.eq(vin0.mask)
        for lane in range(self.params.pcu_lanes):
            w = vin0.data[lane]
            m.d.comb += out.data[lane].eq(Mux(unpack == Unpack.HIGH, w & 0xFFFF0000,
                                              Mux(unpack == Unpack.LOW, w << 16, w)))
        return out

    def _output_fifos(self, m, vec):
        """Output FIFOs: each output stream drains on its own; everything after the header
        advances (``en``) while both FIFOs have room. Returns (en, vout, sout), the
        streams into the FIFOs."""
        out_fifos = {}
        for name, port, width in (("vout", self.vout, vec.size),
                                  ("sout", self.sout, scalar_layout.size)):
            f = fifo.SyncFIFOBuffered(width=width, depth=self.params.pcu_fifo_depth)
            m.submodules[f"{name}_fifo"] = f
            wiring.connect(m, f.r_stream, wiring.flipped(port))
            out_fifos[name] = f
        vout = stream.Signature(vec).create(path=("pcu_vout",))
        sout = stream.Signature(scalar_layout).create(path=("pcu_sout",))
        en = Signal()
        m.d.comb += [
            en.eq(out_fifos["vout"].w_rdy & out_fifos["sout"].w_rdy),
            out_fifos["vout"].w_data.eq(vout.payload), out_fifos["sout"].w_data.eq(sout.payload),
            out_fifos["vout"].w_en.eq(vout.valid & en), out_fifos["sout"].w_en.eq(sout.valid & en),
        ]
        return en, vout, sout

    def _header(self, m, chain, fifos, en, systolic):
        """SIMD header: an iteration fires when the counter chain has a step, its inputs
        are there, a control token allows it and the outputs have room. Returns the
        FIFO pops ({"vin0", "vin1", "sin0"}) and ``fire``."""
        cfg = self.config
        fire = Signal()
        step = chain.o.payload
        tok_count = Signal(TOKEN_BITS)
        need_tok = Signal()
        tok_wait = cfg.tok.en & need_tok & (tok_count == 0)
        window_end = step.wrap.bit_select(cfg.tok.level, 1)
        need = {"vin0": cfg.vin_en[0], "vin1": cfg.vin_en[1], "sin0": cfg.sin_en[0]}
        inputs_ready = [~need[k] | fifos[k].r_rdy for k in fifos]
        m.d.comb += [
            fire.eq(~systolic & en & chain.o.valid & ~tok_wait & inputs_ready[0] &
                    inputs_ready[1] & inputs_ready[2]),
            chain.o.ready.eq(fire), chain.config.eq(cfg.chain),
            chain.start.eq(self.start & ~systolic), chain.repeat.eq(self.iters),
            self.tok_out.eq(fire & window_end),
        ]
        take_tok = fire & cfg.tok.en & need_tok
        m.d.sync += tok_count.eq(tok_count + self.tok_in - take_tok)
        with m.If(self.start & ~self.busy):
            m.d.sync += need_tok.eq(1)
        with m.Elif(fire):
            m.d.sync += need_tok.eq(window_end)
        sin_pop = ~cfg.sin_hold.en | step.wrap.bit_select(cfg.sin_hold.level, 1)
        return {"vin0": fire & need["vin0"], "vin1": fire & need["vin1"],
                "sin0": fire & need["sin0"] & sin_pop, "fire": fire}

    def _header_reduction(self, m, hred, chain, fifos, vin0, vin1, en, fire):
        """The header's cross-lane reduction of vin0 (Src.RED); the other operands wait
        beside it. Returns the header's stages and the delayed operands."""
        step = chain.o.payload
        # The reduction and the operands' lines beside it (and the SIMD scalar's beside
        # the body) tick while a SIMD element is in them.
        hdr, hdr_en = activity_domain(m, "hdr", en, fire,
                                      hred.LATENCY + self.params.pcu_stages * Alu.LATENCY)
        m.submodules.hred = DomainRenamer(hdr)(hred)
        m.d.comb += [hred.en.eq(hdr_en), hred.op.eq(self.config.hred), hred.i.eq(vin0.data),
                     hred.mask.eq(step.mask)]
        hst = Stages(m, hdr_en, "hdr", domain=hdr)
        side = Signal(side_layout(self.params.pcu_lanes))
        m.d.comb += [side.valid.eq(fire), side.mask.eq(step.mask), side.last.eq(step.final),
                     side.wrap.eq(step.wrap)]
        late = {k: hst.delay(v, hred.LATENCY, name=f"hdr_{k}") for k, v in {
            "vin0": vin0.data, "vin1": vin1.data, "sin0": fifos["sin0"].r_data,
            "ctr": step.lane, "side": side}.items()}
        return hst, late

    def _body(self, m, body, sa, hred, late, en, systolic):
        """The body: a SIMD pipeline of the header's operands, or the systolic array's FUs."""
        cfg = self.config
        m.d.comb += [
            body.en.eq(Mux(systolic, sa.array_en, en)), body.config.eq(cfg.stage),
            body.sys.eq(systolic), body.sys_live.eq(sa.busy), body.sys_a.eq(sa.sys_a),
            body.sys_b.eq(sa.sys_b), body.sys_c.eq(sa.sys_c), sa.fu_r.eq(body.fu_r),
            body.i_side.eq(late["side"]), body.vin0.eq(late["vin0"]),
            body.vin1.eq(late["vin1"]), body.sin0.eq(late["sin0"]), body.red.eq(hred.r),
            body.ctr.eq(late["ctr"]),
            sa.config.eq(cfg.systolic), sa.start.eq(self.start & systolic),
            sa.repeat.eq(self.iters),
        ]

    def _scale_scalars(self, m, sa, fifos, hst, late, en, body, systolic, sin_pop):
        """Scale operands (ScaleSrc.SIN). SIMD: the iteration's sin0 travels beside the
        body. Systolic: one scalar per output row of a group of `scale_tiles` tiles, taken
        from sin0 as it arrives into one of two banks (so the next group's scalars can land
        while this group drains) and read again for every tile of the group. Returns (the
        SIMD scalar, the systolic row's scalar, whether the systolic output may leave)."""
        cfg, p = self.config, self.params
        sin_scale = cfg.tail.scale == ScaleSrc.SIN
        sin_simd = hst.delay(late["sin0"], body.LATENCY, name="body_sin0")
        rows = systolic_interleave() * p.pcu_stages
        sbuf = Array(Signal(32, name=f"sbuf{i}") for i in range(2 * rows))
        s_full = Signal(2)
        w_bank, r_bank = Signal(), Signal()
        w_row, r_row = Signal(range(rows)), Signal(range(rows))
        r_tile = Signal(cfg.systolic.scale_tiles.shape())
        take = systolic & sin_scale & ~s_full.bit_select(w_bank, 1) & fifos["sin0"].r_rdy
        scale_ok = ~systolic | ~sin_scale | s_full.bit_select(r_bank, 1)
        drain = sa.o_valid & sa.o_ready
        m.d.comb += [
            fifos["sin0"].r_en.eq(Mux(systolic, take, sin_pop)),
            sa.o_ready.eq(en & scale_ok),
        ]
        last_row = cfg.systolic.rows - 1
        fill = take & (w_row == last_row)
        free = systolic & sin_scale & drain & (r_row == last_row) & \
            (r_tile == cfg.systolic.scale_tiles - 1)
        with m.If(self.start & ~self.busy):
            m.d.sync += [s_full.eq(0), w_bank.eq(0), r_bank.eq(0), w_row.eq(0), r_row.eq(0),
                         r_tile.eq(0)]
        with m.Else():
            with m.If(take):
                m.d.sync += [sbuf[Mux(w_bank, rows, 0) + w_row].eq(fifos["sin0"].r_data),
                             w_row.eq(Mux(fill, 0, w_row + 1))]
                with m.If(fill):
                    m.d.sync += w_bank.eq(~w_bank)
            with m.If(drain & systolic & sin_scale):
                m.d.sync += r_row.eq(Mux(r_row == last_row, 0, r_row + 1))
                with m.If(r_row == last_row):
                    m.d.sync += r_tile.eq(Mux(free, 0, r_tile + 1))
                with m.If(free):
                    m.d.sync += r_bank.eq(~r_bank)
            for b in range(2):
                with m.If(fill & (w_bank == b)):
                    m.d.sync += s_full[b].eq(1)
                with m.Elif(free & (r_bank == b)):
                    m.d.sync += s_full[b].eq(0)
        return sin_simd, sbuf[Mux(r_bank, rows, 0) + r_row], scale_ok

    def _tail(self, m, tail, sa, body, en, systolic, scale_ok, scalar, sin_simd, vout):
        """The tail after the systolic array or the body, into the vector output."""
        cfg = self.config
        m.d.comb += tail.config.eq(cfg.tail)
        with m.If(systolic):
            m.d.comb += [tail.i_side.valid.eq(sa.o_valid & scale_ok), tail.i.eq(sa.o),
                         tail.i_side.mask.eq(sa.o_mask), tail.i_side.last.eq(sa.o_last),
                         tail.i_scalar.eq(scalar)]
        with m.Else():
            m.d.comb += [tail.i_side.eq(body.o_side), tail.i.eq(body.o_data),
                         tail.i_scalar.eq(sin_simd)]
        out = tail.o_side
        m.d.comb += [
            vout.valid.eq(out.valid & cfg.vout_en),
            vout.payload.data.eq(tail.o), vout.payload.mask.eq(out.mask),
            vout.payload.last.eq(out.last),
        ]

    def _row_results(self, m, acc, tail, en, sout, vout):
        """The scalar output: each row's reduction, or its accumulation over a window; on
        ``sout``, or with ``row_vout`` on ``vout`` as one-lane vectors."""
        cfg, out = self.config, tail.o_side
        end = Signal()
        m.d.comb += [
            end.eq(out.wrap.bit_select(cfg.acc.level, 1)),
            acc.en.eq(en), acc.op.eq(cfg.acc.op),
            acc.i_valid.eq(out.valid & cfg.reduce.en & cfg.acc.en),
            acc.x.eq(tail.o_row), acc.end.eq(end),
        ]
        acc_last = Signal()
        with m.If(en & out.valid & end):
            m.d.sync += acc_last.eq(out.last)
        r_valid, r_data, r_last = Signal(), Signal(32), Signal()
        with m.If(cfg.acc.en):
            m.d.comb += [r_valid.eq(acc.r_valid & cfg.reduce.en), r_data.eq(acc.r),
                         r_last.eq(acc_last)]
        with m.Else():
            m.d.comb += [r_valid.eq(out.valid & cfg.reduce.en), r_data.eq(tail.o_row),
                         r_last.eq(out.last)]
        with m.If(cfg.row_vout):
            m.d.comb += [vout.valid.eq(r_valid), vout.payload.data[0].eq(r_data),
                         vout.payload.mask.eq(1), vout.payload.last.eq(r_last)]
        with m.Else():
            m.d.comb += [sout.valid.eq(r_valid), sout.payload.data.eq(r_data),
                         sout.payload.last.eq(r_last)]

    def _busy(self, m, chain, sa, systolic):
        """Busy from start until each enabled output's element carrying `last` has left."""
        cfg = self.config
        v_run, s_run = Signal(), Signal()
        v_end = v_run & self.vout.valid & self.vout.ready & self.vout.payload.last
        s_end = s_run & self.sout.valid & self.sout.ready & self.sout.payload.last
        with m.If(self.start & ~self.busy):
            go = Mux(systolic, cfg.systolic.tiles != 0, cfg.chain.depth != 0)
            row_v = ~systolic & cfg.reduce.en & cfg.row_vout
            m.d.sync += [v_run.eq(go & (systolic | cfg.vout_en | row_v)),
                         s_run.eq(go & ~systolic & cfg.reduce.en & ~cfg.row_vout)]
        with m.Else():
            with m.If(v_end):
                m.d.sync += v_run.eq(0)
            with m.If(s_end):
                m.d.sync += s_run.eq(0)
        m.d.comb += [self.busy.eq(v_run | s_run | chain.busy | sa.busy),
                     self.done.eq((v_run | s_run) & (~v_run | v_end) & (~s_run | s_end))]
