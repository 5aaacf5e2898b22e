"""Amaranth -> Verilog, and the port list of the generated top module."""

import re
from dataclasses import dataclass

from amaranth.back import verilog

__all__ = ["Port", "to_verilog", "plain_names", "ports_of", "shared_modules"]


@dataclass(frozen=True)
class Port:
    name: str
    direction: str   # "input" | "output"
    width: int


def to_verilog(component, name="top") -> str:
    """Verilog text of ``component`` with top module ``name`` (no source attributes, so the
    text, and the build-cache key, depend only on the design), followed by one module per
    shared unit type it instantiates (``hdl.shared.Shared``).

    Amaranth also declares a wire per field of every struct-shaped signal (``cfg.op``,
    ``cfg.table[3][7].flow`` ...), only for debugging; on a tile these double the
    Verilog and Verilator's work, so they are left out.
    """
    from amaranth.back import rtlil
    from hdl.shared import forget_used, used_units
    forget_used()
    emit = rtlil.ModuleEmitter.emit_signal_fields
    rtlil.ModuleEmitter.emit_signal_fields = lambda self: None
    try:
        text = verilog.convert(component, name=name, emit_src=False)
        for unit_name, unit in used_units().items():
            text += verilog.convert(unit, name=unit_name, emit_src=False)
    finally:
        rtlil.ModuleEmitter.emit_signal_fields = emit
    return plain_names(text)


_ESCAPED = re.compile(r"\\(\S+)")
_WORD = re.compile(r"[A-Za-z_][\w$]*")


def plain_names(text: str) -> str:
    """``text`` with every escaped identifier that holds a ``$`` renamed to a plain one.

    Yosys and Amaranth name temporaries ``\\$1`` or ``\\$auto$verilog_backend.cc:...``
    and duplicates ``\\r_data$5``; such names reach waveforms, where GTKWave's VCD
    parser rejects them. Temporaries (starting with ``$``) become ``_...``, which
    Verilator leaves out of traces; the others keep their name with ``_`` for each ``$``.
    A name is renamed the same way everywhere (ports stay connected) and never onto a
    name the text already uses.
    """
    taken = set(_WORD.findall(text))
    renamed = {}

    def plain(m):
        name = m.group(1)
        if "$" not in name:
            return m.group(0)
        new = renamed.get(name)
        if new is None:
            new = re.sub(r"\W", "_", name)
            while new in taken:
                new += "_"
            taken.add(new)
            renamed[name] = new
        return new
    return _ESCAPED.sub(plain, text)


def shared_modules(verilog_text: str) -> list[str]:
    """Names of the shared unit modules (``hdl.shared``) in ``verilog_text``."""
    return sorted(set(re.findall(r"^module\s+(openrdu_\w+)\s*\(", verilog_text, re.M)))


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
