"""Neural-collapse metrics: pure functions on features and a streaming accumulator.

Every metric is computed in float64 from one set of sufficient statistics
(class counts and means, within-class traces, and the within-class covariance
seen through the span of the centred class means), whether those come from an
in-memory array (:func:`nc_report`) or from batches (:class:`NCAccumulator`).

Conventions
-----------
Notation: ``K`` classes, features ``h_i`` in ``R^d``, class means ``mu_k``,
global mean ``mu_G``, centred means ``m_k = mu_k - mu_G``.

* ``global_mean='class'`` (default): ``mu_G`` is the unweighted mean of the class
  means, the centre of the simplex (Papyan, Han & Donoho 2020; also the
  multiplicity-1 centring of Li et al. 2024). ``'sample'``: the sample mean of the
  features, as in Zhu et al. 2021. Identical for balanced classes.
* ``between='class'`` (default): ``Sigma_B = (1/K) sum_k m_k m_k^T`` (Papyan et al.,
  Zhu et al., Li et al.). ``'sample'``: ``sum_k (n_k/N) m_k m_k^T`` (Hong & Ling 2023).
* ``Sigma_W = (1/N) sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T`` over the samples used.
* NC1 is ``tr(Sigma_W Sigma_B^+)`` divided by ``K`` (``normalize=True``, as in the
  PNAS paper and Zhu et al.; the Papyan et al. notebook omits the ``1/K``).
* NC3 in Gram form follows Zhu et al.; the difference form
  ``||W/||W|| - M/||M|| ||_F`` is unsquared by default (``squared=True`` gives the
  Papyan et al. 2020 value).
* NC4 is the NCC mismatch ``1 - agreement`` (Papyan et al.), with the bias.

Multi-label data (``y`` an ``(n, K)`` 0/1 indicator): samples are grouped by label
set; class means, NC1, NC2, NC3 and NC4 use the multiplicity-1 samples only and
are centred at the (unweighted) mean of the multiplicity-1 class means.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from ._validation import LabelGroups, as_float64_matrix, group_labels, is_torch_tensor, require_singletons
from .geometry import etf_alignment_error, gram_etf_error

__all__ = [
    "nc1",
    "nc1_trace_quotient",
    "cdnv",
    "nc2_h",
    "nc2_w",
    "equinorm",
    "equiangularity",
    "nc3",
    "nc4",
    "ncc_agreement",
    "bias_collapse",
    "class_means",
    "class_mean_norms",
    "mean_orthogonality",
    "minority_collapse",
    "tagwise_average",
    "TagwiseResult",
    "tagwise_angle_ratio",
    "nc_report",
    "NCAccumulator",
]

_CHUNK_ROWS = 256  # rows per block of the exact pass: the centred block stays in cache
_DENSE_GROUPS = 64  # up to this many label sets, class sums are one dense one-hot GEMM
_CANCEL_LIMIT = 1e4  # largest sum||h||^2 / within-scatter ratio trusted by the fast path


# ----------------------------------------------------------------------------- helpers
def _check_choice(name, value, options):
    if value not in options:
        raise ValueError(f"{name} must be one of {options}; got {value!r}.")


def _input_eps(x) -> float:
    """Machine epsilon of the dtype the caller stored the features in."""
    dtype = getattr(x, "dtype", None)
    if is_torch_tensor(x):
        import torch

        return float(torch.finfo(x.dtype).eps) if x.is_floating_point() else float(np.finfo(np.float64).eps)
    try:
        return float(np.finfo(np.dtype(dtype)).eps)
    except (TypeError, ValueError):
        return float(np.finfo(np.float64).eps)


def _check_classifier(W, b, d, k):
    w = as_float64_matrix(W, "W")
    if w.shape != (k, d):
        raise ValueError(f"W must have shape (n_classes, n_dims) = ({k}, {d}); got {w.shape}.")
    if b is None:
        bias = np.zeros(k)
    else:
        bias = np.asarray(b.detach().cpu().double().numpy() if is_torch_tensor(b) else b, dtype=np.float64)
        bias = bias.reshape(-1)
        if bias.shape != (k,):
            raise ValueError(f"b must have shape ({k},) to match W; got {bias.shape}.")
        if not np.isfinite(bias).all():
            raise ValueError("b contains NaN or infinity.")
    return w, bias


@dataclass
class _Geometry:
    """Between-class geometry derived from the class means under a convention."""

    global_mean: np.ndarray  # (d,)
    centred: np.ndarray  # (K, d)
    basis: np.ndarray  # (d, r) orthonormal basis of span(centred means)
    sigma_b_eig: np.ndarray  # (r,) non-zero eigenvalues of Sigma_B
    trace_sigma_b: float


def _between_geometry(means, counts, global_mean, between, rtol, eps) -> _Geometry:
    k, d = means.shape
    _check_choice("global_mean", global_mean, ("class", "sample"))
    _check_choice("between", between, ("class", "sample"))
    if global_mean == "class":
        mu_g = means.mean(axis=0)
    else:
        mu_g = counts @ means / counts.sum()
    centred = means - mu_g
    weights = np.full(k, 1.0 / k) if between == "class" else counts / counts.sum()
    weighted = np.sqrt(weights)[:, None] * centred
    # Sigma_B = weighted^T weighted: its eigenpairs come from the SVD of a K x d matrix,
    # so no d x d matrix is ever formed or inverted.
    _, sing, vt = np.linalg.svd(weighted, full_matrices=False)
    if sing.size == 0 or sing[0] == 0.0:
        raise ValueError("all class means coincide, so the between-class covariance is zero and NC1 is undefined.")
    if rtol is None:
        # Directions weaker than the rounding of the stored features are noise.
        rtol = max(k, d) * eps
    # Rounding errors of the means scale with their *uncentred* norms, so far from the
    # origin the cut-off is relative to those, not to the centred spread.
    scale = max(sing[0], float(np.sqrt(weights.max()) * np.linalg.norm(means, axis=1).max()))
    rank = int(np.sum(sing > rtol * scale))
    return _Geometry(
        global_mean=mu_g,
        centred=centred,
        basis=vt[:rank].T,
        sigma_b_eig=sing[:rank] ** 2,
        trace_sigma_b=float(np.sum(weights * np.einsum("ij,ij->i", centred, centred))),
    )


# ------------------------------------------------------------------ sufficient statistics
class _Stats:
    """Group counts/means and within-class statistics of the multiplicity-1 samples.

    Subclasses supply ``within_trace`` (per class) and ``projected_within(V)``:
    ``sum_i ((h_i - mu_{y_i}) . v_r)^2`` for each column ``v_r`` of ``V``.
    """

    groups: LabelGroups
    group_counts: np.ndarray
    group_means: np.ndarray
    eps: float

    @property
    def counts(self) -> np.ndarray:
        return self.group_counts[self.groups.class_group].astype(np.float64)

    @property
    def means(self) -> np.ndarray:
        return self.group_means[self.groups.class_group]

    @property
    def n_singletons(self) -> int:
        return int(self.counts.sum())


class _ArrayStats(_Stats):
    """Statistics of an in-memory feature matrix.

    The fast path needs two sweeps over the features: class sums (a one-hot or
    sparse product) and one GEMM ``H @ [V | M^T | W^T]`` that yields the projections
    ``h.V - mu.V`` and both decision rules. Within-class traces use
    ``sum ||h||^2 - n_k ||mu_k||^2``; when that difference cancels more than
    ``_CANCEL_LIMIT`` (i.e. loses over four of float64's sixteen digits, as happens at
    extreme collapse or far from the origin) an exact pass over the centred rows
    ``h - mu_y`` replaces it.
    """

    def __init__(self, features, y):
        self.eps = _input_eps(features)
        self.H = as_float64_matrix(features, check_finite=False)
        self.groups = group_labels(y, self.H.shape[0])
        require_singletons(self.groups)
        n = self.H.shape[0]
        g = self.groups
        self.row_sq = np.einsum("ij,ij->i", self.H, self.H)
        if not np.isfinite(self.row_sq).all():  # NaN/inf in any entry propagates here
            bad = int((~np.isfinite(self.H)).any(axis=1).sum())
            raise ValueError(f"features contains NaN or infinity in {bad} row(s).")
        self.group_counts = g.counts()
        if g.n_groups <= _DENSE_GROUPS:
            onehot = np.zeros((g.n_groups, n))
            onehot[g.group, np.arange(n)] = 1.0
            sums = onehot @ self.H
        else:  # O(n d) segment sum for many label sets
            indicator = sparse.csr_matrix((np.ones(n), (g.group, np.arange(n))), shape=(g.n_groups, n))
            sums = np.asarray(indicator @ self.H)
        self.group_means = sums / self.group_counts[:, None]
        self.sample_class = g.sample_class()
        self._single_rows = None if not g.multilabel else np.flatnonzero(self.sample_class >= 0)
        self._pass = None

    def _blocks(self):
        rows = np.arange(self.H.shape[0]) if self._single_rows is None else self._single_rows
        for start in range(0, rows.size, _CHUNK_ROWS):
            idx = rows[start : start + _CHUNK_ROWS]
            yield self.H[idx], self.sample_class[idx]

    def _exact_pass(self, basis):
        """Centre every row on its class mean (blocked to stay in cache)."""
        means = self.means
        within = np.zeros(means.shape[0])
        projected = np.zeros(basis.shape[1])
        for block, cls in self._blocks():
            centred = block - means[cls]
            within += np.bincount(cls, weights=np.einsum("ij,ij->i", centred, centred), minlength=len(within))
            proj = centred @ basis
            projected += np.einsum("ij,ij->j", proj, proj)
        return within, projected

    def run_pass(self, basis, W=None, b=None):
        """Within traces, projected within variance and NCC agreement in one GEMM."""
        means = self.means
        k, r = means.shape[0], basis.shape[1]
        if self._single_rows is None:
            H, cls, row_sq = self.H, self.sample_class, self.row_sq
        else:
            rows = self._single_rows
            H, cls, row_sq = self.H[rows], self.sample_class[rows], self.row_sq[rows]
        right = [basis, means.T] + ([W.T] if W is not None else [])
        scores = H @ np.hstack(right)
        proj = scores[:, :r] - (means @ basis)[cls]
        projected = np.einsum("ij,ij->j", proj, proj)
        mean_sq = np.einsum("ij,ij->i", means, means)
        sum_sq = np.bincount(cls, weights=row_sq, minlength=k)
        within = sum_sq - self.counts * mean_sq
        if not np.all(within * _CANCEL_LIMIT > sum_sq):
            within, projected = self._exact_pass(basis)
        agree = 0
        if W is not None:
            ncc = np.argmax(scores[:, r : r + k] - 0.5 * mean_sq, axis=1)
            clf = np.argmax(scores[:, r + k :] + b, axis=1)
            agree = int(np.count_nonzero(ncc == clf))
        self._pass = {"basis": basis, "W": W, "within": within, "projected": projected, "agree": agree}
        return self._pass

    @property
    def within_trace(self):
        if self._pass is None:
            self.run_pass(np.zeros((self.H.shape[1], 0)))
        return self._pass["within"]

    def projected_within(self, basis):
        if self._pass is None or self._pass["basis"] is not basis:
            self.run_pass(basis)
        return self._pass["projected"]

    def agreement(self, W, b):
        if self._pass is None or self._pass["W"] is not W:
            basis = np.zeros((self.H.shape[1], 0)) if self._pass is None else self._pass["basis"]
            self.run_pass(basis, W, b)
        return self._pass["agree"] / self.n_singletons


def _angle_degrees(u, v):
    """Row-wise angle in degrees, stable near 0 and 180 (unlike arccos of a cosine)."""
    un = u / np.linalg.norm(u, axis=-1, keepdims=True)
    vn = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return np.degrees(2.0 * np.arctan2(np.linalg.norm(un - vn, axis=-1), np.linalg.norm(un + vn, axis=-1)))


# -------------------------------------------------------------------- metric kernels
def _nc1_value(stats, geom, normalize):
    projected = stats.projected_within(geom.basis) / stats.n_singletons
    value = float(np.sum(projected / geom.sigma_b_eig))
    return value / stats.means.shape[0] if normalize else value


def _cdnv_value(stats, geom, power):
    counts = stats.counts
    variances = stats.within_trace / counts
    m = geom.centred
    sq = np.einsum("ij,ij->i", m, m)
    dist2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (m @ m.T), 0.0)
    iu = np.triu_indices(m.shape[0], 1)
    d2 = dist2[iu]
    if np.any(d2 == 0):
        raise ValueError("two class means coincide, so the CDNV is undefined.")
    return float(np.mean((variances[iu[0]] + variances[iu[1]]) / (2.0 * d2**power)))


def _equinorm(vectors, ddof):
    norms = np.linalg.norm(vectors, axis=1)
    mean = norms.mean()
    if mean == 0:
        raise ValueError("all vectors are zero, so the coefficient of variation of their norms is undefined.")
    return float(norms.std(ddof=ddof) / mean)


def _equiangularity(vectors):
    k = vectors.shape[0]
    norms = np.linalg.norm(vectors, axis=1)
    if np.any(norms == 0):
        raise ValueError("a vector is zero, so its angles are undefined.")
    unit = vectors / norms[:, None]
    cos = unit @ unit.T
    off = ~np.eye(k, dtype=bool)
    return float(np.mean(np.abs(cos[off] + 1.0 / (k - 1))))


def _nc3_difference(W, centred, squared):
    nw, nm = np.linalg.norm(W), np.linalg.norm(centred)
    if nw == 0 or nm == 0:
        raise ValueError("W or the centred class means are zero, so NC3 is undefined.")
    value = float(np.linalg.norm(W / nw - centred / nm))
    return value**2 if squared else value


# ---------------------------------------------------------------------- public API
def _prepare(features, y, global_mean, between, rtol):
    stats = _ArrayStats(features, y)
    geom = _between_geometry(stats.means, stats.counts, global_mean, between, rtol, stats.eps)
    return stats, geom


def nc1(features, y, *, global_mean="class", between="class", normalize=True, rtol=None):
    """Within-class variability collapse ``tr(Sigma_W Sigma_B^+) / K``.

    ``Sigma_B^+`` is applied through the SVD of the ``K x d`` matrix of (weighted)
    centred class means, so the trace is
    ``sum_r (v_r^T Sigma_W v_r) / sigma_r^2`` over the ``r <= K-1`` retained
    directions; no ``d x d`` matrix is formed or inverted, and float32-stored
    features give the float64 answer.

    Parameters
    ----------
    features : array-like or torch.Tensor of shape (n_samples, d)
    y : array-like of shape (n_samples,) or (n_samples, K)
        Class labels, or a 0/1 indicator (multi-label: multiplicity-1 samples only).
    global_mean : {'class', 'sample'}, default='class'
        Centre of the class means (see the module docstring).
    between : {'class', 'sample'}, default='class'
        Weighting of ``Sigma_B``.
    normalize : bool, default=True
        Divide the trace by ``K``.
    rtol : float, optional
        Singular values of the weighted centred means below ``rtol`` times the larger
        of the top singular value and the largest (weighted) *uncentred* class-mean
        norm are discarded; the rank used is reported as ``nc1_rank``. Default
        ``max(K, d) * eps`` of the *input* dtype, so rounding of float32 features, or
        of means far from the origin, never creates a spurious direction.

    Returns
    -------
    float
        Non-negative; 0 at exact within-class collapse.
    """
    stats, geom = _prepare(features, y, global_mean, between, rtol)
    return _nc1_value(stats, geom, normalize)


def nc1_trace_quotient(features, y, *, global_mean="class", between="class"):
    """``tr(Sigma_W) / tr(Sigma_B)`` (the quotient variant of NC1, Tirer et al. 2023)."""
    stats, geom = _prepare(features, y, global_mean, between, None)
    return float(stats.within_trace.sum() / stats.n_singletons / geom.trace_sigma_b)


def cdnv(features, y, *, power=1.0):
    """Class-distance-normalised variance (Galanti et al. 2022), averaged over pairs.

    ``mean_{i<j} (sigma_i^2 + sigma_j^2) / (2 ||mu_i - mu_j||^(2 power))`` where
    ``sigma_k^2`` is the mean squared distance of class ``k``'s samples to its mean.
    ``power=1`` is the published definition; ``power=2`` reproduces the quartic
    denominator used in some code.
    """
    stats, geom = _prepare(features, y, "class", "class", None)
    return _cdnv_value(stats, geom, power)


def class_means(features, y):
    """Class means (multiplicity-1 samples for multi-label ``y``), classes sorted."""
    return _ArrayStats(features, y).means


def equinorm(vectors, *, ddof=1):
    """Coefficient of variation ``std/mean`` of the row norms (``ddof=1`` as in Papyan et al.)."""
    return _equinorm(as_float64_matrix(vectors, "vectors"), ddof)


def equiangularity(vectors):
    """Mean over ordered pairs ``i != j`` of ``|cos(v_i, v_j) + 1/(K-1)|`` (Papyan et al.)."""
    return _equiangularity(as_float64_matrix(vectors, "vectors"))


def nc2_h(features, y, *, global_mean="class"):
    """NC2 of the centred class means.

    Returns
    -------
    dict
        ``gram``: distance of the normalised Gram to the ETF Gram (Zhu et al.),
        ``equinorm`` and ``equiangular`` (Papyan et al.).
    """
    stats, geom = _prepare(features, y, global_mean, "class", None)
    m = geom.centred
    return {"gram": gram_etf_error(m), "equinorm": _equinorm(m, 1), "equiangular": _equiangularity(m)}


def nc2_w(W):
    """NC2 of the classifier rows (uncentred, as every reference code does)."""
    w = as_float64_matrix(W, "W")
    return {"gram": gram_etf_error(w), "equinorm": _equinorm(w, 1), "equiangular": _equiangularity(w)}


def nc3(features, y, W, *, form="gram", squared=False, global_mean="class"):
    """Self-duality of the classifier and the centred class means.

    Parameters
    ----------
    form : {'gram', 'difference'}, default='gram'
        ``'gram'``: ``||W M^T/||W M^T|| - E_K||_F`` (Zhu et al.; Li et al.).
        ``'difference'``: ``||W/||W|| - M/||M|| ||_F`` (Papyan et al.).
    squared : bool, default=False
        Square the ``'difference'`` form (Papyan et al. report it squared).
    """
    _check_choice("form", form, ("gram", "difference"))
    stats, geom = _prepare(features, y, global_mean, "class", None)
    w, _ = _check_classifier(W, None, stats.H.shape[1], stats.means.shape[0])
    if form == "gram":
        return etf_alignment_error(w, geom.centred)
    return _nc3_difference(w, geom.centred, squared)


def ncc_agreement(features, y, W, b=None):
    """Fraction of (multiplicity-1) samples where the nearest class mean and ``argmax(W h + b)`` agree.

    Rows of ``W`` follow the sorted classes (indicator columns for multi-label ``y``).
    """
    stats = _ArrayStats(features, y)
    w, bias = _check_classifier(W, b, stats.H.shape[1], stats.means.shape[0])
    return stats.agreement(w, bias)


def nc4(features, y, W, b=None):
    """NCC mismatch ``1 - ncc_agreement`` (Papyan et al.): 0 at collapse."""
    return 1.0 - ncc_agreement(features, y, W, b)


def bias_collapse(features, y, W, b=None, *, global_mean="sample"):
    """``||W mu_G + b||`` (Zhu et al.'s NC4, with ``mu_G`` the sample mean by default)."""
    stats = _ArrayStats(features, y)
    w, bias = _check_classifier(W, b, stats.H.shape[1], stats.means.shape[0])
    geom = _between_geometry(stats.means, stats.counts, global_mean, "class", None, stats.eps)
    return float(np.linalg.norm(w @ geom.global_mean + bias))


# --------------------------------------------------------------- imbalance geometry
def class_mean_norms(features, y, *, centred=False, global_mean="class"):
    """Norm of each class mean (uncentred by default, as for non-negative features)."""
    stats = _ArrayStats(features, y)
    means = stats.means
    if centred:
        means = _between_geometry(means, stats.counts, global_mean, "class", None, stats.eps).centred
    return np.linalg.norm(means, axis=1)


def _orthogonality(means):
    norms = np.linalg.norm(means, axis=1)
    alive = norms > 0
    if alive.sum() < 2:
        raise ValueError("fewer than two non-zero class means; orthogonality is undefined.")
    unit = means[alive] / norms[alive, None]
    cos = unit @ unit.T
    np.fill_diagonal(cos, 0.0)
    return float(np.max(np.abs(cos)))


def mean_orthogonality(features, y):
    """Largest ``|cos|`` between distinct non-zero *uncentred* class means.

    0 for the orthogonal frame that non-negative features reach under imbalance
    (Dang et al. 2024); ``1/(K-1)``-ish values indicate a centred ETF instead.
    """
    return _orthogonality(_ArrayStats(features, y).means)


def _minority(means, W, norm_rtol, cos_atol):
    norms = np.linalg.norm(means, axis=1)
    collapsed = np.flatnonzero(norms <= norm_rtol * norms.max())
    groups = []
    if W is not None:
        wn = np.linalg.norm(W, axis=1)
        unit = np.divide(W, wn[:, None], out=np.zeros_like(W), where=wn[:, None] > 0)
        same = (unit @ unit.T >= 1.0 - cos_atol) & (
            np.abs(wn[:, None] - wn[None, :]) <= cos_atol * np.maximum(wn[:, None], wn[None, :])
        )
        seen = np.zeros(len(W), dtype=bool)
        for i in range(len(W)):  # K is small; grouping is a union of identical rows
            if seen[i]:
                continue
            members = np.flatnonzero(same[i] & ~seen)
            seen[members] = True
            if members.size > 1:
                groups.append(members)
    return collapsed, groups


def minority_collapse(features, y, W=None, *, norm_rtol=1e-2, cos_atol=1e-3):
    """Detect minority collapse.

    A class collapses when its mean norm is at most ``norm_rtol`` times the largest
    class-mean norm; classifier rows are indistinguishable when their cosine is at
    least ``1 - cos_atol`` and their norms agree to ``cos_atol`` relative.

    Returns
    -------
    dict
        ``collapsed_classes`` (class labels), ``indistinguishable`` (list of arrays
        of class labels whose classifier rows coincide; needs ``W``), and
        ``mean_norms``.
    """
    stats = _ArrayStats(features, y)
    means = stats.means
    w = None
    if W is not None:
        w, _ = _check_classifier(W, None, stats.H.shape[1], means.shape[0])
    collapsed, groups = _minority(means, w, norm_rtol, cos_atol)
    classes = stats.groups.classes
    return {
        "collapsed_classes": classes[collapsed],
        "indistinguishable": [classes[g] for g in groups],
        "mean_norms": np.linalg.norm(means, axis=1),
    }


# ------------------------------------------------------------------ multi-label
@dataclass
class TagwiseResult:
    """Tag-wise-average property of multi-label features.

    Attributes
    ----------
    sets : pandas.DataFrame
        One row per label set with ``|S| >= 2`` present: ``labels`` (tuple),
        ``multiplicity``, ``n_samples``, ``angle`` (degrees, between the centred
        set mean and ``sum_{k in S}`` of the centred tag means), ``scale``
        (least-squares ``c_S`` in ``mean_S ~ c_S * (1/|S|) sum_{k in S} m_k``) and
        ``residual`` (``||mean_S - c_S avg_S|| / ||mean_S||``).
    summary : pandas.DataFrame
        Per multiplicity: number of sets and samples, mean and max angle, mean and
        standard deviation of the scale, mean residual (and, when provided, the
        UFM prediction of the scale).
    """

    sets: pd.DataFrame
    summary: pd.DataFrame


def _tagwise_tables(stats, geom):
    g = stats.groups
    multi = np.flatnonzero((g.multiplicity >= 2) & (g.multiplicity < g.n_classes))
    if multi.size == 0:
        raise ValueError("no label set with 2 <= |S| < K is present, so the tag-wise property cannot be measured.")
    mult = g.multiplicity[multi]
    set_centred = stats.group_means[multi] - geom.global_mean
    tag_sum = g.sets[multi].astype(np.float64) @ geom.centred
    avg = tag_sum / mult[:, None]
    sn = np.linalg.norm(set_centred, axis=1)
    tn = np.linalg.norm(tag_sum, axis=1)
    if np.any(tn == 0):
        raise ValueError("a label set's tag means sum to zero; its tag-wise angle is undefined.")
    safe_sn = np.where(sn > 0, sn, 1.0)
    safe_set = np.where(sn[:, None] > 0, set_centred, tag_sum)
    angle = np.where(sn > 0, _angle_degrees(safe_set, tag_sum), 90.0)  # a zero mean has no direction
    scale = np.einsum("ij,ij->i", set_centred, avg) / np.einsum("ij,ij->i", avg, avg)
    resid = np.linalg.norm(set_centred - scale[:, None] * avg, axis=1) / safe_sn
    resid = np.where(sn > 0, resid, 1.0)
    labels = [tuple(g.classes[np.flatnonzero(row)].tolist()) for row in g.sets[multi]]
    table = pd.DataFrame(
        {
            "labels": labels,
            "multiplicity": mult,
            "n_samples": stats.group_counts[multi],
            "angle": angle,
            "scale": scale,
            "residual": resid,
        }
    )
    summary = (
        table.groupby("multiplicity")
        .agg(
            n_sets=("labels", "size"),
            n_samples=("n_samples", "sum"),
            angle_mean=("angle", "mean"),
            angle_max=("angle", "max"),
            scale_mean=("scale", "mean"),
            scale_std=("scale", lambda s: float(np.std(s))),
            residual_mean=("residual", "mean"),
        )
        .reset_index()
    )
    return table, summary


def _angle_ratio(stats):
    """Official multi-label code's ratio, uncentred, multiplicity 2, vectorised."""
    g = stats.groups
    pairs = np.flatnonzero(g.multiplicity == 2)
    if pairs.size == 0:
        raise ValueError("no multiplicity-2 label set is present; the angle ratio needs them.")
    means = stats.means

    def unit(x):
        n = np.linalg.norm(x, axis=1, keepdims=True)
        if np.any(n == 0):
            raise ValueError("a mean is zero, so the uncentred angle ratio is undefined.")
        return x / n

    set_unit = unit(stats.group_means[pairs])
    own = unit(g.sets[pairs].astype(np.float64) @ means)
    numerator = _angle_degrees(own, set_unit).mean()
    i, j = np.triu_indices(means.shape[0], 1)
    all_pairs = unit(means[i] + means[j])
    denominator = np.degrees(np.arccos(np.clip(all_pairs @ set_unit.T, -1, 1))).mean()
    return float(numerator / denominator)


def _theory_scales(summary, stats, regularization):
    from .theory import pal_optimum  # theory is pure numpy/scipy; imported lazily

    g = stats.groups
    counts = np.bincount(g.multiplicity[g.group], minlength=g.n_classes + 1)
    sizes = {m: int(c) for m, c in enumerate(counts) if c > 0}
    opt = pal_optimum(g.n_classes, sizes, **regularization)
    summary = summary.copy()
    summary["scale_theory"] = [opt.scales.get(int(m), np.nan) for m in summary["multiplicity"]]
    return summary


def tagwise_average(features, Y, *, global_mean="class", regularization=None):
    """Measure the tag-wise-average property of multi-label features.

    Every label set ``S`` with ``2 <= |S| < K`` present in ``Y`` gets the angle
    between its centred mean and ``sum_{k in S} m_k``, the least-squares scale
    ``c_S`` with respect to the *average* ``(1/|S|) sum m_k`` (the ``c_m`` of Li
    et al.), and the relative residual. Sets with ``|S| = K`` are skipped: their
    prototype is the sum of all centred means, which is zero.

    Parameters
    ----------
    features : array-like of shape (n_samples, d)
    Y : array-like of shape (n_samples, K)
        0/1 indicator with at least one multiplicity-1 sample per class.
    global_mean : {'class', 'sample'}, default='class'
        Centre; ``'class'`` is the mean of the multiplicity-1 class means.
    regularization : dict, optional
        ``{'lambda_W': ..., 'lambda_H': ..., 'loss': 'pal'|'pal_mean'}`` in the UFM
        normalisation of :mod:`sknc.theory`; adds a ``scale_theory`` column to the
        summary with the UFM-optimal ``c_m`` for these multiplicity proportions.

    Returns
    -------
    TagwiseResult
    """
    stats = _ArrayStats(features, Y)
    if not stats.groups.multilabel:
        raise ValueError("tagwise_average needs a 2-D 0/1 indicator Y (multi-label data).")
    geom = _between_geometry(stats.means, stats.counts, global_mean, "class", None, stats.eps)
    table, summary = _tagwise_tables(stats, geom)
    if regularization is not None:
        summary = _theory_scales(summary, stats, dict(regularization))
    return TagwiseResult(sets=table, summary=summary)


def tagwise_angle_ratio(features, Y):
    """The angle ratio of Li et al.'s code (uncentred means, multiplicity 2).

    Mean angle between each pair-set mean and the sum of its two tag means,
    divided by the mean angle over all class pairs and all pair-set means.
    Tends to 0 under the tag-wise-average property.
    """
    stats = _ArrayStats(features, Y)
    if not stats.groups.multilabel:
        raise ValueError("tagwise_angle_ratio needs a 2-D 0/1 indicator Y (multi-label data).")
    return _angle_ratio(stats)


# ------------------------------------------------------------------------ report
def _report(stats, geom, w, bias, *, normalize, nc3_squared, cdnv_power, agreement):
    """Assemble the report from statistics, geometry and a validated classifier (or None)."""
    k = stats.means.shape[0]
    d = stats.group_means.shape[1]
    out = {
        "n_samples": int(stats.group_counts.sum()),
        "n_classes": k,
        "n_dims": d,
    }
    if stats.groups.multilabel:
        out["n_singletons"] = stats.n_singletons
    out["nc1"] = _nc1_value(stats, geom, normalize)
    out["nc1_rank"] = int(geom.basis.shape[1])
    out["nc1_trace_quotient"] = float(stats.within_trace.sum() / stats.n_singletons / geom.trace_sigma_b)
    out["cdnv"] = _cdnv_value(stats, geom, cdnv_power)
    m = geom.centred
    out["nc2_h"] = gram_etf_error(m)
    out["nc2_h_equinorm"] = _equinorm(m, 1)
    out["nc2_h_equiangular"] = _equiangularity(m)
    out["mean_max_abs_cos"] = _orthogonality(stats.means)
    if w is not None:
        out["nc2_w"] = gram_etf_error(w)
        out["nc2_w_equinorm"] = _equinorm(w, 1)
        out["nc2_w_equiangular"] = _equiangularity(w)
        out["nc3"] = etf_alignment_error(w, m)
        out["nc3_difference"] = _nc3_difference(w, m, nc3_squared)
        agree = agreement(w, bias)
        if agree is not None:
            out["nc4"] = 1.0 - agree
            out["ncc_agreement"] = agree
        out["bias_collapse"] = float(np.linalg.norm(w @ geom.global_mean + bias))
    if stats.groups.multilabel and np.any((stats.groups.multiplicity >= 2) & (stats.groups.multiplicity < k)):
        table, summary = _tagwise_tables(stats, geom)
        out["tagwise_angle"] = float(table["angle"].mean())
        out["tagwise_angle_max"] = float(table["angle"].max())
        out["tagwise_residual"] = float(table["residual"].mean())
        for _, row in summary.iterrows():
            out[f"tagwise_scale_m{int(row['multiplicity'])}"] = float(row["scale_mean"])
        if np.any(stats.groups.multiplicity == 2):
            out["tagwise_angle_ratio"] = _angle_ratio(stats)
    return pd.Series(out, name="nc_report", dtype=object).infer_objects()


def nc_report(
    features,
    y,
    W=None,
    b=None,
    *,
    global_mean="class",
    between="class",
    normalize=True,
    rtol=None,
    nc3_squared=False,
    cdnv_power=1.0,
):
    """Every NC metric that applies, in one pass over the data.

    Parameters
    ----------
    features : array-like or torch.Tensor of shape (n_samples, d)
        Any float dtype, any device; computed in float64 on the host.
    y : array-like of shape (n_samples,) or (n_samples, K)
        Class labels or a 0/1 indicator matrix (multi-label).
    W : array-like of shape (K, d), optional
        Classifier rows in the order of the sorted classes.
    b : array-like of shape (K,), optional
        Classifier bias (zero if omitted).
    global_mean, between, normalize, rtol
        NC1 conventions, see :func:`nc1`.
    nc3_squared : bool, default=False
        Square the difference form of NC3.
    cdnv_power : float, default=1.0
        See :func:`cdnv`.

    Returns
    -------
    pandas.Series
        Keys ``n_samples``, ``n_classes``, ``n_dims``, ``nc1``, ``nc1_rank``,
        ``nc1_trace_quotient``, ``cdnv``, ``nc2_h``, ``nc2_h_equinorm``,
        ``nc2_h_equiangular``, ``mean_max_abs_cos``; with ``W``: ``nc2_w``,
        ``nc2_w_equinorm``, ``nc2_w_equiangular``, ``nc3`` (Gram form),
        ``nc3_difference``, ``nc4`` (NCC mismatch), ``ncc_agreement`` and
        ``bias_collapse``; for multi-label data also ``n_singletons``,
        ``tagwise_angle``, ``tagwise_angle_max``, ``tagwise_residual``,
        ``tagwise_scale_m<m>`` per multiplicity and ``tagwise_angle_ratio``.
    """
    return _report_and_geometry(
        features, y, W, b, global_mean=global_mean, between=between, normalize=normalize, rtol=rtol,
        nc3_squared=nc3_squared, cdnv_power=cdnv_power,
    )[0]


def _report_and_geometry(features, y, W=None, b=None, *, global_mean="class", between="class", normalize=True,
                         rtol=None, nc3_squared=False, cdnv_power=1.0):
    """The report and the between-class geometry it used (shared with :class:`sknc.NCMetrics`)."""
    stats = _ArrayStats(features, y)
    geom = _between_geometry(stats.means, stats.counts, global_mean, between, rtol, stats.eps)
    w = bias = None
    if W is not None:
        w, bias = _check_classifier(W, b, stats.H.shape[1], stats.means.shape[0])
    # A single second pass serves NC1 (projection on the basis) and NC4 (needs W).
    stats.run_pass(geom.basis, w, bias)
    report = _report(
        stats,
        geom,
        w,
        bias,
        normalize=normalize,
        nc3_squared=nc3_squared,
        cdnv_power=cdnv_power,
        agreement=stats.agreement,
    )
    return report, geom


# --------------------------------------------------------------------- streaming
class _Backend:
    """Minimal array operations on numpy or on torch (keeping tensors on their device)."""

    def __init__(self, torch_device=None):
        self.torch_device = torch_device
        if torch_device is not None:
            import torch

            self.torch = torch

    @classmethod
    def for_input(cls, x):
        if is_torch_tensor(x):
            return cls(x.device)
        return cls(None)

    def features(self, x):
        if self.torch_device is None:
            return as_float64_matrix(x)
        t = x.detach()
        if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
            raise ValueError(f"features must be a non-empty 2-D tensor; got shape {tuple(t.shape)}.")
        t = t.to(self.torch.float64)
        if not bool(self.torch.isfinite(t).all()):
            raise ValueError("features contain NaN or infinity.")
        return t

    def zeros(self, *shape):
        if self.torch_device is None:
            return np.zeros(shape)
        return self.torch.zeros(shape, dtype=self.torch.float64, device=self.torch_device)

    def index(self, idx):
        if self.torch_device is None:
            return idx
        return self.torch.as_tensor(idx, device=self.torch_device)

    def index_add(self, target, idx, values):
        if self.torch_device is None:
            np.add.at(target, idx, values)
        else:
            target.index_add_(0, idx, values)

    def numpy(self, x):
        if self.torch_device is None:
            return np.asarray(x)
        return x.cpu().numpy()


class NCAccumulator:
    """Streaming NC statistics: one pass over batches, memory independent of ``n``.

    Keeps, per label set, a count, a shift (the mean of its first batch), the sum
    of shifted features and of their squared norms, and one ``d x d`` scatter of
    the shifted multiplicity-1 features. Shifting keeps the within-class scatter
    free of the catastrophic cancellation of ``sum h h^T - n mu mu^T`` near
    collapse; shards merge exactly (Chan et al.'s update around a common shift).

    Parameters
    ----------
    n_classes : int, optional
        Width of indicator targets. Required only to tell an all-singleton
        multi-label stream from a multi-class one; inferred otherwise.

    Notes
    -----
    ``report`` equals :func:`nc_report` on the concatenated data for every key
    except ``nc4``/``ncc_agreement``: the nearest-class-mean rule needs the final
    means, which a single pass cannot know. Run a second pass with
    :meth:`update_agreement` (same ``W`` and ``b``) to add them.

    Torch tensors are accumulated in float64 on their own device; nothing is
    copied to the host until :meth:`report`.

    Examples
    --------
    >>> import numpy as np
    >>> from sknc import NCAccumulator, simplex_etf
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(3), 50)
    >>> H = simplex_etf(3, 5, random_state=0)[y] + 0.01 * rng.standard_normal((150, 5))
    >>> acc = NCAccumulator()
    >>> for part in np.array_split(np.arange(150), 4):
    ...     _ = acc.update(H[part], y[part])
    >>> bool(acc.report()["nc1"] < 1e-3)
    True
    """

    def __init__(self, n_classes=None):
        self.n_classes = n_classes

    # state is created lazily so that an unused accumulator costs nothing
    def _init_state(self, backend, d, multilabel, width):
        self._backend = backend
        self._d = d
        self._multilabel = multilabel
        self._width = width
        self._keys = {}  # label-set key -> group id
        self._key_list = []
        self._counts = []
        self._shift = backend.zeros(0, d)
        self._sum = backend.zeros(0, d)
        self._sqsum = backend.zeros(0)
        self._scatter = backend.zeros(d, d)
        self._agree = 0
        self._agree_n = 0
        self._eps = 0.0

    def _batch_groups(self, y, n):
        if is_torch_tensor(y):
            y = y.detach().cpu().numpy()
        y = np.asarray(y)
        multilabel = y.ndim == 2 and y.shape[1] > 1
        if multilabel:
            ind = np.asarray(y)
            if not np.isin(np.unique(ind), (0, 1)).all():
                raise ValueError("a 2-D y must be a 0/1 indicator matrix.")
            ind = ind.astype(bool)
            if ind.shape[0] != n:
                raise ValueError(f"y has {ind.shape[0]} rows but the feature batch has {n}.")
            if (~ind.any(axis=1)).any():
                raise ValueError("y has all-zero label rows; every sample needs at least one label.")
            keys = [row.tobytes() for row in np.packbits(ind, axis=1)]
            width = ind.shape[1]
        else:
            lab = y.ravel()
            if lab.shape[0] != n:
                raise ValueError(f"y has {lab.shape[0]} labels but the feature batch has {n} rows.")
            if lab.dtype.kind == "f" and not np.isfinite(lab).all():
                raise ValueError("y contains NaN or infinity.")
            keys = lab.tolist()
            width = None
        return multilabel, width, keys, (ind if multilabel else lab)

    def _group_ids(self, keys, raw, multilabel):
        ids = np.empty(len(keys), dtype=np.int64)
        new = []
        for i, key in enumerate(keys):
            gid = self._keys.get(key)
            if gid is None:
                gid = len(self._key_list)
                self._keys[key] = gid
                self._key_list.append(raw[i] if multilabel else key)
                self._counts.append(0)
                new.append(gid)
            ids[i] = gid
        return ids, new

    def _singleton_ids(self):
        if self._multilabel:
            return np.array([int(np.sum(s)) == 1 for s in self._key_list], dtype=bool)
        return np.ones(len(self._key_list), dtype=bool)

    def update(self, features_batch, y_batch):
        """Add a batch.

        Parameters
        ----------
        features_batch : array-like or torch.Tensor of shape (n_batch, d)
        y_batch : array-like of shape (n_batch,) or (n_batch, K)

        Returns
        -------
        self
        """
        backend = _Backend.for_input(features_batch)
        if not hasattr(self, "_backend"):
            x = backend.features(features_batch)
            multilabel, width, keys, raw = self._batch_groups(y_batch, x.shape[0])
            if self.n_classes is not None and width is not None and width != self.n_classes:
                raise ValueError(f"y has {width} columns but n_classes={self.n_classes}.")
            self._init_state(backend, x.shape[1], multilabel, width)
        else:
            if (backend.torch_device is None) != (self._backend.torch_device is None):
                raise TypeError("mixing numpy and torch batches in one accumulator is not supported.")
            x = self._backend.features(features_batch)
            multilabel, width, keys, raw = self._batch_groups(y_batch, x.shape[0])
            if x.shape[1] != self._d:
                raise ValueError(f"feature batch has {x.shape[1]} dims; earlier batches had {self._d}.")
            if multilabel != self._multilabel or width != self._width:
                raise ValueError("y format changed between batches (1-D labels vs indicator, or its width).")
        be = self._backend
        self._eps = max(self._eps, _input_eps(features_batch))
        ids, new = self._group_ids(keys, raw, multilabel)
        idx = be.index(ids)
        counts = np.bincount(ids, minlength=len(self._key_list))
        if new:
            grown = len(self._key_list) - self._shift.shape[0]
            self._shift = _cat(be, self._shift, be.zeros(grown, self._d))
            self._sum = _cat(be, self._sum, be.zeros(grown, self._d))
            self._sqsum = _cat(be, self._sqsum, be.zeros(grown))
            # Shift new groups by their mean in this batch: close to the final mean.
            batch_sum = be.zeros(len(self._key_list), self._d)
            be.index_add(batch_sum, idx, x)
            for gid in new:
                self._shift[gid] = batch_sum[gid] / float(counts[gid])
        centred = x - self._shift[idx]
        be.index_add(self._sum, idx, centred)
        be.index_add(self._sqsum, idx, (centred * centred).sum(1))
        single = self._singleton_ids()[ids]
        if single.all():
            self._scatter += centred.T @ centred
        elif single.any():
            rows = centred[be.index(np.flatnonzero(single))]
            self._scatter += rows.T @ rows
        for gid, c in enumerate(counts):
            self._counts[gid] += int(c)
        return self

    def update_agreement(self, features_batch, y_batch, W, b=None):
        """Second pass: count NCC/argmax agreement with the final class means."""
        self._check_started()
        stats = self._stats()
        x = as_float64_matrix(features_batch)
        groups = stats.batch_classes(y_batch, x.shape[0])
        mask = groups >= 0
        w, bias = _check_classifier(W, b, self._d, stats.means.shape[0])
        x, cls = x[mask], groups[mask]
        means = stats.means
        ncc = np.argmax(x @ means.T - 0.5 * np.einsum("ij,ij->i", means, means), axis=1)
        clf = np.argmax(x @ w.T + bias, axis=1)
        self._agree += int(np.count_nonzero(ncc == clf))
        self._agree_n += int(cls.size)
        return self

    def merge(self, other):
        """Fold another accumulator (e.g. a shard) into this one; returns self."""
        if not isinstance(other, NCAccumulator):
            raise TypeError(f"can only merge an NCAccumulator; got {type(other).__name__}.")
        if not hasattr(other, "_backend"):
            return self
        if not hasattr(self, "_backend"):
            self._init_state(other._backend, other._d, other._multilabel, other._width)
        if other._d != self._d or other._multilabel != self._multilabel or other._width != self._width:
            raise ValueError("cannot merge accumulators of different feature width or label format.")
        be = self._backend
        o_shift, o_sum, o_sq, o_scatter = (_to(be, a) for a in (other._shift, other._sum, other._sqsum, other._scatter))
        self._scatter = self._scatter + o_scatter
        single_other = other._singleton_ids()
        for og, key in enumerate(other._keys):
            n_o = other._counts[og]
            gid = self._keys.get(key)
            if gid is None:
                gid = len(self._key_list)
                self._keys[key] = gid
                self._key_list.append(other._key_list[og])
                self._counts.append(0)
                self._shift = _cat(be, self._shift, o_shift[og : og + 1])
                self._sum = _cat(be, self._sum, be.zeros(1, self._d))
                self._sqsum = _cat(be, self._sqsum, be.zeros(1))
            delta = o_shift[og] - self._shift[gid]  # re-express the shard around our shift
            s_o = o_sum[og]
            self._sum[gid] += s_o + n_o * delta
            self._sqsum[gid] += o_sq[og] + 2.0 * (delta * s_o).sum() + n_o * (delta * delta).sum()
            if single_other[og]:
                cross = _outer(be, s_o, delta)
                self._scatter += cross + cross.T + n_o * _outer(be, delta, delta)
            self._counts[gid] += n_o
        self._agree += other._agree
        self._agree_n += other._agree_n
        self._eps = max(self._eps, other._eps)
        return self

    def _check_started(self):
        if not hasattr(self, "_backend"):
            raise ValueError("the accumulator is empty: call update() with at least one batch first.")

    def _stats(self):
        self._check_started()
        return _AccumulatedStats(self)

    def report(self, W=None, b=None, **conventions):
        """The NC report of everything seen so far (keyword conventions as in :func:`nc_report`)."""
        stats = self._stats()

        def agreement(w, bias):
            if self._agree_n == 0:
                return None
            return self._agree / self._agree_n

        kwargs = dict(
            global_mean="class", between="class", normalize=True, rtol=None, nc3_squared=False, cdnv_power=1.0
        )
        unknown = set(conventions) - set(kwargs)
        if unknown:
            raise TypeError(f"unknown report option(s): {sorted(unknown)}")
        kwargs.update(conventions)
        geom = _between_geometry(
            stats.means, stats.counts, kwargs.pop("global_mean"), kwargs.pop("between"), kwargs.pop("rtol"), stats.eps
        )
        w = bias = None
        if W is not None:
            w, bias = _check_classifier(W, b, self._d, stats.means.shape[0])
        return _report(stats, geom, w, bias, agreement=agreement, **kwargs)


def _cat(be, a, b):
    if be.torch_device is None:
        return np.concatenate([a, b])
    return be.torch.cat([a, b])


def _to(be, a):
    if be.torch_device is None:
        return a.cpu().numpy() if is_torch_tensor(a) else a
    return be.torch.as_tensor(a, dtype=be.torch.float64, device=be.torch_device)


def _outer(be, u, v):
    if be.torch_device is None:
        return np.outer(u, v)
    return be.torch.outer(u, v)


class _AccumulatedStats(_Stats):
    """Statistics reduced from an :class:`NCAccumulator` (one device-to-host copy)."""

    def __init__(self, acc):
        be = acc._backend
        shift, total, sq, scatter = (be.numpy(a) for a in (acc._shift, acc._sum, acc._sqsum, acc._scatter))
        counts = np.asarray(acc._counts, dtype=np.int64)
        # Sort groups the way group_labels does, so reports line up key by key.
        if acc._multilabel:
            sets = np.array(acc._key_list, dtype=bool)
            packed = np.packbits(sets, axis=1)
            keys = np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1]))).ravel()
            order = np.argsort(keys, kind="stable")
            sets = sets[order]
            k = sets.shape[1]
            classes = np.arange(k)
        else:
            raw = np.array(acc._key_list)
            order = np.argsort(raw, kind="stable")
            classes = raw[order]
            k = len(classes)
            sets = np.eye(k, dtype=bool)
        if k < 2:
            raise ValueError(f"the stream holds {k} class(es); at least 2 are needed.")
        shift, total, sq, counts = shift[order], total[order], sq[order], counts[order]
        multiplicity = sets.sum(axis=1).astype(np.intp)
        class_group = np.full(k, -1, dtype=np.intp)
        singles = np.flatnonzero(multiplicity == 1)
        class_group[sets[singles].argmax(axis=1)] = singles
        self.groups = LabelGroups(
            classes=classes,
            multilabel=acc._multilabel,
            sets=sets,
            group=np.zeros(0, dtype=np.intp),
            multiplicity=multiplicity,
            class_group=class_group,
        )
        require_singletons(self.groups)
        self.eps = acc._eps
        self.group_counts = counts
        self.group_means = shift + total / counts[:, None]
        # Within statistics of the singleton groups, corrected from shift to mean.
        cg = class_group
        s_single = total[cg]
        n_single = counts[cg].astype(np.float64)
        self._within = sq[cg] - np.einsum("ij,ij->i", s_single, s_single) / n_single
        self._within = np.maximum(self._within, 0.0)
        self._scatter = scatter
        self._s_single = s_single
        self._n_single = n_single
        self._acc_keys = acc._keys
        self._acc_multilabel = acc._multilabel

    @property
    def within_trace(self):
        return self._within

    def projected_within(self, basis):
        proj_sum = self._s_single @ basis
        quad = np.einsum("ij,ij->j", basis, self._scatter @ basis)
        return np.maximum(quad - np.einsum("ij,ij,i->j", proj_sum, proj_sum, 1.0 / self._n_single), 0.0)

    def batch_classes(self, y, n):
        """Class index of each sample of a batch (-1 for multi-label non-singletons)."""
        groups = group_labels(y, n, min_classes=1)
        if self._acc_multilabel != groups.multilabel:
            raise ValueError("y format differs from the accumulated stream.")
        if groups.multilabel:
            mult = groups.multiplicity[groups.group]
            out = np.where(mult == 1, groups.sets[groups.group].argmax(axis=1), -1)
            return out.astype(np.intp)
        labels = groups.classes[groups.group]
        pos = np.searchsorted(self.groups.classes, labels)
        pos = np.clip(pos, 0, len(self.groups.classes) - 1)
        if np.any(self.groups.classes[pos] != labels):
            raise ValueError("the batch holds a label never seen during update().")
        return pos.astype(np.intp)
