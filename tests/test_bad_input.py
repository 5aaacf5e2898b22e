"""Bad input a user can give the command line — kernel options, report paths, config
files — each refused with a message naming the problem, before any model is built (the
build and the simulation are replaced by a failure here)."""

import pytest

import sim.bench
import sim.run
from sim.__main__ import main

#: (arguments, words the message must hold). TOML files are written from ``CONFIGS``.
OPTIONS = [
    (["run", "gemm", "--m", "0"], "GemmArgs.m: 0 is below the smallest value"),
    (["run", "gemm", "--k", "0"], "GemmArgs.k: 0 is below"),
    (["run", "gemm", "--m", "abc"], "argument --m: invalid int value"),
    (["run", "gemm", "--split", "3"], "unrecognized arguments: --split"),
    (["run", "gemm", "--bias", "2"], "GemmArgs.bias: expected bool, got 2"),
    (["run", "gemm", "--relu", "-1"], "GemmArgs.relu: expected bool"),
    (["run", "gemm", "--m", "1000000000"], "does not fit in hbm"),
    (["run", "gemm", "--pcus", "99"], "99 PCUs needed, the array has 4"),
    (["run", "attention", "--seq", "0"], "AttentionArgs.seq: 0 is below"),
    (["run", "attention", "--head-dim", "1000"], "a PMU holds 8192"),
    (["run", "attention", "--unfused", "5"], "AttentionArgs.unfused: expected bool"),
    (["run", "softmax", "--rows", "0"], "SoftmaxArgs.rows: 0 is below"),
    (["run", "softmax", "--n", "100000"], "buffer 'x' of 6400000 words does not fit in hbm"),
    (["run", "fpu", "--idle", "1.5"], "FpuArgs.idle: 1.5 is above the largest value"),
    (["run", "fpu", "--n", "-5"], "FpuArgs.n: -5 is below"),
    (["run", "decoder", "--act", "gelu"], "'gelu' is not one of silu, relu"),
    (["run", "decoder", "--vocab", "1000"], "the argmax takes at most 8"),
    (["run", "decoder", "--d-model", "1000"], "'decoder weights'"),
    (["run", "coe", "--d", "100000"], "does not fit a PMU of 8192 words"),
    (["run", "coe", "--slots", "0"], "CoeArgs.slots: 0 is below"),
    (["run", "decode", "--n", "100000", "--k", "4096"], "buffer 'w'"),
    (["run", "mlp", "--hidden", "100000"], "buffer 'w1'"),
    (["run", "nosuch"], "unknown kernel 'nosuch'"),
    (["run"], "a kernel name is needed"),
    (["run", "gemm", "--json", "/proc/x/y.json"], "report path /proc/x/y.json cannot be written"),
    (["run", "gemm", "--json", "{tmp}"], "is a directory"),
    (["run", "fpu", "--waves-from", "5"], "--waves-from needs --waves"),
    (["run", "gemm", "--waves", "--waves-units", "nosuch"], "nosuch"),
    (["run", "gemm", "--waves-from", "-3", "--waves"], "a cycle number is >= 0"),
    (["run", "fpu", "--trace"], "--trace records a socket run"),
    (["run", "gemm", "--trace-resolution", "5"], "--trace-resolution needs --trace"),
    (["run", "gemm", "--trace", "--trace-resolution", "0"], "a whole number of cycles >= 1"),
    (["sweep", "gemm", "--param", "m=8", "--jobs", "0"], "--jobs 0: at least 1"),
    (["explain", "fpu"], "'fpu' is not a socket kernel"),
    (["bench", "--socket-parts", "sim_speed,nope"], "unknown socket bench parts ['nope']"),
    (["bench", "--socket-parts", "sim_speed", "--presets", "tiny"], "unknown presets ['tiny']"),
]

CONFIGS = [
    ('base = "small"\nrows = 64\ncols = 64\n', "rows: out of range: 1 .. 16"),
    ('base = "small"\nrows = 16\ncols = 16\n', "rows x cols, agcus: 4 x 16 x 16 + 2 = 1026"),
    ('base = "small"\npmu_bank_words = 1073741824\n', "pmu_bank_words: out of range"),
    ('base = "small"\npcu_stages = 100000\n', "pcu_stages: out of range: 1 .. 16"),
    ('base = "small"\nhbm_latency = 99999999999\n', "hbm_latency: out of range"),
    ('base = "small"\nhbm_latency = -1\n', "hbm_latency: must be positive"),
    ('base = "small"\nclock_ghz = nan\n', "clock_ghz: must be a positive number"),
    ('base = "small"\nrdn_flows = 256\n', "rdn_flows: out of range: 2 .. 64"),
    ('base = "small"\nrows = true\n', "rows: must be an integer, got True"),
    ('base = "small"\nname = 3\n', "name: must be a non-empty string"),
    ('base = ["small"]\n', "base: must be a preset name"),
    ('base = "huge"\n', "unknown preset 'huge'"),
    ('base = "small"\nnosuch = 3\n', "nosuch: unknown parameter"),
    ('rows = [\n', "is not valid TOML"),
    (b'\xff\xfe rows = 2\n', "is not UTF-8 text"),
    ('base = "small"\nhbm_bytes_per_cycle = 4\nddr_bytes_per_cycle = 4\n'
     'host_bytes_per_cycle = 2\n', "does not fit one 16-beat burst"),
    ('base = "small"\npmu_banks = 4\n', "need pmu_banks >= pcu_lanes"),
    ('base = "small"\nagcu_stores = 5\n', "agcu_stores: out of range: 1 .. 4"),
    ('base = "small"\nmem_jitter = 5\n', "mem_jitter: must be 2**k - 1"),
    (None, "is a directory, not a TOML file"),
]


@pytest.fixture
def no_build(monkeypatch):
    """Any build or simulation is a failure: the input had to be refused before."""
    def reached(*a, **k):
        raise AssertionError("a bad input reached the model build")
    monkeypatch.setattr(sim.run, "build_design", reached)
    monkeypatch.setattr(sim.run, "run_cocotb", reached)
    monkeypatch.setattr(sim.bench, "_socket_section", reached)


def _refused(argv, capsys):
    """The message of ``main(argv)``, which must exit with a failure."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    out = capsys.readouterr()
    msg = e.value.code if isinstance(e.value.code, str) else out.err + out.out
    assert e.value.code not in (0, None), f"{argv}: accepted (exit {e.value.code})"
    return msg


@pytest.mark.parametrize("argv,words", OPTIONS, ids=[" ".join(a) for a, _ in OPTIONS])
def test_bad_option_is_refused_before_the_build(argv, words, tmp_path, capsys, no_build):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    msg = _refused(argv, capsys)
    assert words in msg, f"{argv}: message {msg!r} does not say {words!r}"


@pytest.mark.parametrize("text,words", CONFIGS, ids=[w for _, w in CONFIGS])
def test_bad_config_file_is_refused(text, words, tmp_path, capsys, no_build):
    path = tmp_path / "bad.toml"
    if text is None:
        path.mkdir()
    elif isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    for argv in (["run", "gemm", "--config", str(path)], ["explain", "gemm", "--config", str(path)]):
        msg = _refused(argv, capsys)
        assert words in msg and "invalid _config value" not in msg, \
            f"{argv} with {text!r}: message {msg!r} does not say {words!r}"
