"""The socket stress regression's kernels and its network bookkeeping.

A case is a kernel (a graph of them, a decoder position) at a shape drawn once from the
test's seed; each run draws new inputs. :func:`link_balance` and :func:`packet_counts` read the switch
port counters a run added: what every link's sender sent its receiver must have taken.
"""

from dataclasses import dataclass

import numpy as np

from firmware.decoder import Decoder, DecoderShape
from firmware.graph import Graph, compile_graph, mlp
from firmware.kernels.elementwise import compile_scale_bias
from hdl.rdn.config import LINKS, N_IN, N_OUT, OPPOSITE, STEP

from .decoder import decoder_weights

__all__ = ["CASES", "JITTER", "Case", "case_of", "jittered", "counter_delta", "link_balance", "packet_counts"]

#: The stress regression's kernels, in the order it runs them.
CASES = ("gemm", "softmax", "attention", "mlp", "loop", "decode")
#: Extra latency of every HBM / DDR request of the socket the regression runs on: 0 ..
#: JITTER cycles, pseudo-random.
JITTER = 15


def jittered(params, jitter=JITTER):
    """``params`` with random memory latency (the socket tests' and the stress bench's)."""
    return params.replace(name=f"{params.name}-jitter", mem_jitter=jitter)


@dataclass(frozen=True)
class Case:
    """``name`` at ``shape``. :meth:`run` runs it on a device with inputs from ``nrng`` —
    the output buffers first filled from it too (reused memory holds an earlier run's
    words: what the kernel leaves alone must be left alone on both backends) — and
    returns {output: words}."""
    name: str
    shape: dict

    async def run(self, device, nrng):
        if self.name == "decode":
            return await _decode(device, nrng, **self.shape)
        if self.name == "loop":
            writes, progs, reads = _loop(device.params, device.alloc, nrng, **self.shape)
        else:
            g, inputs = _graph(self.name, nrng, **self.shape)
            cg = compile_graph(device.params, g, device.alloc)
            writes, progs, reads = (cg.writes(device.params, inputs),
                                    [(p, {}) for p in cg.programs], cg.reads)
        fill = [(b, _fill(nrng, b)) for b in reads.values()]
        words, _ = await device.run_programs(fill + writes, [p for p, _ in progs], reads,
                                             launch_args=[kw for _, kw in progs])
        return words


def _fill(nrng, buf):
    """Random words for all of ``buf``."""
    return nrng.integers(0, 1 << 32, buf.words, dtype=np.uint32)


def _bf16(nrng, *shape):
    return nrng.normal(0, 1, shape).astype(np.float32).view(np.uint32) & 0xFFFF0000


def case_of(name, rng):
    """Case ``name`` at a shape drawn from ``rng`` (``random.Random``): no multiples of
    the tiles, sizes the small array runs in seconds."""
    r = rng.randint
    shapes = {
        "gemm": lambda: {"m": r(5, 40), "n": r(3, 24), "k": r(1, 40), "bias": r(0, 1),
                         "relu": r(0, 1)},
        "softmax": lambda: {"rows": r(2, 6), "n": r(5, 40)},
        "attention": lambda: {"seq": r(4, 24), "d": rng.choice((8, 16, 32))},
        "mlp": lambda: {"m": r(3, 20), "k": r(4, 32), "hidden": r(4, 32), "n": r(3, 16)},
        "loop": lambda: {"n": r(5, 60), "iterations": r(2, 4)},
        "decode": lambda: {"d": r(4, 24), "hidden": r(4, 32), "batch": r(1, 2)},
    }
    if name not in shapes:
        raise ValueError(f"stress case {name!r}: one of {', '.join(CASES)}")
    return Case(name, shapes[name]())


def _graph(name, nrng, **s):
    """(graph, inputs) of a graph case."""
    if name == "mlp":
        g = mlp(s["m"], s["k"], s["hidden"], s["n"])
        return g, {"x": _bf16(nrng, s["m"], s["k"]), "w1": _bf16(nrng, s["k"], s["hidden"]),
                   "b1": _bf16(nrng, s["hidden"]), "w2": _bf16(nrng, s["hidden"], s["n"])}
    g = Graph(name)
    if name == "gemm":
        m, n, k = s["m"], s["n"], s["k"]
        bias = g.input("bias", (n,)) if s["bias"] else None
        g.matmul(g.input("x", (m, k)), g.input("w", (k, n)), bias=bias, relu=bool(s["relu"]),
                 out="y")
        inputs = {"x": _bf16(nrng, m, k), "w": _bf16(nrng, k, n)}
        if bias is not None:
            inputs["bias"] = _bf16(nrng, n)
        return g, inputs
    if name == "softmax":
        g.softmax(g.input("x", (s["rows"], s["n"])), scale=1.5, out="y")
        x = nrng.normal(0, 3, (s["rows"], s["n"])).astype(np.float32).view(np.uint32)
        return g, {"x": x}
    shape = (s["seq"], s["d"])
    g.attention(*(g.input(t, shape) for t in "qkv"), out="y")
    return g, {t: _bf16(nrng, *shape) for t in "qkv"}


def _loop(params, alloc, nrng, n, iterations):
    """y = relu(x * 1.5 - 0.25) over ``iterations`` slices of ``n`` words by kernel
    looping (one launch, the AGCU arguments stepped per iteration)."""
    x = alloc.alloc("hbm", n * iterations, "x")
    y = alloc.alloc("hbm", n * iterations, "y")
    xs = nrng.normal(0, 4, n * iterations).astype(np.float32).view(np.uint32)
    k = compile_scale_bias(params, n, x=x, y=y, scale=1.5, bias=-0.25, relu=True)
    step = {(0, "load"): n, (1, "store"): n}
    return [(x, xs)], [(k.program, {"iterations": iterations, "strides": step})], {"y": y}


async def _decode(device, nrng, d, hidden, batch):
    """One position of a one-layer decoder (``batch`` sequences by kernel looping): the
    activations, both caches, the logits and the next tokens."""
    shape = DecoderShape(d, hidden, 1, 2, device.params.pcu_lanes, batch=batch)
    shape.check(device.params)
    dec = Decoder(device, shape)
    await dec.store(*decoder_weights(nrng, shape))
    bufs = (dec.act, dec.kc, dec.vt, dec.logits)
    for b in bufs:
        await device.write(b, _fill(nrng, b))
    await device.run(dec.token(0, [int(t) for t in nrng.integers(0, shape.vocab, batch)]))
    out = {b.name: await device.read(b) for b in bufs}
    return {**out, "next tokens": np.array(await dec.next_tokens(), np.uint32)}


def counter_delta(before, after):
    """{fabric: per switch {"inp"/"out": [packets per port]}, "dropped": [...]} that a run
    added (the counters wrap at 2**32)."""
    out = {}
    for fabric in ("vec", "sca"):
        out[fabric] = [{d: [(a[d][p]["packets"] - b[d][p]["packets"]) % (1 << 32)
                            for p in range(N_IN if d == "inp" else N_OUT)]
                        for d in ("inp", "out")}
                       for b, a in zip(before[fabric], after[fabric])]
    out["dropped"] = [(a - b) % (1 << 32) for b, a in zip(before["dropped"], after["dropped"])]
    return out


def link_balance(params, delta):
    """(links checked, [(fabric, (col, row), direction, sent, received)] where they
    differ): every link between two switches carries what its sender sent."""
    checked, bad = 0, []
    for fabric in ("vec", "sca"):
        sw = delta[fabric]
        for y in range(params.rows):
            for x in range(params.cols):
                for d in range(LINKS):
                    nx, ny = x + STEP[d][0], y + STEP[d][1]
                    if not (0 <= nx < params.cols and 0 <= ny < params.rows):
                        continue
                    sent = sw[y * params.cols + x]["out"][d]
                    got = sw[ny * params.cols + nx]["inp"][OPPOSITE[d]]
                    checked += 1
                    if sent != got:
                        bad.append((fabric, (x, y), "NESW"[d], sent, got))
    return checked, bad


def packet_counts(delta):
    """Every port's packets as one tuple (the same kernel must give the same one in
    every run, whatever the timing)."""
    return tuple(n for fabric in ("vec", "sca") for s in delta[fabric]
                 for d in ("inp", "out") for n in s[d])
