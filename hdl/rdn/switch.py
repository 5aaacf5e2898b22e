"""One packet switch of the vector or scalar fabric."""

from amaranth import Cat, Const, Module, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.arbiter import RoundRobin

from .config import (COUNTER_BITS, E, IN_LOCAL, LINKS, LOCAL_OUT, N, N_IN, N_OUT,
                     PORT_NAMES_IN, S, W, route_entry_layout, switch_config_layout, switch_counters_layout)
from .throttle import TokenBucket

__all__ = ["LINK", "EDGE", "NONE", "link_signature", "Switch"]

#: What a switch's neighbour link connects to: another switch (credit link), the edge
#: of the grid where an AGCU attaches (ready/valid stream), or nothing.
LINK, EDGE, NONE = "link", "edge", "none"


def link_signature(packet):
    """A switch-to-switch hop: a packet per ``valid`` cycle, sent only with a credit in
    hand; the receiver returns one ``credit`` pulse per packet it frees from its buffer."""
    return wiring.Signature({"valid": Out(1), "payload": Out(packet), "credit": In(1)})


def _port_name(kind, way, d):
    """``link_in_n``, ``edge_out_w``: the member of a port of ``kind`` towards ``d``."""
    return f"{kind}_{way}_{PORT_NAMES_IN[d].lower()}"


def _above(v, k):
    """``v > k``, or None where that is constant (false) for the width of ``v``."""
    return v > k if k < (1 << len(v)) - 1 else None


def _below(v, k):
    return v < k if k > 0 else None


class Switch(wiring.Component):
    """Input-buffered packet switch at column ``x``, row ``y`` of the mesh.

    Every input has a FIFO of ``params.rdn_buffer_depth`` packets; a link output holds
    one credit per free entry of the neighbour's FIFO and sends only with a credit. The
    head packet of an input is routed by its header (dimension order to ``x, y`` or the
    input's flow table), then each output grants one requesting input per cycle, round
    robin. A multicast head leaves its input once every output it asked for has taken a
    copy (outputs that are free go ahead, the rest follow), so one flow never overtakes
    itself and nothing is copied twice. A packet that cannot be routed here (no table
    entry, a coordinate outside the grid, an exit through a port that is not connected)
    is dropped and counted in ``dropped``; a credit that would overflow, or a packet that
    arrives at a full buffer, sets ``credit_error`` (both mean a broken link, never
    expected).

    Parameters
    ----------
    params : RduParams
    packet : data.Layout
        Header + body (``config.packet_layout``).
    x, y : int
        Position (column, row).
    kinds : dict
        Direction (``N``, ``E``, ``S``, ``W``) -> ``LINK``, ``EDGE`` or ``NONE``.

    Attributes
    ----------
    ``link_in[d]``, ``link_out[d]`` : credit links, for directions of kind ``LINK``
        (dicts by direction; the ports are named ``link_in_n`` .. ``link_out_w``).
    ``edge_in[d]``, ``edge_out[d]`` : streams, for directions of kind ``EDGE``.
    ``l_in`` : stream from the unit; ``l_out[k]`` : streams to the unit.
    """

    def __init__(self, params, packet, x, y, kinds):
        self.params, self.packet, self.x, self.y = params, packet, x, y
        self.kinds = {d: kinds.get(d, NONE) for d in (N, E, S, W)}
        members = {
            "config": In(switch_config_layout(params)),
            "l_in": In(stream.Signature(packet)),
            "l_out": Out(stream.Signature(packet)).array(LOCAL_OUT),
            "counters": Out(switch_counters_layout()),
            "dropped": Out(COUNTER_BITS),
            "credit_error": Out(1),
        }
        signatures = {LINK: link_signature(packet), EDGE: stream.Signature(packet)}
        for d, kind in self.kinds.items():
            if kind != NONE:
                members[_port_name(kind, "in", d)] = In(signatures[kind])
                members[_port_name(kind, "out", d)] = Out(signatures[kind])
        super().__init__(members)
        for kind in (LINK, EDGE):
            for way in ("in", "out"):
                setattr(self, f"{kind}_{way}", {d: getattr(self, _port_name(kind, way, d))
                                                for d, k in self.kinds.items() if k == kind})

    def _kind_in(self, i):
        return self.kinds[i] if i < LINKS else EDGE        # the local input is a stream

    def _kind_out(self, o):
        return self.kinds[o] if o < LINKS else EDGE

    def _port_in(self, i):
        if i == IN_LOCAL:
            return self.l_in
        return getattr(self, f"{self._kind_in(i)}_in")[i]

    def _port_out(self, o):
        if o >= LINKS:
            return self.l_out[o - LINKS]
        return getattr(self, f"{self._kind_out(o)}_out")[o]

    def elaborate(self, platform):
        m = Module()
        connected = Const(sum(1 << o for o in range(N_OUT) if self._kind_out(o) != NONE), N_OUT)
        # Exit ports of dimension-order routing: the unit's, and edge ports (an exit by a
        # switch link would send the packet on to a neighbour that routes it back).
        exits = Const(sum(1 << o for o in range(N_OUT) if self._kind_out(o) == EDGE), N_OUT)

        inputs = [i for i in range(N_IN) if self._kind_in(i) != NONE]
        outputs = [o for o in range(N_OUT) if self._kind_out(o) != NONE]

        head_valid, head, pop = {}, {}, {}
        req, hdr_out, bad = {}, {}, {}
        credit_errors = []
        for i in inputs:
            pop[i] = Signal(name=f"pop{i}")
            head_valid[i], head[i] = self._input_buffer(m, i, pop[i], credit_errors)
            req[i], hdr_out[i], bad[i] = self._route(m, i, head[i].hdr, connected, exits)

        # Per-output arbitration among the inputs whose head still wants it.
        served = {i: Signal(N_OUT, name=f"served{i}") for i in inputs}
        pending = {}
        for i in inputs:
            pending[i] = Signal(N_OUT, name=f"pending{i}")
            m.d.comb += pending[i].eq(req[i] & ~served[i] & (head_valid[i] & ~bad[i]).replicate(N_OUT))
        taken = {i: [] for i in inputs}     # (output, granted) pairs
        for o in outputs:
            self._output(m, o, inputs, pending, head, hdr_out, taken, credit_errors)

        for i in inputs:
            got = Signal(N_OUT, name=f"got{i}")
            grants = dict(taken[i])
            m.d.comb += got.eq(Cat(grants.get(o, Const(0, 1)) for o in range(N_OUT)))
            m.d.comb += pop[i].eq(head_valid[i] & (bad[i] | ~(pending[i] & ~got).any()))
            with m.If(pop[i]):
                m.d.sync += served[i].eq(0)
            with m.Else():
                m.d.sync += served[i].eq(served[i] | got)

        m.d.sync += self.dropped.eq(self.dropped + sum(pop[i] & bad[i] for i in inputs))
        if credit_errors:
            with m.If(Cat(credit_errors).any()):
                m.d.sync += self.credit_error.eq(1)
        return m

    def _input_buffer(self, m, i, pop, credit_errors):
        """Input ``i``'s packet buffer: a link's by credits (an overrun is a credit error),
        the unit's or an edge's by ready/valid through its token bucket; its counters.
        Returns (head valid, head packet)."""
        port, kind = self._port_in(i), self._kind_in(i)
        buf = m.submodules[f"buf{i}"] = fifo.SyncFIFO(width=self.packet.size,
                                                     depth=self.params.rdn_buffer_depth)
        head = data.View(self.packet, buf.r_data)
        m.d.comb += [buf.w_data.eq(port.payload), buf.r_en.eq(pop)]
        c = self.counters.inp[i]
        if kind == LINK:
            m.d.comb += [buf.w_en.eq(port.valid), port.credit.eq(pop)]
            m.d.sync += [c.packets.eq(c.packets + port.valid),
                         c.starve.eq(c.starve + ~port.valid)]
            overrun = Signal(name=f"overrun{i}")
            m.d.comb += overrun.eq(port.valid & ~buf.w_rdy)
            credit_errors.append(overrun)
        else:
            bucket = m.submodules[f"throttle{i}"] = TokenBucket()
            m.d.comb += [
                bucket.config.eq(self.config.throttle[i]),
                port.ready.eq(buf.w_rdy & bucket.allow),
                buf.w_en.eq(port.valid & port.ready),
                bucket.take.eq(buf.w_en),
            ]
            m.d.sync += [
                c.packets.eq(c.packets + buf.w_en),
                c.stall.eq(c.stall + (port.valid & ~buf.w_rdy)),
                c.starve.eq(c.starve + ~port.valid),
                c.throttled.eq(c.throttled + (port.valid & buf.w_rdy & ~bucket.allow)),
            ]
        return buf.r_rdy, head

    def _route(self, m, i, hdr, connected, exits):
        """Route input ``i``'s head packet: dimension order (X then Y) to its coordinates,
        or its flow's table entry. Returns (requested outputs, outgoing header, bad: the
        packet cannot be delivered and is dropped)."""
        p = self.params
        req = Signal(N_OUT, name=f"req{i}")
        hdr_out = Signal(self.packet["hdr"].shape, name=f"hdr_out{i}")
        bad = Signal(name=f"bad{i}")
        with m.If(hdr.dyn):
            m.d.comb += hdr_out.eq(hdr)
            bad_exit = Signal(name=f"bad_exit{i}")
            # X then Y; comparisons that cannot hold here (the edge of the coordinate
            # range) are left out rather than emitted as constants.
            # (A grid of 2+ switches always leaves at least one step.)
            steps = [(cond, d) for cond, d in ((_above(hdr.x, self.x), E),
                                               (_below(hdr.x, self.x), W),
                                               (_above(hdr.y, self.y), S),
                                               (_below(hdr.y, self.y), N))
                     if cond is not None]
            for k, (cond, d) in enumerate(steps):
                with (m.If if k == 0 else m.Elif)(cond):
                    m.d.comb += req.eq(1 << d)
            with m.Else():
                # Ports beyond N_OUT shift out of `exits`: also a bad exit.
                m.d.comb += [req.eq(Const(1, N_OUT) << hdr.port),
                             bad_exit.eq(~(exits >> hdr.port)[0])]
            outside = Const(0)
            for v, top in ((hdr.x, p.cols - 1), (hdr.y, p.rows - 1)):
                if _above(v, top) is not None:
                    outside = outside | _above(v, top)
            m.d.comb += bad.eq(outside | bad_exit | (req & ~connected).any())
        with m.Else():
            entry = Signal(route_entry_layout(p), name=f"entry{i}")
            m.d.comb += entry.eq(self.config.table[i][hdr.flow])
            m.d.comb += [
                req.eq(entry.out),
                hdr_out.eq(hdr),
                hdr_out.flow.eq(entry.flow),
                bad.eq(~entry.out.any() | (entry.out & ~connected).any()),
            ]
        return req, hdr_out, bad

    def _output(self, m, o, inputs, pending, head, hdr_out, taken, credit_errors):
        """Output ``o``: a round-robin arbiter over the inputs pending for it, the
        registered packet, credits towards a link (an excess credit is a credit error) or
        ready/valid to the unit or an edge; its counters. Adds its grants to ``taken``."""
        port, kind = self._port_out(o), self._kind_out(o)
        depth = self.params.rdn_buffer_depth
        arb = m.submodules[f"arb{o}"] = RoundRobin(len(inputs))
        can_send = Signal(name=f"can_send{o}")
        m.d.comb += [arb.request.eq(Cat(pending[i][o] for i in inputs)), arb.take.eq(can_send)]
        send = Signal(name=f"send{o}")
        m.d.comb += send.eq(can_send & arb.grant.any())
        for k, i in enumerate(inputs):
            g = Signal(name=f"grant{o}_{i}")
            m.d.comb += g.eq(can_send & arb.grant[k])
            taken[i].append((o, g))
            with m.If(g):
                m.d.sync += [port.payload.body.eq(head[i].body),
                             port.payload.hdr.eq(hdr_out[i])]
        c = self.counters.out[o]
        wanted = arb.request.any()
        m.d.sync += [c.packets.eq(c.packets + send),
                     c.stall.eq(c.stall + (wanted & ~can_send)),
                     c.starve.eq(c.starve + (can_send & ~wanted))]
        if kind == LINK:
            credits = Signal(range(depth + 1), init=depth, name=f"credits{o}")
            m.d.comb += can_send.eq(credits != 0)
            m.d.sync += [port.valid.eq(send), credits.eq(credits - send + port.credit)]
            overflow = Signal(name=f"overflow{o}")
            m.d.comb += overflow.eq(port.credit & (credits == depth))
            credit_errors.append(overflow)
        else:
            m.d.comb += can_send.eq(~port.valid | port.ready)
            with m.If(send):
                m.d.sync += port.valid.eq(1)
            with m.Elif(port.ready):
                m.d.sync += port.valid.eq(0)
