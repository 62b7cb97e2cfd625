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

__all__ = ["TagWiseAverageClassifier", "pal_label_marginals"]

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

    Label-free training samples (all-zero indicator rows) make the empty set a
    candidate, with their centred mean as its prototype; it is predicted when
    it is nearer (Euclidean) than the best labelled set.

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
        self.means_estimated_by_ = "singletons" if np.all(groups.class_group >= 0) else "least_squares"
        if self.means_estimated_by_ == "singletons":
            means = class_means(X, Y if self.multilabel_ else y)
        else:
            means = self._least_squares_means(X, groups)
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
        if self.multilabel_ and np.any((groups.multiplicity >= 2) & (groups.multiplicity < k)):
            if self.means_estimated_by_ == "singletons":
                with warnings.catch_warnings():  # undefined set angles are irrelevant to the scales
                    warnings.simplefilter("ignore", NCWarning)
                    summary = tagwise_average(X, Y).summary
                for m, c in zip(summary["multiplicity"], summary["scale_mean"]):
                    if np.isfinite(c):
                        self.scales_[int(m)] = float(c)
            else:
                self.scales_.update(self._least_squares_scales(X, groups))
        if k in self.scales_:
            self.scales_[k] = 0.0  # the sum of all centred means is 0
        return self

    @staticmethod
    def _least_squares_means(X, groups):
        """Class means when some class never occurs alone.

        Fits ``h_i ~ c + sum_{k in S_i} mu_k / |S_i|`` (labelled samples, least
        squares); the class means are ``c + mu_k``.
        """
        labelled = groups.multiplicity[groups.group] > 0
        sets = groups.sets[groups.group[labelled]].astype(np.float64)
        design = np.hstack([np.ones((len(sets), 1)), sets / sets.sum(axis=1, keepdims=True)])
        coef = np.linalg.lstsq(design, X[labelled], rcond=None)[0]
        return coef[0] + coef[1:]

    def _empty_prototype(self, X, groups):
        """Centred mean of the label-free samples (the empty set's prototype), or None."""
        empty = groups.multiplicity[groups.group] == 0
        if not empty.any():
            return None
        return X[empty].mean(axis=0) - self.center_

    def _least_squares_scales(self, X, groups):
        scales = {}
        centred = X - self.center_
        for m in np.unique(groups.multiplicity):
            if m < 2 or m >= groups.n_classes:
                continue
            rows = groups.multiplicity[groups.group] == m
            avg = (groups.sets[groups.group[rows]].astype(np.float64) @ self.means_) / m
            denom = np.sum(avg * avg)
            if denom > 0:
                scales[int(m)] = float(np.sum(centred[rows] * avg) / denom)
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
        chosen = self._with_empty_set(X, self._predict_indicator(X, self.search))
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
    labelled = groups.sets[groups.multiplicity > 0].astype(np.float64)
    design = np.hstack([np.ones((len(labelled), 1)), labelled / labelled.sum(axis=1, keepdims=True)])
    if np.linalg.matrix_rank(design) < design.shape[1] - 1:
        missing = ", ".join(str(groups.classes[i]) for i in groups.missing_singletons()[:10])
        raise ValueError(
            f"the label sets do not determine every class mean: class(es) {missing} never occur alone and "
            "some classes always occur together, so the tag-wise rule cannot be fitted; add single-label "
            "samples of those classes or use decision_rule='threshold'."
        )


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
