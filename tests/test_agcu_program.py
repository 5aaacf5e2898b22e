"""Tier 1: AGCU access programs and DMA descriptors (firmware/compiler/agcu.py, memory.py):
lowering of strided tensors, packing with the HDL layouts, and the errors."""

import random

import numpy as np
import pytest

from firmware.compiler.agcu import (AgcuProgramError, Segment, TensorAccess, access_words,
                                    lower_access, pack_agcu, run_bursts)
from firmware.compiler.counters import chain_steps
from firmware.compiler.memory import MemoryProgramError, dma_descriptor, pack_dma, word_address
from hdl.agcu.config import agcu_config_layout
from hdl.memory.config import MAX_BURST, MemoryMap, dma_desc_layout
from hdl.params import PRESETS

SMALL = PRESETS["small"]


def _words_of_program(prog):
    """The words a lowered program visits: each chain step's run (the hardware sums the
    values of the counters whose address bit is set)."""
    starts = [sum(v for v, en in zip(s["value"], prog.addr_en) if en)
              for s in chain_steps(list(prog.counters), 1)]
    return np.concatenate([np.arange(s, s + prog.run) for s in starts])


@pytest.mark.parametrize("seed", range(6))
def test_lowering_visits_exactly_the_tensor_in_order(seed):
    rng = random.Random(seed)
    for _ in range(40):
        d = rng.randrange(1, 6)
        shape = tuple(rng.randrange(1, 6) for _ in range(d))
        # Row-major strides with random padding, sometimes a non-unit innermost stride,
        # sometimes a repeated (stride 0) outer dimension.
        strides, s = [], rng.choice([1, 1, 1, 2, 3])
        for n in reversed(shape):
            strides.append(s)
            s = s * n + rng.choice([0, 0, 1, 5])
        strides = list(reversed(strides))
        for k in range(d - 1):
            if rng.random() < 0.2:
                strides[k] = 0
        acc = TensorAccess(shape, tuple(strides), rng.randrange(20))
        try:
            prog = lower_access(acc)
        except AgcuProgramError as e:      # five dimensions that do not fold
            assert "counters" in str(e) and d == 5, (seed, acc, e)
            continue
        assert (_words_of_program(prog) == access_words(acc)).all(), (seed, acc)
        assert prog.words == int(np.prod(shape))


def test_contiguous_dimensions_fold_into_one_run():
    assert lower_access(TensorAccess((4, 8, 16), (128, 16, 1))).run == 512
    p = lower_access(TensorAccess((4, 8, 16), (200, 16, 1), 7))
    assert p.run == 128 and len(p.counters) == 1 and p.counters[0].min == 7


def test_repeated_dimensions_are_counters_that_do_not_move_the_address():
    p = lower_access(TensorAccess((3, 4, 16), (16, 0, 1), 5))
    assert p.run == 16 and p.addr_en == (True, False)
    assert (_words_of_program(p) == np.tile(np.arange(16), 12) +
            np.repeat(np.arange(3) * 16, 64) + 5).all()
    # Only repeats: an address counter carries the offset.
    p = lower_access(TensorAccess((4, 8), (0, 1), 3))
    assert p.addr_en == (True, False) and (_words_of_program(p) == np.tile(np.arange(8) + 3, 4)).all()


def test_access_errors_name_the_problem():
    with pytest.raises(AgcuProgramError, match="1 to 5 dimensions"):
        lower_access(TensorAccess((2,) * 6, (1,) * 6))
    with pytest.raises(AgcuProgramError, match=r"strides\[0\]"):
        lower_access(TensorAccess((2, 3), (-3, 1)))
    with pytest.raises(AgcuProgramError, match=r"shape\[1\]"):
        lower_access(TensorAccess((2, 0), (3, 1)))
    with pytest.raises(AgcuProgramError, match="do not match"):
        lower_access(TensorAccess((2, 3), (3,)))
    with pytest.raises(AgcuProgramError, match="exceeds the AGCU"):
        lower_access(TensorAccess((1 << 25,), (1,)))
    seg = [Segment(0, 100)]
    with pytest.raises(AgcuProgramError, match="reaches word 104 of segment 0"):
        pack_agcu(SMALL, load=(TensorAccess((3, 5), (50, 1)), 0), segments=seg)
    with pytest.raises(AgcuProgramError, match="segment 2: the table has 1"):
        pack_agcu(SMALL, store=(TensorAccess((3,), (1,)), 2), segments=seg)
    with pytest.raises(AgcuProgramError, match="not inside memory"):
        pack_agcu(SMALL, load=(TensorAccess((3,), (1,)), 0),
                  segments=[Segment(MemoryMap(SMALL).beats * 8 - 4, 10)])
    with pytest.raises(AgcuProgramError, match="4 entries|has 4"):
        pack_agcu(SMALL, load=(TensorAccess((3,), (1,)), 0), segments=seg * 5)
    with pytest.raises(AgcuProgramError, match="needs a load or a store"):
        pack_agcu(SMALL, segments=seg)


def test_pack_uses_the_hdl_layout():
    segs = [Segment(1000, 600), Segment(5000, 64)]
    value, progs = pack_agcu(SMALL, store=(TensorAccess((3, 5, 7), (100, 10, 1), 2), 0),
                             load=(TensorAccess((4, 16), (0, 1)), 1), segments=segs,
                             hdr={"flow": 5})
    v = agcu_config_layout(SMALL).from_bits(value)
    prog = progs["store"]
    assert (v.store.en, v.store.run, v.store.segment, v.store.addr_en, v.hdr.flow) == \
        (1, prog.run, 0, 0b11, 5)
    assert (v.load.en, v.load.run, v.load.segment, v.load.addr_en) == (1, 16, 1, 0b01)
    assert [(s.base, s.size) for s in list(v.segments)[:2]] == [(1000, 600), (5000, 64)]
    assert v.store.chain.depth == len(prog.counters)
    assert [(c.min, c.max, c.stride) for c in list(v.store.chain.ctr)[:2]] == \
        [(c.min, c.max, c.stride) for c in prog.counters]
    only_load, _ = pack_agcu(SMALL, load=(TensorAccess((4,), (1,)), 0), segments=segs)
    assert agcu_config_layout(SMALL).from_bits(only_load).store.en == 0


def test_store_streams_by_flow_id():
    """store2, store3 each take the packets of one arriving flow id; store the rest."""
    segs = [Segment(1000, 600), Segment(5000, 64)]
    one = TensorAccess((8,), (1,))
    value, progs = pack_agcu(SMALL, store=(one, 0), by_flow=[(one, 1, 9), (one, 0, 3)],
                             segments=segs)
    v = agcu_config_layout(SMALL).from_bits(value)
    assert set(progs) == {"store", "store2", "store3"}
    assert (v.store2.en, v.store2.segment, v.store2_flow) == (1, 1, 9)
    assert (v.store3.en, v.store3.segment, v.store3_flow) == (1, 0, 3)
    assert v.load.en == 0
    only, _ = pack_agcu(SMALL, store=(one, 0), segments=segs)
    assert agcu_config_layout(SMALL).from_bits(only).store2.en == 0
    for kw, msg in [
            ({"by_flow": [(one, 0, 1)] * 3}, r"4 store streams; the AGCU has 3 \(agcu_stores\)"),
            ({"by_flow": [(one, 0, 2), (one, 0, 2)]}, "store3: flow id 2 is taken"),
            ({"by_flow": [(one, 0, 16)]}, r"store2: flow id 16 outside 0\.\.15")]:
        with pytest.raises(AgcuProgramError, match=msg):
            pack_agcu(SMALL, store=(one, 0), segments=segs, **kw)
    with pytest.raises(AgcuProgramError, match="needs a store stream beside it"):
        pack_agcu(SMALL, load=(one, 0), by_flow=[(one, 0, 1)], segments=segs)


def test_run_bursts_cover_the_run_inside_blocks():
    rng = random.Random(3)
    for _ in range(500):
        W = rng.choice([1, 2, 8, 16])
        phys, run = rng.randrange(10000), rng.randrange(1, 600)
        words = []
        for beat, ln, lo, hi in run_bursts(W, phys, run):
            assert beat // MAX_BURST == (beat + ln) // MAX_BURST, "burst crosses a block"
            assert 0 <= lo < W and 0 < hi <= W and (ln or hi > lo)
            for k in range(ln + 1):
                a, b = (lo if k == 0 else 0), (hi if k == ln else W)
                words += range((beat + k) * W + a, (beat + k) * W + b)
        assert words == list(range(phys, phys + run))


def test_dma_descriptors_and_errors():
    W = MemoryMap(SMALL).words
    src, dst = word_address(SMALL, "ddr", 64), word_address(SMALL, "hbm", 128)
    d = dma_descriptor(SMALL, src, dst, 1000)
    assert d == {"src": src // W, "dst": dst // W, "count": 1000}
    mm = MemoryMap(SMALL)
    v = dma_desc_layout(mm.addr_bits, W).from_bits(pack_dma(SMALL, src, dst, 1000))
    assert (v.src, v.dst, v.count) == (src // W, dst // W, 1000)
    with pytest.raises(MemoryProgramError, match="not aligned"):
        dma_descriptor(SMALL, src + 1, dst, 10)
    with pytest.raises(MemoryProgramError, match="positive number of words"):
        dma_descriptor(SMALL, src, dst, 0)
    with pytest.raises(MemoryProgramError, match="run past the end"):
        dma_descriptor(SMALL, mm.beats * W - W, dst, 2 * W)
    with pytest.raises(MemoryProgramError, match="overlap"):
        dma_descriptor(SMALL, dst, dst + W, 4 * W)
    with pytest.raises(MemoryProgramError, match="no memory region"):
        word_address(SMALL, "sram", 0)
    with pytest.raises(MemoryProgramError, match="outside"):
        word_address(SMALL, "hbm", SMALL.hbm_capacity)
