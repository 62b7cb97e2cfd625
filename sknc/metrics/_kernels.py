"""Compiled loops for the memory-bound steps of the passes over float32 features (numba).

numpy has no fused "cast and add into group rows" or "centre, square and sum"
step: each costs it a full-size temporary and one more trip through memory. The
loops below do each step in one read of the block, with the same arithmetic as
the numpy path:

* float32 rows are added to their group's float64 sums in the rows' order (the
  conversion is exact, and float64 sums round far below float32 resolution),
  or, for a stream's first pass, centred on their group's shift in float64
  first, with the squared norms summed alongside;
* the centred float32 row is written once, for the projection product, and its
  squared norm is summed in float64 (more accurate than the numpy path's
  float32 dot);
* the projected coordinates' squares, the nearest-class-mean decision and the
  classifier's decision are read from the products in one sweep, with numpy's
  tie rule (first index).

numba is imported on the first pass over float32 numpy features (never by
``import sknc``): about 0.4 s once per process, plus about 1.5 s of compilation
the first time on a machine (the loops are then cached on disk). Without numba,
with a numba that fails to compile them (one warning), or with the environment
variable ``SKNC_NUMBA=0``, the passes use numpy only.
"""

from __future__ import annotations

import os
import threading
import warnings
from contextlib import contextmanager

import numpy as np

__all__ = ["kernels"]

_LOCK = threading.Lock()
_BUILT = None  # the compiled loops, False when numba is unavailable
_FORCED = None  # tests: True/False overrides the environment


def _new_lock():  # a forked child must not inherit a lock another thread held mid-compilation
    global _LOCK
    _LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock)


def kernels():
    """The compiled loops (a namespace), or None when they are unavailable or switched off."""
    global _BUILT
    enabled = _FORCED if _FORCED is not None else os.environ.get("SKNC_NUMBA", "1") != "0"
    if not enabled:
        return None
    if _BUILT is None:
        with _LOCK:
            if _BUILT is None:
                _BUILT = _load()
    return _BUILT or None


def _load():
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    problem = None
    for cache in (True, False):  # a read-only install without a user cache directory cannot cache
        try:
            loops = _build(cache)
            _warm_up(loops)
            return loops
        except Exception as exc:  # noqa: BLE001 - any numba failure leaves the numpy path, which always works
            problem = exc
    warnings.warn(f"sknc: numba could not compile the metric passes' loops ({type(problem).__name__}: {problem}); "
                  "using numpy only.", RuntimeWarning, stacklevel=3)
    return False


def _warm_up(loops):
    """Compile (or load) every loop on tiny arrays, so that a failure shows here and not inside a pass."""
    x = np.ones((3, 4), dtype=np.float32)
    ids = np.zeros(3, dtype=np.intp)
    loops.group_sums(x, ids, np.zeros((1, 4)))
    shift = np.zeros((1, 4))
    loops.centred_abs_max(x, shift, ids)
    loops.centre_sum_square(x, shift, ids, 1.0, np.zeros((1, 4)), np.zeros(1))
    out = np.empty_like(x)
    loops.centre_square(x, x, ids, np.float32(1.0), out, np.zeros(3))
    loops.column_squares(out, 2, np.zeros(2))
    loops.agreement(out, 2, np.ones((3, 2), dtype=np.float32), x[:, :2].copy(), x[:, :2].copy(), ids, np.zeros(2))
    g, v = np.eye(2), np.ones(2)
    loops.pair_tile(g, True, v, v, v, v, 3, True, v, v, 0.0, v, v, True, v, v, 1.0, 0.0, np.zeros(6),
                    np.zeros((4, 2), dtype=np.int64))
    best, arg, rows = np.full(3, -np.inf, dtype=np.float32), np.zeros(3, dtype=np.int64), np.zeros(4, dtype=np.int64)
    loops.tile_decide(out[:, :2].copy(), np.ones(3, dtype=np.float32), np.ones(2, dtype=np.float32),
                      np.ones(2, dtype=np.float32), np.ones(3, dtype=np.float32), ids.astype(np.int64), 0, best, arg,
                      rows, rows.copy(), 0)


@contextmanager
def forced(flag):
    """Use (True) or bypass (False) the compiled loops inside the block (tests compare both paths)."""
    global _FORCED
    old, _FORCED = _FORCED, bool(flag)
    try:
        yield
    finally:
        _FORCED = old


class _Kernels:
    def __init__(self, **fns):
        self.__dict__.update(fns)


def _build(cache=True):
    import numba

    plain = numba.njit(nogil=True, cache=cache)
    # the row's sum of squares may be reassociated (that is what lets it vectorise); nothing else is
    summed = numba.njit(nogil=True, cache=cache, fastmath={"reassoc"})

    @plain
    def group_sums(x, ids, out):  # out[ids[i]] += x[i], in float64
        n, d = x.shape
        for i in range(n):
            g = ids[i]
            for j in range(d):
                out[g, j] += x[i, j]

    @plain
    def centred_abs_max(x, shift, ids):  # max |x[i] - shift[ids[i]]| in float64; NaN if any entry is not finite
        n, d = x.shape
        top = 0.0
        for i in range(n):
            g = ids[i]
            for j in range(d):
                v = abs(np.float64(x[i, j]) - shift[g, j])
                if not v <= top:  # larger, or NaN (an infinite entry gives inf - inf or inf)
                    if v != v or v == np.inf:
                        return np.nan
                    top = v
        return top

    @summed
    def centre_sum_square(x, shift, ids, scale, sums, sq):
        # c = x[i] - shift[ids[i]] in float64: sums[ids[i]] += c, sq[ids[i]] += ||c * scale||^2
        n, d = x.shape
        for i in range(n):
            g = ids[i]
            acc = 0.0
            for j in range(d):
                v = np.float64(x[i, j]) - shift[g, j]
                sums[g, j] += v
                w = v * scale
                acc += w * w
            sq[g] += acc

    @summed
    def centre_square(x, table, cls, scale, out, within):
        # out[i] = x[i] * scale - table[cls[i]] in float32 (table already scaled: the same as scaling the
        # difference, which could overflow for values near the largest float32); within[cls[i]] += ||out[i]||^2
        # in float64; returns the largest squared row norm (NaN if any row has one)
        n, d = x.shape
        top = 0.0
        for i in range(n):
            c = cls[i]
            acc = 0.0
            for j in range(d):
                v = x[i, j] * scale - table[c, j]
                out[i, j] = v
                w = np.float64(v)
                acc += w * w
            within[c] += acc
            if acc != acc or acc > top:  # a NaN stays: the caller reports the bad rows
                top = acc
        return top

    @plain
    def column_squares(p, r, colsq):  # colsq[j] += sum_i p[i, j]^2 for j < r, in float64
        for i in range(p.shape[0]):
            for j in range(r):
                w = np.float64(p[i, j])
                colsq[j] += w * w

    @plain
    def agreement(both, r, ncc, dist, logits, cls, colsq):
        # both = [r coordinates | classifier scores]; counts rows where argmin_j (ncc + dist[cls])
        # equals argmax_j (scores + logits[cls]), first index on ties (numpy's rule); adds the squares
        # of the first colsq.size coordinates to colsq
        n = both.shape[0]
        k = ncc.shape[1]
        n_sq = colsq.shape[0]
        agree = 0
        for i in range(n):
            for j in range(n_sq):
                w = np.float64(both[i, j])
                colsq[j] += w * w
            c = cls[i]
            near, best = 0, ncc[i, 0] + dist[c, 0]
            top, score = 0, both[i, r] + logits[c, 0]
            for j in range(1, k):  # both searches in one loop: two independent chains overlap (measured 20 %)
                v = ncc[i, j] + dist[c, j]
                u = both[i, r + j] + logits[c, j]
                if v < best:
                    near, best = j, v
                if u > score:
                    top, score = j, u
            if near == top:
                agree += 1
        return agree

    @plain
    def pair_tile(G, diag, ni, nj, inv_i, inv_j, k, unc, a_i, a_j, c, inv_ui, inv_uj, var, v_i, v_j, power,
                  floor, acc, suspects):
        # one pass over a tile G of a pairwise Gram (float64): for each pair (i, j) (j > i on a diagonal tile)
        # acc[0] += |cos + 1/(K-1)|, acc[1] = max |cos| of the uncentred rows, acc[2] += the CDNV term,
        # acc[3] = 1 when a pair's squared distance is at or below floor (acc[4], acc[5]: its indices);
        # pairs whose distance the Gram expansion cancels are listed in suspects (their count returned, -1
        # when the list is full) and left out of the CDNV and of the floor test
        n_r, n_c = G.shape
        inv_k = 1.0 / (k - 1)
        n_sus = 0
        for i in range(n_r):
            start = i + 1 if diag else 0
            for j in range(start, n_c):
                g = G[i, j]
                acc[0] += abs(g * inv_i[i] * inv_j[j] + inv_k)
                if unc:
                    u = abs(g + a_i[i] + a_j[j] + c) * inv_ui[i] * inv_uj[j]
                    if u > acc[1]:
                        acc[1] = u
                s = ni[i] + nj[j]
                d2 = s - 2.0 * g
                if d2 <= 1e-6 * s:
                    if n_sus < suspects.shape[0]:
                        suspects[n_sus, 0] = i
                        suspects[n_sus, 1] = j
                        n_sus += 1
                        continue
                    return -1
                if d2 <= floor and acc[3] == 0.0:
                    acc[3] = 1.0
                    acc[4] = i
                    acc[5] = j
                if var:
                    den = 2.0 * (d2 if power == 1.0 else d2**power)
                    acc[2] += (v_i[i] + v_j[j]) / den
        return n_sus

    @plain
    def tile_decide(z, xn, c, a, shift, cls, j0, best, arg, rows, cols, count):
        # one pass over a tile z of classifier scores (columns j0...): per row the largest score and its first
        # index (best, arg, strictly better than earlier tiles), and the classes other than the row's own with
        # z_ij + xn_i c_j - a_j + shift_i >= 0 appended to (rows, cols) from position count; returns the new
        # count, or -1 when the lists are full
        n, t = z.shape
        for i in range(n):
            top = best[i]
            where = arg[i]
            for j in range(t):
                v = z[i, j]
                if v > top:
                    top = v
                    where = j0 + j
                if np.float64(v) + np.float64(xn[i]) * c[j] - a[j] + shift[i] >= 0.0 and j0 + j != cls[i]:
                    if count >= rows.shape[0]:
                        return -1
                    rows[count] = i
                    cols[count] = j0 + j
                    count += 1
            best[i] = top
            arg[i] = where
        return count

    return _Kernels(group_sums=group_sums, centred_abs_max=centred_abs_max, centre_sum_square=centre_sum_square,
                    centre_square=centre_square, column_squares=column_squares, agreement=agreement,
                    pair_tile=pair_tile, tile_decide=tile_decide)
