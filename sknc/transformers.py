"""NCMetrics: a transformer that measures NC and projects onto the class-mean simplex."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import HasMethods, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._validation import group_labels, untensor
from .metrics._report import report_from, statistics_and_geometry

__all__ = ["NCMetrics"]


class NCMetrics(TransformerMixin, BaseEstimator):
    """Measure neural collapse in ``fit``; project features onto the centred class means in ``transform``.

    ``fit(X, y)`` stores the full :func:`sknc.nc_report` as ``report_``.
    ``transform`` maps features to coordinates in an orthonormal basis of the
    span of the centred class means (``K - 1`` coordinates, fewer if the means
    span less), so that a Pipeline can plot the simplex or feed a downstream
    estimator.

    Parameters
    ----------
    global_mean : {'class', 'sample'}, default='class'
        Centre of the class means (see :mod:`sknc.metrics`).
    estimator : fitted classifier, optional
        Measure this estimator's features of ``X`` (and its classifier
        ``W, b``) instead of ``X`` itself: a ``PALClassifier``, an
        ``MLPClassifier``, a linear classifier or a Pipeline ending in one, or a
        skorch net (see :mod:`sknc.scoring`).

    Attributes
    ----------
    report_ : pandas.Series
    center_ : ndarray (d,)
    components_ : ndarray (r, d)
        Orthonormal rows spanning the centred class means, ordered by singular value;
        ``r`` is the report's ``nc1_rank``.
    singular_values_ : ndarray (r,)
        Singular values of the centred class-mean matrix along ``components_``.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from sknc import NCMetrics, simplex_etf
    >>> y = np.repeat(np.arange(3), 10)
    >>> H = simplex_etf(3, 5, random_state=0)[y]
    >>> nc = NCMetrics().fit(H, y)
    >>> nc.transform(H).shape, float(nc.report_["nc1"])
    ((30, 2), 0.0)
    """

    _parameter_constraints = {
        "global_mean": [StrOptions({"class", "sample"})],
        "estimator": [HasMethods(["predict"]), None],
    }

    def __init__(self, global_mean="class", estimator=None):
        self.global_mean = global_mean
        self.estimator = estimator

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags

    def _features(self, X):
        from .scoring import features_and_classifier

        return features_and_classifier(self.estimator, X)

    def fit(self, X, y):
        """Compute the report and the projection from features ``X`` (or the estimator's) and labels ``y``."""
        self._validate_params()
        if y is None:
            raise ValueError("NCMetrics requires y to be passed, but the target y is None.")
        X, y = untensor(X), untensor(y)
        group_labels(y)  # ragged, mixed or non-0/1 labels: one clear error before any work
        W = b = None
        if self.estimator is not None:
            X, W, b = self._features(X)
        X, y = validate_data(self, X, y, multi_output=True, dtype=np.float64)
        # The report and the projection share one geometry, so rank and centre agree with report_.
        stats, geom, w, bias = statistics_and_geometry(X, y, W, b, global_mean=self.global_mean)
        self.report_ = report_from(stats, geom, w, bias, source="NCMetrics.fit")
        if geom is None:
            stats.require_class_means()  # raises, naming the classes without single-label samples
        self.center_ = geom.global_mean
        self.components_ = geom.basis.T
        # singular values of the unweighted centred means (the geometry holds those of M / sqrt(K), scaled)
        self.singular_values_ = np.ldexp(geom.singular_values * np.sqrt(geom.centred.shape[0]), geom.exp)
        return self

    def transform(self, X):
        """Coordinates of ``X - center_`` (or of the estimator's features) along ``components_``: (n, r)."""
        check_is_fitted(self, "components_")
        X = untensor(X)
        if self.estimator is not None:
            X = self._features(X)[0]
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return (X - self.center_) @ self.components_.T

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "components_")
        return np.asarray([f"ncmetrics{i}" for i in range(self.components_.shape[0])], dtype=object)
