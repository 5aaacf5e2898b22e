"""PMU scratchpad: ``pmu_banks`` SRAM banks behind a lane-to-bank crossbar, one vector
write and one vector read request per cycle, bank conflicts served over several cycles."""

from amaranth import Array, Cat, Module, Mux, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.counters import COUNTER_BITS
from hdl.packet import flow_bits

from .config import (addr_bits, bank_bits, bank_config_layout, read_data_layout, read_layout,
                     write_layout)

__all__ = ["Banks"]


class Banks(wiring.Component):
    """Banked scratchpad with programmable bank bits (``config``, see
    :func:`~hdl.pmu.config.bank_config_layout`).

    Each bank has one write port and one read port, so a cycle serves, per bank, one
    lane of the write vector and one lane of the read vector. Lanes of one vector that
    map to the same bank are served in lane order on successive cycles; each extra cycle
    counts in ``w_conflicts`` / ``r_conflicts``. Two lanes writing one address: the
    higher lane's word stays. A read sees the memory as it was before the write of the
    same cycle. Read answers (``rd``) come in request order, one cycle after a request's
    last lane was served, with the request's ``tag`` on ``rd_tag``.
    """

    def __init__(self, params):
        self.params = params
        super().__init__({
            "config": In(bank_config_layout(params)),
            "w": In(stream.Signature(write_layout(params))),
            "r": In(stream.Signature(read_layout(params))),
            "rd": Out(stream.Signature(read_data_layout(params))),
            "rd_tag": Out(flow_bits(params)),
            "w_conflicts": Out(COUNTER_BITS),
            "r_conflicts": Out(COUNTER_BITS),
        })

    def _bank(self, m, addr, name):
        cfg, nb = self.config, bank_bits(self.params)
        addr = addr[:addr_bits(self.params)]
        fold = Mux(cfg.fold, addr >> cfg.fold_shift, 0)
        b = Signal(nb, name=f"{name}_bank")
        m.d.comb += b.eq((addr >> cfg.shift) ^ fold)
        return b

    def _offset(self, m, addr, name):
        cfg, nb = self.config, bank_bits(self.params)
        addr = addr[:addr_bits(self.params)]
        low = addr & ((1 << cfg.shift) - 1)
        off = Signal(range(self.params.pmu_bank_words), name=f"{name}_off")
        m.d.comb += off.eq(low | ((addr >> (cfg.shift + nb)) << cfg.shift))
        return off

    def _serve(self, m, name, port, allowed, count):
        """Lane service for one vector port: returns (served lanes, final cycle, bank
        of each lane, per bank the index of the lane it serves, per bank enable)."""
        L, NB = self.params.pcu_lanes, self.params.pmu_banks
        pending = Signal(L, name=f"{name}_pending")
        active = Signal(name=f"{name}_active")
        now = Signal(L, name=f"{name}_now")
        m.d.comb += now.eq(Mux(active, pending, port.payload.mask))
        banks = [self._bank(m, port.payload.addr[l], f"{name}{l}") for l in range(L)]
        served = Signal(L, name=f"{name}_served")
        for l in range(L):
            earlier = [now[k] & (banks[k] == banks[l]) for k in range(l)]
            m.d.comb += served[l].eq(now[l] & ~Cat(*earlier).any() if earlier else now[l])
        final = Signal(name=f"{name}_final")
        go = Signal(name=f"{name}_go")
        m.d.comb += [final.eq((now & ~served) == 0), go.eq(port.valid & allowed),
                     port.ready.eq(go & final)]
        with m.If(go):
            m.d.sync += [active.eq(~final), pending.eq(now & ~served)]
            with m.If(~final):
                m.d.sync += count.eq(count + 1)
        lane_of = [Signal(range(L), name=f"{name}_b{j}_lane") for j in range(NB)]
        bank_en = [Signal(name=f"{name}_b{j}_en") for j in range(NB)]
        for j in range(NB):
            for l in range(L):          # served lanes of one bank: at most one
                with m.If(served[l] & (banks[l] == j)):
                    m.d.comb += [lane_of[j].eq(l), bank_en[j].eq(go)]
        return served, final, go, banks, lane_of, bank_en

    def elaborate(self, platform):
        m = Module()
        p = self.params
        L, NB = p.pcu_lanes, p.pmu_banks
        mems = []
        for j in range(NB):
            mem = m.submodules[f"bank{j}"] = memory.Memory(shape=32, depth=p.pmu_bank_words,
                                                           init=[])
            mems.append((mem.write_port(), mem.read_port(domain="sync")))

        # Writes.
        w = self.w.payload
        _, _, _, _, w_lane, w_en = self._serve(m, "w", self.w, 1, self.w_conflicts)
        w_off = Array(self._offset(m, w.addr[l], f"w{l}") for l in range(L))
        w_data = Array(w.data[l] for l in range(L))
        for j, (wp, _) in enumerate(mems):
            m.d.comb += [wp.en.eq(w_en[j]), wp.addr.eq(w_off[w_lane[j]]),
                         wp.data.eq(w_data[w_lane[j]])]

        # Reads: one answer register; a request is served only while it is free.
        out_valid = Signal()
        allowed = ~out_valid | self.rd.ready
        r = self.r.payload
        served, final, go, banks, r_lane, r_en = self._serve(m, "r", self.r, allowed,
                                                            self.r_conflicts)
        r_off = Array(self._offset(m, r.addr[l], f"r{l}") for l in range(L))
        for j, (_, rp) in enumerate(mems):
            m.d.comb += [rp.en.eq(r_en[j]), rp.addr.eq(r_off[r_lane[j]])]
        port_data = Array(rp.data for _, rp in mems)
        served_d = Signal(L)          # lanes served in the previous cycle
        last_d = Signal(L)            # lanes served in a request's final cycle
        bank_d = [Signal(bank_bits(p), name=f"r{l}_bank_d") for l in range(L)]
        got = [Signal(32, name=f"r{l}_got") for l in range(L)]
        mask = Signal(L)
        last = Signal()
        tag = Signal.like(self.rd_tag)
        m.d.sync += served_d.eq(Mux(go, served, 0))
        for l in range(L):
            with m.If(go & served[l]):
                m.d.sync += bank_d[l].eq(banks[l])
            with m.If(served_d[l]):
                m.d.sync += got[l].eq(port_data[bank_d[l]])
            m.d.comb += self.rd.payload.data[l].eq(
                Mux(last_d[l], port_data[bank_d[l]], got[l]))
        with m.If(go & final):
            m.d.sync += [out_valid.eq(1), last_d.eq(served), mask.eq(self.r.payload.mask),
                         last.eq(self.r.payload.last), tag.eq(self.r.payload.tag)]
        with m.Elif(self.rd.ready):
            m.d.sync += out_valid.eq(0)
        m.d.comb += [self.rd.valid.eq(out_valid), self.rd.payload.mask.eq(mask),
                     self.rd.payload.last.eq(last), self.rd_tag.eq(tag)]
        return m
