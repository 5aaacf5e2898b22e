"""Clock gating: a logic block clocked only in the cycles it has work.

A unit whose registers all hold while it has nothing to do (a functional unit of a PCU
stage whose op is not the stage's, a pipeline with nothing in flight) is put in a clock
domain of its own, driven by a :class:`ClockGate` from the parent clock. In silicon that
saves the switching power of the block's clock tree and logic; in the Verilator model it
is also simulation time: a gated domain is a trigger of its own, and the logic behind its
registers is evaluated only on the edges where its clock ticks.

The gate is the flip-flop clock gate: the enable is sampled on the falling edge (while
the clock is low, so the AND never glitches) and ANDed with the clock, so the gated
domain ticks on exactly the rising edges that end a cycle with ``en`` high — the
registers behind it behave as registers with a clock enable. The price against the
latch-based integrated clock-gate cell of a standard-cell library is timing: ``en`` must
settle within half a cycle.

Gating is transparent by construction: a domain ticks in every cycle in which a register
behind it could take a value that matters, so the design computes the same with every
gate open. Amaranth's Python simulator needs that: it raises a derived clock one delta
cycle after the registers of the source domain took their new values, so a gated
register there would sample the next cycle's inputs. Designs elaborated inside
:func:`ungated` (what ``tb.lib.pysim`` does) put every gated domain's registers in
``sync``; the Verilator builds are gated.
"""

import contextlib

from amaranth import C, Cat, ClockDomain, ClockSignal, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ClockGate", "gated_domain", "activity_domain", "ungated"]

_GATING = [True]


@contextlib.contextmanager
def ungated():
    """Elaborate designs with every gated domain ``sync`` (see the module's notes)."""
    _GATING.append(False)
    try:
        yield
    finally:
        _GATING.pop()


class ClockGate(wiring.Component):
    """``clk`` = the ``sync`` clock in the cycles that had ``en`` high at its falling edge."""

    en: In(1)
    clk: Out(1)

    def elaborate(self, platform):
        m = Module()
        m.domains.gate_n = ClockDomain(clk_edge="neg", reset_less=True, local=True)
        m.d.comb += ClockSignal("gate_n").eq(ClockSignal("sync"))
        en_l = Signal()
        m.d.gate_n += en_l.eq(self.en)
        m.d.comb += self.clk.eq(ClockSignal("sync") & en_l)
        return m


def gated_domain(m, name, en):
    """Add to ``m`` a local clock domain ``name`` whose clock is ``sync``'s gated by ``en``
    (and by ``sync``'s reset, so that a reset reaches the domain's registers). Returns
    the domain's name (``sync`` inside :func:`ungated`)."""
    if not _GATING[-1]:
        return "sync"
    m.domains += ClockDomain(name, local=True)
    gate = m.submodules[f"{name}_gate"] = ClockGate()
    m.d.comb += [gate.en.eq(en | ResetSignal("sync")), ClockSignal(name).eq(gate.clk),
                 ResetSignal(name).eq(ResetSignal("sync"))]
    return name


def activity_domain(m, name, en, live, depth):
    """:func:`gated_domain` ``name`` for a pipeline ``depth`` enabled cycles deep that
    advances on ``en``: it ticks in the enabled cycles in which ``live`` (something
    enters) or something entered within the last ``depth`` enabled cycles. While it
    does not, nothing is in flight and the pipeline's registers may hold.

    Returns (domain, the enable of the pipeline's registers in it): 1 when gated — the
    gate already holds ``en``, and a register that read ``en`` would make its logic
    depend on ``sync`` again (Verilator would evaluate it on every ``sync`` edge) —
    or (``sync``, ``en``) inside :func:`ungated`."""
    if not _GATING[-1]:
        return "sync", en
    flight = Signal(depth, name=f"{name}_flight")
    with m.If(en):
        m.d.sync += flight.eq(Cat(live, flight[:-1]))
    return gated_domain(m, name, en & (live | flight.any())), C(1, 1)
