"""Scorers for GridSearchCV / cross_validate: NC metrics and multi-label quality.

Every NC scorer reads the estimator's features (``transform``) and classifier
(``coef_``, ``intercept_``) and calls :func:`sknc.nc_report`, so the numbers are
exactly those of the metrics core. Lower-is-better metrics are negated and named
``neg_*``, as scikit-learn does.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    hamming_loss,
    jaccard_score,
    label_ranking_average_precision_score,
)
from sklearn.pipeline import Pipeline

from .metrics import nc_report

__all__ = [
    "NC_METRICS",
    "nc_scorer",
    "nc_scorers",
    "nc_report_scorer",
    "multilabel_scorers",
    "features_and_classifier",
]

# report key -> True when higher is better
NC_METRICS = {
    "nc1": False,
    "nc1_trace_quotient": False,
    "cdnv": False,
    "nc2_h": False,
    "nc2_w": False,
    "nc3": False,
    "nc4": False,
    "bias_collapse": False,
    "tagwise_angle": False,
    "ncc_agreement": True,
}


def features_and_classifier(estimator, X):
    """Features of ``X`` and the classifier ``(W, b)`` of a fitted estimator or Pipeline.

    In a Pipeline, the first step with both ``transform`` and ``coef_`` is the
    feature extractor; the steps before it transform ``X``.
    """
    steps = [est for _, est in estimator.steps] if isinstance(estimator, Pipeline) else [estimator]
    Xt = X
    for step in steps:
        if hasattr(step, "coef_") and hasattr(step, "transform"):
            W = np.asarray(step.coef_, dtype=np.float64)
            b = getattr(step, "intercept_", None)
            return np.asarray(step.transform(Xt), dtype=np.float64), W, b
        if not hasattr(step, "transform"):
            break
        Xt = step.transform(Xt)
    raise TypeError(
        f"{type(estimator).__name__} exposes no feature extractor with `transform` and `coef_` "
        "(e.g. a fitted PALClassifier, alone or inside a Pipeline)."
    )


def _score_name(key):
    return key if NC_METRICS[key] else f"neg_{key}"


def _scores_from_report(report, keys):
    out = {}
    for key in keys:
        value = float(report[key]) if key in report.index else np.nan
        out[_score_name(key)] = value if NC_METRICS[key] else -value
    return out


def nc_report_scorer(estimator, X, y):
    """All NC scores from one forward pass (a dict; for ``GridSearchCV(scoring=...)`` with ``refit=<key>``).

    Keys are ``neg_nc1``, ``neg_nc2_h``, ..., ``ncc_agreement``; metrics that do
    not apply (``neg_tagwise_angle`` for single-label data) are NaN.
    """
    features, W, b = features_and_classifier(estimator, X)
    return _scores_from_report(nc_report(features, y, W, b), NC_METRICS)


def nc_scorer(metric):
    """A scorer ``scorer(estimator, X, y) -> float`` for one NC metric (see ``NC_METRICS``)."""
    if metric not in NC_METRICS:
        raise ValueError(f"unknown NC metric {metric!r}; choose from {sorted(NC_METRICS)}.")

    def scorer(estimator, X, y):
        features, W, b = features_and_classifier(estimator, X)
        return _scores_from_report(nc_report(features, y, W, b), [metric])[_score_name(metric)]

    scorer.__name__ = _score_name(metric)
    return scorer


def nc_scorers(metrics=None):
    """``{name: scorer}`` for multi-metric ``GridSearchCV(scoring=...)``.

    Default metrics: ``nc1``, ``nc2_h``, ``nc2_w``, ``nc3``, ``nc4``. Each scorer
    runs its own forward pass; use :func:`nc_report_scorer` for one pass.
    """
    metrics = ("nc1", "nc2_h", "nc2_w", "nc3", "nc4") if metrics is None else metrics
    return {_score_name(m): nc_scorer(m) for m in metrics}


def _jaccard_samples(estimator, X, y):
    return jaccard_score(y, estimator.predict(X), average="samples", zero_division=1.0)


def _neg_hamming(estimator, X, y):
    return -hamming_loss(y, estimator.predict(X))


def _lrap(estimator, X, y):
    scores = estimator.decision_function(X) if hasattr(estimator, "decision_function") else estimator.predict_proba(X)
    return label_ranking_average_precision_score(y, scores)


def _subset_accuracy(estimator, X, y):
    return accuracy_score(y, estimator.predict(X))


def multilabel_scorers():
    """Multi-label quality scorers scikit-learn has no name for.

    ``jaccard_samples`` (a sample with no true and no predicted label counts as
    1), ``neg_hamming_loss``, ``label_ranking_average_precision`` (on
    ``decision_function`` or ``predict_proba``) and ``subset_accuracy``.
    """
    return {
        "jaccard_samples": _jaccard_samples,
        "neg_hamming_loss": _neg_hamming,
        "label_ranking_average_precision": _lrap,
        "subset_accuracy": _subset_accuracy,
    }
