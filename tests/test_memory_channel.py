"""Tier 2: a memory channel stub (``hdl/memory/channel.py``), alone and behind the
top-level network, in the Amaranth simulator with a Python backing store on its DRAM
port."""

import random

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.memory.channel import MemChannel, dram_signature
from hdl.memory.config import MAX_BURST, req_layout, resp_layout, wdata_layout
from tb.lib.pysim import collect, drive, simulate

WORDS, ABITS = 2, 8


def dram_model(ch, store, words):
    """The backing store: a read answers one cycle later; a write stores masked words."""
    async def tb(ctx):
        d = ch.dram
        async for _, _, addr, re, we, wdata, wmask in ctx.tick().sample(
                d.addr, d.re, d.we, d.wdata, d.wmask):
            if we:
                for w in range(words):
                    if wmask >> w & 1:
                        store[addr * words + w] = (wdata >> (32 * w)) & 0xFFFFFFFF
            if re:
                ctx.set(d.rdata, sum(store.get(addr * words + w, 0) << (32 * w)
                                     for w in range(words)))
    return tb


def exchange(dut, rq, wd, n_resp, background, *, seed, backpressure=0.3, idle=0.2):
    """Drive packed requests and write beats into ``dut`` and collect ``n_resp``
    responses (as views), with the ``background`` models running."""
    got = []

    async def reqs(ctx):
        await drive(ctx, dut.req, rq, random.Random(seed), idle, max_wait=5000)

    async def wdata(ctx):
        await drive(ctx, dut.wdata, wd, random.Random(seed + 1), idle, max_wait=5000)

    async def resps(ctx):
        await collect(ctx, dut.resp, n_resp, random.Random(seed + 2), backpressure,
                      max_cycles=20000, seed=seed, out=got)

    simulate(dut, reqs, wdata, resps, background=background)
    words = len(dut.resp.payload.data)
    return [resp_layout(words).from_bits(p) for p in got]


def run(requests, wbeats, *, latency, outstanding, seed, backpressure=0.3, idle=0.2):
    ch = MemChannel(words=WORDS, addr_bits=ABITS, latency=latency, outstanding=outstanding)
    store, times = {}, {}
    n_resp = sum(1 if r["write"] else r["len"] + 1 for r in requests)
    rq = [req_layout(ABITS).const(r).as_value().value for r in requests]
    wd = [wdata_layout(WORDS).const(b).as_value().value for b in wbeats]

    def handshakes(port, key):
        async def tb(ctx):
            cycle = 0
            async for _, _, valid, ready in ctx.tick().sample(port.valid, port.ready):
                if valid and ready:
                    times.setdefault(key, []).append(cycle)
                cycle += 1
        return tb

    views = exchange(ch, rq, wd, n_resp, [dram_model(ch, store, WORDS), handshakes(ch.req, "accept"),
                                          handshakes(ch.resp, "resp")],
                     seed=seed, backpressure=backpressure, idle=idle)
    return views, times, store, ch


def reference(requests, wbeats, words=WORDS):
    """Responses expected in request order: (tag, write, last, data words), and the
    final memory (word address -> value)."""
    store, out, wb = {}, [], iter(wbeats)
    for r in requests:
        for k in range(r["len"] + 1):
            a = (r["addr"] + k) * words
            if r["write"]:
                b = next(wb)
                for w in range(words):
                    if b["mask"] >> w & 1:
                        store[a + w] = b["data"][w]
            else:
                out.append((r["tag"], 0, int(k == r["len"]),
                            [store.get(a + w, 0) for w in range(words)]))
        if r["write"]:
            out.append((r["tag"], 1, 1, [0] * words))
    return out, store


def random_traffic(rng, n):
    requests, wbeats = [], []
    for i in range(n):
        length = rng.randrange(MAX_BURST)
        r = {"addr": rng.randrange((1 << ABITS) - length), "len": length,
             "write": int(rng.random() < 0.5), "tag": i % 64}
        requests.append(r)
        if r["write"]:
            wbeats += [{"data": [rng.getrandbits(32) for _ in range(WORDS)],
                        "mask": rng.getrandbits(WORDS)} for _ in range(length + 1)]
    return requests, wbeats


def test_random_reads_and_writes_in_order_with_masks():
    for seed, latency, outstanding in [(1, 5, 2), (2, 1, 1), (3, 12, 6)]:
        rng = random.Random(seed)
        requests, wbeats = random_traffic(rng, 40)
        views, _, store, _ = run(requests, wbeats, latency=latency, outstanding=outstanding,
                                 seed=seed)
        want, want_store = reference(requests, wbeats)
        got = [(v.tag, v.write, v.last, [v.data[w] for w in range(WORDS)]) for v in views]
        assert got == want, f"seed {seed}"
        assert store == want_store, f"seed {seed}"


def test_latency_is_respected_and_bandwidth_is_one_beat_per_cycle():
    """Little's law: a channel streams one beat per cycle once its outstanding requests
    cover the latency (outstanding x burst >= latency + the few cycles of queue and
    response pipeline); with fewer, bandwidth drops to about outstanding x burst per
    latency."""
    latency, n, length = 30, 48, 4
    requests = [{"addr": 4 * i, "len": length - 1, "write": 0, "tag": i} for i in range(n)]
    for outstanding in (9, 2):
        views, times, _, ch = run(requests, [], latency=latency, outstanding=outstanding,
                                  seed=4, backpressure=0.0, idle=0.0)
        assert len(views) == n * length
        # The first beat comes no sooner than the latency after its request was accepted.
        assert times["resp"][0] - times["accept"][0] >= latency
        span = times["resp"][-1] - times["resp"][0] + 1
        if outstanding * length >= latency + 4:
            assert span == n * length, (outstanding, span)
        else:
            assert span > n * length * (latency / (outstanding * length)) * 0.9, \
                (outstanding, span)


class _Interleaved(wiring.Component):
    """One requester on the network, two interleaved channels behind it."""

    def __init__(self, words, nch, latency):
        from hdl.memory.config import Region, beat_addr_bits
        self.region = Region("mem", 0, nch * MAX_BURST * 8, nch, 1, latency, 4)
        self.addr_bits = beat_addr_bits(self.region.beats)
        self.words, self.nch = words, nch
        super().__init__({
            "req": In(stream.Signature(req_layout(self.addr_bits))),
            "wdata": In(stream.Signature(wdata_layout(words))),
            "resp": Out(stream.Signature(resp_layout(words))),
            "dram": Out(dram_signature(beat_addr_bits(self.region.beats // nch), words))
            .array(nch)})

    def elaborate(self, platform):
        from hdl.memory.tln import Tln, connect_channel
        m = Module()
        r = self.region
        tln = m.submodules.tln = Tln(masters=1, regions=[r], words=self.words,
                                     addr_bits=self.addr_bits)
        wiring.connect(m, wiring.flipped(self.req), tln.m[0].req)
        wiring.connect(m, wiring.flipped(self.wdata), tln.m[0].wdata)
        wiring.connect(m, tln.m[0].resp, wiring.flipped(self.resp))
        for c in range(self.nch):
            ch = m.submodules[f"ch{c}"] = MemChannel(
                words=self.words, addr_bits=len(self.dram[c].addr), latency=r.latency + 3 * c,
                outstanding=r.outstanding, tag_bits=len(tln.t[c].req.payload.tag))
            connect_channel(m, tln.t[c], ch)
            wiring.connect(m, ch.dram, wiring.flipped(self.dram[c]))
        return m


def test_network_interleaves_channels_and_tags_name_out_of_order_responses():
    """The TLN in front of two channels of different latency: requests go to the channel
    of their block, responses come back out of request order, each request's beats
    together and right; the backing stores hold the writes."""
    words, nch, latency = 2, 2, 6
    mc = _Interleaved(words, nch, latency)
    rng = random.Random(9)
    stores = [{} for _ in range(nch)]
    requests, wbeats = [], []
    for i in range(60):
        block = rng.randrange(nch * 8)
        length = rng.randrange(MAX_BURST)
        start = rng.randrange(MAX_BURST - length)
        r = {"addr": block * MAX_BURST + start, "len": length, "write": int(rng.random() < 0.4),
             "tag": i}
        requests.append(r)
        if r["write"]:
            wbeats += [{"data": [rng.getrandbits(32) for _ in range(words)],
                        "mask": rng.getrandbits(words)} for _ in range(length + 1)]
    n_resp = sum(1 if r["write"] else r["len"] + 1 for r in requests)
    rq = [req_layout(mc.addr_bits).const(r).as_value().value for r in requests]
    wd = [wdata_layout(words).const(b).as_value().value for b in wbeats]
    models = [dram_model(type("C", (), {"dram": mc.dram[c]}), stores[c], words)
              for c in range(nch)]
    views = exchange(mc, rq, wd, n_resp, models, seed=9, idle=0.1)
    # Group by tag: each read's beats contiguous and in order, a write acked once.
    by_tag, order = {}, []
    for v in views:
        if v.tag not in by_tag:
            order.append(v.tag)
        by_tag.setdefault(v.tag, []).append(v)
    # A block lives on one channel, which serves in order, so the flat reference holds.
    want, flat = reference(requests, wbeats, words)
    expect = {}
    for tag, write, _, vals in want:
        if not write:
            expect.setdefault(tag, []).append(vals)
    for r in requests:
        beats = by_tag[r["tag"]]
        if r["write"]:
            assert len(beats) == 1 and beats[0].write and beats[0].last
        else:
            assert [[b.data[w] for w in range(words)] for b in beats] == expect[r["tag"]]
            assert [b.last for b in beats] == [0] * r["len"] + [1]
    tags_in_order = [r["tag"] for r in requests]
    assert order != tags_in_order, "two channels should answer out of request order"
    # Backing stores: block b of the flat space is block b // nch of channel b % nch.
    for a, v in flat.items():
        beat, w = divmod(a, words)
        block, off = divmod(beat, MAX_BURST)
        c, local_block = block % nch, block // nch
        assert stores[c].get((local_block * MAX_BURST + off) * words + w) == v
