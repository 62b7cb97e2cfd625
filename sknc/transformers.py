"""NCMetrics: a transformer that measures NC and projects onto the class-mean simplex."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._validation import group_labels, require_singletons
from .metrics import class_means, nc_report

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
        Orthonormal rows spanning the centred class means, ordered by singular value.
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
        self.report_ = nc_report(X, y, global_mean=self.global_mean)
        means = class_means(X, y)
        groups = group_labels(y, X.shape[0])
        require_singletons(groups)
        counts = groups.counts()[groups.class_group].astype(float)
        if self.global_mean == "class":
            self.center_ = means.mean(axis=0)
        else:
            self.center_ = counts @ means / counts.sum()
        _, sing, vt = np.linalg.svd(means - self.center_, full_matrices=False)
        rank = int(self.report_["nc1_rank"])
        self.components_ = vt[:rank]
        self.singular_values_ = sing[:rank]
        return self

    def transform(self, X):
        """Coordinates of ``X - center_`` along ``components_``: shape (n_samples, r)."""
        check_is_fitted(self, "components_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return (X - self.center_) @ self.components_.T

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "components_")
        return np.asarray([f"ncmetrics{i}" for i in range(self.components_.shape[0])], dtype=object)
