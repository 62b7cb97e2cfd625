"""Class means of multi-label data estimated from the means of its label sets.

The papers define multi-label NC through the means of single-label samples.
When a class never (or rarely) occurs alone, its mean is estimated under the
tag-wise-average model instead: the mean of label set ``S`` is

    m_S ~ g + c_|S| * (1/|S|) * sum_{k in S} mu_k,   sum_k mu_k = 0,

with one scale ``c_m`` per multiplicity (``c`` of the smallest multiplicity
present is 1, which fixes the scale the model leaves free), fitted by weighted
least squares over the set means (weights: set counts). For fixed scales the
problem is linear in ``(g, mu)``; for fixed means each ``c_m`` is a ratio, so
the fit alternates the two until the scales stop moving. The work is on
``G x K`` and ``G x r`` arrays (``G`` label sets, ``r <= min(G, d)``): the set
means enter through one QR factorisation.

Classes whose mean the label sets do not determine (a class that only ever
appears with the same partner, or never) are those the null space of the
design touches; they are reported by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..exceptions import UndefinedMetricError

__all__ = ["CLASS_MEANS", "AUTO_MIN_SINGLETONS", "TagwiseEstimate", "estimate_class_means", "resolve_class_means",
           "EstimatedStatistics", "check_class_means"]

CLASS_MEANS = ("auto", "singletons", "tagwise")
AUTO_MIN_SINGLETONS = 2  # 'auto' keeps the single-label means when every class has this many single-label samples
_MAX_ITER = 2000
_SCALE_RTOL = 1e-13  # the alternation stops when no scale moves by more than this (relative)
_NULL_RTOL = 1e-10  # design singular values below this (relative to the largest) are a free direction


def check_class_means(value):
    if not (isinstance(value, str) and value in CLASS_MEANS):
        raise ValueError(f"class_means must be one of {CLASS_MEANS}; got {value!r}.")
    return value


def resolve_class_means(option, groups, group_counts):
    """``'singletons'`` or ``'tagwise'``: what ``option`` means for these label groups.

    1-D labels always use the class means themselves. ``'auto'`` keeps the
    single-label means when every class has at least
    :data:`AUTO_MIN_SINGLETONS` single-label samples (the papers' definition,
    unchanged results), and estimates them otherwise.
    """
    check_class_means(option)
    if not groups.multilabel or option == "singletons":
        return "singletons"
    if option == "tagwise":
        return "tagwise"
    cg = groups.class_group
    if np.any(cg < 0):
        return "tagwise"
    singles = np.asarray(group_counts)[cg]
    return "singletons" if np.all(singles >= AUTO_MIN_SINGLETONS) else "tagwise"


@dataclass
class TagwiseEstimate:
    """The fitted tag-wise-average model (means relative to the statistics' origin)."""

    centre_rel: np.ndarray  # (d,) g
    centred: np.ndarray  # (K, d) mu_k, summing to zero
    scales: dict  # {m: c_m}
    undetermined: np.ndarray  # class indices whose mean the label sets leave free
    fitted: np.ndarray  # (G,) bool: the groups the fit used (every non-empty label set)
    n_iter: int = 0
    residual: float = np.nan  # weighted RMS distance of the set means from the model (original units)

    @property
    def means_rel(self):
        return self.centred + self.centre_rel


def _centred_basis(k):
    """Orthonormal (K, K-1) basis of the vectors whose entries sum to zero (columns of a Helmert matrix)."""
    basis = np.zeros((k, k - 1))
    for j in range(1, k):
        basis[:j, j - 1] = 1.0 / np.sqrt(j * (j + 1))
        basis[j, j - 1] = -j / np.sqrt(j * (j + 1))
    return basis


def estimate_class_means(sets, multiplicity, set_rel, counts):
    """Fit the tag-wise-average model to label-set means.

    Parameters
    ----------
    sets : ndarray of bool, shape (G, K)
    multiplicity : ndarray of int, shape (G,)
    set_rel : ndarray of shape (G, d)
        Set means (relative to any common origin; the result is relative to it).
    counts : ndarray of shape (G,)
        Samples per set (the weights).

    Returns
    -------
    TagwiseEstimate
    """
    sets = np.asarray(sets, dtype=bool)
    mult = np.asarray(multiplicity, dtype=np.intp)
    fitted = mult >= 1
    g_count, k = sets.shape
    d = set_rel.shape[1]
    a = sets[fitted].astype(np.float64) / mult[fitted, None]
    m_of = mult[fitted]
    w = np.asarray(counts, dtype=np.float64)[fitted]
    rel = np.asarray(set_rel, dtype=np.float64)[fitted]
    # scale by a power of two (exact) so that squares neither overflow nor underflow
    top = float(np.max(np.abs(rel))) if rel.size else 0.0
    exp = int(np.frexp(top)[1]) if top > 0 else 0
    rel_s = np.ldexp(rel, -exp)
    sqrt_w = np.sqrt(w)
    # the set means enter only through their coordinates in an orthonormal basis of their row space
    q, t = np.linalg.qr((sqrt_w[:, None] * rel_s).T, mode="reduced")  # (d, r), (r, G)
    rhs = t.T  # (G, r): weighted set means in the basis q
    total_sq = float(np.sum(rhs * rhs))
    basis = _centred_basis(k)
    a_p = a @ basis  # (G, K-1)
    sizes = np.unique(m_of)
    # Whatever the scales, the design's columns lie in the span of [1 | a_p restricted to each multiplicity],
    # so only the part of the set means that this span reaches can move the fit: keep those few directions
    # (at most 1 + #sizes (K-1) of the r) and the alternation works on them alone.
    blocks = {int(m): (m_of == m)[:, None] * a_p * sqrt_w[:, None] for m in sizes}  # weighted, per size
    reach = np.hstack([sqrt_w[:, None]] + list(blocks.values()))
    u_r, s_r, _ = np.linalg.svd(reach, full_matrices=False)
    u_r = u_r[:, s_r > _NULL_RTOL * s_r[0]]
    keep_dirs, _ = np.linalg.qr((u_r.T @ rhs).T, mode="reduced")  # (r, q)
    rhs = rhs @ keep_dirs
    q = q @ keep_dirs
    coords = rhs / sqrt_w[:, None]
    # Every weighted design column is in the span of u_r, so the alternation runs on coordinates in it: the
    # design is u_r [p1 | sum_m c_m P_m] and the set means enter as u_r^T rhs (sizes p x K and p x q, p small).
    p1 = u_r.T @ sqrt_w
    p_m = {m: u_r.T @ b for m, b in blocks.items()}
    r_u = u_r.T @ rhs
    m0 = int(sizes[0])
    scales = {int(m): 1.0 for m in sizes}
    free_scale = set()
    n_iter = 0
    while True:
        design = np.hstack([p1[:, None], sum(scales[m] * p_m[m] for m in p_m if m not in free_scale)])
        u, s, vt = np.linalg.svd(design, full_matrices=False)
        keep = s > _NULL_RTOL * s[0] if s.size else s.astype(bool)
        coef = vt[keep].T @ ((u[:, keep].T @ r_u) / s[keep, None])  # (K, q): minimum-norm solution
        centre, theta = coef[0], coef[1:]
        mu = basis @ theta  # (K, q)
        base = r_u - p1[:, None] * centre  # weighted set means less the centre, in u_r coordinates
        moved = 0.0
        for m in sizes:
            m = int(m)
            if m == m0 or m in free_scale:
                continue
            y = p_m[m] @ theta  # weighted tag averages of the sets of size m
            den = float(np.sum(y * y))
            if not den > 1e-24 * float(w[m_of == m].sum()) * max(float(np.max(np.abs(mu))), 1e-300) ** 2:
                # these sets' classes average to the centre (the set of all classes): their scale is free and
                # changes nothing
                free_scale.add(m)
                continue
            new = float(np.sum(base * y)) / den
            moved = max(moved, abs(new - scales[m]) / max(abs(new), 1e-300))
            scales[m] = new
        n_iter += 1
        if len(sizes) == 1 or moved <= _SCALE_RTOL or n_iter >= _MAX_ITER or \
                not all(np.isfinite(c) for c in scales.values()):
            break
    c_rows = np.array([scales[int(m)] if int(m) not in free_scale else 0.0 for m in m_of])
    avg = a @ mu
    undetermined = _free_classes(a, m_of, sqrt_w, c_rows, mu, basis, [m for m in sizes if m not in free_scale],
                                 m0)
    # a class in no label set would be fixed by the sum-zero convention alone (minus the others' sum): no data
    never = np.flatnonzero(~sets[fitted].any(axis=0))
    undetermined = np.union1d(undetermined, never).astype(np.intp)
    scales = {m: c for m, c in scales.items() if m not in free_scale}
    fit = np.ones((len(m_of), 1)) * centre + c_rows[:, None] * avg
    # the directions left out above are residual too
    left_out = max(total_sq - float(np.sum(rhs * rhs)), 0.0)
    residual = float(np.sqrt((w @ np.sum((coords - fit) ** 2, axis=1) + left_out) / w.sum())) \
        if np.all(np.isfinite(fit)) else np.nan
    unit = np.ldexp(1.0, exp)
    return TagwiseEstimate(centre_rel=(q @ centre) * unit, centred=(mu @ q.T) * unit, scales=scales,
                           undetermined=undetermined, fitted=fitted, n_iter=n_iter, residual=residual * unit)


def _free_classes(a, m_of, sqrt_w, c_rows, mu, basis, sizes, m0, n_dirs=4):
    """Classes whose mean the fit leaves free: those a null direction of the model's Jacobian moves.

    The unknowns are the centre, the (sum-zero) means and the scales other
    than ``c_m0``; a scale can trade with a mean (a class seen only in sets of
    one size beside classes it alone explains), which the linear problem at
    fixed scales does not show. The Jacobian is taken along a few seeded
    directions of the means' coordinates (the problem is the same along every
    direction except for the shared scales), so its size is ``G p x (K p + #c)``.
    """
    n_sets, k = a.shape
    r = mu.shape[1]
    p = min(r, n_dirs)
    if p == 0:
        return np.arange(k)
    dirs, _ = np.linalg.qr(np.random.default_rng(0x7A6).standard_normal((r, p)))
    mu_v = mu @ dirs  # (K, p)
    free_scales = [int(m) for m in sizes if m != m0]
    a_p = a @ basis  # (G, K-1)
    cols = p + (k - 1) * p + len(free_scales)
    jac = np.zeros((n_sets * p, cols))
    for j in range(p):
        rows = slice(j * n_sets, (j + 1) * n_sets)
        jac[rows, j] = 1.0
        jac[rows, p + j * (k - 1) : p + (j + 1) * (k - 1)] = c_rows[:, None] * a_p
        avg_v = a @ mu_v[:, j]
        for i, m in enumerate(free_scales):
            jac[rows, p + (k - 1) * p + i] = np.where(m_of == m, avg_v, 0.0)
    jac *= np.tile(sqrt_w, p)[:, None]
    norms = np.linalg.norm(jac, axis=0)
    norms[norms == 0] = 1.0
    # (the left factor is only needed square when there are fewer equations than unknowns)
    _, sing, vt = np.linalg.svd(jac / norms, full_matrices=jac.shape[0] < cols)
    sing = np.concatenate([sing, np.zeros(cols - sing.size)])
    null = vt[sing <= _NULL_RTOL * max(float(sing[0]), 1e-300)] / norms  # back to the unknowns' units
    moved = np.zeros(k)
    for vec in null:
        # how far each class's uncentred mean g + mu_k moves (centred means all move when one does)
        d_mu = np.stack([vec[j] + basis @ vec[p + j * (k - 1) : p + (j + 1) * (k - 1)] for j in range(p)], axis=1)
        size = np.max(np.linalg.norm(d_mu, axis=1))
        if size > 0:
            moved = np.maximum(moved, np.linalg.norm(d_mu, axis=1) / size)
    return np.flatnonzero(moved > 1e-6)


class EstimatedStatistics:
    """The :class:`~sknc.metrics._stats.Statistics` interface of multi-label data with estimated class means.

    ``base``: the statistics of the label sets (first pass); ``sets``: the same
    sets viewed as classes, after the second pass centred every row on its
    set's mean (within-set sums, projected scatter); ``estimate``: the fit.

    Conventions under the estimate (see the theory page):

    * a class's *count* is the number of samples that carry its label;
    * its *within-class variance* is the mean squared distance of those
      samples from their own set's mean;
    * the within-class scatter of NC1 is that of every labelled sample about
      its set's mean, ``N`` the number of labelled samples.
    """

    kind = "tagwise"

    def __init__(self, base, estimate, sets=None, *, problem=None):
        self.base = base
        self.estimate = estimate
        self.sets = sets
        self.groups = base.groups
        self.group_counts = base.group_counts
        self.origin, self.group_rel = base.origin, base.group_rel
        self.eps = base.eps
        self.decompositions = {}
        self.nc1_geometry = None
        self.second_pass_problem = None if sets is None else sets.second_pass_problem
        self.class_means_problem = problem
        self.agree, self.n_agree = None, 0
        fitted = estimate.fitted
        member = self.groups.sets[fitted].astype(np.float64)  # (G', K)
        self._member = member
        self.counts = self.group_counts[fitted].astype(np.float64) @ member
        self.n_within_rows = int(self.group_counts[fitted].sum())
        self._means_rel = estimate.means_rel

    # ------------------------------------------------------------- what the formulas read
    @property
    def n_dims(self):
        return self.group_rel.shape[1]

    @property
    def group_means(self):
        return self.base.group_means

    @property
    def has_class_means(self):
        return self.class_means_problem is None

    def require_class_means(self):
        if self.class_means_problem:
            raise UndefinedMetricError(self.class_means_problem)

    @property
    def means_rel(self):
        self.require_class_means()
        return self._means_rel

    @property
    def means(self):
        return self.means_rel + self.origin

    @property
    def n_singletons(self):
        return self.base.n_singletons

    @property
    def has_within(self):
        return self.sets is not None and self.sets._within is not None and self.has_class_means

    @property
    def _gram(self):
        return None if self.sets is None else self.sets._gram

    def _set_within(self):
        self.require_class_means()
        if self.sets is None or self.sets._within is None:
            raise UndefinedMetricError("within-set sums were not gathered (the second pass did not run)")
        if self.second_pass_problem:
            raise UndefinedMetricError(self.second_pass_problem)
        return self.sets._within, self.sets._within_exp

    def within_trace(self):
        """Per class: the squared distances of its samples from their own set's mean, summed."""
        within, exp = self._set_within()
        return within @ self._member, exp

    def total_within(self):
        within, exp = self._set_within()
        return float(within.sum()), exp

    def weighted_projection(self, V, sing):
        self.require_class_means()
        if self.sets is None or (self.sets._gram is None and not self.sets.second_pass_problem):
            raise UndefinedMetricError(
                "under the tag-wise estimate of the class means, NC1 needs the second pass over the data (every "
                "labelled sample about its set's mean)")
        if self.second_pass_problem:
            raise UndefinedMetricError(self.second_pass_problem)
        return self.sets.weighted_projection(V, sing)

    def agreement(self):
        if self.second_pass_problem:
            raise UndefinedMetricError(self.second_pass_problem)
        if self.agree is None or self.n_agree == 0:
            raise UndefinedMetricError(
                "NCC agreement needs a pass with the final class means and W (the second pass over the data)")
        return self.agree / self.n_agree


def undetermined_message(groups, classes_idx):
    names = ", ".join(str(groups.classes[i]) for i in classes_idx[:10])
    more = f" (and {classes_idx.size - 10} more)" if classes_idx.size > 10 else ""
    return (f"the label sets do not determine the mean of class(es) {names}{more} (each only ever appears in the "
            "same combination with other classes, or never), so the tag-wise estimate of the class means is "
            "undefined")


def set_view(groups, fitted):
    """The fitted label sets as the classes of single-label groups (for a pass that centres rows on set means).

    Returns ``(set_groups, row_set)``: ``row_set[i]`` is the set index of row
    ``i`` among the fitted sets, -1 for the others (label-free rows).
    """
    from .._validation import LabelGroups

    n_sets = int(fitted.sum())
    position = np.full(groups.n_groups, -1, dtype=np.intp)
    position[fitted] = np.arange(n_sets)
    set_groups = LabelGroups(classes=np.arange(n_sets), multilabel=False, set_matrix=None,
                             group=np.zeros(0, dtype=np.intp), multiplicity=np.ones(n_sets, dtype=np.intp),
                             class_group=np.arange(n_sets))
    return set_groups, position


def topm_agreement(x, mult, means, W, b):
    """How many rows' ``m`` nearest class means are their ``m`` largest logits (``m``: the row's multiplicity).

    ``x``: float64 rows (n, d) and ``means`` relative to one origin (the
    differences keep their digits far from it), ``b`` the bias of such rows.
    One product serves both tables. For single-label rows this is the NCC
    agreement of NC4.
    """
    k = means.shape[0]
    # ||x - mu_k||^2 = ||x||^2 - 2 x.mu_k + ||mu_k||^2: the row term orders nothing
    both = x @ np.vstack([-2.0 * means, W]).T
    dist = both[:, :k]
    dist += np.einsum("ij,ij->i", means, means)
    logits = both[:, k:]
    if b is not None:
        logits += b
    agree = 0
    for m in np.unique(mult):
        rows = mult == m
        if m >= k:
            agree += int(rows.sum())
            continue
        near = np.sort(np.argpartition(dist[rows], m - 1, axis=1)[:, :m], axis=1)
        top = np.sort(np.argpartition(-logits[rows], m - 1, axis=1)[:, :m], axis=1)
        agree += int(np.all(near == top, axis=1).sum())
    return agree


def _geometry(stats, global_mean, between, rtol):
    from . import _collapse as C

    sample_sq = stats.within_trace() if stats.has_within else None
    return C.between_geometry(stats.means_rel, stats.counts, global_mean, between, rtol, stats.eps, stats.origin,
                              sample_sq, cache=stats.decompositions)


def estimated_statistics(stats):
    """The estimate of the class means of first-pass statistics ``stats`` (no second pass yet)."""
    g = stats.groups
    labelled = g.multiplicity >= 1
    if not np.any(labelled):
        est = TagwiseEstimate(np.zeros(stats.n_dims), np.zeros((g.n_classes, stats.n_dims)), {},
                              np.arange(g.n_classes), labelled)
        return EstimatedStatistics(stats, est, problem="no sample carries a label, so no class mean can be "
                                                         "estimated")
    est = estimate_class_means(g.sets, g.multiplicity, stats.group_rel, stats.group_counts)
    problem = undetermined_message(g, est.undetermined) if est.undetermined.size else None
    if problem is None and not all(np.isfinite(c) for c in est.scales.values()):
        bad = [m for m, c in est.scales.items() if not np.isfinite(c)]
        problem = (f"the tag-wise scale of multiplicity {bad} is undefined (its sets' class means average to "
                   "zero), so the tag-wise estimate of the class means is undefined")
    return EstimatedStatistics(stats, est, problem=problem)


def tagwise_array_statistics(stats, X, *, W=None, b=None, global_mean="class", between="class", rtol=None,
                             second_pass=True):
    """Class means of in-memory multi-label features estimated from their label sets, and the second pass that
    centres every labelled row on its set's mean (within-set sums, scatter in the span of the estimated means,
    and with ``W`` the top-``m`` NCC agreement).

    Returns ``(statistics, geometry)``; the geometry is None when the estimate is undefined.
    """
    from ._backend import backend_for
    from ._stats import _FULL_GRAM_MAX, Statistics, second_pass_into

    est_stats = estimated_statistics(stats)
    if not est_stats.has_class_means:
        return est_stats, None
    geom = _geometry(est_stats, global_mean, between, rtol)
    if not second_pass:
        return est_stats, geom
    g = stats.groups
    fitted = est_stats.estimate.fitted
    set_groups, position = set_view(g, fitted)
    set_stats = Statistics(set_groups, stats.group_counts[fitted], (stats.origin, stats.group_rel[fitted]), stats.eps)
    row_set = position[g.group]
    rows = np.flatnonzero(row_set >= 0)
    basis = geom.span
    full_gram = basis.shape[1] <= _FULL_GRAM_MAX
    second_pass_into(set_stats, X, row_set, None if rows.size == len(row_set) else rows, basis,
                     full_gram=full_gram)  # (every row labelled: no gather)
    est_stats.sets = set_stats
    if not full_gram:  # only the diagonal in this basis was kept: NC1 is read in it
        from dataclasses import replace

        est_stats.nc1_geometry = replace(geom, centred=None, gram=None)
    if W is not None:
        be = backend_for(X)
        means = est_stats.means_rel
        w64 = np.asarray(W, dtype=np.float64)
        bias = w64 @ stats.origin + (0.0 if b is None else np.asarray(b, dtype=np.float64))
        mult = g.multiplicity[g.group[rows]]
        agree = 0
        every = rows.size == len(row_set)
        for start in range(0, rows.size, 4096):
            idx = rows[start : start + 4096]
            block = be.rows(X, start, start + idx.size) if every else be.take(X, be.index(idx))
            x = be.to_numpy(block).astype(np.float64)
            x -= stats.origin
            agree += topm_agreement(x, mult[start : start + 4096], means, w64, bias)
        est_stats.agree, est_stats.n_agree = agree, int(rows.size)
    return est_stats, _geometry(est_stats, global_mean, between, rtol)
