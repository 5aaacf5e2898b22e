"""GEMV layers' inputs and checks (the decode and Composition-of-Experts benches)."""

import numpy as np

__all__ = ["gemv_inputs", "check_gemv", "gemv_error"]


def gemv_inputs(params, g, ws, xs, chain):
    """Each layer's x as the device reads it (packed words): ``xs[i]``, or chained: x0,
    then each layer's output (its ``y_words``, zeros to the vector end) by the reference."""
    if not chain:
        return [g.pack_x(x.view(np.uint32)) for x in xs]
    sh = g.shape
    out = [g.pack_x(xs[0].view(np.uint32))]
    for w in ws[:-1]:
        y = g.reference(params, g.pack_w(w.view(np.uint32)), out[-1])
        out.append(np.pad(y, (0, max(0, sh.kp - len(y))))[:sh.kp])
    return out


def check_gemv(params, g, ws, xin, out, what):
    """Every layer's outputs against the reference bit for bit and against float64 (of
    the input it read) within the bound; returns the largest error."""
    sh, worst = g.shape, 0.0
    for i, (w, x) in enumerate(zip(ws, xin)):
        want = g.reference(params, g.pack_w(w.view(np.uint32)), x)[:sh.n]
        bad = np.nonzero(out[i] != want)[0]
        assert not len(bad), (f"{what}: layer {i}: {len(bad)} outputs differ from the "
                              f"reference, first {bad[0]}")
        err, bound = gemv_error(params, w, x[:sh.k], out[i])
        assert (err <= bound).all(), f"{what}: layer {i} off float64 beyond the bound"
        worst = max(worst, float(err.max()))
    return worst


def gemv_error(params, w, x, y):
    """(|y - W x| in float64, its bound) per output, for ``W`` (n x k FP32 values or
    words), the input ``x`` (k FP32 words) the device read and its outputs ``y``
    (n FP32 words). One rounding per product, per reduction-tree level and per
    accumulated chunk: at most m = 1 + log2(lanes) + ceil(k / lanes) roundings, each
    within 2**-24 of a partial sum bounded by sum |w x|."""
    w = np.asarray(w)
    w = (w.view(np.float32) if w.dtype == np.uint32 else w).astype(np.float64)
    xf = np.asarray(x, np.uint32).view(np.float32).astype(np.float64)
    m = params.pcu_lanes.bit_length() + -(-len(xf) // params.pcu_lanes)
    err = np.abs(np.asarray(y, np.uint32).view(np.float32).astype(np.float64) - w @ xf)
    return err, m * 2.0 ** -24 * (np.abs(w) @ np.abs(xf)) * (1 + 1e-6)
