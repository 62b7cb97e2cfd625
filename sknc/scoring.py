"""Scorers for GridSearchCV / cross_validate: NC metrics of any classifier, and multi-label quality.

Every NC scorer asks one question of a fitted estimator, "what are your
features of ``X`` and your classifier ``(W, b)``?", answered by a small
adapter per family:

* sknc estimators (``PALClassifier``): ``transform`` and ``coef_``/``intercept_``;
* scikit-learn's ``MLPClassifier``: its last hidden activations, from
  ``coefs_``/``intercepts_`` and its activation;
* a linear classifier (``LogisticRegression``, ``LinearSVC``, ``RidgeClassifier``,
  ``SGDClassifier``, ...) on its input, alone or at the end of a Pipeline (the
  Pipeline's output before it are the features);
* skorch nets: their module's penultimate layer, by forward hooks
  (:func:`sknc.extract.model_nc_report`).

The numbers are those of :func:`sknc.nc_report`. A binary linear classifier
(one row ``w``, bias ``c``) is measured as the two rows ``-w/2, w/2`` and
biases ``-c/2, c/2``, which decide exactly as it does.

NC is a property of the *training* features: in a search, pass
``return_train_score=True`` and read the ``mean_train_neg_*`` columns (the
``mean_test_*`` ones measure how the held-out features sit).
"""

from __future__ import annotations


import numpy as np
import pandas as pd
from sklearn.exceptions import NotFittedError
from sklearn.metrics import (
    accuracy_score,
    hamming_loss,
    jaccard_score,
    label_ranking_average_precision_score,
)
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from ._validation import untensor
from .exceptions import NCWarning, warn_once
from .metrics import nc_report

__all__ = [
    "NC_METRICS",
    "OPT_IN_METRICS",
    "nc_scorer",
    "nc_scorers",
    "nc_report_scorer",
    "nc_report_of",
    "multilabel_scorers",
    "features_and_classifier",
]

# report key -> True when higher is better
NC_METRICS = {
    "nc1": False,
    "nc1_trace_quotient": False,
    "cdnv": False,
    "nc2_h": False,
    "nc2_h_equinorm": False,
    "nc2_h_equiangular": False,
    "nc2_w": False,
    "nc2_w_equinorm": False,
    "nc2_w_equiangular": False,
    "nc3": False,
    "nc3_difference": False,
    "nc4": False,
    "ncc_agreement": True,
    "bias_collapse": False,
    "tagwise_angle": False,
    "tagwise_residual": False,
    "tagwise_angle_ratio": False,
}

#: Opt-in report keys (one more read of the features each; see :func:`sknc.metrics.report_options`) -> True
#: when higher is better: scored by name through :func:`sknc.nc_scorer` and :func:`sknc.nc_scorers`, not by
#: :func:`sknc.nc_report_scorer`. A lower rank is more collapse, as a lower NC1.
OPT_IN_METRICS = {
    "ncc_accuracy": True,
    "features_effective_rank": False,
    "features_stable_rank": False,
}
_HIGHER_IS_BETTER = {**NC_METRICS, **OPT_IN_METRICS}

_SUPPORTED = ("PALClassifier (or any estimator with transform and coef_), MLPClassifier, a linear classifier with "
              "coef_ (alone or ending a Pipeline), or a skorch net")


# ------------------------------------------------------------------------------- adapters
def _is_skorch(estimator):
    return hasattr(estimator, "module_") and hasattr(estimator, "infer")


def _mlp_features(mlp, X):
    """Last hidden activations of a fitted ``MLPClassifier``."""
    from sklearn.neural_network._base import ACTIVATIONS

    act = ACTIVATIONS[mlp.activation]  # scikit-learn's activations work in place
    h = np.asarray(X, dtype=np.float64)
    for W, b in zip(mlp.coefs_[:-1], mlp.intercepts_[:-1]):
        h = h @ W + b
        act(h)
    return h


def _binary_pair(W, b):
    """A one-row (binary) linear classifier as the two rows that decide the same."""
    W = np.asarray(W, dtype=np.float64)
    b = np.zeros(W.shape[0]) if b is None else np.asarray(b, dtype=np.float64).reshape(-1)
    if W.shape[0] == 1:
        return np.vstack([-W / 2, W / 2]), np.concatenate([-b / 2, b / 2])
    return W, b


def features_and_classifier(estimator, X):
    """Features of ``X`` and the classifier ``(W, b)`` of a fitted estimator, held in memory.

    Supports the families of this module's docstring; a skorch net's features
    are its classifier's input, read by forward hooks.

    Examples
    --------
    For a linear model the features are the input itself and ``(W, b)`` its
    coefficients:

    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> X, y = load_iris(return_X_y=True)
    >>> from sknc.scoring import features_and_classifier
    >>> H, W, b = features_and_classifier(LogisticRegression(max_iter=500).fit(X, y), X)
    >>> H.shape, W.shape, b.shape
    ((150, 4), (3, 4), (3,))
    """
    X = untensor(X)
    if isinstance(estimator, Pipeline):
        *front, (_, last) = estimator.steps
        Xt = X
        for _, step in front:
            if step is None or step == "passthrough":
                continue
            Xt = step.transform(Xt)
        return features_and_classifier(last, Xt)
    if _is_skorch(estimator):
        from .extract import classifier_parameters, layer_features

        features, _ = layer_features(estimator.module_, X, np.zeros(len(X)), forward=estimator.infer)
        W, b = classifier_parameters(estimator.module_)
        return next(iter(features.values())).astype(np.float64), W, b
    if hasattr(estimator, "coefs_") and hasattr(estimator, "intercepts_"):  # MLPClassifier
        W, b = _binary_pair(estimator.coefs_[-1].T, estimator.intercepts_[-1])
        return _mlp_features(estimator, X), W, b
    if hasattr(estimator, "coef_"):
        W, b = _binary_pair(estimator.coef_, getattr(estimator, "intercept_", None))
        if hasattr(estimator, "transform") and hasattr(estimator, "net_"):  # sknc estimators
            return np.asarray(estimator.transform(X), dtype=np.float64), W, b
        return np.asarray(X, dtype=np.float64), W, b
    if hasattr(estimator, "fit") and hasattr(estimator, "get_params"):
        check_is_fitted(estimator)  # an unfitted estimator is the problem then, not its type
    raise TypeError(f"{type(estimator).__name__} is not a classifier whose features sknc can read; supported: "
                    f"{_SUPPORTED}.")


def nc_report_of(estimator, X, y, **conventions):
    """The NC report of a fitted estimator's features of ``X`` (see :func:`features_and_classifier`).

    skorch nets are measured by streaming their activations (nothing of size
    ``n x width`` is kept); other families compute features in memory.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> X, y = load_iris(return_X_y=True)
    >>> from sknc.scoring import nc_report_of
    >>> report = nc_report_of(LogisticRegression(max_iter=500).fit(X, y), X, y)
    >>> round(float(report["nc1"]), 4)
    1.7081
    """
    if _is_skorch(estimator):
        from .extract import model_nc_report

        frame = model_nc_report(estimator.module_, X, y, forward=estimator.infer, **conventions)
        return frame.iloc[0]
    features, W, b = features_and_classifier(estimator, X)
    return nc_report(features, y, W, b, **conventions)


class _LastReport:
    """The report of the last (estimator, X, y): the scorers of one multi-metric call share one forward pass.

    The key is a digest of the contents (the estimator's parameters and fitted
    state, the data), not the objects' identity: the same estimator refitted,
    ``partial_fit`` once more or given data changed in place is measured again.
    """

    def __init__(self):
        self.key, self.value = None, None

    def get(self, estimator, X, y, class_means="auto", options=None):
        from ._fingerprint import fingerprint

        options = dict(options or {})
        key = (fingerprint(estimator, X, y), class_means, tuple(sorted(options)))
        if self.key == key:
            return self.value
        self.key, self.value = None, None
        value = _safe_report(estimator, X, y, class_means=class_means, **options)
        self.key, self.value = key, value
        return value


def _safe_report(estimator, X, y, **conventions):
    """The report, or an empty one (all NaN) when the data leave NC undefined: a search never dies of it."""
    try:
        return nc_report_of(estimator, X, y, **conventions)
    except (TypeError, NotFittedError):
        raise  # not a supported or not a fitted estimator: a usage error
    except ValueError as exc:
        warn_once(f"NC scores are NaN on this split ({exc}).", NCWarning, stacklevel=3)
        return pd.Series(dtype=float)


_CACHE = _LastReport()


def _score_name(key):
    return key if _HIGHER_IS_BETTER[key] else f"neg_{key}"


def _scores_from_report(report, keys):
    out = {}
    for key in keys:
        value = float(report[key]) if key in report.index else np.nan
        out[_score_name(key)] = value if _HIGHER_IS_BETTER[key] else 0.0 - value  # 0 - 0.0 is 0.0, not -0.0
    return out


def _check_metric(metric):
    if metric not in _HIGHER_IS_BETTER:
        raise ValueError(f"unknown NC metric {metric!r}; choose from {sorted(_HIGHER_IS_BETTER)}.")


def nc_report_scorer(estimator, X, y):
    """Every NC score from one forward pass, as a dict: a ``GridSearchCV(scoring=...)`` value.

    Keys are ``neg_nc1``, ``neg_nc2_h``, ..., ``ncc_agreement`` (see
    ``NC_METRICS``); metrics that do not apply (``neg_tagwise_angle`` for
    single-label data) or are undefined on the split are NaN, never an error.
    Use it with ``refit="<key>"`` (or ``refit=False``).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.model_selection import cross_validate
    >>> from sknc import nc_report_scorer
    >>> X, y = load_iris(return_X_y=True)
    >>> scores = cross_validate(LogisticRegression(max_iter=500), X, y, cv=3, scoring=nc_report_scorer,
    ...                         return_train_score=True)
    >>> sorted(k for k in scores if k.endswith("neg_nc1"))
    ['test_neg_nc1', 'train_neg_nc1']
    """
    return _scores_from_report(_CACHE.get(estimator, X, y), NC_METRICS)


def nc_scorer(metric, *, class_means="auto"):
    """A scorer ``scorer(estimator, X, y) -> float`` for one NC metric (see ``NC_METRICS``).

    ``class_means``: for multi-label ``y``, single-label class means or their
    tag-wise estimate from every label set (see :func:`sknc.nc_report`).
    The opt-in keys ``ncc_accuracy``, ``features_effective_rank`` and
    ``features_stable_rank`` (``OPT_IN_METRICS``) are scored by name too: the
    report is then computed with the option they need; a lower rank scores
    higher (``neg_``), as a lower NC1 does.

    Examples
    --------
    Scores follow scikit-learn's "greater is better": ``neg_nc1`` is ``-nc1``.

    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> X, y = load_iris(return_X_y=True)
    >>> from sklearn.model_selection import cross_val_score
    >>> from sknc import nc_scorer
    >>> scores = cross_val_score(LogisticRegression(max_iter=500), X, y, cv=3, scoring=nc_scorer("nc1"))
    >>> bool((scores < 0).all())  # nc1 is positive on every fold
    True
    """
    _check_metric(metric)
    from .metrics import report_options
    from .metrics._tagwise_means import check_class_means

    check_class_means(class_means)
    return _metric_scorer(metric, class_means, report_options([metric]))


def _metric_scorer(metric, class_means, options):
    def scorer(estimator, X, y):
        report = _CACHE.get(estimator, X, y, class_means, options)
        return _scores_from_report(report, [metric])[_score_name(metric)]

    scorer.__name__ = _score_name(metric)
    return scorer


def nc_scorers(metrics=None, *, class_means="auto"):
    """``{name: scorer}`` for multi-metric ``GridSearchCV(scoring=...)``.

    Default metrics: ``nc1``, ``nc2_h``, ``nc2_w``, ``nc3``, ``nc4``. The scorers
    of one call share one report (one forward pass per split). ``class_means``:
    see :func:`nc_scorer`.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> X, y = load_iris(return_X_y=True)
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sknc import nc_scorers
    >>> sorted(nc_scorers())
    ['neg_nc1', 'neg_nc2_h', 'neg_nc2_w', 'neg_nc3', 'neg_nc4']
    >>> search = GridSearchCV(LogisticRegression(max_iter=500), {"C": [0.1, 10.0]}, cv=3,
    ...                       scoring=nc_scorers(["nc1", "nc3"]), refit="neg_nc3").fit(X, y)
    >>> search.best_params_  # the smaller NC3 (classifier closer to the class means)
    {'C': 0.1}
    """
    from .metrics import report_options
    from .metrics._tagwise_means import check_class_means

    metrics = ("nc1", "nc2_h", "nc2_w", "nc3", "nc4") if metrics is None else list(metrics)
    for metric in metrics:
        _check_metric(metric)
    check_class_means(class_means)
    options = report_options(metrics)  # one report with every option the metrics need, shared by all of them
    return {_score_name(m): _metric_scorer(m, class_means, options) for m in metrics}


def _jaccard_samples(estimator, X, y):
    return jaccard_score(y, estimator.predict(X), average="samples", zero_division=1.0)


def _neg_hamming(estimator, X, y):
    return -hamming_loss(y, estimator.predict(X))


def _lrap(estimator, X, y):
    if hasattr(estimator, "decision_function"):
        scores = estimator.decision_function(X)
    else:
        scores = estimator.predict_proba(X)
        if isinstance(scores, list):  # one (n, 2) array per label (MultiOutputClassifier, forests)
            scores = np.column_stack([p[:, -1] for p in scores])
    return label_ranking_average_precision_score(y, scores)


def _subset_accuracy(estimator, X, y):
    return accuracy_score(y, estimator.predict(X))


def multilabel_scorers():
    """Multi-label quality scorers scikit-learn has no name for.

    ``jaccard_samples`` (a sample with no true and no predicted label counts as
    1), ``neg_hamming_loss``, ``label_ranking_average_precision`` (on
    ``decision_function`` or ``predict_proba``) and ``subset_accuracy``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.multioutput import MultiOutputClassifier
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.model_selection import cross_validate
    >>> from sknc import multilabel_scorers
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((60, 5))
    >>> Y = np.column_stack([X[:, 0] > 0, X[:, 1] > 0, X[:, 2] > 0.5]).astype(int)
    >>> scores = cross_validate(MultiOutputClassifier(LogisticRegression()), X, Y, cv=3,
    ...                         scoring=multilabel_scorers())
    >>> sorted(k for k in scores if k.startswith("test_"))
    ['test_jaccard_samples', 'test_label_ranking_average_precision', 'test_neg_hamming_loss', 'test_subset_accuracy']
    """
    return {
        "jaccard_samples": _jaccard_samples,
        "neg_hamming_loss": _neg_hamming,
        "label_ranking_average_precision": _lrap,
        "subset_accuracy": _subset_accuracy,
    }
