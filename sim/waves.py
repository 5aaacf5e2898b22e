"""A GTKWave save file for a socket waveform: one collapsible group per unit.

Groups: the kernel sequencer, every PCU and PMU (their stream handshakes, start, busy,
done), every switch of the vector and scalar fabrics (its ports' counters), every AGCU
and every memory channel (busy, bursts, byte counters). Signals are taken from the
waveform's own header when it is a VCD (so every name exists); for an FST the scopes are
listed and GTKWave skips what is missing.
"""

import re
from pathlib import Path

__all__ = ["unit_groups", "write_gtkw"]

#: Signal names worth showing for a unit: handshakes, control, counters, state.
_KEEP = re.compile(r"(__valid|__ready|^start$|^busy$|^done$|^fault|^bursts$|^cycles$|"
                   r"_bytes$|^fsm_state$|^load_cycles$|^exec_cycles$|^launched$|"
                   r"^iterations$|^error$|^dropped$|^credit_error$|^counters$|^writes$|"
                   r"^tok_in$|^tok_out$)")


def _vcd_scopes(path):
    """{scope path: [(name, width)]} from a VCD header."""
    scopes, stack = {}, []
    with open(path) as f:
        for line in f:
            t = line.split()
            if not t:
                continue
            if t[0] == "$scope":
                stack.append(t[2])
            elif t[0] == "$upscope":
                stack.pop()
            elif t[0] == "$var":
                scopes.setdefault(".".join(stack), []).append((t[4], int(t[2])))
            elif t[0] == "$enddefinitions":
                break
    return scopes


def unit_groups(params, scopes=None, top="tb_top.dut"):
    """[(group title, scope path)] of every unit of the socket."""
    from hdl.tile import is_pcu
    groups = [("kernel sequencer", f"{top}.seq")]
    for r in range(params.rows):
        for c in range(params.cols):
            kind = "pcu" if is_pcu(r, c) else "pmu"
            groups.append((f"{kind.upper()} ({r},{c})", f"{top}.tile.{kind}_{r}_{c}"))
    for fabric in ("vec", "sca"):
        for r in range(params.rows):
            for c in range(params.cols):
                groups.append((f"{fabric} switch ({r},{c})",
                               f"{top}.tile.rdn.{fabric}.sw_{r}_{c}"))
    for k in range(params.agcus):
        groups.append((f"AGCU {k}", f"{top}.mem.agcu{k}"))
    for ch in range(params.hbm_channels):
        groups.append((f"HBM channel {ch}", f"{top}.mem.hbm{ch}"))
    groups.append(("DDR channel 0", f"{top}.mem.ddr0"))
    groups.append(("DMA", f"{top}.mem.dma"))
    return groups


def write_gtkw(params, wave: Path, out: Path):
    """Write the save file ``out`` for waveform ``wave``; returns its path."""
    scopes = _vcd_scopes(wave) if wave.suffix == ".vcd" else None
    lines = [f'[dumpfile] "{wave.resolve()}"', "[timestart] 0"]
    for title, scope in unit_groups(params):
        if scopes is None:
            names = [(n, 1) for n in ("start", "busy", "done")]
        else:
            names = [(n, w) for n, w in scopes.get(scope, []) if _KEEP.search(n)]
            if not names:
                continue
        lines += ["@800200", f"-{title}"]
        for n, w in names:
            lines += ["@28" if w == 1 else "@22",
                      f"{scope}.{n}" + (f"[{w - 1}:0]" if w > 1 else "")]
        lines += ["@1000200", f"-{title}"]
    out.write_text("\n".join(lines) + "\n")
    return out
