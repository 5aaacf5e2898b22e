"""Amaranth -> Verilog, and the port list of the generated top module."""

import re
from dataclasses import dataclass

from amaranth.back import verilog

__all__ = ["Port", "to_verilog", "ports_of"]


@dataclass(frozen=True)
class Port:
    name: str
    direction: str   # "input" | "output"
    width: int


def to_verilog(component, name="top") -> str:
    """Verilog text of ``component`` with top module ``name`` (no source attributes, so the
    text, and the build-cache key, depend only on the design), followed by one module per
    shared unit type it instantiates (``hdl.shared.Shared``)."""
    from hdl.shared import forget_used, used_units
    forget_used()
    text = verilog.convert(component, name=name, emit_src=False)
    for unit_name, unit in used_units().items():
        text += verilog.convert(unit, name=unit_name, emit_src=False)
    return text


_PORT = re.compile(r"^\s*(input|output)\s+(?:\[(\d+):(\d+)\]\s+)?\\?([\w$]+)\s*;", re.M)
_MODULE = re.compile(r"^module\s+\\?([\w.$]+)\s*\(", re.M)


def ports_of(verilog_text: str, module="top") -> list[Port]:
    """Ports of ``module`` as declared in Yosys-written Verilog."""
    starts = [(m.group(1), m.start()) for m in _MODULE.finditer(verilog_text)]
    for i, (name, start) in enumerate(starts):
        if name == module:
            end = starts[i + 1][1] if i + 1 < len(starts) else len(verilog_text)
            body = verilog_text[start:end]
            return [Port(m.group(4), m.group(1),
                         int(m.group(2)) - int(m.group(3)) + 1 if m.group(2) else 1)
                    for m in _PORT.finditer(body)]
    raise ValueError(f"module {module!r} not found in the generated Verilog")
