"""Launch a cocotb test module on a cached Verilator model."""

import contextlib
import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from tb.lib.args import ENV_ARGS, ENV_TIMELINE, TbArgs

from . import toolchain
from .build import Build

__all__ = ["TestRun", "SimulationError", "run_cocotb"]


class SimulationError(AssertionError):
    pass


@dataclass
class TestRun:
    test_dir: Path
    results_xml: Path
    outputs: dict          # what the cocotb test wrote with tb.lib.harness.write_outputs

    @property
    def waves(self):
        """The waveform of the run: FST, or VCD where Verilator's FST writer cannot be
        built (see ``sim.toolchain.fst_available``)."""
        for name in ("dump.fst", "dump.vcd"):
            if (self.test_dir / name).exists():
                return self.test_dir / name
        return None


@contextlib.contextmanager
def _patched_environ(changes):
    saved = {k: os.environ.get(k) for k in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _failures(xml_path: Path):
    root = ET.parse(xml_path).getroot()
    cases = list(root.iter("testcase"))
    failed = [(c.get("name"), (f.get("message") or f.text or "").strip())
              for c in cases for f in list(c.iter("failure")) + list(c.iter("error"))]
    return len(cases), failed


def run_cocotb(build: Build, args: TbArgs, *, test_dir, seed=None, waves=False,
               trace=None, timeline=None) -> TestRun:
    """Run the cocotb test ``args`` is for (its ``MODULE`` and ``TESTCASE``, e.g.
    ``tb.test_socket:gemm``; a module-level class runs every test of the module) on
    ``build``.

    ``args`` (a :class:`tb.lib.args.TbArgs`) reach the test by ``Cls.from_env()``. With
    ``waves`` the run writes a waveform; ``trace`` (a :class:`sim.tracesel.TraceSelection`)
    limits it to scopes and a cycle window. ``timeline`` (cycles): the socket testbench
    records a timeline at that resolution into ``test_dir/timeline.jsonl``
    (``tb.lib.timeline``). Raises :class:`SimulationError` with the
    failing tests' messages and the log's tail.
    """
    from cocotb_tools.runner import get_runner

    if not isinstance(args, TbArgs):
        raise TypeError(f"run_cocotb: args must be a tb.lib.args dataclass, got {args!r}")
    module, testcase = args.MODULE, args.TESTCASE
    if waves and not build.waves:
        raise ValueError("waves requested but the model was built without tracing")
    test_dir = Path(test_dir).resolve()
    test_dir.mkdir(parents=True, exist_ok=True)
    results = test_dir / "results.xml"
    out_file = test_dir / "outputs.json"
    log = test_dir / "sim.log"
    timeline_file = test_dir / "timeline.jsonl"
    for f in (results, out_file, log, test_dir / "dump.fst", test_dir / "dump.vcd",
              timeline_file):
        f.unlink(missing_ok=True)
    libs = str(toolchain.cocotb_libs_dir())
    env = {
        ENV_ARGS: args.to_json(),
        "OPENRDU_TB_OUT": str(out_file),
        "OPENRDU_HARNESS": str(build.dir / "src" / "harness.json"),
        "OPENRDU_FLOW": build.flow,
        "LD_LIBRARY_PATH": os.pathsep.join(filter(None, [libs, os.environ.get("LD_LIBRARY_PATH")])),
        # cocotb's runner checks results itself under pytest and exits; we check here.
        "PYTEST_CURRENT_TEST": "",
        ENV_TIMELINE: f"{int(timeline)}:{timeline_file}" if timeline else "",
    }
    runner = get_runner("verilator")
    exit_error = None
    with _patched_environ(env):
        os.environ.pop("PYTEST_CURRENT_TEST", None)
        try:
            runner.test(test_module=module, hdl_toplevel="tb_top", hdl_toplevel_lang="verilog",
                        build_dir=build.dir,
                        test_dir=test_dir, results_xml=str(results), testcase=testcase,
                        seed=seed, waves=waves, log_file=log,
                        test_args=trace.main_args() if (waves and trace) else [])
        except SystemExit as e:
            exit_error = f"simulator exited with {e.code}"
        except RuntimeError as e:       # the runner's "Command failed with return code"
            exit_error = f"simulator: {e}"
    tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:]) \
        if log.exists() else ""
    # Every failure names the test and its seed (OPENRDU_SEED reruns it).
    where = f"{module}:{testcase or '*'} (seed {args.seed})"
    if not results.exists():
        raise SimulationError(f"{where}: no results ({exit_error or 'no results file'}); "
                              f"log {log}:\n{tail}")
    n, failed = _failures(results)
    if exit_error or failed or n == 0:
        msgs = "\n".join(f"  {name}: {msg}" for name, msg in failed)
        raise SimulationError(f"{where}: {len(failed)} of {n} cocotb tests failed"
                              f"{'; ' + exit_error if exit_error else ''}\n{msgs}\n"
                              f"log {log}:\n{tail}")
    outputs = json.loads(out_file.read_text()) if out_file.exists() else {}
    return TestRun(test_dir, results, outputs)
