"""The tag-wise-average decision rule for multi-label prediction from features."""

from __future__ import annotations

from itertools import combinations
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from ._validation import group_labels
from .metrics import class_means, tagwise_average

__all__ = ["TagWiseAverageClassifier"]

_ROW_BLOCK = 2048  # rows per block of the exhaustive search (bounds the n x n_sets score matrix)


class TagWiseAverageClassifier(ClassifierMixin, BaseEstimator):
    """Predict the label set whose tag-wise prototype is nearest to a feature.

    At multi-label neural collapse the feature of a sample with label set ``S``
    is ``c_|S|`` times the average of its tags' centred single-label means
    (Li et al. 2024). ``fit`` estimates those means ``mu_k`` (multiplicity-1
    samples), their centre, and a scale ``c_m`` per multiplicity (least squares,
    via :func:`sknc.tagwise_average`); ``predict`` returns the candidate set
    whose prototype ``c_m/m sum_{k in S} mu_k`` is nearest under the chosen
    metric.

    Fast search. For a fixed size ``m``, both metrics rank a set ``S`` by
    ``<h, sum_{k in S} mu_k>`` once ``||sum_{k in S} mu_k||`` is the same for all
    ``S`` of size ``m``. *Proof:* with equal norms ``r`` and equal cosines
    ``rho``, ``||sum_S mu_k||^2 = m r^2 + m(m-1) r^2 rho`` depends on ``m`` only,
    so cosine and Euclidean scores are monotone in ``sum_{k in S} <h, mu_k>``;
    that sum is maximised by the ``m`` largest ``<h, mu_k>``. Hence the best set
    of each size is the top-``m`` tags, and only sizes are compared (with exact
    scores). On real (not exactly equinorm/equiangular) means this is a
    heuristic; ``search='exhaustive'`` scores every candidate set, and
    :meth:`search_disagreement` reports how often the two differ.

    Parameters
    ----------
    metric : {'cosine', 'euclidean'}, default='cosine'
        Cosine is scale-free (needs no ``c_m``); Euclidean uses the fitted scales.
    search : {'fast', 'exhaustive'}, default='fast'
    max_multiplicity : int, optional
        Candidate sizes ``1..max_multiplicity``; default: the sizes seen in ``fit``.
        Unseen sizes use the plain-sum prototype (``c_m = m``) under Euclidean.

    Attributes
    ----------
    classes_ : ndarray
    means_ : ndarray (K, d)
        Centred multiplicity-1 class means. When some class never occurs alone,
        all means come from a least-squares fit of every sample as
        ``c + mean_{k in S} mu_k`` instead (``means_estimated_by_``).
    means_estimated_by_ : {'singletons', 'least_squares'}
    center_ : ndarray (d,)
        Mean of the multiplicity-1 class means.
    scales_ : dict {m: c_m}
    multiplicities_ : ndarray
        Candidate set sizes.
    n_features_in_ : int
    """

    _parameter_constraints = {
        "metric": [StrOptions({"cosine", "euclidean"})],
        "search": [StrOptions({"fast", "exhaustive"})],
        "max_multiplicity": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(self, metric="cosine", search="fast", max_multiplicity=None):
        self.metric = metric
        self.search = search
        self.max_multiplicity = max_multiplicity

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    def fit(self, X, y):
        """Estimate class means, centre and scales from features ``X`` and labels ``y``.

        ``y`` is a 0/1 indicator (multi-label) or 1-D class labels (then the rule
        is the nearest class mean).
        """
        self._validate_params()
        if y is None:
            raise ValueError("TagWiseAverageClassifier requires y to be passed, but the target y is None.")
        X, y = validate_data(self, X, y, multi_output=True, dtype=np.float64)
        if type_of_target(y) == "multilabel-indicator":
            Y = np.asarray(y)
            self.multilabel_ = True
            self._y_dtype = Y.dtype
        else:
            check_classification_targets(y)
            y = column_or_1d(y, warn=True)
            self.multilabel_ = False
        groups = group_labels(Y if self.multilabel_ else y, X.shape[0])
        self.classes_ = groups.classes
        k = groups.n_classes
        self.means_estimated_by_ = "singletons" if np.all(groups.class_group >= 0) else "least_squares"
        if self.means_estimated_by_ == "singletons":
            means = class_means(X, Y if self.multilabel_ else y)
        else:
            means = self._least_squares_means(X, groups)
        self.center_ = means.mean(axis=0)
        self.means_ = means - self.center_
        seen = np.unique(groups.multiplicity)
        if self.max_multiplicity is None:
            self.multiplicities_ = seen
        else:
            self.multiplicities_ = np.arange(1, min(int(self.max_multiplicity), k) + 1)
        self.scales_ = {int(m): float(m) for m in self.multiplicities_}
        self.scales_[1] = 1.0
        if self.multilabel_ and np.any((groups.multiplicity >= 2) & (groups.multiplicity < k)):
            if self.means_estimated_by_ == "singletons":
                summary = tagwise_average(X, Y).summary
                for m, c in zip(summary["multiplicity"], summary["scale_mean"]):
                    self.scales_[int(m)] = float(c)
            else:
                self.scales_.update(self._least_squares_scales(X, groups))
        if k in self.scales_:
            self.scales_[k] = 0.0  # the sum of all centred means is 0
        return self

    @staticmethod
    def _least_squares_means(X, groups):
        """Class means when some class never occurs alone.

        Fits ``h_i ~ c + sum_{k in S_i} mu_k / |S_i|`` (all samples, least squares);
        the class means are ``c + mu_k``. Raises when the label sets cannot
        separate two classes (e.g. they always occur together).
        """
        sets = groups.sets[groups.group].astype(np.float64)
        design = np.hstack([np.ones((len(sets), 1)), sets / sets.sum(axis=1, keepdims=True)])
        coef, _, rank, _ = np.linalg.lstsq(design, X, rcond=None)
        if rank < design.shape[1] - 1:
            raise ValueError(
                "the label sets do not determine every class mean (some classes always occur together "
                "and none occurs alone); the tag-wise rule cannot be fitted."
            )
        return coef[0] + coef[1:]

    def _least_squares_scales(self, X, groups):
        scales = {}
        centred = X - self.center_
        for m in np.unique(groups.multiplicity):
            if m < 2 or m >= groups.n_classes:
                continue
            rows = groups.multiplicity[groups.group] == m
            avg = (groups.sets[groups.group[rows]].astype(np.float64) @ self.means_) / m
            scales[int(m)] = float(np.sum(centred[rows] * avg) / np.sum(avg * avg))
        return scales

    # ------------------------------------------------------------------ scoring
    def _score(self, H, protos):
        """Score (higher is better) of each row of H against each prototype row."""
        if self.metric == "cosine":
            hn = np.linalg.norm(H, axis=1, keepdims=True)
            pn = np.linalg.norm(protos, axis=1)
            return (H @ protos.T) / np.maximum(hn * pn, 1e-300)
        sq = np.einsum("ij,ij->i", protos, protos)
        return 2.0 * (H @ protos.T) - sq  # -||h - p||^2 up to the row constant ||h||^2

    def _candidate_sets(self):
        k = len(self.classes_)
        out = []
        for m in self.multiplicities_:
            out += list(combinations(range(k), int(m)))
        return out

    def _prototypes(self, sets_indicator):
        sizes = sets_indicator.sum(axis=1)
        factor = np.array([self.scales_[int(m)] / m for m in sizes])
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
            best = np.empty(len(H), dtype=np.intp)
            for start in range(0, len(H), _ROW_BLOCK):
                best[start : start + _ROW_BLOCK] = np.argmax(self._score(H[start : start + _ROW_BLOCK], protos), axis=1)
            return ind[best].astype(bool)
        # fast: top-m tags per size m, then compare sizes with exact scores
        order = np.argsort(-(H @ self.means_.T), axis=1, kind="stable")
        best_score = np.full(len(H), -np.inf)
        chosen = np.zeros((len(H), k), dtype=bool)
        rows = np.arange(len(H))
        for m in self.multiplicities_:
            m = int(m)
            ind = np.zeros((len(H), k))
            ind[rows[:, None], order[:, :m]] = 1.0
            protos = self._prototypes(ind)
            if self.metric == "cosine":
                num = np.einsum("ij,ij->i", H, protos)
                den = np.linalg.norm(H, axis=1) * np.linalg.norm(protos, axis=1)
                score = num / np.maximum(den, 1e-300)
            else:
                score = 2.0 * np.einsum("ij,ij->i", H, protos) - np.einsum("ij,ij->i", protos, protos)
            better = score > best_score
            best_score[better] = score[better]
            chosen[better] = ind[better].astype(bool)
        return chosen

    def predict(self, X):
        """Indicator matrix (multi-label, dtype of the fitted ``y``) or class labels."""
        check_is_fitted(self, "means_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        chosen = self._predict_indicator(X, self.search)
        if not self.multilabel_:
            return self.classes_[chosen.argmax(axis=1)]
        return chosen.astype(self._y_dtype)

    def search_disagreement(self, X):
        """Fraction of rows where the fast and the exhaustive search pick different sets."""
        check_is_fitted(self, "means_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        fast = self._predict_indicator(X, "fast")
        full = self._predict_indicator(X, "exhaustive")
        return float(np.mean(np.any(fast != full, axis=1)))
