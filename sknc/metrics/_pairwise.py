"""The all-pairs metrics of many classes, in tiles: no K x K array is formed whole.

With K classes a pairwise metric has K(K-1)/2 terms; at K = 32 768 one K x K
float64 array is 8.6 GB. Here the products are formed one tile of at most
``tile_bytes`` (default :data:`PAIRWISE_TILE_BYTES`, 64 MiB: a 2896 x 2896
float64 block) at a time, and every metric of one family is accumulated from
the same tile:

* class means: NC2 (Gram error), equiangularity, CDNV and the largest |cos|
  between uncentred means (their Gram is the centred one plus rank-one terms);
* classifier rows: NC2 of ``W`` and its equiangularity.

The Gram errors need no sweep away from collapse: ``||A B^T/||A B^T|| - E||^2 =
2 - 2 <A B^T, E> / ||A B^T||`` with ``||A B^T||_F^2 = <A^T A, B^T B>`` (``d x d``)
and ``<A B^T, E>`` from row sums, ``O(K d^2)``; where the error is below 1e-3
the difference would cancel, so the tiles give it term by term instead.

``pair_sample=m`` estimates the means over ``m`` uniformly drawn pairs
(``O(m d)``) when ``K^2 d`` is too much; the largest |cos| is then the
largest over the sample, a lower bound.
"""

from __future__ import annotations

import numpy as np

from ..exceptions import UndefinedMetricError
from ..geometry import etf_gram

__all__ = ["PAIRWISE_TILE_BYTES", "tiled", "gram_error", "PairSweep"]


def _loops():
    """The compiled loops (numba), or None (then numpy does the tiles)."""
    from ._kernels import kernels

    return kernels()


def _inv_sqrt(v):
    with np.errstate(divide="ignore"):
        return 1.0 / np.sqrt(v)


def _inv_or_zero(v):
    """1/v, and 0 where v is 0 (a zero mean has no angle: it never makes the largest |cos|)."""
    out = np.zeros_like(v)
    np.divide(1.0, v, out=out, where=v > 0)
    return out

PAIRWISE_TILE_BYTES = 64 << 20  # bytes of one float64 tile of a K x K product


def tile_size(tile_bytes=None):
    return max(1, int(np.sqrt((tile_bytes or PAIRWISE_TILE_BYTES) / 8)))


def tiled(k, tile_bytes=None) -> bool:
    """True when a whole ``K x K`` float64 array would exceed the tile budget."""
    return k > tile_size(tile_bytes)


def _tiles(k, t):
    return [(s, min(s + t, k)) for s in range(0, k, t)]


def _etf_tile(k, r0, r1, c0, c1):
    """The rows ``r0:r1`` and columns ``c0:c1`` of the ETF Gram ``(I - 11^T/K)/sqrt(K-1)``."""
    e = np.full((r1 - r0, c1 - c0), -1.0 / k)
    lo, hi = max(r0, c0), min(r1, c1)
    if lo < hi:
        idx = np.arange(lo, hi)
        e[idx - r0, idx - c0] += 1.0
    return e / np.sqrt(k - 1)


def gram_error(A, B=None, what="the vectors", tile_bytes=None):
    """``|| A B^T / ||A B^T||_F - E_K ||_F`` without a ``K x K`` array (``B`` None: ``A A^T``).

    Rows of ``A`` (and ``B``) should be scaled below 1 (products cannot
    overflow). Closed form from ``d x d`` products where the error exceeds
    1e-3; tiles otherwise.
    """
    k = A.shape[0]
    b = A if B is None else B
    ata = A.T @ A
    btb = ata if B is None else b.T @ b
    norm2 = float(np.sum(ata * btb))
    if not norm2 > 0:
        if B is None:
            raise UndefinedMetricError(f"{what} are all zero, so their distance to a simplex ETF is undefined")
        raise UndefinedMetricError("W M^T is zero (W orthogonal to the centred means), so NC3 is undefined")
    norm = np.sqrt(norm2)
    inner = (float(np.einsum("ij,ij->", A, b)) - float(A.sum(axis=0) @ b.sum(axis=0)) / k) / np.sqrt(k - 1)
    err2 = 2.0 - 2.0 * inner / norm
    if err2 > 1e-6:  # the closed form keeps ~9 digits here
        return float(np.sqrt(err2))
    t = tile_size(tile_bytes)
    total = 0.0
    for r0, r1 in _tiles(k, t):
        for c0, c1 in _tiles(k, t):
            if B is None and c0 < r0:
                continue  # symmetric: the mirror tile counts twice below
            block = A[r0:r1] @ b[c0:c1].T
            block /= norm
            block -= _etf_tile(k, r0, r1, c0, c1)
            part = float(np.einsum("ij,ij->", block, block))
            total += part if (B is not None or c0 == r0) else 2.0 * part
    return float(np.sqrt(total))


class PairSweep:
    """Pairwise statistics of the rows of ``A`` (scaled centred means, or classifier rows), tile by tile.

    Parameters
    ----------
    A : ndarray (K, d)
        Rows scaled below 1.
    variances : ndarray (K,), optional
        Per-row within-class variance (same units as ``A``'s squares, up to a
        power of two the caller applies): enables the CDNV.
    power : float
        CDNV exponent of the distance.
    offset : ndarray (d,), optional
        The global mean in ``A``'s units: enables the largest |cos| between
        the uncentred rows ``A + offset``.
    floor : float
        Squared distances at or below it count as coinciding means.
    sample : int, optional
        Estimate from this many random pairs instead of all of them.
    """

    def __init__(self, A, *, variances=None, power=1.0, offset=None, floor=0.0, sample=None, random_state=0,
                 tile_bytes=None):
        self.A = A
        k = A.shape[0]
        self.k = k
        self.norms_sq = np.einsum("ij,ij->i", A, A)
        self.variances = variances
        self.power = power
        self.offset = offset
        self.floor = floor
        self.equi_sum = 0.0
        self.equi_n = 0
        self.cdnv_sum = 0.0
        self.cdnv_n = 0
        self.closest = None  # (i, j) of a pair that coincides
        self.max_cos = 0.0
        self.sampled = sample
        if offset is not None:
            a = A @ offset
            c = float(offset @ offset)
            self.unc_dot, self.unc_c = a, c
            self.unc_norms = np.sqrt(np.maximum(self.norms_sq + 2 * a + c, 0.0))
        if sample is None:
            t = tile_size(tile_bytes)
            for r0, r1 in _tiles(k, t):
                for c0, c1 in _tiles(k, t):
                    if c0 >= r0:
                        self._tile(r0, r1, c0, c1)
        else:
            self._sample(int(sample), random_state)

    # ---------------------------------------------------------------- one tile
    def _tile(self, r0, r1, c0, c1):
        """Add the pairs (i in r0:r1, j in c0:c1, i < j) from one product."""
        G = self.A[r0:r1] @ self.A[c0:c1].T
        kern = _loops()
        if kern is None or not self._tile_compiled(kern, G, r0, r1, c0, c1):
            self._tile_numpy(G, r0, r1, c0, c1)

    def _tile_compiled(self, kern, G, r0, r1, c0, c1):
        """The tile in one compiled sweep (numba); False when it cannot be (then numpy does it)."""
        ni, nj = self.norms_sq[r0:r1], self.norms_sq[c0:c1]
        if not (np.all(ni > 0) and np.all(nj > 0)):
            return False  # a zero row: numpy's path says which key is undefined
        diag = r0 == c0
        unc = self.offset is not None
        var = self.variances is not None and self.closest is None
        z = np.zeros(0)
        acc = np.zeros(6)
        acc[1] = self.max_cos
        suspects = np.zeros((4096, 2), dtype=np.int64)
        count = kern.pair_tile(G, diag, ni, nj, _inv_sqrt(ni), _inv_sqrt(nj), self.k, unc,
                               self.unc_dot[r0:r1] if unc else z, self.unc_dot[c0:c1] if unc else z,
                               self.unc_c if unc else 0.0,
                               _inv_or_zero(self.unc_norms[r0:r1]) if unc else z,
                               _inv_or_zero(self.unc_norms[c0:c1]) if unc else z, var,
                               self.variances[r0:r1] if var else z, self.variances[c0:c1] if var else z,
                               float(self.power), float(self.floor), acc, suspects)
        if count < 0:
            return False  # too many cancelling pairs for the list: numpy redoes the tile
        n_pairs = G.size - (G.shape[0] * (G.shape[0] + 1)) // 2 if diag else G.size
        self.equi_sum += acc[0]
        self.equi_n += n_pairs
        self.max_cos = acc[1]
        if acc[3] and self.closest is None:
            self.closest = (r0 + int(acc[4]), c0 + int(acc[5]))
        if count:  # the cancelling pairs, from differences
            i, j = suspects[:count, 0], suspects[:count, 1]
            diff = self.A[r0 + i] - self.A[c0 + j]
            d2 = np.einsum("ij,ij->i", diff, diff)
            close = np.flatnonzero(d2 <= self.floor)
            if close.size and self.closest is None:
                self.closest = (r0 + int(i[close[0]]), c0 + int(j[close[0]]))
            if var and self.closest is None:
                acc[2] += float(np.sum((self.variances[r0 + i] + self.variances[c0 + j]) / (2.0 * d2**self.power)))
        if var and self.closest is None:
            self.cdnv_sum += acc[2]
            self.cdnv_n += n_pairs
        return True

    def _tile_numpy(self, G, r0, r1, c0, c1):
        """The tile with numpy (no compiled loops): a diagonal tile's pairs are its upper triangle."""
        drop = ~np.triu(np.ones(G.shape, dtype=bool), 1) if r0 == c0 else None
        self._add_pairs(G, np.arange(r0, r1)[:, None], np.arange(c0, c1)[None, :], drop)

    def _sample(self, m, random_state):
        rng = np.random.default_rng(random_state)
        i = rng.integers(0, self.k, m)
        j = rng.integers(0, self.k - 1, m)
        j = j + (j >= i)  # a distinct partner, uniformly
        self._add_pairs(np.einsum("ij,ij->i", self.A[i], self.A[j]), i, j)

    def _add_pairs(self, G, rows, cols, drop=None):
        """Add the pairs ``(rows, cols)`` (index arrays broadcasting to ``G``'s shape: a tile's rows and columns,
        or the sampled pairs) whose Gram entries are ``G``; ``drop`` marks entries that are no pair. One scratch
        array the size of ``G``, in place."""
        A, k = self.A, self.k
        buf = np.empty_like(G)
        n_pairs = G.size - (int(drop.sum()) if drop is not None else 0)
        if n_pairs == 0:
            return

        def total(a):  # the sum over the pairs (a is scratch: the entries that are no pair are zeroed)
            if drop is not None:
                a[drop] = 0.0
            return float(a.sum())

        ni, nj = self.norms_sq[rows], self.norms_sq[cols]
        if not (np.all(ni > 0) and np.all(nj > 0)):
            self.zero_row = True
        else:
            np.multiply(G, _inv_sqrt(ni), out=buf)
            buf *= _inv_sqrt(nj)
            buf += 1.0 / (k - 1)
            np.abs(buf, out=buf)
            self.equi_sum += total(buf)
            self.equi_n += n_pairs
        if self.offset is not None:  # uncentred Gram: G + a_i + a_j + c
            np.add(G, self.unc_dot[rows], out=buf)
            buf += self.unc_dot[cols] + self.unc_c
            np.abs(buf, out=buf)
            buf *= _inv_or_zero(self.unc_norms[rows])
            buf *= _inv_or_zero(self.unc_norms[cols])
            if drop is not None:
                buf[drop] = 0.0
            self.max_cos = max(self.max_cos, float(buf.max()))
        # squared distances from the Gram (in place); pairs where the expansion cancels again from differences
        d2 = G
        d2 *= -2.0
        d2 += ni
        d2 += nj
        np.add(ni, nj, out=buf)
        buf *= 1e-6
        suspect = np.less_equal(d2, buf)
        if drop is not None:
            suspect[drop] = False
        at = np.nonzero(suspect)
        del suspect
        shape = G.shape
        if at[0].size:
            a, b = np.broadcast_to(rows, shape)[at], np.broadcast_to(cols, shape)[at]
            diff = A[a] - A[b]
            d2[at] = np.einsum("ij,ij->i", diff, diff)
        np.maximum(d2, 0.0, out=d2)
        close = np.less_equal(d2, self.floor)
        if drop is not None:
            close[drop] = False
        hit = np.nonzero(close)
        del close
        if hit[0].size and self.closest is None:
            first = tuple(h[0] for h in hit)
            self.closest = (int(np.broadcast_to(rows, shape)[first]), int(np.broadcast_to(cols, shape)[first]))
        if self.variances is not None and self.closest is None:
            if drop is not None:
                d2[drop] = 1.0  # no pair there: any finite value, zeroed below
            if self.power != 1.0:
                np.power(d2, self.power, out=d2)
            d2 *= 2.0
            np.add(self.variances[rows], self.variances[cols], out=buf)
            buf /= d2
            self.cdnv_sum += total(buf)
            self.cdnv_n += n_pairs

    # ---------------------------------------------------------------- results
    def equiangularity(self, what):
        if getattr(self, "zero_row", False):
            raise UndefinedMetricError(f"one of the {what} is zero, so its angles are undefined")
        return self.equi_sum / max(self.equi_n, 1)

    def cdnv(self, classes=None):
        if self.closest is not None:
            a, b = self.closest
            names = (a, b) if classes is None else (classes[a], classes[b])
            names = [n.item() if hasattr(n, "item") else n for n in names]
            raise UndefinedMetricError(f"the means of classes {names[0]!r} and {names[1]!r} coincide, so the "
                                       "CDNV is undefined")
        return self.cdnv_sum / max(self.cdnv_n, 1)

    def max_abs_cos(self):
        if self.offset is None or np.count_nonzero(self.unc_norms) < 2:
            raise UndefinedMetricError("fewer than two class means are non-zero, so their angles are undefined")
        return self.max_cos
