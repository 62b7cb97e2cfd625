"""Out-of-distribution scores from the geometry of neural collapse: NECO and NC5.

At neural collapse in-distribution (ID) features concentrate on the span of
the centred class means and near one of them; features of inputs from
elsewhere tend to fall orthogonal to that span (Ammar et al. 2024, "NECO:
NEural Collapse based Out-of-distribution detection", whose NC5 measures it).
"""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._validation import untensor
from .metrics._collapse import nc5_value
from .metrics._report import statistics_and_geometry

__all__ = ["NCOutlierDetector", "nc5"]


def _unit_rows(A):
    norms = np.linalg.norm(A, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, A / norms, np.nan)


def nc5(features, y, ood_features, *, class_means="auto"):
    """NC5: how far the mean OOD feature is from orthogonal to the ID class means (0: orthogonal).

    ``mean_k |cos(mu_k - mu_G, mu_OOD - mu_G)|`` with ``mu_k`` the ID class
    means, ``mu_G`` their mean and ``mu_OOD`` the mean of the OOD features
    (Ammar et al. 2024's NC5, centred on the ID global mean so that it does
    not depend on where the features sit). NaN (with an explanation) when the
    OOD mean coincides with the ID centre: :class:`sknc.UndefinedMetricError`.

    Examples
    --------
    >>> import numpy as np
    >>> from sknc.ood import nc5
    >>> H = np.array([[2.0, 0, 0], [2.0, 0.2, 0], [0, 2.0, 0], [0.2, 2.0, 0]])
    >>> ood = np.array([[1.05, 1.05, 2.0], [1.05, 1.05, 3.0]])  # above the ID centre, along the third axis
    >>> round(nc5(H, [0, 0, 1, 1], ood), 12)
    0.0
    """
    stats, geom = _id_geometry(features, y, class_means)
    ood = np.asarray(untensor(ood_features), dtype=np.float64)
    if ood.ndim != 2 or ood.shape[1] != stats.n_dims:
        raise ValueError(f"ood_features must be 2-D with {stats.n_dims} columns; got shape {ood.shape}.")
    return nc5_value(geom.centred, geom.global_mean, ood.mean(axis=0))  # as nc_report's nc5 key


def _id_geometry(features, y, class_means):
    """The in-distribution class means and their geometry (mean of class means as the centre), from the metrics'
    own first pass: the same means, centre and span as ``nc_report``'s."""
    stats, geom, *_ = statistics_and_geometry(features, y, class_means=class_means, second_pass=False)
    stats.require_class_means()
    return stats, geom


class NCOutlierDetector(OutlierMixin, BaseEstimator):
    """Score how in-distribution features are, from the class means of the training features.

    ``score='neco'``: the share of a feature's norm (about the ID global mean
    ``mu_G``) inside the span of the centred class means,
    ``||P (h - mu_G)|| / ||h - mu_G||`` (NECO, Ammar et al. 2024, with the
    class means' span in place of PCA directions). ``score='nc5'``: the
    largest cosine between ``h - mu_G`` and a centred class mean. Both are 1
    for a feature on a class mean at collapse and near 0 for one orthogonal
    to the class means; higher is more in-distribution, as scikit-learn's
    ``score_samples``.

    Parameters
    ----------
    score : {'neco', 'nc5'}, default='neco'
    contamination : float in (0, 0.5], default=0.05
        Share of the training features whose score lies below ``offset_``
        (``predict`` calls them outliers).
    class_means : {'auto', 'singletons', 'tagwise'}, default='auto'
        Multi-label ``y``: see :func:`sknc.nc_report`.

    Attributes
    ----------
    means_ : ndarray (K, d)
        Centred class means.
    center_ : ndarray (d,)
    basis_ : ndarray (d, r)
        Orthonormal basis of the span of the centred class means.
    offset_ : float
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from sknc import NCOutlierDetector, simplex_etf
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(3), 30)
    >>> H = np.hstack([simplex_etf(3, 2, random_state=0)[y], np.zeros((90, 2))]) + 0.05 * rng.standard_normal((90, 4))
    >>> detector = NCOutlierDetector().fit(H, y)
    >>> ood = np.hstack([np.zeros((5, 2)), rng.standard_normal((5, 2))])  # orthogonal to the class means
    >>> bool(detector.score_samples(H).min() > detector.score_samples(ood).max())
    True
    """

    _parameter_constraints = {
        "score": [StrOptions({"neco", "nc5"})],
        "contamination": [Interval(Real, 0, 0.5, closed="right")],
        "class_means": [StrOptions({"auto", "singletons", "tagwise"})],
    }

    def __init__(self, score="neco", contamination=0.05, class_means="auto"):
        self.score = score
        self.contamination = contamination
        self.class_means = class_means

    def fit(self, X, y):
        """Class means, centre and span from in-distribution features ``X`` with labels ``y``."""
        self._validate_params()
        if y is None:
            raise ValueError("NCOutlierDetector needs the labels y of the in-distribution features.")
        X = validate_data(self, untensor(X), dtype=np.float64)
        stats, geom = _id_geometry(X, untensor(y), self.class_means)
        if geom.rank == 0:
            raise ValueError("all class means coincide: there is no span of class means to score against.")
        self.center_ = geom.global_mean
        self.means_ = stats.means - self.center_
        self.basis_ = geom.basis  # the directions NC1 reads (the metrics' rank tolerance)
        self.offset_ = float(np.quantile(self.score_samples(X), self.contamination))
        return self

    def score_samples(self, X):
        """In-distribution score of each feature (higher: more in-distribution; NaN at the centre itself)."""
        check_is_fitted(self, "basis_")
        X = validate_data(self, untensor(X), dtype=np.float64, reset=False)
        centred = X - self.center_
        norms = np.linalg.norm(centred, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            if self.score == "neco":
                inside = np.linalg.norm(centred @ self.basis_, axis=1)
                return np.where(norms > 0, inside / norms, np.nan)
            cos = (centred @ _unit_rows(self.means_).T) / norms[:, None]
            return np.where(norms > 0, np.nanmax(cos, axis=1) if cos.size else np.nan, np.nan)

    def decision_function(self, X):
        """``score_samples(X) - offset_``: negative for outliers."""
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        """+1 for in-distribution, -1 for outliers (scikit-learn's convention)."""
        return np.where(self.decision_function(X) >= 0, 1, -1)
