"""cocotb: the memory system (HBM and DDR stubs with testbench backing stores, host link,
DMA engine, top-level network) on Verilator.

Arguments (the test's dataclass in :mod:`tb.lib.args`): ``config``/``params``, ``seed``, and per test:

* ``dma_copy``: ``count`` words DDR -> HBM, then the HBM copy back to another DDR place
  (block offsets of source and destination differ); both copies exact, words around
  the destinations unchanged, byte counters = the beats moved.
* ``dma_error``: a descriptor running past the end of memory raises ``dma_error`` and
  writes nothing.
* ``host_link``: ``requests`` random host reads and writes (``backpressure`` on the
  response stream) to HBM and DDR, then one request outside memory: every response
  right (by tag), the stores hold the writes, the stray request raises ``decode_error``
  with its address.
* ``host_bandwidth`` / ``dma_bandwidth``: ``count`` words host -> HBM over the host link,
  or DDR -> HBM by DMA; outputs the cycles.
"""

import random

import cocotb
import numpy as np

from firmware.compiler.memory import pack_dma, word_address
from hdl.memory.config import (MAX_BURST, MemoryMap, dma_desc_layout, req_layout,
                               resp_layout, wdata_layout)
from tb.lib.args import (
    AgcuBandwidthArgs, AgcuFaultArgs, AgcuStreamArgs, CopyBandwidthArgs, DmaCopyArgs,
    DmaErrorArgs, HostLinkArgs)
from tb.lib.harness import TbHarness, write_outputs
from tb.lib.hostlink import host_write
from tb.lib.memimage import MemoryImage
from tb.lib.payload import from_ints, pack, unpack, words_of


async def until(tb, cond, *, timeout, step=256, what="condition"):
    """Wait (``step`` cycles at a time) until ``cond()``; fail after ``timeout`` cycles."""
    waited = 0
    while not cond():
        if waited >= timeout:
            raise AssertionError(f"timeout after {timeout} cycles waiting for {what}")
        await tb.cycles(step)
        waited += step
    return waited


def _port(tb, name):
    return int(tb.port(name).value)


async def _setup(dut, cls):
    args = cls.from_env()
    params = args.machine()
    tb = TbHarness(dut)
    await tb.reset()
    return args, params, tb, MemoryImage(params), random.Random(args.seed)


def _words(rng, n):
    return np.array([rng.getrandbits(32) for _ in range(n)], dtype=np.uint32)


def _desc_words(params):
    mm = MemoryMap(params)
    return words_of(dma_desc_layout(mm.addr_bits, mm.words))


def _dma_rows(params, copies):
    return from_ints([pack_dma(params, *c) for c in copies], _desc_words(params))


async def _run_dma(tb, params, copies, timeout):
    tb.load("dma", _dma_rows(params, copies))
    await tb.run(timeout_cycles=16)
    await until(tb, lambda: _port(tb, "dma_done") >= len(copies) or _port(tb, "dma_error"),
                timeout=timeout, step=64, what="DMA done")
    assert not _port(tb, "dma_error"), "DMA refused a valid descriptor"
    assert _port(tb, "dma_done") == len(copies)
    return _port(tb, "dma_cycles")


def _counters(tb, mm):
    return {f"{r.name}_{k}": sum(_port(tb, f"{r.name}_{k}_bytes__{c}") for c in range(r.channels))
            for r in mm.regions for k in ("read", "write")}


@cocotb.test()
async def dma_copy(dut):
    args, params, tb, img, rng = await _setup(dut, DmaCopyArgs)
    W = img.words
    count = args.count
    beats = -(-count // W)
    span = (beats + 2) * W
    src = word_address(params, "ddr", W * rng.randrange(64))
    mid = word_address(params, "hbm", W * (MAX_BURST * rng.randrange(64) + 5))
    back = word_address(params, "ddr", W * (MAX_BURST * (70 + rng.randrange(64)) + 11))
    payload = _words(rng, beats * W)
    around = {a: _words(rng, span + 2 * W) for a in (mid, back)}
    await img.write(tb, src, payload)
    for a, v in around.items():
        await img.write(tb, a - W, v)
    cycles = await _run_dma(tb, params, [(src, mid, count), (mid, back, count)],
                            timeout=200 * beats + 20000)
    for a, v in around.items():
        got = await img.read(tb, a - W, span + 2 * W)
        want = v.copy()
        want[W:W + count] = payload[:count]
        bad = np.nonzero(got != want)[0]
        assert not len(bad), (f"copy to {a:#x}: {len(bad)} words wrong, first at word "
                              f"{bad[0] - W} of the copy (got {got[bad[0]]:#x}, want "
                              f"{want[bad[0]]:#x})")
    mm = MemoryMap(params)
    moved = beats * mm.beat_bytes
    counters = _counters(tb, mm)
    assert counters == {"hbm_read": moved, "hbm_write": moved, "ddr_read": moved,
                        "ddr_write": moved}, counters
    write_outputs(cycles=cycles, counters=counters)


@cocotb.test()
async def dma_error(dut):
    args, params, tb, img, rng = await _setup(dut, DmaErrorArgs)
    mm = MemoryMap(params)
    W = img.words
    dst = word_address(params, "hbm", W * MAX_BURST * 3)
    before = _words(rng, 4 * MAX_BURST * W)
    await img.write(tb, dst, before)
    # Packed directly (firmware's pack_dma refuses it): 100 beats from 64 before the end.
    desc = dma_desc_layout(mm.addr_bits, W).const(
        {"src": mm.beats - 64, "dst": dst // W, "count": 100 * W}).as_value().value
    tb.load("dma", from_ints([desc], _desc_words(params)))
    await tb.run(timeout_cycles=16)
    await until(tb, lambda: _port(tb, "dma_error"), timeout=2000, step=16, what="dma_error")
    await tb.cycles(500)
    assert _port(tb, "dma_done") == 0 and not _port(tb, "dma_busy")
    assert (await img.read(tb, dst, before.size) == before).all(), "refused DMA wrote memory"
    assert sum(_counters(tb, mm).values()) == 0


def _host_requests(rng, params, n):
    """Random host bursts inside one MAX_BURST block each: (global beat, len, write)."""
    mm = MemoryMap(params)
    out = []
    for i in range(n):
        r = mm.regions[rng.randrange(len(mm.regions))]
        block = rng.randrange(8)
        length = rng.randrange(MAX_BURST)
        start = rng.randrange(MAX_BURST - length)
        out.append((r.base + block * MAX_BURST + start, length, int(rng.random() < 0.5)))
    return out


@cocotb.test()
async def host_link(dut):
    args, params, tb, img, rng = await _setup(dut, HostLinkArgs)
    mm = MemoryMap(params)
    W = img.words
    reqs = _host_requests(rng, params, args.requests)
    # Initial contents of every block touched.
    blocks = sorted({b // MAX_BURST for b, _, _ in reqs})
    init = {b: _words(rng, MAX_BURST * W).reshape(MAX_BURST, W) for b in blocks}
    for b, v in init.items():
        await img.write(tb, b * MAX_BURST * W, v)
    store = {b * MAX_BURST + k: v[k].copy() for b, v in init.items() for k in range(MAX_BURST)}
    wbeats, wmasks, expect = [], [], {}
    for tag, (beat, length, write) in enumerate(reqs):
        if write:
            for k in range(length + 1):
                d, mask = _words(rng, W), rng.getrandbits(W)
                wbeats.append(d)
                wmasks.append(mask)
                for w in range(W):
                    if mask >> w & 1:
                        store[beat + k][w] = d[w]
            expect[tag] = "ack"
        else:
            expect[tag] = np.array([store[beat + k] for k in range(length + 1)])
    stray = mm.beats + 3 * MAX_BURST
    req_rows = pack(req_layout(mm.addr_bits), {
        "addr": [b for b, _, _ in reqs] + [stray], "len": [l for _, l, _ in reqs] + [0],
        "write": [w for _, _, w in reqs] + [0], "tag": list(range(len(reqs))) + [63]})
    tb.load("host__req", req_rows, seed=rng.getrandbits(32), valid_probability=0.7)
    if wbeats:
        tb.load("host__wdata", pack(wdata_layout(W), {"data": np.array(wbeats),
                                                      "mask": wmasks}))
    n_resp = sum(1 if w else l + 1 for _, l, w in reqs)
    tb.expect("host__resp", n_resp, seed=rng.getrandbits(32),
              ready_probability=1 - args.backpressure)
    cycles, _ = await tb.run(timeout_cycles=100000)
    resp = unpack(resp_layout(W), await tb.dump("host__resp"))
    got = {}
    for i in range(n_resp):
        tag = int(resp["tag"][i])
        if resp["write"][i]:
            assert resp["last"][i] and tag not in got, f"write {tag}: bad acknowledgement"
            got[tag] = "ack"
        else:
            got.setdefault(tag, []).append((resp["data"][i], int(resp["last"][i])))
    for tag, want in expect.items():
        g = got.get(tag)
        if isinstance(want, str):
            assert g == "ack", f"request {tag}: write not acknowledged ({g})"
            continue
        assert g is not None and len(g) == len(want), f"read {tag}: {g and len(g)} beats, want {len(want)}"
        assert [last for _, last in g] == [0] * (len(want) - 1) + [1], f"read {tag}: last flags"
        assert (np.array([d for d, _ in g]) == want).all(), f"read {tag}: wrong data"
    for b in blocks:
        have = (await img.read(tb, b * MAX_BURST * W, MAX_BURST * W)).reshape(MAX_BURST, W)
        want = np.array([store[b * MAX_BURST + k] for k in range(MAX_BURST)])
        assert (have == want).all(), f"block {b}: memory differs from the host's writes"
    assert _port(tb, "decode_error") == 1 and _port(tb, "decode_addr") == stray
    write_outputs(cycles=cycles, responses=n_resp)


async def _timed_copy(tb, img, params, rng, count, via):
    """Move ``count`` words into HBM from DDR by DMA or from the host over the link."""
    dst = word_address(params, "hbm", 0)
    data = _words(rng, count)
    if via == "dma":
        src = word_address(params, "ddr", 0)
        await img.write(tb, src, data)
        cycles = await _run_dma(tb, params, [(src, dst, count)], timeout=64 * count)
    else:
        cycles = await host_write(tb, params, dst, data)
    assert (await img.read(tb, dst, count) == data).all(), f"{via} copy is wrong"
    return cycles


@cocotb.test()
async def copy_bandwidth(dut):
    args, params, tb, img, rng = await _setup(dut, CopyBandwidthArgs)
    cycles = await _timed_copy(tb, img, params, rng, args.count, args.via)
    write_outputs(cycles=cycles)


# ---- AGCUs ------------------------------------------------------------------------------

#: Accesses of the ``agcu_stream`` test: (shape, strides, offset), outermost first.
ACCESSES = {
    "1d": ((1000,), (1,), 3),
    "2d": ((13, 37), (50, 1), 5),
    "3d": ((3, 5, 20), (400, 64, 1), 1),
    "4d": ((2, 3, 4, 6), (300, 90, 20, 2), 0),
    "columns": ((16, 9), (1, 16), 2),
    "long": ((6000,), (1,), 6),
}


def _segment(params, rng, footprint, slot):
    """Segment ``slot`` in HBM: a random odd word offset in its own stretch of memory,
    a little larger than ``footprint``."""
    from firmware.compiler.agcu import Segment
    block = MemoryMap(params).words * MAX_BURST
    stretch = (footprint // block + 4) * block
    base = word_address(params, "hbm", stretch * slot + block * rng.randrange(2) +
                        2 * rng.randrange(block // 2) + 1)
    return Segment(base, footprint + 17)


async def _start_agcu(tb, k, config):
    tb.port(f"agcu_config__{k}").value = config
    await tb.cycles(2)
    tb.port(f"agcu_start__{k}").value = 1
    await tb.cycles(1)
    tb.port(f"agcu_start__{k}").value = 0
    await tb.cycles(2)


async def _agcu_finish(tb, k, timeout):
    await until(tb, lambda: not _port(tb, f"agcu_status__{k}__busy"), timeout=timeout, step=32,
                what=f"AGCU {k} to finish")
    assert _port(tb, f"agcu_status__{k}__done") == 1


def _packets(params, words, flow=0):
    """Dense vector packets of ``words`` (the last one masked and flagged), header flow id
    ``flow``."""
    from hdl.packet import vector_packet_layout
    L = params.pcu_lanes
    n = -(-len(words) // L)
    data = np.zeros(n * L, dtype=np.uint32)
    data[:len(words)] = words
    mask = [(1 << L) - 1] * n
    if len(words) % L:
        mask[-1] = (1 << (len(words) % L)) - 1
    return pack(vector_packet_layout(params), {
        "body.data": data.reshape(n, L), "body.mask": mask,
        "body.last": [0] * (n - 1) + [1], "hdr.flow": [flow] * n})


def _interleave(rng, a, b):
    """The rows of ``a`` and ``b`` merged in a random order, each keeping its own."""
    order = np.array([0] * len(a) + [1] * len(b))
    rng.shuffle(order)
    out = np.zeros((len(order), a.shape[1]), np.uint32)
    out[order == 0], out[order == 1] = a, b
    return out


async def _agcu_case(tb, params, img, rng, name, args):
    """AGCU 0 reads the tensor into vout__0 while AGCU 1 writes two more from vin__1, one
    by its store stream and one by store2 (packets of flow id 5, randomly interleaved
    with the store's of flow 2) — each in its own segment, with back-pressure and idle
    sources."""
    from firmware.compiler.agcu import TensorAccess, access_words, pack_agcu
    from hdl.packet import vector_packet_layout
    shape, strides, offset = ACCESSES[name]
    name = f"{name} (seed {args.seed})"      # every failure names the seed
    acc = TensorAccess(shape, strides, offset)
    idx = access_words(acc)
    W = img.words
    foot = int(idx.max()) + 1
    segs, before = [], []
    for k in range(3):
        sg = _segment(params, rng, foot, k)
        segs.append(sg)
        lo = sg.base - (sg.base % W) - W             # one guard beat before ...
        n = (sg.base + sg.size - lo + 2 * W) // W * W  # ... and after the segment
        vals = _words(rng, n)
        await img.write(tb, lo, vals)
        before.append((lo, vals))
    hdr = {"flow": 3}
    rd, progs = pack_agcu(params, load=(acc, 1), segments=[segs[1], segs[0]], hdr=hdr)
    prog = progs["load"]
    wr, _ = pack_agcu(params, store=(acc, 0), by_flow=[(acc, 1, 5)], segments=[segs[1], segs[2]])
    new = [_words(rng, len(idx)) for _ in range(2)]
    tb.load("vin__1", _interleave(rng, _packets(params, new[0], 2), _packets(params, new[1], 5)),
            seed=rng.getrandbits(32), valid_probability=1 - args.idle)
    npk = -(-len(idx) // params.pcu_lanes)
    tb.expect("vout__0", npk, seed=rng.getrandbits(32),
              ready_probability=1 - args.backpressure)
    await _start_agcu(tb, 0, rd)
    await _start_agcu(tb, 1, wr)
    cycles, _ = await tb.run(timeout_cycles=50 * len(idx) + 20000)
    for k in range(2):
        await _agcu_finish(tb, k, timeout=20000)
        assert not _port(tb, f"agcu_status__{k}__fault"), f"{name}: AGCU {k} faulted"
    got = unpack(vector_packet_layout(params), await tb.dump("vout__0"))
    want = _packets(params, before[0][1][segs[0].base - before[0][0] + idx])
    want = unpack(vector_packet_layout(params), want)
    for f in ("body.data", "body.mask", "body.last"):
        bad = np.nonzero((got[f] != want[f]).reshape(npk, -1).any(axis=1))[0]
        assert not len(bad), f"{name}: read packet {bad[0]} of {npk}: {f} differs"
    assert (got["hdr.flow"] == 3).all(), f"{name}: packet header"
    for k, (store, wrote) in enumerate(zip(("store", "store2"), new)):
        lo, vals = before[1 + k]
        have = await img.read(tb, lo, len(vals))
        expect = vals.copy()
        expect[segs[1 + k].base - lo + idx] = wrote
        bad = np.nonzero(have != expect)[0]
        assert not len(bad), (f"{name}: memory written by {store} differs at {len(bad)} "
                              f"words, first at segment word {bad[0] - (segs[1 + k].base - lo)}")
    bursts = [_port(tb, f"agcu_status__{k}__bursts") for k in range(2)]
    return {"words": len(idx), "packets": npk, "cycles": cycles, "bursts": bursts,
            "reordered": _port(tb, "agcu_status__0__reordered"), "runs": prog.words // prog.run}


@cocotb.test()
async def agcu_stream(dut):
    args, params, tb, img, rng = await _setup(dut, AgcuStreamArgs)
    out = {}
    for i, name in enumerate(args.cases):
        if i:
            await tb.reset()
        out[name] = await _agcu_case(tb, params, img, rng, name, args)
    write_outputs(cases=out)
    # Bursts spread over both HBM channels: some come back before older ones.
    assert sum(o["reordered"] for o in out.values()) > 0, "no read came back out of order"


@cocotb.test()
async def agcu_fault(dut):
    """A write whose 7th row leaves the segment: fault at the segment's end, rows 0-5
    written, nothing outside the segment touched; a read with the same fault reports it
    and delivers only what came before."""
    from firmware.compiler.agcu import Segment, TensorAccess, access_words, pack_agcu
    from hdl.packet import vector_packet_layout
    args, params, tb, img, rng = await _setup(dut, AgcuFaultArgs)
    W = img.words
    acc = TensorAccess((10, 16), (32, 1), 0)
    idx = access_words(acc)
    base = word_address(params, "hbm", W * MAX_BURST * 40 + 5)
    seg = Segment(base, 200)
    lo, n = base - 5 - 4 * W, 400 + 8 * W
    vals = _words(rng, n)
    await img.write(tb, lo, vals)
    wr, _ = pack_agcu(params, store=(acc, 0), segments=[seg], check_bounds=False)
    rd, _ = pack_agcu(params, load=(acc, 0), segments=[seg], check_bounds=False)
    new = _words(rng, len(idx))
    tb.load("vin__1", _packets(params, new))
    tb.expect("vout__0", 6 * 16 // params.pcu_lanes)
    await _start_agcu(tb, 1, wr)
    await _start_agcu(tb, 0, rd)
    await tb.run(timeout_cycles=20000)
    for k in range(2):
        await _agcu_finish(tb, k, timeout=20000)
        assert _port(tb, f"agcu_status__{k}__fault") == 1, f"AGCU {k}: no fault"
        assert _port(tb, f"agcu_status__{k}__fault_addr") == 200, \
            f"AGCU {k}: fault address {_port(tb, f'agcu_status__{k}__fault_addr')}, want 200"
    have = await img.read(tb, lo, n)
    expect = vals.copy()
    rows_in = [r for r in range(10) if r * 32 + 16 <= 200]
    sel = np.concatenate([np.arange(r * 16, r * 16 + 16) for r in rows_in])
    expect[base - lo + idx[sel]] = new[sel]
    bad = np.nonzero(have != expect)[0]
    assert not len(bad), f"memory wrong at {len(bad)} words, first at {bad[0] - (base - lo)}"
    got = unpack(vector_packet_layout(params), await tb.dump("vout__0"))
    assert (got["body.data"].reshape(-1) == vals[base - lo + idx[sel]]).all(), \
        "faulted read: the packets before the fault are wrong"
    write_outputs(rows_written=len(rows_in))


@cocotb.test()
async def agcu_bandwidth(dut):
    """Every AGCU streams ``words`` contiguous words from (``write``: to) its own HBM
    segment at once, sinks always ready and sources always valid; outputs the bytes and
    the busy cycles of the slowest AGCU. Data checked."""
    from firmware.compiler.agcu import Segment, TensorAccess, pack_agcu
    from hdl.packet import vector_packet_layout
    args, params, tb, img, rng = await _setup(dut, AgcuBandwidthArgs)
    n, write, A = args.words, args.write, params.agcus
    acc = TensorAccess((n,), (1,), 0)
    block = img.words * MAX_BURST
    stretch = (n // block + 2) * block
    segs = [Segment(word_address(params, "hbm", stretch * k), n) for k in range(A)]
    data = [_words(rng, n) for _ in range(A)]
    for k in range(A):
        if write:
            tb.load(f"vin__{k}", _packets(params, data[k]))
        else:
            await img.write(tb, segs[k].base, data[k])
            tb.expect(f"vout__{k}", -(-n // params.pcu_lanes))
        config, _ = pack_agcu(params, segments=[segs[k]],
                              **{"store" if write else "load": (acc, 0)})
        await _start_agcu(tb, k, config)
    await tb.run(timeout_cycles=20 * n + 20000)
    for k in range(A):
        await _agcu_finish(tb, k, timeout=20000)
        if write:
            assert (await img.read(tb, segs[k].base, n) == data[k]).all(), f"AGCU {k} write"
        else:
            got = unpack(vector_packet_layout(params), await tb.dump(f"vout__{k}"))
            assert (got["body.data"].reshape(-1)[:n] == data[k]).all(), f"AGCU {k} read"
    cycles = max(_port(tb, f"agcu_status__{k}__cycles") for k in range(A))
    write_outputs(bytes=4 * n * A, cycles=cycles,
                  per_agcu_cycles=[_port(tb, f"agcu_status__{k}__cycles") for k in range(A)])
