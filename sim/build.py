"""Cached Verilator builds of a :class:`~sim.harness.Harness`.

A build is keyed by a hash of every compiled file's text, the flags, and the Verilator,
cocotb and C++ compiler versions; it lives in ``<cache>/builds/<key>`` (the cache is
``$OPENRDU_CACHE`` or ``~/.cache/openrdu``, outside the checkout). Concurrent builders
(pytest-xdist workers) serialize on a per-key file lock and build into a private
directory that is renamed into place, so a half-built model is never used.

Verilator's own runtime (``verilated*.cpp``) is compiled once per flag set and its
objects are reused by later builds (about 15 s each otherwise).

Flows
-----
``fast``
    Clock generated in HDL (``--timing``), ``--no-public-flat-rw`` plus a ``.vlt`` that
    makes only ``tb_top``'s variables public.
``default``
    What the cocotb runner's Verilator build does: ``--public-flat-rw`` (every signal
    public), clock driven from Python. Kept for comparison in ``make bench``.
"""

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from . import toolchain
from .harness import Harness

__all__ = ["Build", "BuildError", "build", "lint", "wave_format", "LINT_WAIVERS", "FLOWS",
           "WAVE_FORMATS"]

#: Verilator warnings waived for Amaranth/Yosys output (``make lint`` runs -Wall with
#: exactly these off; everything else is an error):
#:   WIDTHEXPAND, WIDTHTRUNC  Yosys leaves operand extension/truncation implicit.
#:   UNUSEDSIGNAL             Yosys keeps named intermediate wires nobody reads.
#:   DECLFILENAME             Amaranth names submodules ``top.sub``, not after the file.
#:   PROCASSINIT              Amaranth gives every register its reset value as a
#:                            declaration initializer and also resets it in the process.
#:   UNOPTFLAT                Amaranth packs related bits into one vector; Verilator
#:                            reports the vector as a false combinational loop.
#:   CASEINCOMPLETE           Yosys writes a process as a default assignment followed by
#:                            a case listing only the values that change the signal (an
#:                            FSM's states, say), so the other values are covered.
LINT_WAIVERS = [
    "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-UNUSEDSIGNAL", "-Wno-DECLFILENAME",
    "-Wno-PROCASSINIT", "-Wno-UNOPTFLAT", "-Wno-CASEINCOMPLETE",
]

FLOWS = {
    "fast": ["--no-public-flat-rw", "--timing", "-DOPENRDU_HDL_CLOCK",
             "-CFLAGS", "-std=c++20 -fcoroutines"],
    "default": ["--public-flat-rw"],
}
_FORMAT = 3          # bump when the layout of a build directory changes

#: C++ optimization of the model. Verilator's default (-Os) spends minutes in g++ on the
#: large evaluation functions of a mesh or a PCU; ``OPENRDU_OPT`` overrides (see make bench).
OPT = os.environ.get("OPENRDU_OPT", "-O1")


class BuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class Build:
    dir: Path
    key: str
    flow: str
    waves: str | None   # waveform format (see wave_format), None = not traced
    seconds: float      # wall time of this call (0-ish when cached)
    cached: bool

    @property
    def executable(self) -> Path:
        return self.dir / "tb_top"

    @property
    def built_seconds(self) -> float | None:
        """Wall time of the Verilator build that produced this model (measured then)."""
        info = self.dir / "build_info.json"
        return json.loads(info.read_text())["seconds"] if info.exists() else None

    @property
    def manifest(self) -> dict:
        return json.loads((self.dir / "src" / "harness.json").read_text())


WAVE_FORMATS = ("fst", "vcd")


def wave_format(waves) -> str | None:
    """``waves`` as a format: False/None = no tracing, True = FST, or "fst" / "vcd"."""
    if waves is True:
        return "fst"
    if not waves:
        return None
    if waves not in WAVE_FORMATS:
        raise ValueError(f"unknown waveform format {waves!r}; known: {', '.join(WAVE_FORMATS)}")
    return waves


def _support_files(flow, waves) -> dict:
    """{name in src/: path} of the C++ compiled with the model: the main() (OpenRDU's in
    the fast flow, cocotb's in the default flow) and, for FST, stand-ins of the
    compression libraries this machine lacks (``sim.toolchain.fst_shims``)."""
    files = {"main.cpp": toolchain.openrdu_verilator_main() if flow == "fast"
             else toolchain.cocotb_verilator_main()}
    if wave_format(waves) == "fst":
        for lib in toolchain.fst_shims():
            for f in sorted((toolchain.SHIM_DIR / lib).iterdir()):
                files[f"fstshim/{lib}/{f.name}"] = f
    return files


def _flags(flow, waves):
    if flow not in FLOWS:
        raise ValueError(f"unknown flow {flow!r}; known: {', '.join(FLOWS)}")
    # V3MergeCond is quadratic on the large conditional blocks Amaranth emits (on the
    # small tile it took 378 of 426 s of verilation); off, only that optimisation of the
    # generated code is forgone.
    flags = ["--cc", "--exe", "--vpi", "--top-module", "tb_top", "--prefix", "Vtop",
             "-o", "tb_top", "-Wno-fatal", "-fno-merge-cond", *LINT_WAIVERS, *FLOWS[flow]]
    fmt = wave_format(waves)
    if fmt:
        # Packets (header + lanes) and counter registers are wider than Verilator's
        # default limit of 256 traced bits; memories stay untraced (--trace-max-array).
        flags += ["--trace-fst" if fmt == "fst" else "--trace", "--trace-max-width", "65536"]
        for lib in toolchain.fst_shims() if fmt == "fst" else ():
            flags += ["-CFLAGS", f"-Isrc/fstshim/{lib}"]
    return flags


def _make_vars(waves):
    """Where a stand-in replaces an FST library, the link line names only the real ones
    (verilated.mk adds -llz4 -lz for FST otherwise)."""
    if wave_format(waves) == "fst" and toolchain.fst_shims():
        return ["LDLIBS=$(USER_LDLIBS) $(VM_USER_LDLIBS) $(CFG_LDLIBS_THREADS) "
                + " ".join(toolchain.fst_link_libs())]
    return []


def _key(files, flags, tag):
    h = hashlib.sha256()
    h.update(json.dumps({"format": _FORMAT, "flags": flags, "tag": tag,
                         "verilator": toolchain.verilator_version(),
                         "cocotb": _cocotb_version(), "cxx": toolchain.cxx_version()},
                        sort_keys=True).encode())
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    return h.hexdigest()[:20]


def _cocotb_version():
    import cocotb
    return cocotb.__version__


def _run(cmd, cwd, log, env):
    with open(log, "a") as f:
        f.write("$ " + " ".join(map(str, cmd)) + "\n")
        f.flush()
        proc = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        tail = "".join(Path(log).read_text().splitlines(keepends=True)[-40:])
        raise BuildError(f"{Path(cmd[0]).name} failed (exit {proc.returncode}); log {log}:\n{tail}")


def build(harness: Harness, *, flow="fast", waves=False, jobs=None, log=None) -> Build:
    """Build (or reuse) the Verilator model of ``harness``."""
    t0 = time.monotonic()
    waves = wave_format(waves)
    files = harness.sources()
    support = _support_files(flow, waves)
    files.update({name: path.read_text() for name, path in support.items()})
    flags = _flags(flow, waves)
    if "hier.vlt" in files:
        # Shared unit modules are hierarchical blocks: compiled once, however many
        # instances (otherwise Verilator emits the code of every instance separately).
        flags.append("--hierarchical")
    make_vars = [f"OPT_FAST={OPT}", f"OPT_GLOBAL={OPT}", *_make_vars(waves)]
    key = _key(files, flags + make_vars, "")
    root = toolchain.cache_root()
    out = root / "builds" / key
    if (out / "tb_top").exists():
        return Build(out, key, flow, waves, time.monotonic() - t0, True)
    (root / "locks").mkdir(exist_ok=True)
    with open(root / "locks" / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (out / "tb_top").exists():
            return Build(out, key, flow, waves, time.monotonic() - t0, True)
        if log:
            log(f"building Verilator model {key} ({flow} flow{f', {waves} waves' if waves else ''})")
        tmp = root / "builds" / f"{key}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "src").mkdir(parents=True)
        for name, text in files.items():
            (tmp / "src" / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / "src" / name).write_text(text)
        env = toolchain.verilator_env()
        libs = toolchain.cocotb_libs_dir()
        sources = [f"src/{name}" for name in support if name.endswith(".cpp")]
        if flow == "fast":
            sources.append("src/public.vlt")
        if "hier.vlt" in files:
            sources.append("src/hier.vlt")
        sources += ["src/openrdu_tb_pkg.sv", "src/stream_source.sv", "src/stream_sink.sv"]
        if "mem_model.sv" in files:
            sources.append("src/mem_model.sv")
        sources += ["src/top.v", "src/tb_top.sv"]
        logf = tmp / "build.log"
        with _progress(f"  verilating {key}", log):
            _run([str(toolchain.verilator_root() / "bin" / "verilator"), *flags, "-Mdir", ".",
                  "-LDFLAGS", f"-L{libs} -lcocotbvpi_verilator", *sources], tmp, logf, env)
        runtime = root / "runtime" / _key({}, flags + make_vars, "runtime")
        reused = _reuse_runtime(runtime, tmp)
        with _progress(f"  compiling {key} (C++, log {out / 'build.log'})", log):
            _run(["make", "-j", str(jobs or os.cpu_count() or 2), "-f", "Vtop.mk",
                  "CFG_CXXFLAGS_PCH_I=-include", f"VM_TRACE={int(bool(waves))}", *make_vars],
                 tmp, logf, env)
        if not reused:
            _save_runtime(runtime, tmp)
        (tmp / "build_info.json").write_text(json.dumps(
            {"seconds": round(time.monotonic() - t0, 2), "runtime_reused": reused,
             "date": time.strftime("%Y-%m-%d %H:%M:%S")}))
        shutil.rmtree(out, ignore_errors=True)
        os.rename(tmp, out)
    return Build(out, key, flow, waves, time.monotonic() - t0, False)


def _progress(what, log):
    """Elapsed-time progress while a build step runs (only where a log is given)."""
    import contextlib
    from .progress import ticker
    return ticker(what, log) if log else contextlib.nullcontext()


def _reuse_runtime(runtime: Path, mdir: Path) -> bool:
    """Copy prebuilt Verilator runtime objects in (newer than the fresh Vtop.mk)."""
    objs = sorted(runtime.glob("verilated*.o")) if runtime.is_dir() else []
    for o in objs:
        shutil.copy(o, mdir / o.name)
    return bool(objs)


def _save_runtime(runtime: Path, mdir: Path):
    objs = sorted(mdir.glob("verilated*.o"))
    if not objs or runtime.exists():
        return
    tmp = runtime.with_name(f"{runtime.name}.tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    for o in objs:
        shutil.copy2(o, tmp / o.name)
    try:
        os.rename(tmp, runtime)
    except OSError:            # another process saved it first
        shutil.rmtree(tmp, ignore_errors=True)


def lint(verilog: str, path: Path):
    """``verilator --lint-only -Wall`` with :data:`LINT_WAIVERS` on the module ``top`` of
    ``verilog`` (written to ``path``). Returns (clean, Verilator's messages)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(verilog)
    cmd = [str(toolchain.verilator_root() / "bin" / "verilator"), "--lint-only", "-Wall",
           *LINT_WAIVERS, "--top-module", "top", str(path)]
    proc = subprocess.run(cmd, env=toolchain.verilator_env(), capture_output=True, text=True)
    return proc.returncode == 0, proc.stdout + proc.stderr
