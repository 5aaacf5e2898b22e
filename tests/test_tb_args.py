"""The typed cocotb arguments (tb/lib/args.py): every cocotb test has one dataclass, bad
arguments are refused when it is made, and the CLI's options come from its fields."""

import ast
import dataclasses
import json
import pathlib

import pytest

from hdl.params import PRESETS
from sim.run import KERNELS, kernel_args
from tb.lib.args import ENV_ARGS, TESTS, GemmArgs, PcuSimdArgs, TbArgs, args_class, tb_args

TB = pathlib.Path(__file__).resolve().parent.parent / "tb"


def _cocotb_tests(path):
    """Names of the functions of ``path`` decorated with ``@cocotb.test()``."""
    tree = ast.parse(path.read_text())
    return [f.name for f in tree.body if isinstance(f, ast.AsyncFunctionDef) and any(
        isinstance(d, ast.Call) and ast.unparse(d.func) == "cocotb.test"
        for d in f.decorator_list)]


def test_every_cocotb_test_has_its_dataclass():
    for path in sorted(TB.glob("test_*.py")):
        module = f"tb.{path.stem}"
        names = _cocotb_tests(path)
        assert names, path
        for name in names:
            key = (module, None) if (module, None) in TESTS else (module, name)
            assert key in TESTS, f"{module}:{name} has no dataclass in tb.lib.args"
            assert f"{TESTS[key].__name__}" in path.read_text(), (module, name)
    for module, testcase in TESTS:
        assert testcase is None or testcase in _cocotb_tests(TB / f"{module[3:]}.py")


@pytest.mark.parametrize("values,message", [
    ({"m": "8"}, "GemmArgs.m: expected int, got '8'"),
    ({"relu": 2}, "GemmArgs.relu: expected bool, got 2"),
    ({"pcus": True}, "GemmArgs.pcus: expected int, got True"),
    ({"params": [1]}, "GemmArgs.params: expected dict"),
])
def test_mistyped_arguments_are_refused_by_name(values, message):
    with pytest.raises(TypeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        GemmArgs(**values)


def test_unknown_arguments_are_refused_with_the_known_ones():
    with pytest.raises(TypeError, match=r"GemmArgs \(tb.test_socket:gemm\): unknown "
                                        r"arguments \['mm'\]; known: \['a_rows'"):
        tb_args("tb.test_socket", "gemm", mm=3)
    with pytest.raises(KeyError, match="no arguments defined for tb.test_socket:nope"):
        args_class("tb.test_socket", "nope")


def test_round_trip_through_the_environment(monkeypatch):
    a = GemmArgs(m=8, relu=1, seed=7, params=PRESETS["small"].to_dict())
    assert a.relu is True and isinstance(a, TbArgs)
    monkeypatch.setenv(ENV_ARGS, a.to_json())
    assert GemmArgs.from_env() == a
    assert GemmArgs.from_env().machine() == PRESETS["small"]
    monkeypatch.setenv(ENV_ARGS, json.dumps({"n": 5.0}))
    with pytest.raises(TypeError, match="PcuSimdArgs.n: expected int"):
        PcuSimdArgs.from_env()


def test_cli_options_are_the_dataclass_fields_and_defaults():
    for k in KERNELS.values():
        fields = {f.name: f for f in dataclasses.fields(k.args)}
        for o in k.options:
            default = fields[o.flag].default
            assert o.default == (int(default) if isinstance(default, bool) else default), \
                (k.name, o.flag)
            assert o.help, (k.name, o.flag)
    a = kernel_args("pcu-softmax", PRESETS["small"], seed=3, options={"n": None})
    assert (a.case, a.n, a.seed) == ("softmax", PcuSimdArgs().n, 3)
    with pytest.raises(TypeError, match="GemmArgs.bias: expected bool, got 5"):
        kernel_args("gemm", PRESETS["small"], options={"bias": 5})


@pytest.mark.parametrize("cls,values,message", [
    (GemmArgs, {"m": 0}, "GemmArgs.m: 0 is below the smallest value, 1"),
    (GemmArgs, {"pcus": -1}, "GemmArgs.pcus: -1 is below the smallest value, 0"),
    (PcuSimdArgs, {"idle": 1.0}, "PcuSimdArgs.idle: 1.0 is above the largest value, 0.99"),
    (PcuSimdArgs, {"case": "fft"}, "PcuSimdArgs.case: 'fft' is not one of fma, dot"),
    (GemmArgs, {"seed": -3}, "GemmArgs.seed: -3 is below the smallest value, 0"),
])
def test_out_of_range_arguments_are_refused_before_any_build(cls, values, message):
    """A value the test cannot run (a zero-sized shape, a driver that never sends) is
    refused when the arguments are made: the CLI says so before building a model."""
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        cls(**values)
    with pytest.raises(ValueError, match="AttentionArgs.seq: 0 is below"):
        kernel_args("attention", PRESETS["small"], options={"seq": 0})


def test_chained_gemv_layers_need_square_weights():
    """Refused when the arguments are made (before any model is built): a chained layer's
    output is the next layer's input."""
    from tb.lib.args import GemvLoopArgs
    with pytest.raises(ValueError, match="n must equal k"):
        GemvLoopArgs(n=64, k=32, chain=True)
    assert GemvLoopArgs(n=64, k=64, chain=True).chain


@pytest.mark.parametrize("cases", ["gemm,nope", "gemm,gemm", ""])
def test_stress_cases_are_checked_before_any_build(cases):
    from tb.lib.args import StressArgs
    with pytest.raises(ValueError, match="StressArgs.cases"):
        StressArgs(config="small", cases=cases)
    assert StressArgs(config="small", cases="loop, gemm").runs >= 1
