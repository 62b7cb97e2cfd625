"""NCMetrics: a transformer that measures NC and projects onto the class-mean simplex."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from .metrics._report import report_from, statistics_and_geometry

__all__ = ["NCMetrics"]


class NCMetrics(TransformerMixin, BaseEstimator):
    """Measure neural collapse in ``fit``; project features onto the centred class means in ``transform``.

    ``fit(features, y)`` stores the full :func:`sknc.nc_report` as ``report_``.
    ``transform`` maps features to coordinates in an orthonormal basis of the
    span of the centred class means (``K - 1`` coordinates, fewer if the means
    span less), so that a Pipeline can plot the simplex or feed a downstream
    estimator.

    Parameters
    ----------
    global_mean : {'class', 'sample'}, default='class'
        Centre of the class means (see :mod:`sknc.metrics`).

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
    """

    _parameter_constraints = {"global_mean": [StrOptions({"class", "sample"})]}

    def __init__(self, global_mean="class"):
        self.global_mean = global_mean

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags

    def fit(self, X, y):
        """Compute the report and the projection from features ``X`` and labels ``y``."""
        self._validate_params()
        if y is None:
            raise ValueError("NCMetrics requires y to be passed, but the target y is None.")
        X, y = validate_data(self, X, y, multi_output=True, dtype=np.float64)
        # The report and the projection share one geometry, so rank and centre agree with report_.
        stats, geom, _, _ = statistics_and_geometry(X, y, global_mean=self.global_mean)
        self.report_ = report_from(stats, geom, None, None, source="NCMetrics.fit")
        if geom is None:
            stats.require_class_means()  # raises, naming the classes without single-label samples
        self.center_ = geom.global_mean
        self.components_ = geom.basis.T
        # singular values of the unweighted centred means (the geometry holds those of M / sqrt(K), scaled)
        self.singular_values_ = np.ldexp(geom.singular_values * np.sqrt(geom.centred.shape[0]), geom.exp)
        return self

    def transform(self, X):
        """Coordinates of ``X - center_`` along ``components_``: shape (n_samples, r)."""
        check_is_fitted(self, "components_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return (X - self.center_) @ self.components_.T

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "components_")
        return np.asarray([f"ncmetrics{i}" for i in range(self.components_.shape[0])], dtype=object)
