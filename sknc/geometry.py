"""Simplex equiangular tight frames (ETFs) and multi-label prototypes.

A simplex ETF is a set of ``K`` vectors of equal norm whose pairwise cosines
all equal ``-1/(K-1)``; it spans ``K-1`` dimensions and sums to zero.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_random_state

from ._validation import as_float64_matrix
from .exceptions import UndefinedMetricError

__all__ = [
    "simplex_etf",
    "etf_gram",
    "gram_etf_error",
    "etf_alignment_error",
    "multilabel_prototypes",
]


def _check_n_classes(n_classes) -> int:
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)):
        raise TypeError(f"n_classes must be an integer; got {type(n_classes).__name__}.")
    if n_classes < 2:
        raise ValueError(f"n_classes must be at least 2; got {n_classes}.")
    return int(n_classes)


def simplex_etf(n_classes, dim=None, *, norm=1.0, random_state=None):
    """Build a ``K x d`` simplex ETF with rows of norm ``norm``.

    The frame ``sqrt(K/(K-1)) (I - 11^T/K)`` is written in an orthonormal basis of
    the sum-zero subspace (``K-1`` coordinates) and embedded into ``R^d`` by a
    random orthonormal map, so any ``d >= K-1`` works.

    Parameters
    ----------
    n_classes : int
        Number of vectors ``K >= 2``.
    dim : int, optional
        Ambient dimension ``d``; defaults to ``K``. Must satisfy ``d >= K-1``.
    norm : float, default=1.0
        Norm of every row.
    random_state : int, RandomState or None
        Seeds the orthonormal embedding. With ``random_state=None`` and
        ``dim == K`` the canonical centred frame ``sqrt(K/(K-1)) (I - 11^T/K)``
        is returned (no randomness).

    Returns
    -------
    etf : ndarray of shape (n_classes, dim)

    Examples
    --------
    >>> import numpy as np
    >>> from sknc import simplex_etf
    >>> M = simplex_etf(4, 6, random_state=0)
    >>> M.shape
    (4, 6)
    >>> np.round(M @ M.T, 3)  # unit norms, cosines -1/(K-1)
    array([[ 1.   , -0.333, -0.333, -0.333],
           [-0.333,  1.   , -0.333, -0.333],
           [-0.333, -0.333,  1.   , -0.333],
           [-0.333, -0.333, -0.333,  1.   ]])
    """
    k = _check_n_classes(n_classes)
    d = k if dim is None else int(dim)
    if d < k - 1:
        raise ValueError(f"A simplex ETF of {k} vectors needs dim >= K-1 = {k - 1}; got dim={d}.")
    if not np.isfinite(norm) or norm <= 0:
        raise ValueError(f"norm must be a positive finite number; got {norm}.")
    centred = np.sqrt(k / (k - 1)) * (np.eye(k) - np.full((k, k), 1.0 / k))
    if random_state is None and d == k:
        return norm * centred
    # Orthonormal basis of the sum-zero subspace in closed form (Helmert): an SVD's basis of this degenerate
    # subspace depends on the LAPACK build, and so would every seeded frame.
    basis = _helmert_basis(k)  # K x (K-1)
    coords = centred @ basis  # K x (K-1), rows of unit norm
    rng = check_random_state(random_state)
    q, r = np.linalg.qr(rng.standard_normal((d, k - 1)))
    q *= np.sign(np.diag(r))  # Haar-distributed orthonormal columns
    return norm * coords @ q.T


def _helmert_basis(k):
    """Orthonormal columns spanning the vectors of ``R^k`` that sum to zero (the Helmert contrasts)."""
    basis = np.zeros((k, k - 1))
    for j in range(1, k):
        basis[:j, j - 1] = 1.0
        basis[j, j - 1] = -float(j)
        basis[:, j - 1] /= np.sqrt(j * (j + 1.0))
    return basis


def etf_gram(n_classes) -> np.ndarray:
    """The simplex-ETF Gram target ``(I - 11^T/K)/sqrt(K-1)`` (unit Frobenius norm).

    Examples
    --------
    >>> from sknc import etf_gram
    >>> etf_gram(3).round(3)  # (I - 11^T/K) / sqrt(K - 1), unit Frobenius norm
    array([[ 0.471, -0.236, -0.236],
           [-0.236,  0.471, -0.236],
           [-0.236, -0.236,  0.471]])
    """
    k = _check_n_classes(n_classes)
    return (np.eye(k) - np.full((k, k), 1.0 / k)) / np.sqrt(k - 1)


def _abs_max(a) -> float:
    """``max |a|`` (0 when empty, NaN when ``a`` holds one) without an ``|a|`` temporary."""
    a = np.asarray(a)
    return max(float(np.max(a)), -float(np.min(a))) if a.size else 0.0


def _scaled(a):
    """``a`` divided by a power of two so that its largest entry is below 1 (products cannot overflow)."""
    top = _abs_max(a)
    if top == 0.0 or not np.isfinite(top):
        return a
    e = int(np.frexp(top)[1])
    if e == 0:  # already in [0.5, 1): no copy
        return a
    if abs(e) < 1000:  # multiplying by an exact power of two rounds as ldexp does, several times faster
        return a * np.ldexp(1.0, -e)
    return np.ldexp(a, -e)


def _gram_error(vectors, what="the vectors", gram=None):
    """ETF distance of the normalised Gram of (already validated) float64 rows.

    ``gram``: the Gram of the rows divided by any power of two, when the caller has it.
    """
    if gram is None:
        v = _scaled(vectors)
        gram = v @ v.T
    norm = np.linalg.norm(gram)
    if norm == 0:
        raise UndefinedMetricError(f"{what} are all zero, so their distance to a simplex ETF is undefined")
    return float(np.linalg.norm(gram / norm - etf_gram(gram.shape[0])))


def _alignment_error(W, means):
    cross = _scaled(W) @ _scaled(means).T
    norm = np.linalg.norm(cross)
    if norm == 0:
        raise UndefinedMetricError("W M^T is zero (W orthogonal to the centred means), so NC3 is undefined")
    return float(np.linalg.norm(cross / norm - etf_gram(W.shape[0])))


def gram_etf_error(vectors) -> float:
    """Frobenius distance of the normalised Gram matrix to the simplex-ETF Gram.

    ``|| V V^T / ||V V^T||_F - (I - 11^T/K)/sqrt(K-1) ||_F`` for the ``K`` rows of
    ``V``: 0 exactly for a simplex ETF of any scale, at most 2.

    Raises
    ------
    sknc.UndefinedMetricError
        If every row is zero.

    Examples
    --------
    >>> import numpy as np
    >>> from sknc import gram_etf_error, simplex_etf
    >>> round(gram_etf_error(simplex_etf(5, 8, norm=3.0, random_state=0)), 12)
    0.0
    >>> bool(gram_etf_error(np.eye(5)) > 0.1)  # orthogonal vectors are no simplex
    True
    """
    v = as_float64_matrix(vectors, "vectors")
    if v.shape[0] < 2:
        raise ValueError(f"a simplex ETF needs at least 2 vectors; got {v.shape[0]}.")
    return _gram_error(v)


def etf_alignment_error(W, means) -> float:
    """Self-duality in Gram form: ``|| W M^T / ||W M^T||_F - E_K ||_F``.

    ``W`` and ``means`` are both ``K x d``; the rows of ``means`` should be centred.

    Examples
    --------
    >>> from sknc import etf_alignment_error, simplex_etf
    >>> M = simplex_etf(4, 6, random_state=0)
    >>> round(etf_alignment_error(2.0 * M, M), 12)  # W parallel to the means: self-dual
    0.0
    """
    w = as_float64_matrix(W, "W")
    m = as_float64_matrix(means, "means")
    if w.shape != m.shape:
        raise ValueError(f"W has shape {w.shape} but the class means have shape {m.shape}.")
    return _alignment_error(w, m)


def multilabel_prototypes(means, label_sets, scales=None) -> np.ndarray:
    """Tag-wise prototypes ``c_|S| * sum_{k in S} mu_k`` for each label set.

    Parameters
    ----------
    means : array-like of shape (n_classes, d)
        Single-label (ideally centred) class means.
    label_sets : array-like of shape (n_sets, n_classes)
        0/1 indicator of each label set.
    scales : mapping or array-like, optional
        Scale per multiplicity: ``scales[m]`` multiplies the *sum* of the tag means
        of every set of size ``m``. Default: 1 (plain sums).

    Returns
    -------
    prototypes : ndarray of shape (n_sets, d)

    Examples
    --------
    >>> import numpy as np
    >>> from sknc import multilabel_prototypes
    >>> means = np.eye(3)
    >>> multilabel_prototypes(means, [[1, 0, 0], [1, 1, 0]], scales={1: 1.0, 2: 0.75})
    array([[1.  , 0.  , 0.  ],
           [0.75, 0.75, 0.  ]])
    """
    m = as_float64_matrix(means, "means")
    sets = np.asarray(label_sets)
    if sets.ndim != 2 or sets.shape[1] != m.shape[0]:
        raise ValueError(
            f"label_sets must have shape (n_sets, {m.shape[0]}) to match the means; got {sets.shape}."
        )
    if not np.isin(sets, (0, 1)).all():
        raise ValueError("label_sets must be a 0/1 indicator matrix.")
    sets = sets.astype(np.float64)
    protos = sets @ m
    if scales is not None:
        mult = sets.sum(axis=1).astype(int)
        factor = np.array([float(scales[int(q)]) for q in mult])
        protos *= factor[:, None]
    return protos
