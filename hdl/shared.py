"""Shared unit modules: one Verilog module per unit type, instantiated many times.

Amaranth writes every instance of a component as its own Verilog module, so a tile of
N identical PCUs would make Verilator compile the PCU N times. :class:`Shared` stands in
for a unit inside a larger design: it has the unit's signature but elaborates to an
``Instance`` of the module ``name``; :func:`sim.verilog.to_verilog` writes the module of
every shared unit the design used once, after the design. Units of one name must be
identical (same class and parameters — put the parameters in the name): they differ only
by their configuration bits.

The module's ports are the unit's with a ``u_`` prefix (``config`` is a SystemVerilog
keyword, which Verilator's hierarchical wrappers do not escape). Shared modules are the
``hier_block`` s of the Verilator build (``sim.build``): compiled once, whatever the
number of instances.
"""

from amaranth import (ClockDomain, ClockSignal, DomainRenamer, Instance, Module, ResetSignal,
                      Signal, Value)
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .clockgate import gated_domain

__all__ = ["Shared", "Standalone", "unit_module_name", "used_units", "forget_used", "forward"]

_UNITS = {}      # module name -> the one component written as that module (a _Ports)
_USED = set()    # module names elaborated since forget_used()


def used_units():
    """{module name: unit component} of every Shared elaborated since forget_used()."""
    return {n: _UNITS[n] for n in sorted(_USED)}


def forget_used():
    _USED.clear()


class Shared(wiring.Component):
    """A stand-in for the unit ``make()`` builds (called once per module ``name``)."""

    def __init__(self, name, make):
        if name not in _UNITS:
            _UNITS[name] = _Ports(make())
        self.name = name
        super().__init__(_UNITS[name].unit.signature)

    def elaborate(self, platform):
        m = Module()
        _USED.add(self.name)
        ports = {}
        for path, member, value in self.signature.flatten(self):
            pin = "u_" + "__".join(str(p) for p in path)
            ports[("i_" if member.flow == In else "o_") + pin] = Value.cast(value)
        m.submodules.unit = Instance(self.name, i_clk=ClockSignal("sync"),
                                     i_rst=ResetSignal("sync"), **ports)
        return m


def unit_module_name(kind, params):
    """A module name for unit ``kind`` elaborated from ``params`` (the parameters are
    part of the name, so two configurations never share a module by mistake)."""
    import hashlib
    return f"openrdu_{kind}_{hashlib.sha256(repr(params).encode()).hexdigest()[:10]}"


class _Ports(wiring.Component):
    """The unit with every port renamed ``u_<name>``: the module written for a Shared."""

    def __init__(self, unit):
        self.unit = unit
        super().__init__(wiring.Signature({f"u_{k}": v
                                           for k, v in unit.signature.members.items()}))

    def elaborate(self, platform):
        m = Module()
        # The unit runs in a domain whose reset is registered inside the block: next-state
        # logic that depends on the reset is then clocked logic of the block, not
        # input-combinational logic that Verilator re-evaluates (the whole datapath) every
        # time an input of the block changes. The unit leaves reset one cycle later.
        m.domains.unit = ClockDomain("unit", local=True)
        rst = Signal(init=1, reset_less=True)      # follows the reset, never reset itself
        m.d.sync += rst.eq(ResetSignal("sync"))
        m.d.comb += [ClockSignal("unit").eq(ClockSignal("sync")), ResetSignal("unit").eq(rst)]
        m.submodules.unit = DomainRenamer("unit")(self.unit)
        mine = self.signature.flatten(self)
        for (path, member, inner), (_, _, outer) in zip(self.unit.signature.flatten(self.unit),
                                                         mine):
            if path == ("config",):
                # Registered inside the block: logic that depends on the configuration is
                # then clocked logic of the block, not input-combinational logic that
                # Verilator re-evaluates whenever any input of the block changes. (One
                # cycle of delay; a configuration is loaded long before the unit starts.)
                # The register is clocked only when the configuration changes, so logic
                # that reads it and a gated block's registers (hdl.clockgate) is not
                # re-evaluated on every edge of the unit's clock.
                m.d[gated_domain(m, "config", outer != inner)] += inner.eq(outer)
            elif member.flow == In:
                m.d.comb += inner.eq(outer)
            else:
                m.d.comb += outer.eq(inner)
        return m


class Standalone(wiring.Component):
    """A design whose ports are exactly one shared unit's (its module written once)."""

    def __init__(self, name, make):
        self.unit = Shared(name, make)
        super().__init__(self.unit.signature)

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = self.unit
        forward(m, self, self.unit)
        return m


def forward(m, outer, inner):
    """Drive the ports of interface ``outer`` from ``inner`` (same signature) and back:
    a component passing a sub-component's ports through as its own."""
    mine = outer.signature.flatten(outer)
    theirs = inner.signature.flatten(inner)
    for (path, member, a), (_, _, b) in zip(mine, theirs):
        if member.flow == Out:
            m.d.comb += a.eq(b)
        else:
            m.d.comb += b.eq(a)
