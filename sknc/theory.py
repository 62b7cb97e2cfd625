"""Closed-form optima of the unconstrained feature model (UFM).

All formulas use one normalisation, that of Zhu et al. (2021)::

    f(W, H, b) = (1/N) sum_i L(W h_i + b, y_i)
                 + (lambda_W/2) ||W||_F^2 + (lambda_H/2) ||H||_F^2 + (lambda_b/2) ||b||^2

with ``N`` the total number of samples and the feature penalty *not* divided by
``N``. At any optimum with ``lambda_W, lambda_H > 0``, ``lambda_W ||W||^2 =
lambda_H ||H||^2``, so scale-free quantities depend on the product
``lambda_W lambda_H`` only.

Mapping from training code: ``SGD(weight_decay=wd)`` is ``lambda_W = wd``; a batch
term ``c * sum_{i in batch} ||h_i||^2`` added to a batch-mean loss is
``lambda_H = 2 c B / N`` (batch size ``B``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from math import comb

import numpy as np
from scipy.optimize import brentq

__all__ = [
    "BalancedCEOptimum",
    "NonnegativeCEOptimum",
    "PALOptimum",
    "StrongCollapse",
    "balanced_ce_optimum",
    "nonnegative_ce_optimum",
    "pal_optimum",
    "mse_strong_collapse",
    "strong_collapse_errors",
    "network_to_ufm_lambdas",
    "estimator_to_ufm_lambdas",
]


def _positive(name, value, allow_zero=False):
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a real number; got {value!r}.") from exc
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}; got {value!r}.")
    return v


def _count(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer; got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}; got {value}.")
    return int(value)


# ----------------------------------------------------------------- balanced CE
@dataclass(frozen=True)
class BalancedCEOptimum:
    """Global optimum of the balanced CE UFM (Zhu et al. 2021, Theorem 3.1).

    Attributes
    ----------
    collapsed : bool
        True in the regime ``sqrt(n lambda_W lambda_H) >= 1/K`` where ``W = H = 0``.
    margin : float
        Logit margin ``z_k - z_j`` (0 when collapsed).
    w_norm_sq, h_norm_sq : float
        ``||w_k||^2`` per class row and ``||h_i||^2`` per sample.
    W_norm_sq, H_norm_sq : float
        ``||W||_F^2 = K ||w_k||^2`` and ``||H||_F^2 = N ||h||^2``.
    feature_scale : float
        ``h_{k,i} = feature_scale * w_k`` with ``feature_scale = sqrt(lambda_W/(lambda_H n))``.
    objective : float
        Optimal value (``log K`` when collapsed).

    Examples
    --------
    >>> from sknc.theory import balanced_ce_optimum
    >>> opt = balanced_ce_optimum(10, 50, lambda_W=5e-4, lambda_H=5e-4)
    >>> opt.collapsed, round(opt.margin, 4), round(opt.feature_scale, 4)
    (False, 5.6126, 0.1414)
    """

    n_classes: int
    n_per_class: int
    lambda_W: float
    lambda_H: float
    collapsed: bool
    margin: float
    w_norm_sq: float
    h_norm_sq: float
    W_norm_sq: float
    H_norm_sq: float
    feature_scale: float
    objective: float


def balanced_ce_optimum(n_classes, n_per_class, lambda_W, lambda_H):
    """Closed-form optimum of cross-entropy with weight and feature decay, balanced classes.

    Any global minimiser has ``h_{k,i} = sqrt(lambda_W/(lambda_H n)) w_k``, ``W`` a
    simplex ETF and the bias a constant vector (zero if ``lambda_b > 0``). With
    ``x = log(1/sqrt(n lambda_W lambda_H) - (K-1))`` the logit margin,
    ``||w_k||^2 = ((K-1)/K) sqrt(lambda_H n / lambda_W) x`` and
    ``f* = log(1 + (K-1) e^{-x}) + lambda_W K ||w_k||^2``. The optimum is
    ``W = H = 0`` (``f* = log K``) iff ``sqrt(n lambda_W lambda_H) >= 1/K``.

    Examples
    --------
    Below the threshold the features are a scaled simplex ETF; above it
    (``sqrt(n lambda_W lambda_H) >= 1/K``) everything collapses to zero:

    >>> from sknc.theory import balanced_ce_optimum
    >>> opt = balanced_ce_optimum(10, 50, lambda_W=5e-4, lambda_H=5e-4)
    >>> round(opt.margin, 4), round(opt.objective, 4)
    (5.6126, 0.2109)
    >>> big = balanced_ce_optimum(10, 50, lambda_W=2e-2, lambda_H=2e-2)
    >>> big.collapsed, round(big.objective, 6)  # log(10)
    (True, 2.302585)
    """
    k = _count("n_classes", n_classes, 2)
    n = _count("n_per_class", n_per_class, 1)
    lw = _positive("lambda_W", lambda_W)
    lh = _positive("lambda_H", lambda_H)
    root = math.sqrt(n * lw * lh)
    scale = math.sqrt(lw / (lh * n))
    if root >= 1.0 / k:
        return BalancedCEOptimum(k, n, lw, lh, True, 0.0, 0.0, 0.0, 0.0, 0.0, scale, math.log(k))
    margin = math.log(1.0 / root - (k - 1))
    w2 = (k - 1) / k * math.sqrt(lh * n / lw) * margin
    h2 = lw / (lh * n) * w2
    objective = math.log1p((k - 1) * math.exp(-margin)) + lw * k * w2
    return BalancedCEOptimum(k, n, lw, lh, False, margin, w2, h2, k * w2, n * k * h2, scale, objective)


# ---------------------------------------------- non-negative features, imbalanced
@dataclass(frozen=True)
class NonnegativeCEOptimum:
    """Optimum of CE with non-negative features, imbalanced classes and no bias.

    Attributes
    ----------
    margins : ndarray (K,)
        ``s_k``: the class-k logits are ``s_k (e_k - 1/K)``; 0 for collapsed classes.
    mean_norms_sq : ndarray (K,)
        ``||h_k||^2`` of each (collapsed-to-a-point) class feature.
    threshold : float
        ``N^2 K lambda_W lambda_H / (K-1)``: class k collapses iff ``n_k <= threshold``.
    minority_collapsed : ndarray of bool (K,)
    complete_collapse : bool
        Every class collapsed: ``W = H = 0`` and ``f* = log K``.
    objective : float

    Examples
    --------
    >>> from sknc.theory import nonnegative_ce_optimum
    >>> opt = nonnegative_ce_optimum([500, 500, 20, 20], lambda_W=5e-3, lambda_H=5e-3)
    >>> opt.minority_collapsed.tolist(), opt.complete_collapse
    ([False, False, True, True], False)
    """

    class_counts: np.ndarray
    lambda_W: float
    lambda_H: float
    margins: np.ndarray
    mean_norms_sq: np.ndarray
    threshold: float
    minority_collapsed: np.ndarray
    complete_collapse: bool
    H_norm_sq: float
    W_norm_sq: float
    objective: float

    def classifier(self, class_means):
        """Optimal classifier from class means ``h_k`` (rows, ``K x d``).

        ``w_k = sqrt(lambda_H / (K (K-1) lambda_W)) (K sqrt(n_k) h_k - sum_m sqrt(n_m) h_m)``.
        """
        means = np.asarray(class_means, dtype=np.float64)
        k = len(self.class_counts)
        if means.ndim != 2 or means.shape[0] != k:
            raise ValueError(f"class_means must have shape ({k}, d); got {means.shape}.")
        v = np.sqrt(self.class_counts)[:, None] * means
        return math.sqrt(self.lambda_H / (k * (k - 1) * self.lambda_W)) * (k * v - v.sum(axis=0))


def nonnegative_ce_optimum(class_counts, lambda_W, lambda_H):
    """Closed-form optimum of the non-negative (ReLU) UFM with CE and imbalanced classes (Dang et al. 2024).

    Class means are orthogonal with lengths depending on ``n_k``. With
    ``c_k = N sqrt(lambda_W lambda_H (K-1)/(K n_k))`` the margin is
    ``s_k = log((K-1)(1/c_k - 1))`` when positive and 0 otherwise (minority
    collapse), and ``||h_k||^2 = s_k sqrt(lambda_W (K-1) / (K lambda_H n_k))``.

    This uses the rescaling-invariant margin. The official code's ``M_k`` depends
    on ``lambda_W`` alone (it violates the invariance under ``W -> aW, H -> H/a``),
    agreeing with this formula only when ``lambda_W = lambda_H``; sknc follows
    the formula that the constrained UFM optimum satisfies numerically.

    Parameters
    ----------
    class_counts : array-like of int, shape (K,)
    lambda_W, lambda_H : float > 0

    Examples
    --------
    Classes with at most ``threshold`` samples lose their margin (minority
    collapse):

    >>> from sknc.theory import nonnegative_ce_optimum
    >>> opt = nonnegative_ce_optimum([500, 500, 20, 20], lambda_W=5e-3, lambda_H=5e-3)
    >>> round(opt.threshold, 1)
    36.1
    >>> opt.margins[2:].tolist(), opt.minority_collapsed.tolist()
    ([0.0, 0.0], [False, False, True, True])
    """
    counts = np.asarray(class_counts)
    if counts.ndim != 1 or counts.size < 2:
        raise ValueError(f"class_counts must be a 1-D array of at least 2 counts; got shape {counts.shape}.")
    if not np.issubdtype(counts.dtype, np.integer) or np.any(counts < 1):
        raise ValueError("class_counts must be positive integers.")
    counts = counts.astype(np.float64)
    lw = _positive("lambda_W", lambda_W)
    lh = _positive("lambda_H", lambda_H)
    k = counts.size
    n_total = counts.sum()
    c = n_total * np.sqrt(lw * lh * (k - 1) / (k * counts))
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = (k - 1) * (1.0 / c - 1.0)
        margins = np.where(inside > 1.0, np.log(np.where(inside > 1.0, inside, 1.0)), 0.0)
    norms_sq = margins * np.sqrt(lw * (k - 1) / (k * lh * counts))
    threshold = n_total**2 * k * lw * lh / (k - 1)
    collapsed = counts <= threshold
    h_norm = float(np.sum(counts * norms_sq))
    loss = float(np.sum(counts * np.log1p((k - 1) * np.exp(-margins))) / n_total)
    return NonnegativeCEOptimum(
        class_counts=counts.astype(int),
        lambda_W=lw,
        lambda_H=lh,
        margins=margins,
        mean_norms_sq=norms_sq,
        threshold=float(threshold),
        minority_collapsed=collapsed,
        complete_collapse=bool(collapsed.all()),
        H_norm_sq=h_norm,
        W_norm_sq=lh / lw * h_norm,
        objective=loss + lh * h_norm,
    )


# ----------------------------------------------------------------------- PAL
@dataclass(frozen=True)
class PALOptimum:
    """Optimum of the pick-all-labels UFM, balanced within each multiplicity (Li et al. 2024).

    Attributes
    ----------
    collapsed : bool
        ``W = H = 0`` is optimal.
    omega_sq : float
        ``||w_k||^2``; ``W`` is a simplex ETF.
    margins, betas, scales, feature_norms_sq : dict
        Per multiplicity ``m < K``: in-set minus out-of-set logit margin ``x_m``,
        ``beta_m`` in ``h_S = beta_m sum_{k in S} w_k``, the tag-wise scale
        ``c_m = m x_m / x_1`` in ``h_S = c_m mean_{k in S} h_{k}``, and ``||h_S||^2``.
    objective : float

    Examples
    --------
    >>> from sknc.theory import pal_optimum
    >>> opt = pal_optimum(4, {1: 400, 2: 600}, lambda_W=5e-4, lambda_H=5e-5)
    >>> opt.collapsed, sorted(opt.margins)
    (False, [1, 2])
    """

    n_classes: int
    multiplicity_counts: dict
    loss: str
    lambda_W: float
    lambda_H: float
    collapsed: bool
    omega_sq: float
    margins: dict = field(default_factory=dict)
    betas: dict = field(default_factory=dict)
    scales: dict = field(default_factory=dict)
    feature_norms_sq: dict = field(default_factory=dict)
    W_norm_sq: float = 0.0
    H_norm_sq: float = 0.0
    objective: float = 0.0


def _pal_weight(loss, m):
    return float(m) if loss == "pal" else 1.0


def pal_optimum(n_classes, multiplicity_counts, lambda_W, lambda_H, loss="pal"):
    """Solve the stationarity system of the PAL UFM for the M-lab ETF.

    Every label set of size ``m`` must hold the same number of samples (the
    counts per set may differ across multiplicities). With ``kappa =
    lambda_H N (K-1)/(K^2 omega^2)`` and ``gamma_m = m`` (summed PAL) or 1
    (``'pal_mean'``, the sum divided by ``|S|``), the margins solve
    ``1/(m e^{x_m} + K - m) = kappa (m/gamma_m) x_m`` and the classifier norm solves
    ``omega^4 = (lambda_H/lambda_W) sum_m N_m m (K-m)(K-1) x_m^2 / K^3``.

    Parameters
    ----------
    n_classes : int
    multiplicity_counts : dict {m: N_m}
        Total number of samples of each multiplicity ``m`` (``1 <= m <= K``).
        Multiplicity 1 must be present for the scales ``c_m``.
    lambda_W, lambda_H : float > 0
    loss : {'pal', 'pal_mean'}

    Returns
    -------
    PALOptimum

    Examples
    --------
    Four labels, 400 single-label and 600 two-label samples. The scale ``c_2``
    says how much longer a two-label feature is than the average of its two
    single-label class means (the tag-wise-average rule uses it):

    >>> from sknc.theory import pal_optimum
    >>> opt = pal_optimum(4, {1: 400, 2: 600}, lambda_W=5e-4, lambda_H=5e-5)
    >>> round(opt.margins[1], 4), round(opt.margins[2], 4)
    (6.0091, 5.4218)
    >>> round(opt.scales[1], 4), round(opt.scales[2], 4)
    (1.0, 1.8045)
    """
    k = _count("n_classes", n_classes, 2)
    lw = _positive("lambda_W", lambda_W)
    lh = _positive("lambda_H", lambda_H)
    if loss not in ("pal", "pal_mean"):
        raise ValueError(f"loss must be 'pal' or 'pal_mean'; got {loss!r}.")
    counts = {}
    for m, c in dict(multiplicity_counts).items():
        m = _count("multiplicity", m, 1)
        if m > k:
            raise ValueError(f"multiplicity {m} exceeds n_classes={k}.")
        c = _count(f"multiplicity_counts[{m}]", c, 0)
        if c:
            counts[m] = c
    if 1 not in counts:
        raise ValueError("multiplicity 1 must be present: the tag-wise scales are relative to single-label means.")
    n_total = sum(counts.values())
    active = sorted(m for m in counts if m < k)
    trivial = sum(counts[m] * _pal_weight(loss, m) * math.log(k) for m in counts) / n_total

    def margins_for(omega_sq):
        kappa = lh * n_total * (k - 1) / (k**2 * omega_sq)
        xs = {}
        for m in active:
            slope = kappa * m / _pal_weight(loss, m)
            # Either bound makes the left side < the right (< 1/K < 2/K, or <= slope <= slope*x).
            hi = min(2.0 / (k * slope), max(1.0, -math.log(slope)))
            # 1/(m e^x + K - m) written with e^{-x} so that large x cannot overflow
            xs[m] = brentq(
                lambda x: math.exp(-x) / (m + (k - m) * math.exp(-x)) - slope * x, 0.0, hi, xtol=1e-300, rtol=1e-15, maxiter=500
            )
        return xs

    def balance(log_omega_sq):
        omega_sq = math.exp(log_omega_sq)
        xs = margins_for(omega_sq)
        rhs = lh / lw * sum(counts[m] * m * (k - m) * (k - 1) * xs[m] ** 2 / k**3 for m in active)
        return math.log(rhs) - 2.0 * log_omega_sq

    zero = PALOptimum(k, counts, loss, lw, lh, True, 0.0, objective=trivial)
    lo, hi = -60.0, 60.0
    if balance(lo) <= 0:  # even at tiny scale the balance cannot be met: only W = H = 0
        return zero
    if balance(hi) >= 0:
        raise ValueError("PAL system has no root in omega^2 < e^60; regularisation too small for float64.")
    log_omega_sq = brentq(balance, lo, hi, xtol=1e-15, rtol=1e-15)
    omega_sq = math.exp(log_omega_sq)
    xs = margins_for(omega_sq)
    betas = {m: xs[m] * (k - 1) / (k * omega_sq) for m in active}
    norms = {m: betas[m] ** 2 * omega_sq * m * (k - m) / (k - 1) for m in active}
    scales = {m: m * xs[m] / xs[1] for m in active}
    loss_value = sum(counts[m] * _pal_weight(loss, m) * math.log(m + (k - m) * math.exp(-xs[m])) for m in active)
    if k in counts:
        loss_value += counts[k] * _pal_weight(loss, k) * math.log(k)
    objective = loss_value / n_total + lw * k * omega_sq
    if objective >= trivial:
        return zero
    h_norm = sum(counts[m] * norms[m] for m in active)
    return PALOptimum(
        k, counts, loss, lw, lh, False, omega_sq, xs, betas, scales, norms, k * omega_sq, h_norm, objective
    )


def label_set_counts_balanced(sets_multiplicity, set_counts, n_classes):
    """True when every label set of each present multiplicity occurs, equally often."""
    for m in np.unique(sets_multiplicity):
        mine = set_counts[sets_multiplicity == m]
        if m < n_classes and (mine.size != comb(n_classes, int(m)) or np.any(mine != mine[0])):
            return False
    return True


# ----------------------------------------------------------------------- MSE
@dataclass(frozen=True)
class StrongCollapse:
    """Strong neural collapse of the unregularised MSE UFM (Mixon et al. 2022).

    ``W W^T = sqrt(N) (I - 11^T/C)``, every class-c feature equals ``w_c/sqrt(N)``
    and ``b = 1/C``; then ``W H + b 1^T`` interpolates the one-hot targets and
    ``||W||_F^2 = ||H||_F^2 = sqrt(N) (C-1)``.

    Examples
    --------
    >>> from sknc.theory import mse_strong_collapse
    >>> opt = mse_strong_collapse(3, 4)
    >>> float(opt.W_norm_sq), opt.bias.tolist() == [1 / 3] * 3
    (4.0, True)
    """

    n_classes: int
    n_per_class: int
    gram: np.ndarray
    bias: np.ndarray
    W_norm_sq: float
    H_norm_sq: float
    objective: float = 0.0


def mse_strong_collapse(n_classes, n_per_class):
    """The strong-NC configuration of the MSE UFM with ``C`` classes of ``N`` samples.

    Examples
    --------
    >>> import numpy as np
    >>> from sknc.theory import mse_strong_collapse
    >>> opt = mse_strong_collapse(3, 4)  # W W^T = sqrt(4) (I - 11^T/3)
    >>> np.round(opt.gram, 3)
    array([[ 1.333, -0.667, -0.667],
           [-0.667,  1.333, -0.667],
           [-0.667, -0.667,  1.333]])
    """
    c = _count("n_classes", n_classes, 2)
    n = _count("n_per_class", n_per_class, 1)
    centring = np.eye(c) - np.full((c, c), 1.0 / c)
    return StrongCollapse(c, n, math.sqrt(n) * centring, np.full(c, 1.0 / c), math.sqrt(n) * (c - 1), math.sqrt(n) * (c - 1))


def strong_collapse_errors(W, H, b, y):
    """The three distances to strong NC plotted in Mixon et al.'s Figure 1.

    Returns
    -------
    dict
        ``gram``: ``||W W^T - sqrt(N)(I - 11^T/C)||_F``; ``features``:
        ``||H - W[y]/sqrt(N)||_F / ||H||_F`` (rows of ``H`` are samples);
        ``bias``: ``||b - 1/C||``.

    Examples
    --------
    Build the strong-NC configuration by hand (a scaled simplex ETF), then move
    the features off it:

    >>> import numpy as np
    >>> from sknc import simplex_etf
    >>> from sknc.theory import strong_collapse_errors
    >>> C, N = 3, 4
    >>> W = np.sqrt(np.sqrt(N) * (C - 1) / C) * simplex_etf(C, 5)
    >>> y = np.repeat(np.arange(C), N)
    >>> H, b = W[y] / np.sqrt(N), np.full(C, 1 / C)
    >>> errors = strong_collapse_errors(W, H, b, y)
    >>> [round(float(v), 12) for v in errors.values()]
    [0.0, 0.0, 0.0]
    >>> round(float(strong_collapse_errors(W, H + 0.01, b, y)["features"]), 4)
    0.0387
    """
    W = np.asarray(W, dtype=np.float64)
    H = np.asarray(H, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    y = np.asarray(y)
    classes, codes = np.unique(y, return_inverse=True)
    counts = np.bincount(codes)
    if np.any(counts != counts[0]):
        raise ValueError("strong neural collapse is defined for balanced classes; got counts " f"{counts.tolist()}.")
    c, n = len(classes), int(counts[0])
    if W.shape[0] != c or H.shape != (len(y), W.shape[1]) or b.shape != (c,):
        raise ValueError(f"shapes do not match: W {W.shape}, H {H.shape}, b {b.shape}, {c} classes.")
    ref = mse_strong_collapse(c, n)
    h_norm = np.linalg.norm(H)
    if h_norm == 0:
        raise ValueError("H is zero, so the relative feature error is undefined.")
    return {
        "gram": float(np.linalg.norm(W @ W.T - ref.gram)),
        "features": float(np.linalg.norm(H - W[codes] / math.sqrt(n)) / h_norm),
        "bias": float(np.linalg.norm(b - ref.bias)),
    }


def network_to_ufm_lambdas(weight_decay, feature_decay, batch_size, n_samples):
    """Map a network's regularisation to the UFM normalisation of this module.

    ``weight_decay`` as in ``torch.optim.SGD(weight_decay=...)`` (the penalty
    ``(wd/2)||W||^2``) and ``feature_decay`` as the coefficient ``c`` of a per-batch
    term ``c sum_{i in batch} ||h_i||^2`` added to the batch-mean loss. Returns
    ``(lambda_W, lambda_H) = (wd, 2 c B / N)``.

    Examples
    --------
    SGD weight decay 5e-4 and a feature penalty ``1e-4 sum ||h_i||^2`` per batch
    of 128, on 50 000 training samples:

    >>> from sknc.theory import network_to_ufm_lambdas
    >>> network_to_ufm_lambdas(5e-4, 1e-4, batch_size=128, n_samples=50_000)
    (0.0005, 5.12e-07)
    """
    return _positive("weight_decay", weight_decay, True), 2.0 * _positive(
        "feature_decay", feature_decay, True
    ) * _count("batch_size", batch_size) / _count("n_samples", n_samples)


def estimator_to_ufm_lambdas(lambda_W, lambda_H, n_samples):
    """``PALClassifier``'s regularisation in the UFM normalisation of this module.

    The estimator penalises ``lambda_H/2 ||h_i||^2`` per sample (averaged over
    each batch, so its strength does not depend on ``N``); the UFM's
    ``lambda_H^UFM/2 ||H||_F^2`` sums over the ``N`` samples added to a mean
    loss. Equal objectives need ``lambda_H^UFM = lambda_H / N``; weight decay
    maps one to one. Returns ``(lambda_W, lambda_H / N)``.

    Examples
    --------
    >>> from sknc.theory import estimator_to_ufm_lambdas
    >>> lambda_W, lambda_H = estimator_to_ufm_lambdas(5e-4, 0.3, n_samples=1500)
    >>> lambda_W, round(lambda_H, 12)  # 0.3 / 1500
    (0.0005, 0.0002)
    """
    n = _count("n_samples", n_samples)
    return _positive("lambda_W", lambda_W, True), _positive("lambda_H", lambda_H, True) / n
