"""Sufficient statistics of NC metrics, gathered in passes over row blocks or batches.

Every metric is a function of a few statistics of the features ``h_i``:

* per label set ``S``: the count ``n_S`` and the mean ``mu_S`` (first pass);
* per class ``k`` (multiplicity-1 samples): the within-class sum of squares
  ``sum_i ||h_i - mu_k||^2``;
* the within-class scatter seen through an orthonormal basis ``U`` of the span of
  the centred class means, ``Q = sum_i U^T (h_i - mu_{y_i}) (h_i - mu_{y_i})^T U``
  (``r x r`` with ``r <= K``): NC1 needs nothing else of the ``d x d`` scatter;
* optionally, how often the nearest class mean and ``argmax(W h + b)`` agree.

Two ways to gather them share the kernels below:

* **two passes** (in-memory reports, and streams that can be read twice): the
  first pass sums rows per group around a fixed shift (a sample of the group),
  which gives exact float64 means; the second pass centres every row on its
  class mean and projects it with one matrix product ``(h - mu) [U | W^T]``.
  Nothing ``d x d`` or ``n x K`` is ever formed; memory is one row block.
* **one pass** (streams read once): the first pass also keeps the shifted
  ``d x d`` scatter of the multiplicity-1 rows (Chan-style, exact merges).

Numerics. Rows are centred before anything is squared (no ``sum ||h||^2 -
n ||mu||^2`` cancellation, whatever the offset of the data), sums run in float64,
and squares are taken after scaling by a power of two chosen from the largest
centred magnitude seen, so features of any scale from 1e-300 to 1e300 give the
same metrics. float32 features are projected with a float32 product of the
*centred* rows (relative accuracy ~1e-7 of the within-class spread, not of the
data's magnitude); the float32 rounding of the class means used to centre is a
known per-class offset, removed exactly afterwards. The class means are exact:
float32 rows are summed as they are in float64, and every metric that reads the
means (NC1 through small singular values, NC3 near alignment) gets the float64
answer of the stored values.

Speed. float32 rows in host memory go through compiled loops (:mod:`._kernels`)
for the memory-bound steps: the class sums in one read (a stream's first pass:
centred on the shifts, with their squares), the centring with the squares, and
the decisions read off the products. Then the row blocks of both
passes run on several threads at any K, BLAS on one thread each. Without the
loops, numpy does the same steps (a float64 copy and a sparse product for the
sums, several elementwise sweeps per block).
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..exceptions import UndefinedMetricError
from .._validation import missing_singletons_message
from ..geometry import _abs_max
from ._backend import Workspace, _as64, acquire_workspace, backend_for, release_workspace
from ._kernels import kernels

__all__ = ["Statistics", "array_statistics", "FirstPass", "SecondPass", "SecondPassPlan"]

_SAFE_EXP = {np.dtype(np.float64): 400, np.dtype(np.float32): 50}  # |x| in 2^(+-exp) squares safely
_MAX_EXP = {np.dtype(np.float64): 1000, np.dtype(np.float32): 100}  # 2^(+-exp) is a finite, exact factor
_BLOCK_BYTES = 4 << 20  # bytes of one row block's working arrays
_TILE_BYTES = 32 << 20  # bytes of one block's products with a tile of classes (NC4 of many classes)
_FIRST_BLOCK_BYTES = 8 << 20  # the first pass's float64 copies: larger blocks, fewer sparse products (measured)
_PARALLEL_MIN = 1 << 21  # fewer feature entries than this: one thread
_FULL_GRAM_MAX = 128  # up to this many span directions the second pass keeps the whole r x r scatter
_THREADED_SECOND_MAX = 32  # up to this many classes the second pass runs row blocks on several threads
_COMPILED_MAX_CLASSES = 256  # up to this many classes float32 passes use the compiled loops (numba)
_SPAN_RTOL = 1e-13  # span directions below this (relative) are float64 rounding of the centring, not data


def _exponent(m: float) -> int:
    """``e`` with ``2^(e-1) <= m < 2^e`` (0 for m = 0)."""
    return int(np.frexp(m)[1]) if m > 0 else 0


def _scale_exponent(m: float, dtype) -> int:
    """Power of two to divide by so that values up to ``m`` square safely in ``dtype`` (0 when they already do)."""
    safe = _SAFE_EXP[np.dtype(dtype)]
    if m > 2.0**safe or 0 < m < 2.0**-safe:
        limit = _MAX_EXP[np.dtype(dtype)]
        return int(np.clip(_exponent(m), -limit, limit))
    return 0


# ---------------------------------------------------------------------------- first pass
class FirstPass:
    """Counts and shifted float64 sums per label set; shifted squares (and scatter) on request.

    Squared quantities are stored divided by ``4**exp`` (``exp`` grows when a
    batch of larger magnitude arrives), so nothing overflows or underflows.
    """

    def __init__(self, be, d, *, with_squares=True, with_scatter=False, dtype=np.float64, raw=False,
                 with_total=False):
        self.be = be
        self.d = d
        # raw: sum the rows as they are, in float64 (float32 data: exact, and no centred copy is made); the
        # shifts then only fix the origin of the means
        self.raw = raw and not (with_squares or with_scatter)
        self.with_squares = with_squares or with_scatter
        # squares always run in float64; without them a pass may centre in the working dtype (in-memory
        # float32 data are summed raw in float64 instead, see ``raw``)
        self.dtype = np.dtype(np.float64) if self.with_squares else np.dtype(dtype)
        self.track_max = self.with_squares  # in-memory passes find overflow from the second pass instead
        self.counts = np.zeros(0, dtype=np.int64)
        self.shift = be.zeros((0, d))
        self.shift_w = self.shift if self.dtype == np.float64 else be.asarray(np.zeros((0, d)), self._be_dtype())
        self.sums = be.zeros((0, d))
        self.sq = be.zeros(0) if self.with_squares else None
        self.scatter = be.zeros((d, d)) if with_scatter else None
        # the d x d scatter of every row about its group's shift (the features' own spectrum, on request)
        self.total = be.zeros((d, d)) if with_total and self.with_squares else None
        self.exp = 0
        self.amax = 0.0
        self.seen_squares = False
        self.ws = acquire_workspace() if be.name == "numpy" else Workspace()
        self.kern = None  # the compiled loops, for raw float32 rows (set by the caller, see compiled_loops)
        # decompositions of these means per convention (see between_geometry's cache): the second pass's plan
        # and the report share them; every change of the sums or counts empties it
        self.decompositions = {}

    def _be_dtype(self):
        if self.be.name == "numpy":
            return self.dtype
        return self.be.torch.float32 if self.dtype == np.float32 else self.be.torch.float64

    @property
    def n_groups(self):
        return self.counts.shape[0]

    def grow(self, shift_rows):
        """Register new groups whose shifts are ``shift_rows`` (float64, on the backend)."""
        be = self.be
        k = shift_rows.shape[0]
        if k == 0:
            return
        self.decompositions = {}
        cat = np.concatenate if be.name == "numpy" else be.torch.cat
        self.shift = cat([self.shift, shift_rows])
        self.shift_w = self.shift if self.dtype == np.float64 else be.asarray(be.to_numpy(self.shift), self._be_dtype())
        self.sums = cat([self.sums, be.zeros((k, self.d))])
        if self.sq is not None:
            self.sq = cat([self.sq, be.zeros(k)])
        self.counts = np.concatenate([self.counts, np.zeros(k, dtype=np.int64)])

    def add(self, x, ids, ids_np, single=None):
        """Add rows ``x`` of groups ``ids``; ``single`` marks multiplicity-1 rows (for the scatter).

        Raises ``ValueError`` (state unchanged) when the rows hold NaN or infinity.
        """
        be = self.be
        self.decompositions = {}
        if self.raw:
            if self.kern is not None and x.dtype == np.float32:  # one compiled read of the rows, no float64 copy
                self.kern.group_sums(x, ids, self.sums)
                self.counts += np.bincount(ids_np, minlength=self.n_groups)
                return self
            with np.errstate(invalid="ignore", over="ignore"):  # non-finite rows are named after the pass
                present, sums = be.segment_sum(be.as_float64(x, self.ws), ids, self.n_groups, self.ws)
            _add_sums(self.sums, present, sums)
            self.counts += np.bincount(ids_np, minlength=self.n_groups)
            return self
        if (self.kern is not None and x.dtype == np.float32 and self.track_max and self.scatter is None
                and self.total is None and self.dtype == np.float64):
            return self._add_compiled(x, ids, ids_np)
        c = be.centre(x, self.shift_w, ids, self.shift_w.dtype, self.ws)
        if not self.track_max:  # NaN/inf surface in the sums, checked once after the pass
            present, sums = be.segment_sum(c, ids, self.n_groups, self.ws)
            _add_sums(self.sums, present, sums)
            self.counts += np.bincount(ids_np, minlength=self.n_groups)
            return self
        m = be.abs_max(c)
        self._check_finite(x, m)
        present, sums = be.segment_sum(c, ids, self.n_groups, self.ws)
        counts = np.bincount(ids_np, minlength=self.n_groups)
        if self.with_squares:
            self._square_scale(m)
            be.scale_(c, np.ldexp(1.0, -self.exp))
            self.sq += be.bincount(ids, be.row_sq(c), self.n_groups)
            if self.scatter is not None:
                rows = c if single is None else c[single]
                self.scatter += rows.T @ rows
            if self.total is not None:
                self.total += c.T @ c
        _add_sums(self.sums, present, sums)
        self.counts += counts
        self.amax = max(self.amax, m)
        return self

    def _add_compiled(self, x, ids, ids_np):
        """:meth:`add` of float32 rows on the host through the compiled loops: one read checks and sizes them,
        a second (from cache) centres, sums and squares them."""
        ids = np.asarray(ids, dtype=np.intp)
        m = self.kern.centred_abs_max(x, self.shift_w, ids)
        self._check_finite(x, m)
        self._square_scale(m)
        self.kern.centre_sum_square(x, self.shift_w, ids, np.ldexp(1.0, -self.exp), self.sums, self.sq)
        self.counts += np.bincount(ids_np, minlength=self.n_groups)
        self.amax = max(self.amax, m)
        return self

    def _check_finite(self, x, m):
        if not np.isfinite(m):
            bad = self.be.bad_rows(x)
            if bad:
                raise ValueError(f"features contain NaN or infinity in {bad} row(s).")
            raise ValueError("features are too large to centre in float64 (values near 1e308).")

    def _square_scale(self, m):
        """Fix the power of two squares are divided by, from the largest centred magnitude ``m`` of a block."""
        e = _scale_exponent(m, np.float64)
        if not self.seen_squares:
            self.exp, self.seen_squares = e, True
        elif e > self.exp:
            self._rescale(e)

    def child(self, subset=None):
        """An empty pass over the same groups and shifts (a batch is added to it, then absorbed).

        ``subset``: sorted ids of the groups the batch holds; the child then has
        those groups only (its group ``i`` is our group ``subset[i]``), so a
        batch of a stream with tens of thousands of label sets does not
        allocate and add sums for all of them.
        """
        out = FirstPass(self.be, self.d, with_squares=self.with_squares, with_scatter=self.scatter is not None,
                        dtype=self.dtype, raw=self.raw, with_total=self.total is not None)
        n = self.n_groups if subset is None else len(subset)
        if subset is None:
            out.shift, out.shift_w = self.shift, self.shift_w
        else:
            idx = self.be.index(subset)
            out.shift = self.be.take(self.shift, idx)
            out.shift_w = out.shift if self.shift_w is self.shift else self.be.take(self.shift_w, idx)
        out.sums = self.be.zeros((n, self.d))
        out.sq = None if self.sq is None else self.be.zeros(n)
        out.counts = np.zeros(n, dtype=np.int64)
        out.exp, out.seen_squares = self.exp, self.seen_squares
        out.kern = self.kern
        return out

    def absorb(self, child, subset=None):
        """Add a child's statistics (same groups and shifts; ``subset`` as given to :meth:`child`)."""
        self.decompositions = {}
        if subset is not None:
            idx = self.be.index(subset)
        if self.with_squares and child.seen_squares:
            if not self.seen_squares:
                self.exp, self.seen_squares = child.exp, True
            elif child.exp > self.exp:
                self._rescale(child.exp)
            factor = np.ldexp(1.0, 2 * (child.exp - self.exp))
            if subset is None:
                self.sq += child.sq * factor
            else:
                _add_rows(self.be, self.sq, idx, subset, child.sq * factor)
            if self.scatter is not None:
                self.scatter += child.scatter * factor
            if self.total is not None:
                self.total += child.total * factor
        if subset is None:
            self.sums += child.sums
            self.counts += child.counts
        else:
            _add_rows(self.be, self.sums, idx, subset, child.sums)
            self.counts[subset] += child.counts
        self.amax = max(self.amax, child.amax)
        _give_back(child)
        return self

    def _rescale(self, new_exp):
        factor = np.ldexp(1.0, -2 * (new_exp - self.exp))
        self.sq *= factor
        if self.scatter is not None:
            self.scatter *= factor
        if self.total is not None:
            self.total *= factor
        self.exp = new_exp

    def merge(self, other, order=None, single_groups=None):
        """Fold ``other`` in (Chan et al.'s update around our shifts).

        ``order[g]`` is our group id of other's group ``g`` (the same ids when
        None; groups must already exist here, see :meth:`grow`);
        ``single_groups`` marks other's multiplicity-1 groups (for the scatter).
        """
        be = self.be
        self.decompositions = {}
        order = np.arange(other.n_groups) if order is None else np.asarray(order, dtype=np.intp)
        idx = be.index(order)
        o_sums = be.asarray(other.sums)
        delta = be.asarray(other.shift) - be.take(self.shift, idx)  # re-express other's sums around our shift
        n_o = be.asarray(other.counts.astype(np.float64))
        if self.with_squares and other.seen_squares:
            if not self.seen_squares:
                self.exp, self.seen_squares = other.exp, True
            elif other.exp > self.exp:
                self._rescale(other.exp)
            own = np.ldexp(1.0, -self.exp)  # our units for squares
            d_s, s_s = delta * own, o_sums * own
            moved_sq = be.asarray(other.sq) * np.ldexp(1.0, 2 * (other.exp - self.exp))
            moved_sq = moved_sq + 2.0 * (d_s * s_s).sum(1) + n_o * (d_s * d_s).sum(1)
            _add_rows(be, self.sq, idx, order, moved_sq)
            if self.scatter is not None and other.scatter is not None:
                scatter = be.asarray(other.scatter) * np.ldexp(1.0, 2 * (other.exp - self.exp))
                keep = np.arange(other.n_groups) if single_groups is None else np.flatnonzero(single_groups)
                keep = be.index(keep)
                ds, ss, nn = be.take(d_s, keep), be.take(s_s, keep), be.take(n_o, keep)
                cross = ss.T @ ds
                self.scatter += scatter + cross + cross.T + (ds * nn[:, None]).T @ ds
            if self.total is not None and other.total is not None:
                cross = s_s.T @ d_s
                self.total += (be.asarray(other.total) * np.ldexp(1.0, 2 * (other.exp - self.exp)) + cross + cross.T
                               + (d_s * n_o[:, None]).T @ d_s)
        _add_rows(be, self.sums, idx, order, o_sums + n_o[:, None] * delta)
        np.add.at(self.counts, order, other.counts)
        self.amax = max(self.amax, other.amax)
        return self

    def total_about_mean(self):
        """The scatter of every row about the mean of all rows, ``sum_i (h_i - mu)(h_i - mu)^T / 4**exp``, from
        the scatter about the groups' shifts: ``T + S^T A + A^T S + A^T diag(n) A`` with ``S`` the groups' shifted
        sums and ``A`` their shifts minus ``mu`` (both scaled), ``O(G d^2)``. None when it was not gathered."""
        if self.total is None:
            return None
        be = self.be
        counts = self.counts.astype(np.float64)
        n = counts.sum()
        shift, sums = be.to_numpy(self.shift), be.to_numpy(self.sums)
        total = be.to_numpy(self.total).astype(np.float64, copy=True)
        if n == 0:
            return total
        origin = shift[0]
        mu_rel = ((shift - origin) * counts[:, None] + sums).sum(axis=0) / n  # the mean of all rows, less origin
        own = np.ldexp(1.0, -self.exp)
        A = ((shift - origin) - mu_rel) * own
        S = sums * own
        cross = S.T @ A
        total += cross + cross.T + (A * counts[:, None]).T @ A
        return total

    def means(self, order=None):
        """Group means as ``(origin, relative)`` (float64, host): ``mean_g = origin + relative[g]``.

        Differences between means are taken from the relative part, which
        keeps every digit of means that sit far from the origin. ``order``:
        the groups to return, in that order (default all, as stored). Built
        in row blocks: one K x d result, no K x d temporaries.
        """
        be = self.be
        sums, shift = be.to_numpy(self.sums), be.to_numpy(self.shift)
        origin = shift[0].copy() if shift.shape[0] else np.zeros(self.d)
        order = np.arange(self.n_groups) if order is None else np.asarray(order)
        rel = np.empty((len(order), self.d))
        for start in range(0, len(order), 4096):
            rows = slice(start, start + 4096)
            g = order[rows]
            block = sums[g] / np.maximum(self.counts[g], 1)[:, None]
            if self.raw:
                block -= origin
            else:
                block += shift[g] - origin  # the difference first: it is exact for shifts near the origin row
            rel[rows] = block
        return origin, rel


def _add_sums(target, present, sums):
    """Add per-group sums (of the groups ``present``, or of all when None)."""
    if present is None:
        target += sums
    else:
        target[present] += sums  # present is unique


def _add_rows(be, target, idx, order_np, values):
    """``target[order] += values`` with repeated indices accumulated."""
    if be.name == "torch":
        target.index_add_(0, idx, values)
    else:
        np.add.at(target, order_np, values)


# --------------------------------------------------------------------------- second pass
@dataclass
class SecondPassPlan:
    """What the second pass needs, fixed from the first pass's means."""

    n_classes: int
    basis: np.ndarray  # (d, r) orthonormal, spans the centred class means
    scale_exp: int  # rows are centred then divided by 2**scale_exp
    dtype: object  # working dtype of the projection product
    means64: np.ndarray | None  # (K, d) class means, float64 (None: means_rel + origin, never stored whole)
    W: np.ndarray | None  # (K, d) classifier (used divided by 2**w_exp: argmax is scale-free)
    b: np.ndarray | None  # (K,) bias
    full_gram: bool = True  # the r x r projected scatter (any convention later) or its diagonal (this basis)
    w_exp: int = 0
    means_rel: np.ndarray | None = None  # the means relative to an origin (exact differences), if known
    centred_gram: tuple | None = None  # (G, e): Gram of the centred means / 4**e, if known (see make_plan)
    probes: np.ndarray | None = None  # (d, P) orthonormal directions whose per-class sums check the data
    amax: float = 0.0  # the first pass's largest centred magnitude (original units)
    direct: bool = False  # many classes: NC4 from products with the means and W in class tiles, no K x K table
    origin: np.ndarray | None = None  # (d,): means64 = means_rel + origin when means64 is not kept
    rel_rows: object = None  # callable(rows) -> means_rel[rows], when means_rel is not kept (many classes)
    w_key: object = None  # checksum of the classifier as given: a restored pass knows it before W comes again
    outside_key: object = None  # checksum of a classifier whose agreement is counted outside the pass (tag-wise)
    ncc_labels: bool = False  # count the rows whose nearest class mean is their own (beside the pass)
    per_class: bool = False  # also keep, per class, the diagonal of the projected scatter (per-class NC1; K x r)

    @property
    def classified(self):
        """Whether the pass compares decisions with a classifier (W may be attached later, see w_key)."""
        return self.W is not None or self.w_key is not None

    def rel_block(self, rows):
        """float64 class means relative to ``origin`` of the rows ``rows`` (a slice)."""
        if self.means_rel is not None:
            return self.means_rel[rows]
        return self.rel_rows(rows)

    def mean_rows(self, rows):
        """float64 class means of the rows ``rows`` (a slice)."""
        if self.means64 is not None:
            return self.means64[rows]
        return self.rel_block(rows) + self.origin

    def _means_as(self, dtype):
        """The class means in ``dtype``, built in row blocks (no K x d float64 temporary)."""
        out = np.empty((self.n_classes, self.basis.shape[0]), dtype=dtype)
        for start in range(0, self.n_classes, 4096):
            rows = slice(start, start + 4096)
            out[rows] = self.mean_rows(rows)
        return out

    @property
    def n_probes(self):
        return 0 if self.probes is None else self.probes.shape[1]

    def rounding_rows(self, rows):
        """:meth:`rounding` of the classes ``rows`` (a slice), as float64."""
        m = self.mean_rows(rows)
        err = np.asarray(m, dtype=self.dtype).astype(np.float64)
        err -= m
        err *= np.ldexp(1.0, -self.scale_exp)
        return err

    def rounding(self):
        """The float32 rounding of the centring means, scaled to the pass's units, float64 (None for float64 rows)."""
        if self.dtype == np.float64:
            return None
        return np.concatenate([self.rounding_rows(slice(s, s + 4096)) for s in range(0, self.n_classes, 4096)])

    def on(self, be):
        """Backend copies of the tables (made once per backend; few K x d temporaries)."""
        s = np.ldexp(1.0, -self.scale_exp)
        work = self._be_dtype(be)
        means_w = self._means_as(self.dtype)
        # float32 rounding of the centring means (the pass's mean residual; the NCC tables use it too); with many
        # classes it is recomputed where it is needed instead of kept
        # (the NCC distance table corrects for it; finish and the data check recompute it in row blocks)
        err = None if (self.W is None or self.direct) else self.rounding()
        tables = {"means_w": be.asarray(means_w, work)}
        # the centring table in the pass's units: rows are scaled before they are centred, so that rows and means
        # near the dtype's largest value do not overflow in their difference (scaling by a power of two is exact)
        tables["means_s"] = tables["means_w"] if s == 1.0 else be.asarray(means_w * np.asarray(s, means_w.dtype), work)
        if self.W is None or self.direct:  # with a classifier the basis is part of the one product below
            # the probe directions ride along in the same product: [U | G]
            basis = self.basis if self.probes is None else np.hstack([self.basis, self.probes])
            tables["basis"] = be.asarray(basis, work)
        if self.W is not None and self.direct:
            tables.update(self._direct_tables(be, work, means_w, s))
        elif self.W is not None:
            # NCC: argmin_j -2 (c U)(U^T s mu~_j) + s^2 ||mu_w(y) - mu_j||^2 (distances from differences);
            # classifier: argmax_j (W_s c)_j + s (W_s mu_w(y) + b_s)_j.
            rel = self.means64 if self.means_rel is None else self.means_rel
            centred = rel - rel.mean(axis=0)
            centred *= s  # every table in the pass's units (rows divided by 2**scale_exp)
            means_w = np.asarray(means_w)
            # K x K temporaries are updated in place: with K in the thousands each is tens of MB
            c2 = self.basis.T @ centred.T
            c2 *= -2.0
            tables["C2"] = be.asarray(c2, work)
            del c2
            w_s = np.ldexp(1.0, -self.w_exp)
            # logits of the means the rows were centred on (float32 values, exact in float64), in row blocks: no
            # K x d float64 copy; scalings are applied to the K x K result
            logits = np.empty((self.W.shape[0], self.W.shape[0]))
            for start in range(0, logits.shape[0], 256):
                rows = slice(start, start + 256)
                np.matmul(np.asarray(means_w[rows], dtype=np.float64), self.W.T, out=logits[rows])
            del means_w
            logits += self.b
            logits *= s * w_s
            tables["logits"] = be.asarray(logits, work)
            del logits
            dist = _rounded_sq_distances(centred, err, self._distances(centred, s))
            del centred, err
            tables["dist"] = be.asarray(dist, work)
            del dist
            # one product per block projects onto the basis and applies the classifier: [U | W_s^T]
            # (built as the rows of its transpose: contiguous copies; the product reads either layout as fast)
            r, k = self.basis.shape[1], self.W.shape[0]
            proj_t = np.empty((r + k + self.n_probes, self.W.shape[1]), dtype=self.dtype)
            proj_t[:r] = self.basis.T
            np.multiply(self.W, np.ldexp(1.0, -self.w_exp), out=proj_t[r : r + k], casting="same_kind")
            if self.probes is not None:  # [U | W_s^T | G]: the probes ride along
                proj_t[r + k :] = self.probes.T
            tables["proj"] = be.asarray(proj_t.T, work)
        return tables

    def _direct_tables(self, be, work, means_w, s):
        """Tables of the tiled NC4 of many classes (every one K x d or d x K; nothing K x K).

        Rows are compared in the frame of the centred means (the global mean
        subtracted keeps float32 products at the scale of the class
        differences): ``x' s = c + (mu_w(y) - mu_G) s`` for the centred row
        ``c``. NCC: ``argmin_j ||mu'_j||^2 - 2 x'.mu'_j``; classifier:
        ``argmax_j W_s x' + (W_s mu_G + b_s) s``. Each is one product with an
        extra row that adds the constant, ``[x' | 1] [[-2 M'^T | W_s^T]; [||mu'||^2 |
        bias]]``, taken in tiles of classes.
        """
        k, d = self.n_classes, self.basis.shape[0]
        if self.means64 is not None and self.means_rel is None:
            origin = np.zeros(d)
        else:
            origin = self.origin if self.origin is not None else self.means64[0] - self.means_rel[0]
        blocks = [slice(start, start + 4096) for start in range(0, k, 4096)]
        rel_of = (lambda rows: self.means64[rows]) if (self.means64 is not None and self.means_rel is None) else \
            self.rel_block
        mu_g = sum(rel_of(rows).sum(axis=0) for rows in blocks) / k
        to_global = np.empty((k, d), dtype=self.dtype)  # (mu_w(y) - mu_G) s: what turns c into x' s
        table = np.empty((d + 1, 2 * k), dtype=self.dtype)
        for rows in blocks:  # row blocks: no K x d float64 array
            centred = rel_of(rows) - mu_g
            centred *= s
            r0, r1 = rows.start, min(rows.stop, k)
            table[:d, r0:r1] = (-2.0 * centred).T
            table[d, r0:r1] = np.einsum("ij,ij->i", centred, centred)
            to_global[rows] = (np.asarray(means_w[rows], dtype=np.float64) - origin - mu_g) * s
        w_s = np.ldexp(1.0, -self.w_exp)
        table[:d, k:] = (self.W * np.asarray(w_s, dtype=self.W.dtype)).T
        centre = origin + mu_g
        for start in range(0, k, 4096):  # W may be float32: read in float64 row blocks
            rows = slice(start, start + 4096)
            table[d, k + start : k + min(start + 4096, k)] = (
                (np.asarray(self.W[rows], dtype=np.float64) @ centre + self.b[rows]) * (w_s * s))
        out = {"to_global": be.asarray(to_global, work), "decide": be.asarray(table, work)}
        if be.name == "numpy":
            out["bounds"] = _ncc_bounds(table, k, d)
        return out

    def _be_dtype(self, be):
        if be.name == "numpy":
            return self.dtype
        return be.torch.float32 if np.dtype(self.dtype) == np.float32 else be.torch.float64

    def _distances(self, centred, s):
        """Squared distances between the rows of ``centred`` (the means times ``s``) from the known Gram, or None."""
        if self.centred_gram is None:
            return None
        from ._collapse import pairwise_sq_distances

        gram, e = self.centred_gram
        # the Gram's centring may differ (sample mean): distances do not depend on it, and close pairs are
        # recomputed from differences of these rows, brought to the Gram's units
        dist = pairwise_sq_distances(centred * (np.ldexp(1.0, -e) / s), gram)
        dist *= np.ldexp(s * s, 2 * e)  # in place: K x K temporaries are tens of MB with K in the thousands
        return dist


_PRUNE_MAX_RESIDUAL = 0.5  # W's share off the span of alpha * means beyond which the bounds prune too little
_PRUNE_MAX_CANDIDATES = 16  # per row: beyond this a block takes the full product with the means instead


def _ncc_bounds(table, k, d):
    """What lets the tiled NC4 skip the product with the class means when the classifier nearly is them.

    With ``w_j = alpha m_j + e_j`` (``m_j`` the scaled centred mean, ``w_j`` the
    scaled classifier row, ``alpha`` their least-squares ratio) the NCC score
    ``||m_j||^2 - 2 x.m_j`` equals ``||m_j||^2 - 2 (z_j - beta_j - x.e_j) / alpha``
    for the classifier score ``z_j = x.w_j + beta_j``, and ``|x.e_j| <=
    ||x|| ||e_j||``. So a class can be the nearest mean only when ``z_j >= a_j -
    (alpha / 2) T - ||x|| c_j``, ``T`` an upper bound of the row's smallest NCC
    score (its own class's, plus rounding). ``a_j`` and ``c_j`` include the
    worst-case rounding of every product of length ``d + 1`` in the tables'
    dtype (4 (d + 2) eps per magnitude), so no class the full product could
    pick is left out. None when the classifier is too far from the means for
    this to pay.
    """
    eps = float(np.finfo(table.dtype).eps)
    gamma = 4.0 * (d + 2) * eps
    sq = table[d, :k].astype(np.float64)
    beta = table[d, k:].astype(np.float64)
    blocks = [slice(start, min(start + 4096, k)) for start in range(0, k, 4096)]
    # m_j = -table[:d, j] / 2 and w_j = table[:d, k + j], read in float64 column blocks (no K x d float64 array)
    dot = norm_w = 0.0
    mn, wn = np.empty(k), np.empty(k)
    for cols in blocks:
        m = table[:d, cols].astype(np.float64) * -0.5
        w = table[:d, k + cols.start : k + cols.stop].astype(np.float64)
        dot += float(np.einsum("ij,ij->", w, m))
        mn[cols] = np.sqrt(np.einsum("ij,ij->j", m, m))
        wn[cols] = np.sqrt(np.einsum("ij,ij->j", w, w))
        norm_w += float(np.sum(wn[cols] ** 2))
    mm = float(np.sum(mn**2))
    if not (mm > 0 and dot > 0 and norm_w > 0):
        return None
    alpha = dot / mm
    rho = np.empty(k)
    for cols in blocks:
        e = table[:d, k + cols.start : k + cols.stop].astype(np.float64)
        e += (0.5 * alpha) * table[:d, cols].astype(np.float64)  # w_j - alpha m_j
        rho[cols] = np.sqrt(np.einsum("ij,ij->j", e, e))
    if float(np.sum(rho**2)) > _PRUNE_MAX_RESIDUAL * norm_w:
        return None
    rho *= 1.0 + 1e-12  # its own float64 rounding
    a = 0.5 * alpha * (1.0 - gamma) * sq + beta - gamma * np.abs(beta)
    c = rho + gamma * (wn + alpha * mn)
    # in the tables' dtype, rounded the safe way (a down, c up: more candidates, never fewer)
    a = np.nextafter(a.astype(table.dtype), np.asarray(-np.inf, dtype=table.dtype))
    c = np.nextafter(c.astype(table.dtype), np.asarray(np.inf, dtype=table.dtype))
    return {"alpha": alpha, "a": a, "c": c, "gamma": gamma, "mn": mn, "sq": sq}


def _rounded_sq_distances(centred, err=None, base=None):
    """``||mu_i + e_i - mu_j||^2`` for centred means ``mu`` and the float32 rounding ``e`` of each.

    Distances between the exact means come from
    :func:`~sknc.metrics._collapse.pairwise_sq_distances` (no cancellation);
    ``||e_i + b||^2 = ||b||^2 + 2 e_i.b + ||e_i||^2`` adds the rounding.
    """
    from ._collapse import pairwise_sq_distances

    base = pairwise_sq_distances(centred) if base is None else base
    if err is None:
        return base
    eb = err @ centred.T  # e_i . mu_j
    diag = np.diag(eb).copy()
    eb -= diag[:, None]
    eb *= -2.0  # 2 e_i . (mu_i - mu_j)
    base += eb
    del eb
    base += np.einsum("ij,ij->i", err, err)[:, None]
    return np.maximum(base, 0.0, out=base)


class SecondPass:
    """Centred within-class sums, projected scatter ``Q`` and NCC agreement over singleton rows.

    float64 rows: it also sums the centred rows' coordinates per class; those
    residual sums refine the first pass's class means within the span of the
    means (what moves the geometry; the orthogonal remainder changes norms and
    angles only to second order). float32 rows are centred on the float32
    rounding of means that every first pass sums exactly in float64, so their
    mean residual is that rounding, known without summing.
    """

    #: the float64 sums a second pass adds up, on its backend (besides the counts, the agreement count and the
    #: largest squared row): merges, states, Dask and torch.distributed all add these and only these
    SUMS = ("within", "resid", "Q", "probe_sums", "ncc_correct", "Qk")

    def __init__(self, be, plan: SecondPassPlan, tables=None):
        self.be = be
        self.plan = plan
        self._t = tables  # built on the first batch: a pass restored or merged only never needs them
        k, r = plan.n_classes, plan.basis.shape[1]
        self.within = be.zeros(k)
        self.track_resid = np.dtype(plan.dtype) == np.float64
        # per class, sum of the centred rows' coordinates in the basis (float64 rows only)
        self.resid = be.zeros((k, r) if self.track_resid else (0, r))
        self.Q = be.zeros((r, r) if plan.full_gram else r)
        # per class, the squared coordinates of its centred rows in the basis (the per-class NC1; on request)
        self.Qk = be.zeros((k, r) if plan.per_class else (0, r))
        self.per_class_scatter = None  # Qk re-centred on the exact class means, set by finish()
        self.counts = np.zeros(k, dtype=np.int64)
        self.agree = 0
        self.max_row_sq = 0.0
        # per class, sums of the centred rows along the probe directions (they tell whether this pass reads the
        # first pass's data: a class whose rows moved has its sum off by n_k times the move)
        self.probe_sums = be.zeros((k, plan.n_probes))
        # rows whose nearest class mean is their own class's (counted beside the pass when the plan asks)
        self.ncc_correct = be.zeros(1)
        self.ws = acquire_workspace() if be.name == "numpy" else Workspace()
        # float32 rows on the host: the compiled loops centre, square and decide (same arithmetic, fewer reads)
        self._kern = False  # looked up on the first batch: a pass only restored or merged never loads numba

    @property
    def kern(self):
        if self._kern is False:
            self._kern = None if self.track_resid else compiled_loops(self.be, self.plan.dtype, self.plan.n_classes)
        return self._kern

    @property
    def t(self):
        """The pass's tables (centring means, projection, NCC and classifier tables), built once."""
        if self._t is None:
            self._t = self.plan.on(self.be)
        return self._t

    def release_tables(self):
        """Drop the tables (rebuilt if another batch comes): a report at many classes needs the memory."""
        self._t = None

    def squares_in_range(self):
        """False when some squared row norm over- or underflowed the working dtype (redo with a scale)."""
        safe = _SAFE_EXP[np.dtype(self.plan.dtype)]
        m = self.max_row_sq
        return bool(np.isfinite(m) and m <= 2.0 ** (2 * safe) and not (0 < m < 2.0 ** (-2 * safe)))

    def add(self, x, cls, cls_np, strict=False):
        """Add singleton rows ``x`` of classes ``cls``.

        ``strict`` raises ``ValueError`` (state unchanged) when a squared row
        norm falls outside the working dtype's safe range, which a second pass
        over the first pass's data never does.
        """
        if self.kern is not None and x.dtype == np.float32:
            return self._add_compiled(x, cls, cls_np, strict)
        be, plan, t, ws = self.be, self.plan, self.t, self.ws
        r = plan.basis.shape[1]
        if plan.scale_exp:  # scaled first: the difference of two huge values may overflow, its scaled twin not
            x = x * np.ldexp(1.0, -plan.scale_exp)
        c = be.centre(x, t["means_s"], cls, t["means_s"].dtype, ws)
        rs = be.row_sq(c, ws)
        block_max = be.max_value(rs)
        if strict:
            self._check_block(x, block_max)
        self.max_row_sq = max(self.max_row_sq, block_max)
        within = be.bincount(cls, rs, plan.n_classes)
        k = plan.n_classes
        if plan.W is None or plan.direct:
            both = be.matmul(c, t["basis"], ws, "proj")
            pu, probes = both[:, :r], both[:, r:]
        else:
            both = be.matmul(c, t["proj"], ws, "proj")
            pu, clf, probes = both[:, :r], both[:, r : r + k], both[:, r + k :]
        self._add_probes(cls, probes)
        pu64 = be.as_float64(pu, ws)
        self.Q += be.gram(pu64) if plan.full_gram else be.col_sq(pu64)
        if plan.per_class:
            self._add_per_class(pu64, cls)
        if self.track_resid:
            present, sums = be.segment_sum(pu64, cls, plan.n_classes, ws)
            _add_sums(self.resid, present, sums)
        self.within += within
        self.counts += np.bincount(cls_np, minlength=plan.n_classes)
        if plan.direct and plan.W is not None:  # (a classifier with classes absent here counts no agreement)
            self.agree = self.agree + self._agree_tiled(c, cls)
        elif plan.W is not None:
            ncc = be.matmul(pu, t["C2"], ws, "ncc")
            ncc += be.take_rows(t["dist"], cls, ws, "dist")
            clf += be.take_rows(t["logits"], cls, ws, "offsets")
            self.agree = self.agree + be.count_agree(ncc, clf)
        return self

    def _agree_tiled(self, c, cls):
        """Rows where the nearest class mean is the classifier's choice, from products in class tiles."""
        bounds = self.t.get("bounds")
        decided = None if bounds is None else self._decide_bounded(c, cls, bounds)
        arg_ncc, arg_clf = self._decide_full(c, cls) if decided is None else decided
        if self.be.name == "torch":
            return int((arg_ncc == arg_clf).sum().item())
        return int(np.count_nonzero(arg_ncc == arg_clf))

    def _decide_bounded(self, c, cls, bounds):
        """:meth:`_agree_tiled` with one product per tile (the classifier's) when ``W`` nearly is a multiple of the
        centred means: the classifier's scores bound every NCC score (see :func:`_ncc_bounds`), and only the
        classes the bound cannot rule out are scored exactly, besides the row's own class. The decisions of the
        full products, ``(nearest mean, classifier)`` per row (a row whose two nearest means differ by less than
        the products' rounding may go either way, as it may with another tile width); None when too many
        classes stay open (the caller then takes both products)."""
        t, k = self.t, self.plan.n_classes
        n, d = c.shape
        cls = np.asarray(cls, dtype=np.intp)
        table = t["decide"]
        xs = np.empty((n, d + 1), dtype=c.dtype)
        xs[:, :d] = c
        xs[:, :d] += t["to_global"][cls]
        xs[:, d] = 1
        x64 = xs[:, :d].astype(np.float64)
        xn = np.sqrt(np.einsum("ij,ij->i", x64, x64))
        del x64
        gamma, alpha = bounds["gamma"], bounds["alpha"]
        # the own class's NCC score, and T: above the smallest NCC score the full product would compute
        own = np.einsum("ij,ji->i", xs, table[:, cls])
        err = gamma * (2.0 * xn * bounds["mn"][cls] + bounds["sq"][cls])
        limit = own.astype(np.float64) + 2.0 * err
        limit += gamma * np.abs(limit)
        shift = (0.5 * alpha * limit).astype(table.dtype)  # (alpha / 2) T, per row
        xn_w = xn.astype(table.dtype)
        tile = max(1, _TILE_BYTES // (4 * max(n, 1)))
        from ._kernels import kernels

        kern = kernels()
        if kern is not None:  # one compiled pass per tile: the classifier's decision and the open classes
            best_clf = np.full(n, -np.inf, dtype=table.dtype)
            arg_clf = np.zeros(n, dtype=np.int64)
            rows_c = np.empty(_PRUNE_MAX_CANDIDATES * n, dtype=np.int64)
            cols_c = np.empty_like(rows_c)
            count = 0
            cls64 = cls.astype(np.int64)
            for j0 in range(0, k, tile):
                j1 = min(j0 + tile, k)
                count = kern.tile_decide(xs @ table[:, k + j0 : k + j1], xn_w, bounds["c"][j0:j1],
                                         bounds["a"][j0:j1], shift, cls64, j0, best_clf, arg_clf, rows_c, cols_c,
                                         count)
                if count < 0:
                    return None
            rows_c, cols_c = [rows_c[:count]], [cols_c[:count]]
        else:
            best_clf = arg_clf = None
            rows_c, cols_c = [], []
            n_open = 0
            for j0 in range(0, k, tile):
                j1 = min(j0 + tile, k)
                clf = xs @ table[:, k + j0 : k + j1]
                a_c = clf.argmax(axis=1)
                v_c = clf[np.arange(n), a_c]
                if best_clf is None:
                    best_clf, arg_clf = v_c, a_c + j0
                else:  # strictly better only: the first index wins ties, as numpy's argmax does
                    better = v_c > best_clf
                    best_clf, arg_clf = np.where(better, v_c, best_clf), np.where(better, a_c + j0, arg_clf)
                # a class stays open when z_j + ||x|| c_j - a_j + (alpha / 2) T >= 0
                clf += np.multiply.outer(xn_w, bounds["c"][j0:j1])
                clf -= bounds["a"][j0:j1]
                clf += shift[:, None]
                r, j = np.nonzero(clf >= 0)
                keep = (j + j0) != cls[r]
                r, j = r[keep], j[keep] + j0
                n_open += r.size
                if n_open > _PRUNE_MAX_CANDIDATES * n:
                    return None
                rows_c.append(r)
                cols_c.append(j)
        rows_c, cols_c = np.concatenate(rows_c), np.concatenate(cols_c)
        # the exact NCC scores of the open classes; per row the smallest, the first index on ties
        vals = np.einsum("ij,ji->i", xs[rows_c], table[:, cols_c]) if rows_c.size else np.empty(0, dtype=xs.dtype)
        r_all = np.concatenate([np.arange(n), rows_c])
        j_all = np.concatenate([cls, cols_c])
        v_all = np.concatenate([own, vals])
        order = np.lexsort((j_all, v_all, r_all))
        first = np.flatnonzero(np.r_[True, r_all[order][1:] != r_all[order][:-1]])
        return j_all[order][first], arg_clf

    def _decide_full(self, c, cls):
        """The NCC and classifier decisions of every row from both products, in class tiles."""
        be, t, k = self.be, self.t, self.plan.n_classes
        torch = be.torch if be.name == "torch" else None
        n, d = c.shape
        # [x' s | 1]: the centred row moved to the frame of the centred means, and a 1 that adds the constants
        xs = (torch.empty((n, d + 1), dtype=c.dtype, device=c.device) if torch is not None else
              np.empty((n, d + 1), dtype=c.dtype))
        xs[:, :d] = c
        xs[:, :d] += be.take_rows(t["to_global"], cls)
        xs[:, d] = 1
        table = t["decide"]
        tile = max(1, _TILE_BYTES // (4 * max(n, 1)))
        best_ncc = best_clf = arg_ncc = arg_clf = None
        for j0 in range(0, k, tile):
            j1 = min(j0 + tile, k)
            ncc, clf = xs @ table[:, j0:j1], xs @ table[:, k + j0 : k + j1]
            if torch is not None:
                v_n, a_n = ncc.min(dim=1)
                v_c, a_c = clf.max(dim=1)
            else:
                a_n, a_c = ncc.argmin(axis=1), clf.argmax(axis=1)
                rows = np.arange(n)
                v_n, v_c = ncc[rows, a_n], clf[rows, a_c]
            if best_ncc is None:
                best_ncc, arg_ncc, best_clf, arg_clf = v_n, a_n + j0, v_c, a_c + j0
            else:  # strictly better only: the first index wins ties, as numpy's argmin does
                better_n, better_c = v_n < best_ncc, v_c > best_clf
                if torch is not None:
                    best_ncc = torch.where(better_n, v_n, best_ncc)
                    arg_ncc = torch.where(better_n, a_n + j0, arg_ncc)
                    best_clf = torch.where(better_c, v_c, best_clf)
                    arg_clf = torch.where(better_c, a_c + j0, arg_clf)
                else:
                    best_ncc, arg_ncc = np.where(better_n, v_n, best_ncc), np.where(better_n, a_n + j0, arg_ncc)
                    best_clf, arg_clf = np.where(better_c, v_c, best_clf), np.where(better_c, a_c + j0, arg_clf)
        return arg_ncc, arg_clf

    def _add_compiled(self, x, cls, cls_np, strict):
        """:meth:`add` for float32 rows on the host, through the compiled loops."""
        kern, plan, t, ws = self.kern, self.plan, self.t, self.ws
        r = plan.basis.shape[1]
        c = ws.get("centre", x.shape, np.float32)
        within = np.zeros(plan.n_classes)
        cls = np.asarray(cls, dtype=np.intp)
        block_max = kern.centre_square(x, t["means_s"], cls, np.float32(np.ldexp(1.0, -plan.scale_exp)), c, within)
        if strict:
            self._check_block(x, block_max)
        self.max_row_sq = max(self.max_row_sq, block_max) if np.isfinite(block_max) else block_max
        self.within += within
        # the diagonal of the projected scatter is summed by the loops; the whole r x r scatter is a product
        colsq = self.Q if not plan.full_gram else np.zeros(0)
        if plan.W is None or plan.direct:
            both = np.matmul(c, t["basis"], out=ws.get("proj", (c.shape[0], t["basis"].shape[1]), np.float32))
            pu = both[:, :r]
            kern.column_squares(both, colsq.size, colsq)
            self._add_probes(cls, both[:, r:])
            if plan.direct and plan.W is not None:
                self.agree += self._agree_tiled(c, cls)
        else:
            both = np.matmul(c, t["proj"], out=ws.get("proj", (c.shape[0], t["proj"].shape[1]), np.float32))
            pu = both[:, :r]
            self._add_probes(cls, both[:, r + plan.n_classes :])
            ncc = np.matmul(pu, t["C2"], out=ws.get("ncc", (c.shape[0], plan.n_classes), np.float32))
            self.agree += int(kern.agreement(both, r, ncc, t["dist"], t["logits"], cls, colsq))
        if plan.full_gram:
            self.Q += self.be.gram(_as64(pu, ws))
        if plan.per_class:
            self._add_per_class(_as64(pu, ws), cls)
        self.counts += np.bincount(cls_np, minlength=plan.n_classes)
        return self

    def _add_per_class(self, pu64, cls):
        present, sums = self.be.segment_sum(pu64 * pu64, cls, self.plan.n_classes, self.ws)
        _add_sums(self.Qk, present, sums)

    def _add_probes(self, cls, probes):
        for j in range(self.plan.n_probes):
            self.probe_sums[:, j] += self.be.bincount(cls, probes[:, j], self.plan.n_classes)

    def data_mismatch(self):
        """Classes whose rows differ from the first pass's beyond rounding: ``(classes, shifts)`` or None.

        Per class ``k`` and probe direction ``g``, the pass sums ``(h_i - c_k) . g``
        over its rows; for the first pass's rows that is ``n_k (mu_k - c_k) . g``
        (``c_k`` the centring table, ``mu_k`` the first pass's mean) up to
        rounding, bounded by ``4 eps sqrt(d) sqrt(n_k S_k)`` (``S_k`` the sum of
        the centred rows' squared norms, ``eps`` of the working dtype) plus the
        float64 rounding of the first pass's sums and of the means themselves (measured: the same rows stay
        below 1 % of that bound, float32 rows 1e5 from the origin included; a
        mean that moves by 3e-4 standard deviations at d = 512 exceeds it).
        ``shifts``: how far each such class's mean moved, in within-class
        standard deviations.
        """
        plan = self.plan
        if plan.probes is None:
            return None
        sums = self.be.to_numpy(self.probe_sums)
        n = self.counts.astype(np.float64)
        expected = np.zeros_like(sums)
        if np.dtype(plan.dtype) != np.float64:  # the rows were centred on the float32 rounding of the means
            for start in range(0, plan.n_classes, 4096):
                rows = slice(start, start + 4096)
                expected[rows] = -n[rows, None] * (plan.rounding_rows(rows) @ plan.probes)
        within = self.be.to_numpy(self.within)
        d = plan.probes.shape[0]
        eps = float(np.finfo(plan.dtype).eps)
        eps64 = float(np.finfo(np.float64).eps)
        scale = np.ldexp(1.0, -plan.scale_exp)
        amax = plan.amax * scale
        # the float64 means themselves are rounded (half a step of their own magnitude per coordinate)
        top_mean = np.concatenate([np.max(np.abs(plan.mean_rows(slice(s, s + 4096))), axis=1)
                                   for s in range(0, plan.n_classes, 4096)]) * scale
        tol = (4.0 * eps * np.sqrt(d) * np.sqrt(n * within) + 4.0 * n * n * np.sqrt(d) * eps64 * amax
               + 2.0 * n * np.sqrt(d) * eps64 * top_mean)
        off = np.max(np.abs(sums - expected), axis=1) if sums.shape[1] else np.zeros(len(n))
        bad = np.flatnonzero((off > tol) & (n > 0))
        if bad.size == 0:
            return None
        spread = np.sqrt(within[bad] / n[bad])
        with np.errstate(divide="ignore", invalid="ignore"):
            shifts = np.where(spread > 0, off[bad] / n[bad] / spread, np.inf)
        return bad, shifts

    def _check_block(self, x, block_max):
        safe = _SAFE_EXP[np.dtype(self.plan.dtype)]
        if not (np.isfinite(block_max) and block_max <= 2.0 ** (2 * safe)):
            bad = self.be.bad_rows(x)
            raise ValueError(
                f"features contain NaN or infinity in {bad} row(s)." if bad else
                "second-pass features are far larger than the first pass's; feed the same data to both passes."
            )

    def child(self):
        """An empty pass sharing this one's plan and tables (for a batch that may still fail)."""
        return SecondPass(self.be, self.plan, self.t)

    def merge(self, other):
        self.max_row_sq = max(self.max_row_sq, other.max_row_sq)
        for name in self.SUMS:
            total = getattr(self, name)
            total += getattr(other, name)  # in place, numpy or torch
        self.counts += other.counts
        self.agree = self.agree + other.agree
        return self

    def finish(self):
        """Host float64 results, centred on the exact class means.

        Returns ``(within, Q, agree, shift)``; ``within`` and ``Q`` are already
        re-centred (``sum ||c - r||^2 = sum ||c||^2 - n ||r||^2`` with ``r`` the
        mean residual, in the pass's scale), and so is ``per_class_scatter``,
        set here when the plan keeps it. float64 rows: ``shift[k]``
        (original units) is what the first pass's mean of class ``k`` was off
        by. float32 rows: ``shift`` is None, since every first pass sums them
        exactly in float64; the mean residual is then minus the known float32
        rounding of the centring table (float32 sums of the residuals would be
        less accurate).
        """
        be = self.be
        n = np.maximum(self.counts, 1).astype(np.float64)
        # The mean residual r of class k is mu_k - mu_w(k): float64 rows, r_u in the basis from the residual
        # sums of this pass; float32 rows, minus the float32 rounding of mu_w, known exactly in every direction.
        # sum ||c - r||^2 = sum ||c||^2 - n ||r||^2.
        if np.dtype(self.plan.dtype) != np.float64:
            return self._finish_float32(n)
        proj = be.to_numpy(self.resid)  # float64 rows: the residual sums in the basis, from this pass
        r_u = proj / n[:, None]
        within = be.to_numpy(self.within) - n * np.einsum("ij,ij->i", r_u, r_u)
        Q = be.to_numpy(self.Q)
        if self.plan.full_gram:
            Q = Q - (proj / n[:, None]).T @ proj
        else:
            Q = np.maximum(Q - np.sum(proj**2 / n[:, None], axis=0), 0.0)
        if self.plan.per_class:
            self.per_class_scatter = np.maximum(be.to_numpy(self.Qk) - proj**2 / n[:, None], 0.0)
        shift = r_u @ self.plan.basis.T  # r_u refines the first pass's means
        with np.errstate(under="ignore"):  # negligible corrections of tiny features may underflow
            shift *= np.ldexp(1.0, self.plan.scale_exp)
        return np.maximum(within, 0.0), Q, self._agree_count(), shift

    def _agree_count(self):
        counted = self.plan.classified or self.plan.outside_key is not None
        return int(getattr(self.agree, "item", lambda: self.agree)()) if counted else None

    def _finish_float32(self, n):
        """:meth:`finish` for float32 rows: the mean residual of class ``k`` is minus the float32 rounding of its
        centring mean, known in every direction; its projection and the corrections are taken in row blocks
        (no K x d array: with K = 32 768, d = 1024 each is 268 MB)."""
        be, plan = self.be, self.plan
        within = be.to_numpy(self.within).astype(np.float64, copy=True)
        Q = be.to_numpy(self.Q).astype(np.float64, copy=True)
        per_class = be.to_numpy(self.Qk).astype(np.float64, copy=True) if plan.per_class else None
        counts = self.counts.astype(np.float64)
        full = plan.full_gram
        for start in range(0, plan.n_classes, 4096):
            rows = slice(start, start + 4096)
            e = plan.rounding_rows(rows)
            e_u = e @ plan.basis
            proj = -(counts[rows, None] * e_u)
            r_u = proj / n[rows, None]
            within[rows] -= n[rows] * np.einsum("ij,ij->i", r_u, r_u)
            within[rows] -= counts[rows] * np.maximum(np.einsum("ij,ij->i", e, e) - np.einsum("ij,ij->i", e_u, e_u),
                                                      0.0)
            if full:
                Q -= r_u.T @ proj
            else:
                Q -= np.sum(proj * r_u, axis=0)
            if per_class is not None:
                per_class[rows] -= proj * r_u
        if not full:
            Q = np.maximum(Q, 0.0)
        if per_class is not None:
            self.per_class_scatter = np.maximum(per_class, 0.0)
        return np.maximum(within, 0.0), Q, self._agree_count(), None

    def centres(self):
        """The class means rows were centred on (float64 values of the working-dtype table)."""
        return self.plan._means_as(self.plan.dtype).astype(np.float64)


def nearest_mean_table(means_rel):
    """``(-2 M^T, ||mu_k||^2)`` of the class means relative to their origin: built once per pass for
    :func:`nearest_mean_correct`."""
    return np.ascontiguousarray(-2.0 * means_rel.T), np.einsum("ij,ij->i", means_rel, means_rel)


def nearest_mean_correct(x64, cls, table):
    """How many float64 rows ``x64`` (relative to the means' origin) lie nearest to their own class's mean
    (``table`` from :func:`nearest_mean_table`)."""
    # ||x - mu_k||^2 = ||x||^2 - 2 x.mu_k + ||mu_k||^2: the row term orders nothing
    scores = x64 @ table[0]
    scores += table[1]
    return int(np.count_nonzero(np.argmin(scores, axis=1) == cls))


def count_nearest_mean(stats, X, rows, sample_class):
    """The nearest-class-mean accuracy count of rows ``rows`` of ``X`` (all when None), in float64 row blocks."""
    be = backend_for(X)
    table, origin = nearest_mean_table(stats.means_rel), stats.origin
    n = X.shape[0] if rows is None else rows.size
    correct = 0
    for start in range(0, n, 4096):
        stop = min(start + 4096, n)
        block = be.rows(X, start, stop) if rows is None else be.take(X, be.index(rows[start:stop]))
        x = be.to_numpy(block).astype(np.float64)
        x -= origin
        cls = sample_class[start:stop] if rows is None else sample_class[rows[start:stop]]
        correct += nearest_mean_correct(x, cls, table)
    return correct


def _gram_of(geom):
    return None if geom.gram is None else (geom.gram, geom.exp)


_N_PROBES = 3


def probe_directions(d, n=_N_PROBES):
    """``n`` fixed orthonormal directions of ``R^d`` (seeded: every process and rank draws the same)."""
    g = np.random.default_rng(0x5EC0DA55).standard_normal((d, min(n, d)))
    q, r = np.linalg.qr(g)
    return q * np.sign(np.diag(r))


def make_plan(means64, basis, amax, dtype, W=None, b=None, full_gram=True, means_rel=None, centred_gram=None,
              probes=False, origin=None, rel_rows=None, w_key=None, per_class=False):
    """A second-pass plan: scale from the largest centred magnitude, classifier scaled to unit size.

    ``centred_gram``: ``(G, e)``, the Gram of the centred class means divided by
    ``2**e`` (any global mean: the NCC table needs their distances only).
    ``probes``: sum the rows along a few fixed directions per class (True, or
    the directions themselves), so that :meth:`SecondPass.data_mismatch` can
    tell a pass over other data.
    """
    scale_exp = _scale_exponent(2.0 * amax, dtype)
    w_exp = 0
    if W is not None:
        top = float(max(np.max(W), -np.min(W)))
        w_exp = _exponent(top) if top > 0 else 0
        b = np.zeros(W.shape[0]) if b is None else np.asarray(b, dtype=np.float64)
    from ._pairwise import tiled

    k, d = (means64 if means64 is not None else means_rel).shape
    direct = (W is not None or w_key is not None) and tiled(k)
    if direct and rel_rows is not None:
        means_rel = None  # many classes: the means are read from the first pass when needed, not kept
    return SecondPassPlan(k, basis, scale_exp, np.dtype(dtype), means64, W, b, full_gram, w_exp,
                          means_rel, None if direct else centred_gram,
                          (probes if isinstance(probes, np.ndarray) else probe_directions(d) if probes else None),
                          float(amax), direct, None if origin is None else np.asarray(origin, dtype=np.float64),
                          rel_rows, w_key, per_class=bool(per_class))


def span_basis(means64):
    """Orthonormal basis (d, r) of the span of the centred class means (every non-zero direction)."""
    centred = means64 - means64.mean(axis=0)
    top = _abs_max(centred)
    if top == 0.0:
        return np.zeros((means64.shape[1], 0))
    # scale before the SVD so that tiny or huge means neither underflow nor overflow
    _, sing, vt = np.linalg.svd(centred / top, full_matrices=False)
    keep = sing > sing[0] * _SPAN_RTOL if sing.size else sing.astype(bool)
    return vt[keep].T


# ----------------------------------------------------------------------------- statistics
class Statistics:
    """Everything the metric formulas read, on the host in float64.

    Squared quantities carry a power-of-two exponent (``true = value * 4**exp``)
    so that they stay representable whatever the scale of the features.
    """

    def __init__(self, groups, group_counts, means, eps, *, within=None, within_exp=0, gram=None,
                 gram_basis=None, gram_exp=0, scatter=None, scatter_exp=0, shift=None, agree=None, n_agree=0,
                 second_pass_missing=False):
        self.groups = groups
        self.group_counts = np.asarray(group_counts, dtype=np.int64)
        self.origin, self.group_rel = means  # group means = origin + group_rel
        self.eps = eps
        self._within, self._within_exp = within, within_exp
        self._gram, self._gram_basis, self._gram_exp = gram, gram_basis, gram_exp
        self._gram_per_class = None  # (K, r): per class, the diagonal of the projected scatter (when kept)
        self._scatter, self._scatter_exp, self._shift = scatter, scatter_exp, shift
        self.agree, self.n_agree = agree, n_agree
        self.second_pass_missing = second_pass_missing
        self.second_pass_problem = None  # why the second pass's sums cannot be used (other data), if so
        self.ncc_correct = None  # rows whose nearest class mean is their own class's (when counted)
        self.feature_scatter = None  # d x d scatter of every row about the mean of all rows (when gathered)
        self.feature_rank_requested = False
        self.gram_conventions = ""
        self.nc1_geometry = None  # the geometry whose basis the second pass used
        self.decompositions = {}  # per convention, the decomposition of the centred means (see between_geometry)

    @property
    def n_dims(self):
        return self.group_rel.shape[1]

    @property
    def group_means(self):
        if getattr(self, "_group_means", None) is None:
            self._group_means = self.group_rel + self.origin
        return self._group_means

    @property
    def has_class_means(self):
        return self.groups.missing_singletons().size == 0

    def require_class_means(self):
        if not self.has_class_means:
            raise UndefinedMetricError(missing_singletons_message(self.groups))

    @property
    def counts(self):
        cg = self.groups.class_group
        return np.where(cg >= 0, self.group_counts[np.maximum(cg, 0)], 0).astype(np.float64)

    @property
    def means(self):
        self.require_class_means()
        if getattr(self, "_means", None) is None:
            self._means = self._class_rows(self.group_means)
        return self._means

    def correct_class_means(self, centres, shift):
        """Set the class means to ``centres + shift``: the second pass centred rows on ``centres`` (K, d),
        and ``shift`` is the mean of what remained. Differences to the origin are exact for nearby values."""
        cg = self.groups.class_group
        centres -= self.origin
        centres += shift
        self.group_rel = self.group_rel.copy() if self.group_rel.shape[0] != cg.size else self.group_rel
        self.group_rel[cg] = centres
        self._group_means = self._means = None
        self.decompositions = {}

    @property
    def means_rel(self):
        """Class means relative to ``origin`` (use these for differences)."""
        self.require_class_means()
        return self._class_rows(self.group_rel)

    def _class_rows(self, a):
        cg = self.groups.class_group
        identity = cg.size == a.shape[0] and np.array_equal(cg, np.arange(cg.size))
        return a if identity else a[cg]

    @property
    def n_singletons(self):
        return int(self.counts.sum())

    kind = "singletons"  # how the class means were obtained (see _tagwise_means.EstimatedStatistics)

    @property
    def n_within_rows(self):
        """The number of rows of the within-class scatter (the single-label samples)."""
        return self.n_singletons

    def total_within(self):
        """``sum_i ||h_i - mu_{y_i}||^2`` over the rows of the scatter, as ``(value, exp)``."""
        within, exp = self.within_trace()
        return float(within.sum()), exp

    @property
    def has_within(self):
        return self._within is not None and self.has_class_means

    def within_trace(self):
        """Per-class ``sum_i ||h_i - mu_k||^2`` as ``(values, exp)``."""
        self.require_class_means()
        if self._within is None:
            raise UndefinedMetricError("within-class sums were not gathered (the second pass did not run)")
        return self._within, self._within_exp

    def _diagonal_weights(self, V, sing):
        """``w`` with ``sum_r (v_r^T S v_r) / sing_r^2 = w . diag(S_U)`` for the scatter ``S_U`` gathered in the
        basis ``U`` of the second pass, or None when no such weights exist (then the whole ``S_U`` is needed).

        With ``A = U^T V`` and ``B = A diag(1/sing^2) A^T`` the sum is ``tr(B S_U)``; it reads the diagonal only
        when ``B`` is diagonal, which holds for the convention the pass was gathered for (rotations inside equal
        singular values included), up to the second pass's tiny correction of the means.
        """
        inv = 1.0 / sing**2
        m, G = V.shape[1], self._gram_basis
        if m <= G.shape[1] and (V is G or np.array_equal(V, G[:, :m])):  # the pass's own basis: A = [I; 0]
            w = np.zeros(G.shape[1])
            w[:m] = inv
            return w
        A = G.T @ V
        B = (A * inv) @ A.T
        diag = np.diag(B)
        off = np.abs(B - np.diag(diag))
        if np.all(off <= 1e-6 * np.sqrt(np.outer(diag, diag)) + 1e-300):
            return diag
        return None

    def weighted_projection(self, V, sing):
        """``sum_r (v_r^T S v_r) / sing_r^2`` with ``S = sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T`` over singleton
        rows and ``V`` orthonormal directions in the span of the centred means, as ``(value, exp)``
        (``value * 4**exp``; ``sing`` in whatever units the caller divides by).
        """
        self.require_class_means()
        if V.shape[1] == 0:
            return 0.0, 0
        inv = 1.0 / sing**2
        if self._gram is not None:
            m, G = V.shape[1], self._gram_basis
            if m <= G.shape[1] and (V is G or np.array_equal(V, G[:, :m])):  # the pass's own basis: A = [I; 0]
                diag = np.diag(self._gram) if self._gram.ndim == 2 else self._gram
                return float(diag[:m] @ inv), self._gram_exp
            if self._gram.ndim == 2:  # the whole projected scatter: any basis
                A = G.T @ V
                return float(np.einsum("ij,ij,j->", A, self._gram @ A, inv)), self._gram_exp
            w = self._diagonal_weights(V, sing)
            if w is not None:
                return float(w @ self._gram), self._gram_exp
            if self._scatter is None:
                raise UndefinedMetricError(
                    "the second pass measured the within-class scatter for the accumulator's own "
                    f"conventions ({self.gram_conventions}); pass those to report(), or build the "
                    "NCAccumulator with the conventions you want"
                )
        if self._scatter is None and self.second_pass_problem:
            raise UndefinedMetricError(self.second_pass_problem)
        if self._scatter is not None:
            cg = self.groups.class_group
            own = np.ldexp(1.0, -self._scatter_exp)
            delta = (self.group_means[cg] - self._shift[cg]) * own
            quad = np.einsum("ij,ij->j", V, self._scatter @ V)
            corr = np.einsum("ij,i->j", (delta @ V) ** 2, self.counts)
            return float(np.maximum(quad - corr, 0.0) @ inv), self._scatter_exp
        raise UndefinedMetricError(
            "the within-class scatter along the class means needs the second pass over the data "
            "(NCAccumulator.update_second_pass) or an accumulator with mode='one_pass'"
        )

    def weighted_projection_per_class(self, V, sing):
        """:meth:`weighted_projection` per class, from the per-class diagonal the second pass kept on request:
        ``(values (K,), exp)``."""
        self.require_class_means()
        if self._gram_per_class is None:
            raise UndefinedMetricError(
                "each class's share of NC1 needs its scatter along the class means, gathered by the second pass "
                "(NCAccumulator(per_class=True) and update_second_pass)")
        if V.shape[1] == 0:
            return np.zeros(self.groups.n_classes), 0
        w = self._diagonal_weights(V, sing)
        if w is None:
            raise UndefinedMetricError(
                "the second pass measured each class's scatter for the accumulator's own conventions "
                f"({self.gram_conventions}); pass those, or build the NCAccumulator with the conventions you want")
        return self._gram_per_class @ w, self._gram_exp

    def agreement(self):
        if self.second_pass_problem:
            raise UndefinedMetricError(self.second_pass_problem)
        if self.agree is None or self.n_agree == 0:
            raise UndefinedMetricError(
                "NCC agreement needs a pass with the final class means and W (the second pass over the data)"
            )
        return self.agree / self.n_agree


# ------------------------------------------------------------------------ in-memory passes
def _blas_threads():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        return 1
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    libs = _CONTROLLER.select(user_api="blas").lib_controllers
    return max([lib.num_threads for lib in libs] or [1])


_CONTROLLER = None
_LIMIT_LOCK = threading.Lock()
_LIMIT_DEPTH = 0
_LIMIT = None


@contextmanager
def _single_blas_thread():
    """Hold BLAS to one thread, counted across threads: the first to enter records the user's setting and
    the last to leave restores it (nested or overlapping threadpoolctl limits would restore each other's 1)."""
    global _LIMIT_DEPTH, _LIMIT
    _blas_threads()  # creates the shared controller
    with _LIMIT_LOCK:
        if _LIMIT_DEPTH == 0:
            _LIMIT = _CONTROLLER.limit(limits=1, user_api="blas")  # applies the limit, remembers the setting
        _LIMIT_DEPTH += 1
    try:
        yield
    finally:
        with _LIMIT_LOCK:
            _LIMIT_DEPTH -= 1
            if _LIMIT_DEPTH == 0:
                _LIMIT.restore_original_limits()
                _LIMIT = None


def _run_blocks(n_rows, block, n_threads, work, merge):
    """Run ``work(start, stop, state)`` over row blocks on ``n_threads`` threads; merge the states in order.

    Each thread owns a contiguous range of blocks and its own state, and BLAS is
    held to one thread meanwhile, so the result depends only on ``n_threads``.
    States borrow their scratch buffers from a process-wide pool and give them
    back here.
    """
    starts = list(range(0, n_rows, block))
    if n_threads <= 1 or len(starts) < 2:
        state = None
        for s in starts:
            state = work(s, min(s + block, n_rows), state)
        _give_back(state)
        return state
    n_threads = min(n_threads, len(starts))
    chunks = np.array_split(np.asarray(starts), n_threads)

    def run(chunk):
        state = None
        for s in chunk:
            state = work(int(s), min(int(s) + block, n_rows), state)
        return state

    with _single_blas_thread():
        states = list(_executor().map(run, chunks))
    result = states[0]
    for other in states[1:]:
        result = merge(result, other)
    for state in states:
        _give_back(state)
    return result


_EXECUTOR = None
_EXECUTOR_LOCK = threading.Lock()


def _executor():
    """A process-wide pool of worker threads (starting threads per call costs about a millisecond each)."""
    global _EXECUTOR
    with _EXECUTOR_LOCK:
        if _EXECUTOR is None:
            from concurrent.futures import ThreadPoolExecutor

            _EXECUTOR = ThreadPoolExecutor(max(2, os.cpu_count() or 1), thread_name_prefix="sknc-pass")
        return _EXECUTOR


def _forget_executor():  # a forked child has the pool object but none of its threads (nor their limits)
    global _EXECUTOR, _LIMIT_LOCK, _LIMIT_DEPTH, _LIMIT
    _EXECUTOR = None
    _LIMIT_LOCK, _LIMIT_DEPTH, _LIMIT = threading.Lock(), 0, None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_executor)


def _give_back(state):
    ws = getattr(state, "ws", None)
    if ws is not None:
        release_workspace(ws)
        state.ws = Workspace()


def array_statistics(X, groups, eps, *, basis_for, W=None, b=None, second_pass=True, n_threads=None,
                     ncc_accuracy=False, per_class=False):
    """Two passes over an in-memory feature matrix (numpy, or a tensor on any device).

    ``X`` comes from :func:`~sknc._validation.as_feature_array` and ``groups``
    from :func:`~sknc._validation.group_labels`. ``basis_for(stats)`` returns
    the geometry of the report's convention, whose span is the orthonormal basis
    of the second pass; ``W``/``b`` (validated) add the NCC agreement.
    """
    n, d = X.shape
    # Row blocks run on several threads when the per-row work is memory-bound: always in the first pass (sums),
    # in the second with few classes; with many, its products dominate and BLAS's own threads do better than
    # several single-threaded calls. The user's BLAS setting is read before any limit below.
    threads = 1
    if backend_for(X).name == "numpy" and n * d >= _PARALLEL_MIN:
        threads = _blas_threads() if n_threads is None else n_threads
        threads = max(1, min(threads, os.cpu_count() or 1))
    # the compiled loops leave each block's product as its only multi-core-worthy step, so with them the second
    # pass is threaded at any K too (measured at K=100: 30 ms on two threads against 33 ms with BLAS's two)
    kern = compiled_loops(backend_for(X), X.dtype, groups.n_classes)
    threads_second = threads if groups.n_groups <= _THREADED_SECOND_MAX or kern is not None else 1
    kwargs = dict(basis_for=basis_for, W=W, b=b, second_pass=second_pass, threads=(threads, threads_second),
                  kern=kern, ncc_accuracy=ncc_accuracy, per_class=per_class)
    if threads_second > 1:
        # BLAS stays on one thread from the first pass to the end of the second: the small decompositions
        # between the passes would otherwise wake its workers, which then spin on the cores the passes use
        with _single_blas_thread():
            return _array_statistics(X, groups, eps, **kwargs)
    return _array_statistics(X, groups, eps, **kwargs)


def _array_statistics(X, groups, eps, *, basis_for, W, b, second_pass, threads, kern, ncc_accuracy=False,
                      per_class=False):
    n, d = X.shape
    be = backend_for(X)
    n_threads, threads_second = threads
    g_ids = groups.group
    # The first sample of each group: float64 rows are centred on it before they are summed (small differences
    # keep every digit of data far from the origin), and it is the origin the means are kept relative to.
    first = np.full(groups.n_groups, n, dtype=np.intp)
    np.minimum.at(first, g_ids, np.arange(n))
    shift = be.to_float64(be.take(X, be.index(first)))
    work = be.work_dtype_np(X)
    block = _block_rows(d, groups.n_classes, work.itemsize) if be.name == "numpy" else 1 << 16

    # float64 rows are centred (sums of small differences keep every digit of data far from the origin);
    # float32 rows are summed raw in float64, which is exact to far below their own resolution
    raw = work == np.float32
    shared_shift_w = shift

    def first_work(start, stop, state):
        if state is None:
            state = FirstPass(be, d, with_squares=False, dtype=np.float64, raw=raw)
            state.shift, state.shift_w = shift, shared_shift_w
            state.sums = be.zeros((groups.n_groups, d))
            state.counts = np.zeros(groups.n_groups, dtype=np.int64)
            state.kern = kern
        ids_np = g_ids[start:stop]
        ids = ids_np if be.name == "numpy" else be.index(ids_np)
        return state.add(be.rows(X, start, stop), ids, ids_np)

    def first_merge(a, other):
        a.sums += other.sums
        a.counts += other.counts
        return a

    first_block = block
    if raw and be.name == "numpy":  # the block is copied to float64
        first_block = _block_rows(d, groups.n_classes, 8, _FIRST_BLOCK_BYTES)
    fp = _run_blocks(n, first_block, n_threads, first_work, first_merge)
    if not be.all_finite(fp.sums):
        bad = sum(be.bad_rows(be.rows(X, s, s + block)) for s in range(0, n, block))
        if bad:
            raise ValueError(f"features contain NaN or infinity in {bad} row(s).")
        raise ValueError("features are too large to sum in float64 (values near 1e308).")
    stats = Statistics(groups, fp.counts, fp.means(), eps)
    del fp, shift, shared_shift_w  # the first pass's tables are no longer needed
    if not second_pass or not stats.has_class_means:
        return stats
    geom = basis_for(stats)
    basis, centred_gram = geom.span, _gram_of(geom)
    del geom  # its K x d centred means are not needed by the pass (a K=1000, d=2048 report: 16 MB)
    sample_class = groups.sample_class()
    rows = None if not groups.multilabel else np.flatnonzero(sample_class >= 0)
    if (n if rows is None else rows.size) == 0:
        return stats
    # float32: the first pass's means are exact and the pass centres on their known rounding, so the basis of
    # the report's convention is final and the diagonal of the projected scatter in it is all NC1 reads
    full_gram = work == np.float64 and basis.shape[1] <= _FULL_GRAM_MAX
    second_pass_into(stats, X, sample_class, rows, basis, W=W, b=b, full_gram=full_gram,
                     centred_gram=centred_gram, threads=threads_second, block=block, per_class=per_class)
    if ncc_accuracy:  # one more read: every row against every final class mean
        stats.ncc_correct = count_nearest_mean(stats, X, rows, sample_class)
    return stats


def second_pass_into(stats, X, sample_class, rows, basis, *, W=None, b=None, full_gram=True, centred_gram=None,
                     threads=1, block=None, per_class=False):
    """Run the second pass over rows ``rows`` of ``X`` (all when None), row ``i`` centred on the mean of
    ``stats``'s class ``sample_class[i]``, and store its sums in ``stats``.

    ``stats`` may be the statistics of label sets viewed as classes (the
    tag-wise estimate of multi-label class means centres each row on its set).
    """
    n, d = X.shape
    be = backend_for(X)
    work = be.work_dtype_np(X)
    if block is None:
        block = _block_rows(d, stats.groups.n_classes, work.itemsize) if be.name == "numpy" else 1 << 16
    means = stats.means
    n2 = n if rows is None else rows.size

    def run_second(plan):
        tables = plan.on(be)

        def second_work(start, stop, state):
            if state is None:
                state = SecondPass(be, plan, tables)
            if rows is None:
                cls_np = sample_class[start:stop]
                x = be.rows(X, start, stop)
            else:
                cls_np = sample_class[rows[start:stop]]
                x = be.take(X, be.index(rows[start:stop]))
            cls = cls_np if be.name == "numpy" else be.index(cls_np)
            return state.add(x, cls, cls_np)

        return _run_blocks(n2, block, threads, second_work, lambda a, o: a.merge(o))

    # With few directions the second pass keeps the whole r x r projected scatter (NC1 then follows the exactly
    # corrected means); with many, its diagonal in this convention's basis (NC1 then uses the first pass's means,
    # exact to ~1e-9 relative) keeps the cost at one product per row. Rows are
    # squared unscaled unless that over- or underflows (features beyond ~1e+-15 in float32, 1e+-120 in float64):
    # then the pass is redone after dividing by a power of two chosen from the largest centred magnitude.
    # first try: the scale of the centred class means (the retry below covers rows far larger or smaller)
    rel = stats.means_rel
    guess = _abs_max(rel - rel.mean(axis=0))
    plan = make_plan(means, basis, guess, work, W=W, b=b, full_gram=full_gram,
                     means_rel=stats.means_rel, centred_gram=centred_gram, per_class=per_class)
    sp = run_second(plan)
    # all-zero squares are exact collapse or an underflow: the magnitude scan below tells them apart
    if not sp.squares_in_range() or sp.max_row_sq == 0.0:
        amax = 0.0
        for start in range(0, n2, block):
            idx = np.arange(start, min(start + block, n2)) if rows is None else rows[start : start + block]
            x = be.take(X, be.index(idx))
            cls_np = sample_class[idx]
            c = be.centre(x, be.asarray(means, _be_dtype(be, work)), cls_np if be.name == "numpy" else
                          be.index(cls_np), _be_dtype(be, work))
            amax = max(amax, be.abs_max(c))
        if amax > 0:
            plan = make_plan(means, basis, amax, work, W=W, b=b, full_gram=full_gram,
                             means_rel=stats.means_rel, centred_gram=centred_gram, per_class=per_class)
            sp = run_second(plan)
    within, Q, agree, shift = sp.finish()
    if shift is not None:  # float32: the first pass's means are exact sums already
        stats.correct_class_means(sp.centres(), shift)
    stats._within, stats._within_exp = within, plan.scale_exp
    stats._gram, stats._gram_basis, stats._gram_exp = Q, basis, plan.scale_exp
    stats._gram_per_class = sp.per_class_scatter
    if W is not None:
        stats.agree, stats.n_agree = agree, n2
    return stats


def compiled_loops(be, dtype, n_classes):
    """The compiled loops (:mod:`._kernels`) for float32 rows in host memory, or None.

    Beyond a few hundred classes the products dominate every block and the loops
    save nothing measurable (K=1000, d=2048: 7.0 s of second pass with them, 6.9 s
    without), while loading numba costs a process about 0.1 GB of resident
    memory; there the passes stay with numpy.
    """
    if be.name != "numpy" or np.dtype(dtype) != np.float32 or n_classes > _COMPILED_MAX_CLASSES:
        return None
    return kernels()


def _be_dtype(be, dtype):
    if be.name == "numpy":
        return np.dtype(dtype)
    return be.torch.float32 if np.dtype(dtype) == np.float32 else be.torch.float64


def _block_rows(d, k, itemsize=4, budget=_BLOCK_BYTES):
    """Rows per block: the block's working arrays (centred rows and products) fit in a few MB of cache."""
    rows = budget // (itemsize * (d + 3 * k))
    return int(min(8192, max(256, rows)))



def feature_scatter(X, stats):
    """``sum_i (h_i - mu)(h_i - mu)^T`` over every row of in-memory ``X`` about their mean ``mu`` (scaled by a
    power of two), one more read in float64 row blocks: the first pass's own accumulation, with one group."""
    be = backend_for(X)
    n, d = X.shape
    counts = stats.group_counts.astype(np.float64)
    centre = stats.origin + (stats.group_rel * counts[:, None]).sum(axis=0) / max(counts.sum(), 1.0)
    fp = FirstPass(be, d, with_squares=True, with_total=True)
    fp.grow(be.asarray(centre[None, :]))
    block = max(1, _BLOCK_BYTES // (8 * d))
    for start in range(0, n, block):
        rows = be.rows(X, start, min(start + block, n))
        ids_np = np.zeros(rows.shape[0], dtype=np.intp)
        fp.add(rows, ids_np if be.name == "numpy" else be.index(ids_np), ids_np)
    total = fp.total_about_mean()
    _give_back(fp)
    return total
