"""The unconstrained feature model (UFM) as a scikit-learn style estimator."""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
import pandas as pd
import torch
from scipy.optimize import minimize
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from . import theory
from ._validation import check_device, group_labels, untensor
from .exceptions import NCWarning
from .metrics import nc_report, tagwise_average

__all__ = ["UFMSolver"]

_HISTORY_METRICS = ("nc1", "nc2_h", "nc2_w", "nc3", "tagwise_angle")


def _relative_gap(measured, expected):
    """Relative difference, or absolute where the expected value is 0."""
    expected = float(expected)
    diff = abs(float(measured) - expected)
    return diff / abs(expected) if expected != 0 else diff


class UFMSolver(BaseEstimator):
    """Solve the unconstrained feature model and compare the optimum with theory.

    Minimises, over free features ``H`` (one row per sample), a classifier ``W``
    and a bias ``b``::

        (1/N) sum_i L(W h_i + b, S_i) + lambda_W/2 ||W||^2 + lambda_H/2 ||H||^2 + lambda_b/2 ||b||^2

    (the normalisation of :mod:`sknc.theory`).

    Parameters
    ----------
    loss : {'ce', 'pal', 'pal_mean', 'mse'}, default='ce'
        Cross-entropy (1-D labels); pick-all-labels ``sum_{k in S} CE(z, k)``;
        the same divided by ``|S|``; or ``0.5 ||z - y||^2`` against one-hot or
        indicator targets.
    label_smoothing : float in [0, 1), default=0.0
        Label smoothing of every picked cross-entropy term (``'ce'``, ``'pal'``,
        ``'pal_mean'``; see :class:`sknc.PALLoss` for the formula).
    focal_gamma : float >= 0, default=0.0
        Focal exponent of every picked term (same losses). No closed form covers
        smoothing or focal terms, so ``theory_`` is None with either.
    feature_dim : int, optional
        Feature dimension ``d``; default ``K``. Must be at least ``K - 1`` (``K`` for
        non-negative features, whose optimum is an orthogonal frame).
    lambda_W, lambda_H, lambda_b : float, default=5e-4, 5e-4, 0.0
        Weight, feature and bias decay.
    bias : bool, default=True
        Learn a bias ``b``.
    nonnegative : bool, default=False
        Constrain ``H >= 0`` (ReLU features). Enforced by bound constraints
        (L-BFGS-B) or projection (gd, adam), so the constrained optimum is reached.
    solver : {'lbfgs', 'gd', 'adam'}, default='lbfgs'
        'gd' is plain gradient descent with a fixed step, for gradient-flow studies.
    lr : float, optional
        Step size of 'gd' (default 0.1) and 'adam' (default 1e-2); unused by 'lbfgs'.
    max_iter : int, default=10000
    tol : float, default=1e-8
        Converged when the Euclidean norm of the (projected) gradient is below ``tol``.
    init : {'normal', 'norm'}, default='normal'
        'normal': entries ``N(0, init_scale^2)``. Non-negative features take ``|.|``
        and start on disjoint coordinate blocks per class, the support pattern of
        the constrained optimum.
        'norm': random directions scaled so that ``||W||_F = ||H||_F = init_scale``
        (Mixon et al.'s small-initialisation experiment). ``b`` starts at 0.
    init_scale : float, default=0.1
    record_every : int, default=0
        Every this many iterations (and at the end), record objective, gradient
        norm and NC metrics in ``history_``; 0 records only the end point.
    reduce : {'auto', True, False}, default='auto'
        Solve over one free feature per *label set* instead of per sample
        (exact, see the Notes); ``'auto'`` reduces unless ``solver='gd'``
        (gradient-flow studies follow every sample's path) or ``lambda_H=0``.
    device : str or torch.device, default='cpu'
        Torch device for the objective and gradient ('cuda' for a GPU).
    dtype : {'float64', 'float32'}, default='float64'
    random_state : int, RandomState or None

    Attributes
    ----------
    W_ : ndarray (K, d)
    H_ : ndarray (n_samples, d)
    b_ : ndarray (K,)
    classes_ : ndarray
        Class labels (1-D ``Y``) or indicator columns.
    objective_ : float
    n_iter_ : int
    converged_ : bool
    grad_norm_ : float
    history_ : pandas.DataFrame
        ``iteration``, ``objective``, ``grad_norm`` and NC metrics from
        :func:`sknc.nc_report` (NaN where a metric is undefined, e.g. ``H = 0``).
    theory_ : object or None
        The matching closed form from :mod:`sknc.theory` (``None`` when the setting
        has none: e.g. imbalanced CE with a bias, unbalanced label sets).
    theory_gap_ : dict or None
        Relative differences (absolute where the theory value is 0) between the
        fitted solution and ``theory_``: ``objective``, norms, margins, scales.

    Notes
    -----
    **Label-set reduction.** Fix ``W`` and ``b``. Sample ``i`` enters the
    objective only through ``L(W h_i + b, S_i)/N + lambda_H/2 ||h_i||^2``, a
    strictly convex function of ``h_i`` when ``lambda_H > 0`` (on ``H >= 0`` too)
    that depends on ``i`` only through its label set ``S_i``. Its minimiser is
    therefore unique and shared by every sample of a set, so at any optimum
    (where each ``h_i`` minimises its term given the optimal ``W, b``) all
    samples of a set have one feature ``h_S``. Minimising over ``(W, b, h_S)``
    with the weights ``n_S`` (samples per set),
    ``sum_S n_S L(W h_S + b, S)/N + lambda_W/2 ||W||^2 + lambda_H/2 sum_S n_S ||h_S||^2 + ...``,
    thus gives the same optimum at a cost independent of ``N``. The solver
    works with ``u_S = sqrt(n_S) h_S``, which gives the reduced problem the
    conditioning (and gradient norm) of the per-sample one.

    Examples
    --------
    >>> import numpy as np
    >>> from sknc import UFMSolver
    >>> y = np.repeat(np.arange(4), 5)
    >>> ufm = UFMSolver(lambda_W=5e-3, lambda_H=5e-3, feature_dim=6, random_state=0).fit(y)
    >>> bool(ufm.theory_gap_["objective"] < 1e-8)
    True
    """

    _parameter_constraints = {
        "loss": [StrOptions({"ce", "pal", "pal_mean", "mse"})],
        "label_smoothing": [Interval(Real, 0, 1, closed="left")],
        "focal_gamma": [Interval(Real, 0, None, closed="left")],
        "feature_dim": [Interval(Integral, 1, None, closed="left"), None],
        "lambda_W": [Interval(Real, 0, None, closed="left")],
        "lambda_H": [Interval(Real, 0, None, closed="left")],
        "lambda_b": [Interval(Real, 0, None, closed="left")],
        "bias": ["boolean"],
        "nonnegative": ["boolean"],
        "solver": [StrOptions({"lbfgs", "gd", "adam"})],
        "lr": [Interval(Real, 0, None, closed="neither"), None],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "init": [StrOptions({"normal", "norm"})],
        "init_scale": [Interval(Real, 0, None, closed="neither")],
        "record_every": [Interval(Integral, 0, None, closed="left")],
        "reduce": [StrOptions({"auto"}), "boolean"],
        "device": [str, torch.device],
        "dtype": [StrOptions({"float64", "float32"})],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        loss="ce",
        label_smoothing=0.0,
        focal_gamma=0.0,
        feature_dim=None,
        lambda_W=5e-4,
        lambda_H=5e-4,
        lambda_b=0.0,
        bias=True,
        nonnegative=False,
        solver="lbfgs",
        lr=None,
        max_iter=10000,
        tol=1e-8,
        init="normal",
        init_scale=0.1,
        record_every=0,
        reduce="auto",
        device="cpu",
        dtype="float64",
        random_state=None,
    ):
        self.loss = loss
        self.label_smoothing = label_smoothing
        self.focal_gamma = focal_gamma
        self.feature_dim = feature_dim
        self.lambda_W = lambda_W
        self.lambda_H = lambda_H
        self.lambda_b = lambda_b
        self.bias = bias
        self.nonnegative = nonnegative
        self.solver = solver
        self.lr = lr
        self.max_iter = max_iter
        self.tol = tol
        self.init = init
        self.init_scale = init_scale
        self.record_every = record_every
        self.reduce = reduce
        self.device = device
        self.dtype = dtype
        self.random_state = random_state

    # ------------------------------------------------------------------ setup
    def _targets(self, Y):
        groups = group_labels(Y)
        k = groups.n_classes
        if groups.multilabel:
            if self.loss == "ce":
                raise ValueError("loss='ce' needs 1-D class labels; use loss='pal' or 'pal_mean' for indicator Y.")
            target = groups.sets[groups.group].astype(np.float64)
        else:
            target = np.eye(k)[groups.group]
        return groups, target

    def _check_dims(self, k):
        d = k if self.feature_dim is None else int(self.feature_dim)
        if d < k - 1:
            raise ValueError(f"feature_dim={d} < K-1={k - 1}: the simplex ETF of the optimum needs d >= K-1.")
        if self.nonnegative and d < k:
            raise ValueError(f"feature_dim={d} < K={k}: non-negative features need d >= K for orthogonal class means.")
        return d

    def _initial_point(self, n, k, d, rng, target, weights):
        W = rng.standard_normal((k, d))
        H = rng.standard_normal((n, d))
        if self.nonnegative:
            # The constrained optimum has orthogonal class means on disjoint supports.
            # Starting each class on its own block of coordinates (round-robin; a label
            # set takes the union of its tags' blocks) avoids spurious boundary points
            # where large classes have claimed every coordinate.
            blocks = (np.arange(d)[None, :] % k == np.arange(k)[:, None]).astype(np.float64)
            H *= (target @ blocks) > 0
        if self.init == "norm":
            W *= self.init_scale / np.linalg.norm(W)
            H *= self.init_scale / np.linalg.norm(H)
        else:
            W *= self.init_scale
            H *= self.init_scale
        if self.nonnegative:
            H = np.abs(H)
        U = H * np.sqrt(weights)[:, None]  # u = sqrt(n_S) h_S (identity when every row is one sample)
        b = np.zeros(k)
        return np.concatenate([W.ravel(), U.ravel(), b if self.bias else np.zeros(0)])

    def _objective(self, target, multiplicity, weights, k, n, d):
        """Torch closure computing the objective of a flat parameter vector.

        Row ``r`` of ``H`` stands for ``weights[r]`` samples and is stored as
        ``u_r = sqrt(weights[r]) h_r``; the loss is averaged over all samples.
        """
        lw, lh, lb = float(self.lambda_W), float(self.lambda_H), float(self.lambda_b)
        loss = self.loss
        alpha, gamma = float(self.label_smoothing), float(self.focal_gamma)
        n_total = float(weights.sum())
        inv_sqrt = weights.rsqrt()[:, None]

        def f(theta):
            W = theta[: k * d].view(k, d)
            U = theta[k * d : k * d + n * d].view(n, d)
            H = U * inv_sqrt
            z = H @ W.T
            if self.bias:
                b = theta[k * d + n * d :]
                z = z + b
            if loss == "mse":
                per_sample = 0.5 * ((z - target) ** 2).sum(dim=1)
            elif alpha or gamma:  # per picked label: (1 - p_k)^gamma [(1 - alpha)(-log p_k) - alpha mean_j log p_j]
                per_label = torch.logsumexp(z, dim=1, keepdim=True) - z
                if alpha:
                    per_label = (1 - alpha) * per_label + alpha * per_label.mean(dim=1, keepdim=True)
                if gamma:
                    per_label = (-torch.expm1(z - torch.logsumexp(z, dim=1, keepdim=True))).clamp(min=0) ** gamma \
                        * per_label
                per_sample = (target * per_label).sum(dim=1)
                if loss == "pal_mean":
                    per_sample = per_sample / multiplicity.clamp(min=1)
            else:
                lse = torch.logsumexp(z, dim=1)
                picked = (z * target).sum(dim=1)
                if loss == "pal_mean":  # label-free rows (multiplicity 0) have no loss term
                    per_sample = torch.where(multiplicity > 0, lse - picked / multiplicity.clamp(min=1), 0.0)
                else:  # 'ce' (one-hot) and summed 'pal': |S| lse - sum of picked logits
                    per_sample = multiplicity * lse - picked
            data = (weights * per_sample).sum() / n_total
            value = data + 0.5 * lw * (W * W).sum() + 0.5 * lh * (U * U).sum()
            if self.bias:
                value = value + 0.5 * lb * (b * b).sum()
            return value

        return f

    # -------------------------------------------------------------------- fit
    def fit(self, Y, y=None):
        """Solve the UFM for the label sets in ``Y``.

        Parameters
        ----------
        Y : array-like of shape (n_samples,) or (n_samples, K)
            Class labels or a 0/1 indicator (multi-label). Each row is one sample
            whose feature is a free variable.
        y : ignored

        Returns
        -------
        self
        """
        self._validate_params()
        if self.loss == "mse" and (self.label_smoothing or self.focal_gamma):
            raise ValueError("label_smoothing and focal_gamma apply to the cross-entropy losses ('ce', 'pal', "
                             "'pal_mean'), not to loss='mse'.")
        device = torch.device(check_device(self.device, allow_auto=False))
        groups, sample_target = self._targets(Y)
        n_samples, k = sample_target.shape
        d = self._check_dims(k)
        reduced = self._reduced()
        if reduced:  # one row per label set, weighted by its count (exact: see the Notes)
            target_np = groups.sets.astype(np.float64) if groups.multilabel else np.eye(k)
            weights_np = groups.counts().astype(np.float64)
        else:
            target_np, weights_np = sample_target, np.ones(n_samples)
        n = target_np.shape[0]
        dtype = torch.float64 if self.dtype == "float64" else torch.float32
        rng = check_random_state(self.random_state)
        theta0 = self._initial_point(n, k, d, rng, target_np, weights_np)
        target = torch.as_tensor(target_np, dtype=dtype, device=device)
        multiplicity = target.sum(dim=1)
        weights = torch.as_tensor(weights_np, dtype=dtype, device=device)
        f = self._objective(target, multiplicity, weights, k, n, d)
        h_slice = slice(k * d, k * d + n * d)
        rows = groups.group if reduced else np.arange(n_samples)  # the row of each sample
        inv_sqrt = 1.0 / np.sqrt(weights_np)
        records = []
        threads = torch.get_num_threads()
        if theta0.size < 200_000 and device.type == "cpu":
            torch.set_num_threads(1)  # tiny problems: thread start-up costs more than it saves

        def value_and_grad(theta_np):
            theta = torch.as_tensor(theta_np, dtype=dtype, device=device).requires_grad_(True)
            value = f(theta)
            (grad,) = torch.autograd.grad(value, theta)
            return float(value.detach()), grad.detach().cpu().numpy().astype(np.float64)

        def projected_norm(theta_np, grad):
            if self.nonnegative:
                g = grad.copy()
                h, gh = theta_np[h_slice], g[h_slice]
                gh[(h <= 0) & (gh > 0)] = 0.0  # at the bound, an outward gradient is not a violation
                g[h_slice] = gh
                return float(np.linalg.norm(g))
            return float(np.linalg.norm(grad))

        def features(theta_np):
            """Per-sample features from the flat parameters (rows expanded to their samples)."""
            return (theta_np[h_slice].reshape(n, d) * inv_sqrt[:, None])[rows]

        def record(iteration, theta_np, value=None, grad=None):
            if value is None:
                value, grad = value_and_grad(theta_np)
            row = {"iteration": iteration, "objective": value, "grad_norm": projected_norm(theta_np, grad)}
            row.update(self._metrics(theta_np, features(theta_np), Y, k, n, d))
            records.append(row)

        every = self.record_every
        try:
            if self.solver == "lbfgs":
                theta, n_iter = self._run_lbfgs(theta0, value_and_grad, projected_norm, h_slice, every, record)
                if self.nonnegative:
                    theta, n_iter = self._escape_boundary_saddles(
                        theta, n_iter, groups, k, n, d, rng, value_and_grad, projected_norm, h_slice, reduced
                    )
            else:
                theta, n_iter = self._run_first_order(theta0, f, value_and_grad, projected_norm, dtype, device, h_slice,
                                                      every, record)
            value, grad = value_and_grad(theta)
        finally:
            torch.set_num_threads(threads)
        if not np.isfinite(value):
            from .exceptions import TrainingDivergedError

            raise TrainingDivergedError(
                f"the UFM objective is {value} after {n_iter} iterations; lower lr (solver={self.solver!r}) or "
                "use solver='lbfgs'."
            )
        self.grad_norm_ = projected_norm(theta, grad)
        self.converged_ = bool(self.grad_norm_ <= self.tol)
        if not records or records[-1]["iteration"] != n_iter:
            record(n_iter, theta, value, grad)
        self.W_ = theta[: k * d].reshape(k, d)
        self.H_ = features(theta)
        self.b_ = theta[k * d + n * d :] if self.bias else np.zeros(k)
        self.reduced_ = reduced
        self.objective_ = value
        self.n_iter_ = int(n_iter)
        self.classes_ = groups.classes
        self.n_features_in_ = k
        self._groups = groups
        self.history_ = pd.DataFrame.from_records(records)
        self.theory_ = self._matching_theory(groups, d)
        self.theory_gap_ = None if self.theory_ is None else self._gap(self.theory_, groups, Y)
        if not self.converged_:
            warnings.warn(
                f"UFMSolver stopped after {self.n_iter_} iterations with gradient norm {self.grad_norm_:.3g} "
                f"> tol={self.tol:g}; increase max_iter or tol.",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def _reduced(self):
        if self.reduce == "auto":
            return self.solver != "gd" and float(self.lambda_H) > 0
        if self.reduce and float(self.lambda_H) <= 0:
            raise ValueError("reduce=True needs lambda_H > 0 (otherwise the optimal features need not be shared).")
        return bool(self.reduce)

    def _run_lbfgs(self, theta0, value_and_grad, projected_norm, h_slice, every, record, start_iter=0):
        bounds = None
        if self.nonnegative:
            bounds = [(None, None)] * theta0.size
            bounds[h_slice] = [(0.0, None)] * (h_slice.stop - h_slice.start)
        state = {"it": start_iter}
        if every and start_iter == 0:
            record(0, theta0)

        def callback(intermediate_result):
            state["it"] += 1
            if every and state["it"] % every == 0:
                record(state["it"], intermediate_result.x.copy())

        theta = theta0
        # L-BFGS-B may stop on its line search near the float64 floor; a restart with a
        # fresh curvature memory usually gets the remaining digits.
        for _ in range(4):
            budget = self.max_iter - (state["it"] - start_iter)
            if budget <= 0:
                break
            res = minimize(
                value_and_grad,
                theta,
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                callback=callback,
                options={"maxiter": budget, "maxfun": 20 * budget, "gtol": self.tol / 10, "ftol": 0.0, "maxcor": 30},
            )
            moved = not np.array_equal(res.x, theta)
            theta = res.x
            if projected_norm(theta, res.jac) <= self.tol or not moved:
                break
        return theta, state["it"]

    def _escape_boundary_saddles(self, theta, n_iter, groups, k, n, d, rng, value_and_grad, projected_norm, h_slice,
                                 reduced):
        """Leave spurious KKT points where a class sits at ``h = 0``.

        With ``H >= 0`` a class whose features are all zero is stationary even when
        its true optimum is not (a strict saddle in (W, H) jointly). Re-seed such
        classes and re-solve; keep the result only if the objective drops, so a
        class that really is minority-collapsed stays collapsed.
        """
        value = value_and_grad(theta)[0]
        if groups.multilabel:
            return theta, n_iter
        cls = np.arange(n) if reduced else groups.group  # the class of each row
        for _ in range(2 * k):
            H = theta[h_slice].reshape(n, d)
            alive = H[H > 0]
            if alive.size == 0:
                break
            scale = float(np.sqrt(np.mean(alive**2)))
            dead = [c for c in range(k) if not np.any(H[cls == c] > 0)]
            improved = False
            for c in dead:  # one class at a time: a truly collapsed class must not veto the others
                for _attempt in range(2):
                    trial = theta.copy()
                    Ht = trial[h_slice].reshape(n, d)
                    Wt = trial[: k * d].reshape(k, d)
                    Ht[cls == c] = np.abs(rng.standard_normal(d)) * scale
                    Wt[c] = rng.standard_normal(d) * float(np.sqrt(np.mean(Wt**2)))
                    candidate, it = self._run_lbfgs(
                        trial, value_and_grad, projected_norm, h_slice, 0, None, start_iter=n_iter
                    )
                    cand_value = value_and_grad(candidate)[0]
                    if cand_value < value - 1e-13 * abs(value):
                        theta, value, n_iter, improved = candidate, cand_value, it, True
                        break
                if improved:
                    break
            if not improved:
                break
        return theta, n_iter

    def _run_first_order(self, theta0, f, value_and_grad, projected_norm, dtype, device, h_slice, every, record):
        theta = torch.as_tensor(theta0, dtype=dtype, device=device).clone().requires_grad_(True)
        if self.solver == "gd":
            opt = torch.optim.SGD([theta], lr=0.1 if self.lr is None else self.lr)
        else:
            opt = torch.optim.Adam([theta], lr=1e-2 if self.lr is None else self.lr)
        if every:
            record(0, theta0)
        n_iter = 0
        for it in range(1, self.max_iter + 1):
            opt.zero_grad(set_to_none=True)
            value = f(theta)
            value.backward()
            if it % 50 == 1 or it == self.max_iter:  # the stopping test costs a host sync
                g = theta.grad.detach().cpu().numpy().astype(np.float64)
                if projected_norm(theta.detach().cpu().numpy().astype(np.float64), g) <= self.tol:
                    break
            opt.step()
            if self.nonnegative:
                with torch.no_grad():  # Euclidean projection onto H >= 0
                    theta[h_slice].clamp_(min=0.0)
            n_iter = it
            if every and it % every == 0:
                record(it, theta.detach().cpu().numpy().astype(np.float64))
        return theta.detach().cpu().numpy().astype(np.float64), n_iter

    def _metrics(self, theta, H, Y, k, n, d):
        W = theta[: k * d].reshape(k, d)
        b = theta[k * d + n * d :] if self.bias else None
        try:
            with warnings.catch_warnings():  # undefined metrics (e.g. H = 0 at complete collapse) are NaN here
                warnings.simplefilter("ignore", NCWarning)
                rep = nc_report(H, Y, W, b)
        except ValueError:
            return {key: np.nan for key in _HISTORY_METRICS}
        return {key: float(rep[key]) if key in rep else np.nan for key in _HISTORY_METRICS}

    # ----------------------------------------------------------------- theory
    def _matching_theory(self, groups, d):
        lw, lh = float(self.lambda_W), float(self.lambda_H)
        counts = groups.counts()
        k = groups.n_classes
        if self.loss == "mse":
            balanced = not groups.multilabel and np.all(counts == counts[0])
            if balanced and lw == 0 and lh == 0 and self.lambda_b == 0 and self.bias and d >= k:
                return theory.mse_strong_collapse(k, int(counts[0]))
            return None
        if lw <= 0 or lh <= 0 or self.label_smoothing or self.focal_gamma:
            return None
        if self.nonnegative:
            if self.loss == "ce" and not self.bias and not groups.multilabel:
                return theory.nonnegative_ce_optimum(counts, lw, lh)
            return None
        if groups.multilabel or self.loss in ("pal", "pal_mean"):
            if not theory.label_set_counts_balanced(groups.multiplicity, counts, k):
                return None
            per_mult = {}
            for m, c in zip(groups.multiplicity, counts):
                per_mult[int(m)] = per_mult.get(int(m), 0) + int(c)
            return theory.pal_optimum(k, per_mult, lw, lh, loss="pal_mean" if self.loss == "pal_mean" else "pal")
        if np.all(counts == counts[0]):
            return theory.balanced_ce_optimum(k, int(counts[0]), lw, lh)
        return None

    def _gap(self, ref, groups, Y):
        W, H, b = self.W_, self.H_, self.b_
        gap = {"objective": _relative_gap(self.objective_, ref.objective)}
        if isinstance(ref, theory.StrongCollapse):
            labels = groups.classes[groups.group]
            gap.update({f"strong_nc_{k}": v for k, v in theory.strong_collapse_errors(W, H, b, labels).items()})
            return gap
        gap["W_norm_sq"] = _relative_gap(np.sum(W * W), ref.W_norm_sq)
        gap["H_norm_sq"] = _relative_gap(np.sum(H * H), ref.H_norm_sq)
        z = H @ W.T + b
        if isinstance(ref, theory.BalancedCEOptimum):
            own = z[np.arange(len(z)), groups.group]
            others = (z.sum(axis=1) - own) / (z.shape[1] - 1)
            gap["margin"] = _relative_gap(np.mean(own - others), ref.margin)
        elif isinstance(ref, theory.NonnegativeCEOptimum):
            cls = groups.group
            for c in range(groups.n_classes):
                rows = cls == c
                gap[f"mean_norm_sq_{c}"] = _relative_gap(np.mean(np.sum(H[rows] ** 2, axis=1)), ref.mean_norms_sq[c])
                zc = z[rows]
                own = zc[:, c]
                others = (zc.sum(axis=1) - own) / (zc.shape[1] - 1)
                gap[f"margin_{c}"] = _relative_gap(np.mean(own - others), ref.margins[c])
        elif isinstance(ref, theory.PALOptimum):
            gap["omega_sq"] = _relative_gap(np.sum(W * W) / groups.n_classes, ref.omega_sq)
            if not ref.collapsed and groups.multilabel and np.any(groups.multiplicity >= 2):
                summary = tagwise_average(H, Y).summary.set_index("multiplicity")
                for m, c_m in ref.scales.items():
                    if m >= 2 and m in summary.index:
                        gap[f"scale_m{m}"] = _relative_gap(summary.loc[m, "scale_mean"], c_m)
        return gap

    # -------------------------------------------------------------- transform
    def transform(self, Y):
        """The fitted feature of each row's label set (mean over its fitted samples).

        Raises
        ------
        ValueError
            If a row's label set (or class) was never seen in ``fit``.
        """
        check_is_fitted(self, "H_")
        fitted = self._groups
        k = fitted.n_classes
        if fitted.multilabel:
            groups = group_labels(Y, min_classes=1)
            if not groups.multilabel or groups.n_classes != k:
                raise ValueError(f"Y must be a 0/1 indicator with {k} columns, as in fit.")
            keys = {row.tobytes(): i for i, row in enumerate(fitted.sets)}
            rows = groups.sets[groups.group]
            idx = []
            for row in rows:
                gid = keys.get(row.tobytes())
                if gid is None:
                    raise ValueError(f"label set {tuple(np.flatnonzero(row).tolist())} was never seen in fit.")
                idx.append(gid)
            idx = np.asarray(idx)
        else:
            labels = np.asarray(untensor(Y))
            if labels.ndim == 2 and labels.shape[1] > 1:
                raise ValueError(f"Y has {labels.shape[1]} columns, but the solver was fitted on 1-D class labels.")
            labels = labels.ravel()
            pos = np.searchsorted(fitted.classes, labels)
            pos = np.clip(pos, 0, k - 1)
            unseen = fitted.classes[pos] != labels
            if unseen.any():
                raise ValueError(f"label {labels[unseen][0].tolist()!r} was never seen in fit.")
            idx = pos
        n_groups = fitted.n_groups
        sums = np.zeros((n_groups, self.H_.shape[1]))
        np.add.at(sums, fitted.group, self.H_)
        means = sums / np.bincount(fitted.group, minlength=n_groups)[:, None]
        return means[idx]
