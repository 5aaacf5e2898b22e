"""Tier 3: a socket run's timeline (``sim run --trace``) — recorded by the testbench on
the jittered small socket, turned into a Perfetto trace that must be valid Chrome trace
JSON and whose intervals must add up to the run's own counters; plus tier-1 checks
that the format check refuses what a viewer would not load."""

import json
import os

import pytest

from conftest import TEST_SOCKET
from hdl.tile import tile_units
from sim.cocotb_run import run_cocotb
from sim.timeline import (TraceFormatError, read_timeline, trace_events, unit_states,
                          validate_trace, write_png)
from tb.lib.args import tb_args

SEED = int(os.environ.get("OPENRDU_SEED", "20261203"))


def _slices(trace, pid, tid=None):
    return [e for e in trace["traceEvents"] if e["ph"] == "X" and e["pid"] == pid
            and (tid is None or e["tid"] == tid)]


@pytest.mark.rtl
@pytest.mark.parametrize("resolution", [24])
def test_attention_timeline_matches_the_counters(socket_model, tmp_path, resolution):
    p = TEST_SOCKET
    targs = tb_args("tb.test_socket", "attention", params=p.to_dict(), seed=SEED,
                    seq=32, head_dim=16, unfused=1)
    out = run_cocotb(socket_model, targs, test_dir=tmp_path, timeline=resolution).outputs
    where = f"seed {SEED} (OPENRDU_SEED), resolution {resolution}"
    tl = read_timeline(tmp_path / "timeline.jsonl")
    trace = trace_events(tl, p, "attention")
    validate_trace(json.loads(json.dumps(trace)))
    # Two launch lists: the fused kernel, then the three unfused kernels.
    assert len(tl.lists) == 2, where
    fused, unfused = tl.lists
    seq = {"program load": "load_cycles", "kernel": "exec_cycles"}

    def total(name, t0, t1):
        return sum(e["args"]["cycles"] for e in _slices(trace, 1, 1)
                   if e["name"] == name and t0 <= e["args"]["cycle"] < t1)
    for name, key in seq.items():
        assert total(name, *fused) == out["fused"][key], (where, name)
        assert total(name, *unfused) == out["unfused"][key], (where, name)
    assert out["load_cycles"] == out["fused"]["load_cycles"], where
    # Every unit's slices (busy, stall, starve) cover exactly its busy cycles of the
    # fused run (the counters the report carries are read after it).
    busy = out["counters"]["unit_busy"]
    for u in tile_units(p):
        k = u.row * p.cols + u.col
        covered = sum(e - s for s, e, _ in unit_states(tl, k) if s < fused[1])
        assert covered == busy[k], (where, u.name, covered, busy[k])
    # The sampled intervals telescope to the counters at the end of each list.
    last = [s for t, s, i in tl.samples if i == 0][-1]
    assert last["seq"]["exec_cycles"] == out["fused"]["exec_cycles"], where
    assert last["busy"] == busy, where
    hbm = sum(r + w for r, w in last["mem"]["hbm"])
    assert hbm == out["hbm_bytes"], where
    # Sampling steps: no interval longer than the resolution.
    assert all(t1 - t0 <= resolution for t0, t1, *_ in tl.deltas()), where
    png = write_png(tl, p, tmp_path / "t.png", ["fused", "unfused"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _trace(*events):
    meta = {"ph": "M", "pid": 1, "tid": 1, "name": "thread_name", "args": {"name": "t"}}
    return {"traceEvents": [meta, *events]}


def _x(ts, dur, **kw):
    return {"ph": "X", "pid": 1, "tid": 1, "name": "busy", "ts": ts, "dur": dur, **kw}


def test_trace_format_check_accepts_and_refuses():
    assert validate_trace(_trace(_x(0, 5), _x(5, 2))) == 3
    bad = [({"events": []}, "no traceEvents"),
           (_trace({"ph": "B", "pid": 1}), "phase 'B'"),
           (_trace({"ph": "X", "pid": 1, "tid": 1, "name": "a", "ts": 0}), "no dur"),
           (_trace(_x(0, -1)), "dur -1"),
           (_trace(_x("0", 1)), "ts '0'"),
           (_trace(_x(0, 5), _x(3, 5)), "overlaps"),
           (_trace(_x(0, 1, tid=2)), "no thread_name"),
           (_trace({"ph": "C", "pid": 1, "name": "c", "ts": 0, "args": {"v": "x"}}),
            "numbers")]
    for obj, words in bad:
        with pytest.raises(TraceFormatError, match=words):
            validate_trace(obj)
