"""NC1-NC4 from sufficient statistics: between-class geometry and the collapse formulas.

Every function here reads a :class:`~sknc.metrics._stats.Statistics` (and a
:class:`Geometry`), never raw features, so in-memory reports, streamed
accumulators, training callbacks and scorers compute the same numbers. A
quantity that is undefined on the data raises
:class:`~sknc.exceptions.UndefinedMetricError` whose message names the
degeneracy; the report turns it into NaN for that key.

Scale: squared quantities carry power-of-two exponents (see ``_stats``), and
vectors are divided by a power of two before any product, so the formulas give
the same values for features of any magnitude.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..exceptions import UndefinedMetricError
from ..geometry import _abs_max, _alignment_error, _gram_error

__all__ = ["Geometry", "between_geometry", "check_choice"]


def check_choice(name, value, options):
    if value not in options:
        raise ValueError(f"{name} must be one of {options}; got {value!r}.")


def max_exponent(a) -> int:
    """Exponent ``e`` with ``max|a| < 2^e`` (0 for an all-zero or empty array), within [-1000, 1000].

    Dividing by ``2^e`` is then an exact float64 scaling by a finite factor.
    """
    a = np.asarray(a)
    m = _abs_max(a)
    return int(np.clip(np.frexp(m)[1], -1000, 1000)) if m > 0 and np.isfinite(m) else 0


def scaled(a, exp=None):
    """``(a / 2^exp, exp)`` with ``exp`` from ``max|a|`` unless given: products of the result cannot overflow."""
    a = np.asarray(a, dtype=np.float64)
    exp = max_exponent(a) if exp is None else exp
    if exp == 0:
        return a, 0
    return a * np.ldexp(1.0, -exp), exp  # a power of two: multiplying is exact (and faster than ldexp)


def _row_norms(a):
    """Row norms without overflow or underflow, and without a full-size temporary in the usual range."""
    top = _abs_max(a)
    if top == 0.0:
        return np.zeros(a.shape[0])
    if 1e-150 < top < 1e150:
        return np.sqrt(np.einsum("ij,ij->i", a, a))
    e = int(np.frexp(top)[1])
    b = np.ldexp(a, -e)
    return np.ldexp(np.sqrt(np.einsum("ij,ij->i", b, b)), e)


def _shifted_row_norms(rel, origin=None, block=4096):
    """Row norms of ``rel + origin`` in row blocks (no second K x d array with many classes)."""
    if origin is None:
        return _row_norms(rel)
    out = np.empty(rel.shape[0])
    for start in range(0, rel.shape[0], block):
        out[start : start + block] = _row_norms(rel[start : start + block] + origin)
    return out


_KEEP_GRAM_MAX = 2048  # up to this many classes the K x K Gram (<= 32 MB) is kept for the report


def _uses_gram(k, d):
    return k >= 32 and d >= k


def _right_singular(A, gram=None):
    """Singular values (descending) and right singular vectors (rows) of a K x d matrix.

    For K >= 32 columns-rich matrices whose non-null singular values are within
    a factor 1e3 of the largest, the K x K Gram's eigendecomposition is exact to
    ~1e-10 and several times faster than an SVD; otherwise an SVD. ``gram``:
    ``A @ A.T`` when the caller has it.
    """
    k, d = A.shape
    if _uses_gram(k, d):
        lam, u = np.linalg.eigh(A @ A.T if gram is None else gram)
        lam, u = lam[::-1], u[:, ::-1]
        top = lam[0]
        # centred means have one null direction by construction (rounding-level eigenvalue)
        if top > 0 and np.all(lam[:-1] >= 1e-6 * top) and abs(lam[-1]) <= 1e-12 * top:
            sing = np.sqrt(lam[:-1])
            vt = (u[:, :-1] / sing).T @ A
            return sing, vt  # the null direction is left out
    if k > 2 * d:
        # many more classes than dimensions: the SVD of the d x d triangle of a QR has the same singular values
        # and right vectors (backward stable), without the K x d left factor an SVD of A would build
        r = np.linalg.qr(A, mode="r")
        _, sing, vt = np.linalg.svd(r, full_matrices=False)
        return sing, vt
    _, sing, vt = np.linalg.svd(A, full_matrices=False)
    return sing, vt


@dataclass
class Geometry:
    """Between-class geometry of the class means under a convention.

    ``centred`` and the singular values are divided by ``2**exp``; ``basis``
    holds the retained right singular vectors of the weighted centred means
    (``r = rank`` columns, ``r <= K - 1``).
    """

    global_mean: np.ndarray  # (d,) original units
    global_mean_rel: np.ndarray  # (d,) relative to the statistics' origin
    exp: int
    centred: np.ndarray  # (K, d) / 2**exp
    weights: np.ndarray  # (K,)
    basis: np.ndarray  # (d, r)
    span: np.ndarray  # (d, r0 >= r): every direction with a non-zero singular value
    singular_values: np.ndarray  # (r,) / 2**exp
    tolerance: float  # / 2**exp
    trace_sigma_b: float  # / 4**exp
    conventions: tuple = ()  # (global_mean, between, rtol)
    gram: np.ndarray | None = None  # centred @ centred.T when the decomposition formed it (else None)

    @property
    def rank(self) -> int:
        return int(self.basis.shape[1])


def between_geometry(means, counts, global_mean="class", between="class", rtol=None, eps=None, origin=None,
                     sample_sq=None, cache=None) -> Geometry:
    """Centre, weight and decompose the class means.

    The rank ``r`` keeps the singular values of the weighted centred means above
    a tolerance. With ``rtol=None`` the tolerance is the largest of

    * ``max(K, d) * eps64 * sigma_1`` (float64 rounding of the decomposition),
    * ``max(K, d) * eps64 * ||M||_w`` (float64 rounding of sums of samples;
      ``||M||_w^2 = sum_k w_k m_k^2`` with ``m_k^2`` the mean squared norm of
      class ``k``'s samples, ``||mu_k||^2`` plus its within-class variance),
    * ``eps_stored * sqrt(sum_k w_k m_k^2 / n_k)``: what the stored dtype can
      resolve after averaging ``n_k`` rounded samples per class (float32
      features 1e5 from the origin resolve their class means to ~1e-3, not to
      1e5 * 6e-8 per sample).

    ``sample_sq`` (per class, ``(sum_i ||h_i - mu_k||^2, exp)`` as the
    statistics hold it) adds the within-class part to ``m_k``; without it
    ``m_k = ||mu_k||``.

    An explicit ``rtol`` keeps the directions above ``rtol`` times the larger of
    ``sigma_1`` and the largest weighted uncentred mean norm.

    ``means`` may be given relative to ``origin`` (then differences keep every
    digit of means far from the origin).

    ``cache`` (a dict kept with the means, emptied when they change) keeps the
    decomposition of each convention, so a second call with the within-class
    sums known does not decompose again.
    """
    check_choice("global_mean", global_mean, ("class", "sample"))
    check_choice("between", between, ("class", "sample"))
    means = np.asarray(means, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    k, d = means.shape
    if global_mean == "class":
        mu_g = means.mean(axis=0)
    else:
        mu_g = counts @ means / counts.sum()
    centred = means - mu_g
    mu_g_rel = mu_g
    if origin is not None:
        mu_g = mu_g + origin
    exp = max_exponent(centred)
    if exp:
        centred *= np.ldexp(1.0, -exp)
    weights = np.full(k, 1.0 / k) if between == "class" else counts / counts.sum()
    sqrt_w = np.sqrt(weights)
    key = (global_mean, between)
    gram = None if cache is None else cache.get(("gram", global_mean, exp))  # of these centred means
    if cache is not None and key in cache:
        sing, vt = cache[key]
    elif between == "class":  # equal weights scale the singular values only: no weighted copy
        if gram is None and _uses_gram(k, d):
            gram = centred @ centred.T  # kept (when small): the report's NC2 and CDNV read it too
        sing, vt = _right_singular(centred, gram)
        if k > _KEEP_GRAM_MAX:
            gram = None
        sing = sing * sqrt_w[0]
    else:
        sing, vt = _right_singular(sqrt_w[:, None] * centred)
    if cache is not None:
        cache[key] = (sing, vt)
        if gram is not None:
            cache[("gram", global_mean, exp)] = gram
    unc_norms = _shifted_row_norms(means, origin) * np.ldexp(1.0, -exp)
    if sample_sq is not None:  # add each class's within-class spread (in the same units)
        within, wexp = sample_sq
        spread = np.ldexp(np.asarray(within, dtype=np.float64) / np.maximum(counts, 1.0), 2 * (wexp - exp))
        unc_norms = np.sqrt(unc_norms**2 + spread)
    top = float(sing[0]) if sing.size else 0.0
    eps64 = float(np.finfo(np.float64).eps)
    if rtol is None:
        eps_stored = eps64 if eps is None else float(eps)
        weighted = sqrt_w * unc_norms
        tol = max(
            max(k, d) * eps64 * top,
            max(k, d) * eps64 * float(np.sqrt(np.sum(weighted**2))),
            eps_stored * float(np.sqrt(np.sum(weighted**2 / np.maximum(counts, 1.0)))),
        )
    else:
        tol = float(rtol) * max(top, float(np.max(sqrt_w * unc_norms)) if k else 0.0)
    rank = int(np.sum(sing > tol)) if top > 0 else 0
    return Geometry(
        global_mean=mu_g,
        global_mean_rel=mu_g_rel,
        exp=exp,
        centred=centred,
        weights=weights,
        basis=vt[:rank].T,
        span=vt[: int(np.sum(sing > top * 1e-13))].T,
        singular_values=sing[:rank],
        tolerance=tol,
        trace_sigma_b=float(np.sum(weights * np.einsum("ij,ij->i", centred, centred))),
        conventions=(global_mean, between, rtol),
        gram=gram,
    )


def coincide_reason(geom):
    """Why the keys of the centred class means are undefined when every mean sits at one point (else None)."""
    if geom.rank:
        return None
    return (f"all class means coincide (between-class rank 0 at tolerance {np.ldexp(geom.tolerance, geom.exp):.3g}), "
            "so NC1 and every key of the centred class means are undefined")


def _require_rank(geom, what):
    if geom.rank == 0:
        raise UndefinedMetricError(
            f"all class means coincide (between-class rank 0 at tolerance {np.ldexp(geom.tolerance, geom.exp):.3g}), "
            f"so {what} is undefined"
        )


# ----------------------------------------------------------------------------- ranks
def effective_rank(singular_values):
    """``exp(-sum_i p_i log p_i)`` with ``p_i = s_i / sum_j s_j`` (Roy & Vetterli 2007): K - 1 for a simplex ETF."""
    s = np.asarray(singular_values, dtype=np.float64)
    if s.size == 0 or s.sum() == 0:
        raise UndefinedMetricError("all class means coincide (between-class rank 0), so their effective rank is "
                                   "undefined")
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-np.sum(p * np.log(p))))


def stable_rank(singular_values):
    """``sum_i s_i^2 / max_i s_i^2``: K - 1 for a simplex ETF, 1 for means along one line."""
    s = np.asarray(singular_values, dtype=np.float64)
    if s.size == 0 or s.max() == 0:
        raise UndefinedMetricError("all class means coincide (between-class rank 0), so their stable rank is "
                                   "undefined")
    top = s.max()
    return float(np.sum((s / top) ** 2))


_FEATURE_RANK_RTOL = 64  # times d * eps: eigenvalues of an accumulated float64 scatter below this are its rounding


def feature_singular_values(scatter):
    """Singular values of the centred feature matrix from its ``d x d`` scatter ``sum_i (h_i - mu)(h_i - mu)^T``
    (any power-of-two scale; the ranks do not depend on it), largest first.

    Eigenvalues below ``64 d eps`` times the largest are the rounding of the
    accumulated scatter (their square roots would be ~1e-7 of the largest
    singular value, not ~1e-16 as from an SVD of the data) and count as zero.
    """
    if scatter is None:
        raise UndefinedMetricError("the features' scatter was not gathered (pass feature_rank=True)")
    lam = np.linalg.eigvalsh(np.asarray(scatter, dtype=np.float64))[::-1]
    top = lam[0] if lam.size else 0.0
    if not top > 0:
        raise UndefinedMetricError("all features coincide (their centred scatter is zero), so their rank is "
                                   "undefined")
    lam = np.where(lam > _FEATURE_RANK_RTOL * lam.size * np.finfo(np.float64).eps * top, lam, 0.0)
    return np.sqrt(lam)


def nc5_value(centred, global_mean, ood_mean):
    """``mean_k |cos(mu_k - mu_G, mu_OOD - mu_G)|`` (NC5 of Ammar et al. 2024, centred on the ID global mean)."""
    direction = np.asarray(ood_mean, dtype=np.float64) - np.asarray(global_mean, dtype=np.float64)
    size = np.linalg.norm(direction)
    if not size > 0:
        raise UndefinedMetricError("the mean of the OOD features is the ID global mean, so NC5 is undefined")
    norms = np.linalg.norm(centred, axis=1)
    if not np.all(norms > 0):
        raise UndefinedMetricError("a centred class mean is zero, so its cosine with the OOD mean (NC5) is undefined")
    return float(np.mean(np.abs(centred @ direction) / (norms * size)))


# ----------------------------------------------------------------------------- NC1
def nc1_geometry(stats, geom):
    """The geometry NC1 is computed in: the one the second pass gathered its statistics for, when the
    conventions match (its basis diagonalises them exactly; its rank is cut at ``geom``'s tolerance), else
    ``geom``."""
    own = getattr(stats, "nc1_geometry", None)
    if own is None or own.conventions != geom.conventions or getattr(stats, "_gram", None) is None \
            or stats._gram.ndim == 2:  # a full projected scatter serves any basis: use the exact means
        return geom
    tol = float(np.ldexp(geom.tolerance, geom.exp - own.exp))
    keep = int(np.sum(own.singular_values > tol))
    if keep == own.rank:
        return own
    return replace(own, basis=own.basis[:, :keep], singular_values=own.singular_values[:keep],
                   tolerance=tol)


def nc1_value(stats, geom, normalize=True):
    geom = nc1_geometry(stats, geom)
    _require_rank(geom, "NC1")
    total, pexp = stats.weighted_projection(geom.basis, geom.singular_values)
    # a sum of squares: rounding of the exact-mean corrections can leave -1e-49 where it is 0
    value = max(0.0, float(np.ldexp(total / stats.n_within_rows, 2 * (pexp - geom.exp))))
    k = stats.groups.n_classes  # (not stats.means: that builds the absolute means, K x d)
    return value / k if normalize else value


def trace_quotient_value(stats, geom):
    within, wexp = stats.total_within()
    if geom.trace_sigma_b == 0:
        raise UndefinedMetricError("all class means coincide (tr Sigma_B = 0), so the trace quotient is undefined")
    ratio = within / stats.n_within_rows / geom.trace_sigma_b
    return float(np.ldexp(ratio, 2 * (wexp - geom.exp)))


def pairwise_sq_distances(vectors, gram=None):
    """``||v_i - v_j||^2`` for all pairs: a Gram product, with cancelling pairs recomputed from differences.

    ``gram``: ``vectors @ vectors.T``, when the caller has it (used when the
    entries of ``vectors`` are below 1 in magnitude, as they are then squared
    unscaled).
    """
    vectors, exp = scaled(vectors)
    if exp:
        return np.ldexp(pairwise_sq_distances(vectors), 2 * exp)
    gram = vectors @ vectors.T if gram is None else gram
    sq = np.diag(gram).copy()
    dist = sq[:, None] + sq[None, :] - 2.0 * gram
    # the expanded square loses ~eps * (|a|^2 + |b|^2) / |a - b|^2 relative digits; redo the close pairs exactly
    suspect = dist <= 1e-6 * (sq[:, None] + sq[None, :])
    np.fill_diagonal(suspect, False)
    i, j = np.nonzero(np.triu(suspect))
    step = max(1, (1 << 22) // max(1, vectors.shape[1]))  # bounded temporaries however many pairs
    for start in range(0, i.size, step):
        a, b = i[start : start + step], j[start : start + step]
        diff = vectors[a] - vectors[b]
        exact = np.einsum("ij,ij->i", diff, diff)
        dist[a, b] = exact
        dist[b, a] = exact
    np.fill_diagonal(dist, 0.0)
    return np.maximum(dist, 0.0)


def cross_sq_distances(A, B):
    """``||a_i - b_j||^2`` between the rows of two sets (entries below 1 in magnitude, as ``geom.centred``):
    the expanded product, with the pairs it cancels on recomputed from differences (as
    :func:`pairwise_sq_distances`)."""
    sq_a, sq_b = np.einsum("ij,ij->i", A, A), np.einsum("ij,ij->i", B, B)
    dist = sq_a[:, None] + sq_b[None, :] - 2.0 * (A @ B.T)
    i, j = np.nonzero(dist <= 1e-6 * (sq_a[:, None] + sq_b[None, :]))
    step = max(1, (1 << 22) // max(1, A.shape[1]))
    for start in range(0, i.size, step):
        a, b = i[start : start + step], j[start : start + step]
        diff = A[a] - B[b]
        dist[a, b] = np.einsum("ij,ij->i", diff, diff)
    return np.maximum(dist, 0.0)


def cdnv_matrix_tiled(stats, geom, power=1.0, tile=2896):
    """The pairwise CDNV in the data's units, filled one ``tile x tile`` block at a time, so that the
    ``K x K`` result is the only array of its size (8.6 GB at ``K = 32 768``; :func:`cdnv_table` holds
    several). Pairs whose means coincide (see :func:`cdnv_table`) are NaN. Returns ``(matrix, n_close,
    first)``: how many such pairs, and the indices of the first.
    """
    within, wexp = stats.within_trace()
    variances = within / stats.counts
    vectors, vexp = scaled(geom.centred)
    k = vectors.shape[0]
    floor = (2.0 * geom.tolerance**2 / float(np.min(geom.weights)) if geom.weights.size else 0.0) * 4.0**-vexp
    factor = np.exp2(2.0 * (wexp - power * (geom.exp + vexp)))
    matrix = np.empty((k, k))
    n_close, first = 0, None
    for r0 in range(0, k, tile):
        r = slice(r0, min(r0 + tile, k))
        for c0 in range(0, k, tile):
            c = slice(c0, min(c0 + tile, k))
            dist = pairwise_sq_distances(vectors[r]) if r0 == c0 else cross_sq_distances(vectors[r], vectors[c])
            block = matrix[r, c]
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                np.divide(variances[r, None] + variances[None, c], 2.0 * dist**power, out=block)
            block *= factor
            close = dist <= floor
            if r0 == c0:
                np.fill_diagonal(close, False)
                np.fill_diagonal(block, np.nan)
            if close.any():
                n_close += int(close.sum())
                if first is None:
                    i, j = np.argwhere(close)[0]
                    first = (r0 + int(i), c0 + int(j))
                block[close] = np.nan
    return matrix, n_close // 2, first


def cdnv_table(stats, geom, power=1.0, gram=None):
    """The pairwise CDNV, scaled: ``(terms (K, K), e, close (K, K))`` with true values ``terms * 2**e``.

    ``terms[a, b] = (sigma_a^2 + sigma_b^2) / (2 ||mu_a - mu_b||^(2 power))``
    (NaN diagonal); ``close`` marks the pairs closer than the geometry's
    tolerance, one point to the resolution of the data (a weighted singular
    value of two means ``delta`` apart is about ``delta sqrt(w / 2)``).
    ``gram``: the Gram of ``geom.centred``, when the caller has it.
    """
    within, wexp = stats.within_trace()
    variances = within / stats.counts
    dist = pairwise_sq_distances(geom.centred, gram)
    floor = 2.0 * geom.tolerance**2 / float(np.min(geom.weights)) if geom.weights.size else 0.0
    close = dist <= floor
    np.fill_diagonal(close, False)
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = (variances[:, None] + variances[None, :]) / (2.0 * dist**power)
    np.fill_diagonal(terms, np.nan)
    # terms carry 4^wexp / 4^(power * exp)
    return terms, 2.0 * (wexp - power * geom.exp), close


def coincide_names(close, classes=None):
    """The classes of the first pair in ``close`` (for the message that their means coincide)."""
    a, b = np.argwhere(np.triu(close, 1))[0]
    names = (a, b) if classes is None else (classes[a], classes[b])
    return [n.item() if hasattr(n, "item") else n for n in names]


def cdnv_value(stats, geom, power=1.0, classes=None, gram=None):
    """The mean pairwise CDNV (``gram``: the Gram of ``geom.centred``, when the caller has it)."""
    terms, e, close = cdnv_table(stats, geom, power, gram)
    if np.any(close):
        names = coincide_names(close, classes)
        raise UndefinedMetricError(f"the means of classes {names[0]!r} and {names[1]!r} coincide, so the CDNV is undefined")
    iu = np.triu_indices(terms.shape[0], 1)
    return times_pow2(float(np.mean(terms[iu])), e)


def times_pow2(x, e):
    """``x * 2**e`` for a possibly fractional ``e``, overflowing only if the result does."""
    whole = int(np.floor(e))
    return float(np.ldexp(x * np.exp2(e - whole), whole))


# ------------------------------------------------------------------------- NC2, NC3
def gram_error(vectors, what, gram=None):
    """``||V V^T / ||V V^T||_F - E_K||_F`` of the rows of ``vectors`` (``gram``: their Gram, up to a power of 2)."""
    return _gram_error(np.asarray(vectors, dtype=np.float64), what, gram)


def alignment_error(W, centred):
    return _alignment_error(np.asarray(W, dtype=np.float64), np.asarray(centred, dtype=np.float64))


def equinorm_value(vectors, ddof=1, what="vectors"):
    v, _ = scaled(vectors)
    norms = np.linalg.norm(v, axis=1)
    mean = norms.mean()
    if mean == 0:
        raise UndefinedMetricError(f"{what} are all zero, so the coefficient of variation of their norms is undefined")
    if norms.size <= ddof:
        raise UndefinedMetricError(f"{norms.size} norm(s) cannot give a standard deviation with ddof={ddof}")
    return float(norms.std(ddof=ddof) / mean)


def equiangularity_value(vectors, what="vectors", gram=None):
    """Mean ``|cos + 1/(K-1)|`` over distinct pairs (``gram``: the rows' Gram, up to a power of 2)."""
    if gram is None:
        v, _ = scaled(vectors)
        norms = np.linalg.norm(v, axis=1)
    else:
        norms = np.sqrt(np.maximum(np.diag(gram), 0.0))
    k = norms.shape[0]
    if np.any(norms == 0):
        raise UndefinedMetricError(f"one of the {what} is zero, so its angles are undefined")
    if gram is None:
        unit = v / norms[:, None]
        cos = unit @ unit.T
    else:
        cos = gram / norms[:, None] / norms[None, :]
    off = ~np.eye(k, dtype=bool)
    return float(np.mean(np.abs(cos[off] + 1.0 / (k - 1))))


def difference_error(W, centred, squared=False):
    w, _ = scaled(W)
    m, _ = scaled(centred)
    nw, nm = np.linalg.norm(w), np.linalg.norm(m)
    if nw == 0 or nm == 0:
        raise UndefinedMetricError("W or the centred class means are zero, so NC3 (difference form) is undefined")
    value = float(np.linalg.norm(w / nw - m / nm))
    return value**2 if squared else value


def bias_collapse_value(W, b, global_mean):
    """``||W mu_G + b||`` computed without overflow for features of any scale."""
    w, we = scaled(W)
    g, ge = scaled(global_mean)
    z = np.ldexp(w @ g, we + ge) + (0.0 if b is None else b)
    z_s, ze = scaled(z)
    return float(np.ldexp(np.linalg.norm(z_s), ze))


def bias_collapse_scaled(w_s, w_exp, b, global_mean):
    """:func:`bias_collapse_value` of ``W = w_s 2^w_exp`` (already scaled: no second K x d copy)."""
    g, ge = scaled(global_mean)
    z = np.ldexp(w_s @ g, w_exp + ge) + (0.0 if b is None else b)
    z_s, ze = scaled(z)
    return float(np.ldexp(np.linalg.norm(z_s), ze))


def max_abs_cos(means):
    """Largest ``|cos|`` between distinct non-zero (uncentred) class means."""
    v, _ = scaled(means)
    norms = np.linalg.norm(v, axis=1)
    alive = norms > 0
    if alive.sum() < 2:
        raise UndefinedMetricError("fewer than two class means are non-zero, so their angles are undefined")
    unit = v[alive] / norms[alive, None]
    cos = unit @ unit.T
    np.fill_diagonal(cos, 0.0)
    return float(np.max(np.abs(cos)))
