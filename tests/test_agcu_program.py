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
    """The words a lowered program visits: each chain step's run."""
    starts = [sum(s["value"]) for s in chain_steps(list(prog.counters), 1)]
    return np.concatenate([np.arange(s, s + prog.run) for s in starts])


@pytest.mark.parametrize("seed", range(6))
def test_lowering_visits_exactly_the_tensor_in_order(seed):
    rng = random.Random(seed)
    for _ in range(40):
        d = rng.randrange(1, 5)
        shape = tuple(rng.randrange(1, 6) for _ in range(d))
        # Row-major strides with random padding, sometimes a non-unit innermost stride.
        strides, s = [], rng.choice([1, 1, 1, 2, 3])
        for n in reversed(shape):
            strides.append(s)
            s = s * n + rng.choice([0, 0, 1, 5])
        acc = TensorAccess(shape, tuple(reversed(strides)), rng.randrange(20))
        prog = lower_access(acc)
        assert (_words_of_program(prog) == access_words(acc)).all(), (seed, acc)
        assert prog.words == int(np.prod(shape))


def test_contiguous_dimensions_fold_into_one_run():
    assert lower_access(TensorAccess((4, 8, 16), (128, 16, 1))).run == 512
    p = lower_access(TensorAccess((4, 8, 16), (200, 16, 1), 7))
    assert p.run == 128 and len(p.counters) == 1 and p.counters[0].min == 7


def test_access_errors_name_the_problem():
    with pytest.raises(AgcuProgramError, match="1 to 4 dimensions"):
        lower_access(TensorAccess((2,) * 5, (1,) * 5))
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
        pack_agcu(SMALL, TensorAccess((3, 5), (50, 1)), write=False, segments=seg)
    with pytest.raises(AgcuProgramError, match="segment 2: the table has 1"):
        pack_agcu(SMALL, TensorAccess((3,), (1,)), write=False, segments=seg, segment=2)
    with pytest.raises(AgcuProgramError, match="not inside memory"):
        pack_agcu(SMALL, TensorAccess((3,), (1,)), write=False,
                  segments=[Segment(MemoryMap(SMALL).beats * 8 - 4, 10)])
    with pytest.raises(AgcuProgramError, match="4 entries|has 4"):
        pack_agcu(SMALL, TensorAccess((3,), (1,)), write=False, segments=seg * 5)


def test_pack_uses_the_hdl_layout():
    segs = [Segment(1000, 600), Segment(5000, 64)]
    value, prog = pack_agcu(SMALL, TensorAccess((3, 5, 7), (100, 10, 1), 2), write=True,
                            segments=segs, segment=1 - 1, hdr={"flow": 5})
    v = agcu_config_layout(SMALL).from_bits(value)
    assert (v.run, v.write, v.segment, v.hdr.flow) == (prog.run, 1, 0, 5)
    assert [(s.base, s.size) for s in list(v.segments)[:2]] == [(1000, 600), (5000, 64)]
    assert v.chain.depth == len(prog.counters)
    assert [(c.min, c.max, c.stride) for c in list(v.chain.ctr)[:2]] == \
        [(c.min, c.max, c.stride) for c in prog.counters]


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
