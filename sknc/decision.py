"""Multi-label decision rules: the tag-wise-average rule on features, and label marginals from PAL logits."""

from __future__ import annotations

from itertools import combinations
from numbers import Integral

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from ._validation import check_fit_inputs, group_labels, untensor
from .exceptions import NCWarning
from .metrics import class_means, tagwise_average
from .metrics._tagwise_means import estimate_class_means, resolve_class_means, undetermined_message

__all__ = ["TagWiseAverageClassifier", "pal_label_marginals"]

_ROW_BLOCK = 2048  # rows per block of the exhaustive search (bounds the n x n_sets score matrix)


class TagWiseAverageClassifier(ClassifierMixin, BaseEstimator):
    """Predict the label set whose tag-wise prototype is nearest to a feature.

    At multi-label neural collapse the feature of a sample with label set ``S``
    is ``c_|S|`` times the average of its tags' centred single-label means
    (Li et al. 2024). ``fit`` estimates those means ``mu_k``, their centre and
    a scale ``c_m`` per multiplicity; ``predict`` returns the candidate set
    whose prototype ``c_m/m sum_{k in S} mu_k`` is most likely, i.e. nearest
    under the chosen metric plus the log-frequency of its size in training.

    The means are the single-label means when every class has at least two
    single-label samples (scales: least squares per multiplicity, via
    :func:`sknc.tagwise_average`); otherwise the whole model is fitted to the
    label sets' means (``class_means='tagwise'`` of :func:`sknc.nc_report`,
    the same estimator: the rule and the NC report see the same means).

    Size prior. Each candidate's score is the log-likelihood of an isotropic
    Gaussian around its prototype within the span of the means (variance
    fitted on the training features) plus ``log pi(|S|)``, the training
    frequency of its size: without it, the nearest prototype favours large
    sets, whose prototypes sit nearer the centre. For ``metric='cosine'``
    features and prototypes are first scaled to unit norm.

    Search. ``search='exhaustive'`` scores every candidate set (every
    combination of a candidate size); ``'fast'`` keeps, per size ``m``, the
    ``m`` tags with the largest ``<h, mu_k>`` and compares sizes exactly. The
    fast search is exact when the means are equinorm and equiangular (then
    ``||sum_{k in S} mu_k||`` depends on ``|S|`` only and both metrics rank the
    sets of a size by ``sum_{k in S} <h, mu_k>``); on real features it is a
    heuristic (:meth:`search_disagreement`). ``'auto'`` (default) is
    exhaustive when there are at most ``max_candidates`` candidate sets.

    Parameters
    ----------
    metric : {'cosine', 'euclidean'}, default='cosine'
        Cosine is scale-free (needs no ``c_m``); Euclidean uses the fitted scales.
    search : {'auto', 'fast', 'exhaustive'}, default='auto'
    max_multiplicity : int, optional
        Candidate sizes ``1..max_multiplicity``; default: the sizes seen in ``fit``.
        Unseen sizes use the plain-sum prototype (``c_m = m``) under Euclidean.
    size_prior : bool, default=True
        Add the log-frequency of each size in training to the score (unseen
        sizes of ``max_multiplicity`` get the frequency of half a sample).
    max_candidates : int, default=2048
        Budget of the exhaustive search of ``search='auto'`` (candidate sets;
        the cost is ``n x candidates x d``). Ten classes with sets of one to
        three labels are 175 candidates.

    Label-free training samples (all-zero indicator rows) make the empty set a
    candidate, with their centred mean as its prototype; it is predicted when
    it is nearer (Euclidean) than the best labelled set.

    Attributes
    ----------
    classes_ : ndarray
    means_ : ndarray (K, d)
        Centred class means.
    means_estimated_by_ : {'singletons', 'tagwise'}
        Single-label means, or the tag-wise-average fit to the label sets.
    center_ : ndarray (d,)
        Mean of the class means.
    scales_ : dict {m: c_m}
    multiplicities_ : ndarray
        Candidate set sizes.
    size_log_prior_ : dict {m: log pi(m)}
    noise_scale_ : float
        Fitted variance per direction of the span (in the metric's units).
    search_ : {'fast', 'exhaustive'}
        The search ``predict`` uses.
    empty_prototype_ : ndarray (d,) or None
        Centred mean of the label-free training samples.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from sknc import TagWiseAverageClassifier, simplex_etf
    >>> M = simplex_etf(3, 4, random_state=0)
    >>> Y = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    >>> H = np.vstack([M, 1.5 * (M[0] + M[1]) / 2])
    >>> rule = TagWiseAverageClassifier(metric="euclidean").fit(H, Y)
    >>> rule.predict(H).tolist()
    [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]]
    """

    _parameter_constraints = {
        "metric": [StrOptions({"cosine", "euclidean"})],
        "search": [StrOptions({"auto", "fast", "exhaustive"})],
        "max_multiplicity": [Interval(Integral, 1, None, closed="left"), None],
        "size_prior": ["boolean"],
        "max_candidates": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, metric="cosine", search="auto", max_multiplicity=None, size_prior=True,
                 max_candidates=2048):
        self.metric = metric
        self.search = search
        self.max_multiplicity = max_multiplicity
        self.size_prior = size_prior
        self.max_candidates = max_candidates

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    def fit(self, X, y):
        """Estimate class means, centre, scales and the size prior from features ``X`` and labels ``y``.

        ``y`` is a 0/1 indicator (multi-label) or 1-D class labels (then the rule
        is the nearest class mean).
        """
        self._validate_params()
        if y is None:
            raise ValueError("TagWiseAverageClassifier requires y to be passed, but the target y is None.")
        check_fit_inputs(X, y)
        X, y = validate_data(self, untensor(X), untensor(y), multi_output=True, dtype=np.float64)
        if type_of_target(y) == "multilabel-indicator":
            Y = np.asarray(y)
            self.multilabel_ = True
            self._y_dtype = Y.dtype
        else:
            check_classification_targets(y)
            y = column_or_1d(y, warn=True)
            self.multilabel_ = False
        groups = group_labels(Y if self.multilabel_ else y, X.shape[0])
        _check_tagwise_labels(groups)
        self.classes_ = groups.classes
        k = groups.n_classes
        counts = groups.counts()
        self.means_estimated_by_ = resolve_class_means("auto", groups, counts)
        fitted_scales = {}
        if self.means_estimated_by_ == "singletons":
            means = class_means(X, Y if self.multilabel_ else y, class_means="singletons")
        else:
            means, fitted_scales = _fit_tagwise(X, Y)
        self.center_ = means.mean(axis=0)
        self.means_ = means - self.center_
        self.empty_prototype_ = self._empty_prototype(X, groups)
        seen = np.unique(groups.multiplicity[groups.multiplicity > 0])
        if self.max_multiplicity is None:
            self.multiplicities_ = seen
        else:
            self.multiplicities_ = np.arange(1, min(int(self.max_multiplicity), k) + 1)
        self.scales_ = {int(m): float(m) for m in self.multiplicities_}
        self.scales_[1] = 1.0
        if self.means_estimated_by_ == "tagwise":
            self.scales_.update({m: float(c) for m, c in fitted_scales.items()})
        elif self.multilabel_ and np.any((groups.multiplicity >= 2) & (groups.multiplicity < k)):
            with warnings.catch_warnings():  # undefined set angles are irrelevant to the scales
                warnings.simplefilter("ignore", NCWarning)
                summary = tagwise_average(X, Y, class_means="singletons").summary
            for m, c in zip(summary["multiplicity"], summary["scale_mean"]):
                if np.isfinite(c):
                    self.scales_[int(m)] = float(c)
        if k in self.scales_:
            self.scales_[k] = 0.0  # the sum of all centred means is 0
        sizes = groups.multiplicity[groups.group]
        size_counts = np.bincount(sizes, minlength=k + 1)
        labelled = max(int(np.sum(sizes > 0)), 1)
        self.size_log_prior_ = {int(m): float(np.log(max(size_counts[m], 0.5) / labelled))
                                for m in self.multiplicities_}
        self.noise_scale_ = self._noise_scale(X, groups)
        n_candidates = sum(_n_combinations(k, int(m)) for m in self.multiplicities_)
        self.search_ = (self.search if self.search != "auto" else
                        "exhaustive" if n_candidates <= self.max_candidates else "fast")
        return self

    def _noise_scale(self, X, groups):
        """Variance per direction of the means' span of the training features about their own prototypes."""
        labelled = groups.multiplicity[groups.group] > 0
        if not labelled.any():
            return 1.0
        H = self._in_metric(X[labelled] - self.center_)
        sets = groups.sets[groups.group[labelled]].astype(np.float64)
        protos = self._in_metric(self._prototypes(sets))
        _, sing, vt = np.linalg.svd(self._in_metric(self.means_), full_matrices=False)
        span = vt[sing > 1e-12 * max(float(sing[0]) if sing.size else 0.0, 1e-300)]
        if span.shape[0] == 0:
            return 1.0
        resid = (H - protos) @ span.T
        variance = float(np.mean(np.einsum("ij,ij->i", resid, resid))) / span.shape[0]
        typical = float(np.mean(np.einsum("ij,ij->i", protos, protos))) / span.shape[0]
        return max(variance, 1e-12 * max(typical, 1e-300))

    def fit_noise(self, X, y):
        """Re-estimate the noise scale of the size prior on held-out features ``X`` with labels ``y``.

        Features of the training samples are tighter around their prototypes
        than those of new samples (10-100x in variance on trained networks),
        which makes the prior count for little; a validation split gives the
        scale new samples have. Returns self.
        """
        check_is_fitted(self, "means_")
        X = validate_data(self, untensor(X), reset=False, dtype=np.float64)
        Y = np.asarray(untensor(y))
        groups = group_labels(Y, X.shape[0])
        if groups.n_classes != len(self.classes_):
            raise ValueError(f"y has {groups.n_classes} classes; the rule was fitted with {len(self.classes_)}.")
        self.noise_scale_ = self._noise_scale(X, groups)
        return self

    def _in_metric(self, A):
        """Rows in the metric's space: as they are (Euclidean) or scaled to unit norm (cosine)."""
        if self.metric == "euclidean":
            return A
        norms = np.linalg.norm(A, axis=1, keepdims=True)
        return A / np.maximum(norms, 1e-300)

    def _empty_prototype(self, X, groups):
        """Centred mean of the label-free samples (the empty set's prototype), or None."""
        empty = groups.multiplicity[groups.group] == 0
        if not empty.any():
            return None
        return X[empty].mean(axis=0) - self.center_

    # ------------------------------------------------------------------ scoring
    def _score(self, H, protos, sizes):
        """Log-likelihood (up to a row constant) of each row of H (centred) under each prototype row."""
        Hm, Pm = self._in_metric(H), self._in_metric(protos)
        sq = np.einsum("ij,ij->i", Pm, Pm)
        score = (2.0 * (Hm @ Pm.T) - sq) / (2.0 * self.noise_scale_)  # -||h - p||^2 / 2 s^2 + ||h||^2 / 2 s^2
        if self.size_prior:
            score += np.array([self.size_log_prior_.get(int(m), 0.0) for m in sizes])
        return score

    def _candidate_sets(self):
        k = len(self.classes_)
        out = []
        for m in self.multiplicities_:
            out += list(combinations(range(k), int(m)))
        return out

    def _prototypes(self, sets_indicator):
        sizes = sets_indicator.sum(axis=1)
        factor = np.array([self.scales_.get(int(m), float(m)) / m if m else 0.0 for m in sizes])
        return factor[:, None] * (sets_indicator @ self.means_)

    def _predict_indicator(self, X, search):
        H = X - self.center_
        k = len(self.classes_)
        if search == "exhaustive":
            sets = self._candidate_sets()
            ind = np.zeros((len(sets), k))
            for i, s in enumerate(sets):
                ind[i, list(s)] = 1.0
            protos = self._prototypes(ind)
            sizes = ind.sum(axis=1)
            best = np.empty(len(H), dtype=np.intp)
            for start in range(0, len(H), _ROW_BLOCK):
                best[start : start + _ROW_BLOCK] = np.argmax(self._score(H[start : start + _ROW_BLOCK], protos, sizes),
                                                             axis=1)
            return ind[best].astype(bool)
        # fast: top-m tags per size m, then compare sizes with exact scores
        order = np.argsort(-(H @ self.means_.T), axis=1, kind="stable")
        best_score = np.full(len(H), -np.inf)
        chosen = np.zeros((len(H), k), dtype=bool)
        rows = np.arange(len(H))
        Hm = self._in_metric(H)
        for m in self.multiplicities_:
            m = int(m)
            ind = np.zeros((len(H), k))
            ind[rows[:, None], order[:, :m]] = 1.0
            protos = self._in_metric(self._prototypes(ind))
            score = (2.0 * np.einsum("ij,ij->i", Hm, protos) - np.einsum("ij,ij->i", protos, protos)) \
                / (2.0 * self.noise_scale_)
            if self.size_prior:
                score += self.size_log_prior_.get(m, 0.0)
            better = score > best_score
            best_score[better] = score[better]
            chosen[better] = ind[better].astype(bool)
        return chosen

    def _with_empty_set(self, X, chosen):
        """Label-free training samples make the empty set a candidate: nearest (Euclidean) prototype wins."""
        if self.empty_prototype_ is None:
            return chosen
        H = X - self.center_
        protos = self._prototypes(chosen.astype(np.float64))
        d_set = np.einsum("ij,ij->i", H - protos, H - protos)
        diff = H - self.empty_prototype_
        d_empty = np.einsum("ij,ij->i", diff, diff)
        chosen = chosen.copy()
        chosen[d_empty < d_set] = False
        return chosen

    def predict(self, X):
        """Indicator matrix (multi-label, dtype of the fitted ``y``) or class labels."""
        check_is_fitted(self, "means_")
        X = validate_data(self, untensor(X), reset=False, dtype=np.float64)
        search = self.search if self.search != "auto" else getattr(self, "search_", "fast")
        chosen = self._with_empty_set(X, self._predict_indicator(X, search))
        if not self.multilabel_:
            return self.classes_[chosen.argmax(axis=1)]
        return chosen.astype(self._y_dtype)

    def search_disagreement(self, X):
        """Fraction of rows where the fast and the exhaustive search pick different sets."""
        check_is_fitted(self, "means_")
        X = validate_data(self, untensor(X), reset=False, dtype=np.float64)
        fast = self._predict_indicator(X, "fast")
        full = self._predict_indicator(X, "exhaustive")
        return float(np.mean(np.any(fast != full, axis=1)))


def _n_combinations(k, m):
    from math import comb

    return comb(k, m)


def _fit_tagwise(X, Y):
    """The tag-wise-average estimate of the class means of features ``X`` (the first pass and estimator of
    the NC metrics, so that the rule and ``nc_report(..., class_means='tagwise')`` see the same means)."""
    from .metrics._report import statistics_and_geometry

    stats, *_ = statistics_and_geometry(X, Y, second_pass=False, class_means="tagwise")
    if not stats.has_class_means:
        raise ValueError(stats.class_means_problem + "; add samples that tell those classes apart or use "
                         "decision_rule='threshold'.")
    return stats.means, stats.estimate.scales


def _check_tagwise_labels(groups):
    """Raise ``ValueError`` when the label sets cannot determine every class mean.

    The tag-wise rule needs each class's mean: from its single-label samples,
    or, when some class never occurs alone, from a least-squares fit of every
    labelled sample as the average of its tags' means; that fit needs the
    label sets to tell every class apart (some classes that always occur
    together, and never alone, cannot be separated). Checked before any
    training.
    """
    if not groups.multilabel or np.all(groups.class_group >= 0):
        return
    never = np.flatnonzero(~groups.present())
    if never.size:
        names = ", ".join(str(groups.classes[i]) for i in never[:10]) + (" ..." if never.size > 10 else "")
        raise ValueError(
            f"class(es) {names} never occur in y (all-zero label columns), so the tag-wise rule has no mean for "
            "them; drop those columns, add samples of those classes, or use decision_rule='threshold'."
        )
    # whether the label sets determine the means does not depend on the features: fit the model to set means
    # it generates from generic (seeded) class means and scales
    rng = np.random.default_rng(0)
    k = groups.n_classes
    means = rng.standard_normal((k, 3))
    scale = 1.0 + 0.1 * groups.multiplicity
    mult = np.maximum(groups.multiplicity, 1)
    set_means = scale[:, None] * (groups.sets @ means) / mult[:, None]
    estimate = estimate_class_means(groups.sets, groups.multiplicity, set_means, np.ones(groups.n_groups))
    if estimate.undetermined.size:
        raise ValueError(undetermined_message(groups, estimate.undetermined) + "; the tag-wise rule cannot be "
                         "fitted: add samples that tell those classes apart or use decision_rule='threshold'.")


#: The multi-label rules ``decision_rule='auto'`` chooses among, in the order that breaks ties.
RULES = ("threshold", "tagwise", "topk", "mean_logit")


def rule_scorer(scoring):
    """``(name, fn(Y_true, Y_pred) -> float)``, higher is better, for a rule-selection scoring.

    ``None`` is subset accuracy (a classifier's ``score``); a string names
    ``'subset_accuracy'``, ``'jaccard_samples'``, ``'f1_samples'`` or
    ``'neg_hamming_loss'``; a callable ``fn(Y_true, Y_pred)`` is used as it is.
    """
    from sklearn.metrics import accuracy_score, f1_score, hamming_loss, jaccard_score

    named = {
        "subset_accuracy": accuracy_score,
        "jaccard_samples": lambda a, b: jaccard_score(a, b, average="samples", zero_division=1.0),
        "f1_samples": lambda a, b: f1_score(a, b, average="samples", zero_division=1.0),
        "neg_hamming_loss": lambda a, b: -hamming_loss(a, b),
    }
    if scoring is None:
        return "subset_accuracy", accuracy_score
    if isinstance(scoring, str):
        if scoring not in named:
            raise ValueError(f"rule_scoring must be None, a callable or one of {sorted(named)}; got {scoring!r}.")
        return scoring, named[scoring]
    if callable(scoring):
        return getattr(scoring, "__name__", "custom"), scoring
    raise TypeError(f"rule_scoring must be None, a string or a callable; got {type(scoring).__name__}.")


def holdout_rows(Y, fraction, random_state):
    """``(keep, hold)`` row indices: a seeded split of a multi-label ``Y``, stratified by label set when every
    set has at least two samples (each set then has rows on both sides)."""
    from sklearn.model_selection import train_test_split

    Y = np.asarray(Y)
    rows = np.arange(len(Y))
    packed = np.packbits(Y.astype(bool), axis=1)
    _, keys, counts = np.unique(packed, axis=0, return_inverse=True, return_counts=True)
    keys = keys.ravel()
    n_hold = int(round(fraction * len(Y)))
    stratify = keys if counts.min() >= 2 and n_hold >= len(counts) and len(Y) - n_hold >= len(counts) else None
    keep, hold = train_test_split(rows, test_size=n_hold, random_state=random_state, stratify=stratify)
    return np.sort(keep), np.sort(hold)


def pal_label_marginals(logits, size_prior):
    """Per-label probabilities from pick-all-labels logits.

    PAL scores a label set ``S`` of size ``m`` by ``sum_{k in S} -log q_k``
    (``q = softmax(z)``), at best ``m log m`` (the ``m`` labels share the mass
    evenly). The likelihood of ``S`` relative to that best value is
    ``prod_{k in S} m q_k`` (1 for a perfect fit), and with a prior
    ``pi(m)`` over set sizes (their training frequencies) the posterior over
    candidate sets is ``P(S | z) ∝ pi(|S|) prod_{k in S} |S| q_k`` (the empty
    set scores ``pi(0)``). This returns the marginals
    ``P(k in S | z) = sum_{S ∋ k} P(S | z)``, computed exactly over every set of
    every candidate size through elementary symmetric polynomials, O(K m) per
    sample. Unlike a softmax row, they do not sum to 1: they follow
    scikit-learn's convention of one probability per label.

    Parameters
    ----------
    logits : ndarray of shape (n_samples, K)
    size_prior : dict {m: weight}
        Candidate sizes (0 for the empty set) and their prior weights.

    Returns
    -------
    ndarray of shape (n_samples, K), values in [0, 1]

    Examples
    --------
    >>> import numpy as np
    >>> from sknc.decision import pal_label_marginals
    >>> z = np.log([[0.48, 0.48, 0.02, 0.02], [0.94, 0.02, 0.02, 0.02]])
    >>> np.round(pal_label_marginals(z, {1: 0.5, 2: 0.5}), 2)
    array([[0.71, 0.71, 0.05, 0.05],
           [0.95, 0.08, 0.08, 0.08]])
    """
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    q = np.exp(z)
    q /= q.sum(axis=1, keepdims=True)
    n, k = q.shape
    total = np.full(n, float(size_prior.get(0, 0.0)))
    numer = np.zeros((n, k))
    for m, weight in sorted(size_prior.items()):
        m = int(m)
        if m < 1 or weight <= 0 or m > k:
            continue
        w = m * q
        elem = np.zeros((m + 1, n))  # elementary symmetric polynomials e_0..e_m of w
        elem[0] = 1.0
        for col in range(k):
            for j in range(m, 0, -1):
                elem[j] += w[:, col] * elem[j - 1]
        total += weight * elem[m]
        without = np.ones((n, k))  # e_{j}(w without label k), built up to j = m - 1
        for j in range(1, m):
            without = elem[j][:, None] - w * without
        numer += weight * w * np.maximum(without, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = numer / total[:, None]
    return np.clip(np.nan_to_num(out), 0.0, 1.0)
