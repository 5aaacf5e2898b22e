"""Tier 1: the configuration space — seeded random variants of ``small`` (1 to 4 of the
knobs an architect turns, each within the validator's ranges): each is refused by name
or accepted, and on an accepted one every stress kernel (GEMM, softmax, attention, MLP,
a looped kernel, a decoder position; ``tb.lib.stress``) compiles and runs on the
reference backend or is refused by a deliberate check — a ``raise`` of the firmware with
a message, never a failure inside numpy or a lookup."""

import asyncio
import random
import traceback

import numpy as np

from firmware.runtime.reference import ReferenceDevice
from hdl.params import PRESETS, ParamError
from tb.lib.stress import CASES, case_of

SEED = 20261205
COUNT = 12
#: The knobs varied, each over a range the small socket's kernels are sized for.
KNOBS = {
    "rows": lambda r: r.randint(1, 4), "cols": lambda r: r.randint(1, 6),
    "pcu_lanes": lambda r: r.choice([2, 4, 8, 16]), "pcu_stages": lambda r: r.randint(1, 8),
    "pmu_bank_words": lambda r: r.choice([256, 512, 1024, 4096]),
    "agcus": lambda r: r.randint(1, 4), "agcu_stores": lambda r: r.randint(1, 4),
    "agcu_segments": lambda r: r.randint(1, 6), "hbm_channels": lambda r: r.choice([1, 2, 4]),
    "hbm_bytes_per_cycle": lambda r: r.choice([8, 16, 32, 64, 128]),
    "rdn_flows": lambda r: r.choice([8, 16, 32]), "rdn_buffer_depth": lambda r: r.randint(1, 6),
}


def _variant(rng):
    kw = {k: KNOBS[k](rng) for k in rng.sample(sorted(KNOBS), rng.randint(1, 4))}
    if "pcu_lanes" in kw:
        kw["pmu_banks"] = max(kw["pcu_lanes"], 8)
    return kw


def _deliberate(e):
    """The exception came out of a ``raise`` statement of the project, with a message."""
    last = traceback.extract_tb(e.__traceback__)[-1]
    return (isinstance(e, ValueError) and str(e) and "/site-packages/" not in last.filename
            and (last.line or "").lstrip().startswith("raise"))


def test_every_kernel_runs_or_is_refused_on_random_configs():
    rng = random.Random(SEED)
    ran = refused = configs = 0
    for i in range(COUNT):
        kw = _variant(rng)
        try:
            params = PRESETS["small"].replace(name=f"variant{i}", **kw)
        except ParamError as e:
            assert str(e).split(":")[0].split(" ")[0] in {*KNOBS, "pmu_banks"}, \
                f"seed {SEED} variant {i} {kw}: {e} names no field"
            continue
        configs += 1
        for name in CASES:
            case = case_of(name, random.Random(SEED + i))
            try:
                asyncio.run(case.run(ReferenceDevice(params), np.random.default_rng(i)))
                ran += 1
            except Exception as e:          # noqa: BLE001 - classified here
                assert _deliberate(e), (
                    f"seed {SEED} variant {i} {kw}: {name} {case.shape} failed outside a "
                    f"check: {type(e).__name__}: {e}\n{''.join(traceback.format_tb(e.__traceback__)[-3:])}")
                refused += 1
    assert configs >= COUNT // 2 and ran >= 3 * configs, (configs, ran, refused)


def test_a_numpy_failure_is_not_a_deliberate_refusal():
    try:
        np.zeros(3)[:] = np.zeros(4)
    except ValueError as e:
        assert not _deliberate(e)
    try:
        raise ValueError("gemm: needs two AGCUs")
    except ValueError as e:
        assert _deliberate(e)
