"""Per-class NC quantities: each class's variability and NC1 share, and the pairwise CDNV matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..exceptions import NCWarning, UndefinedMetricError, warn_once
from . import _collapse as C
from . import _pairwise as P
from ._report import geometry_of, statistics_and_geometry

__all__ = ["class_variability", "cdnv_matrix", "PerClassMixin"]


def _class_rows(stats):
    """Class index of every row whose class mean the statistics use (-1 for the others)."""
    if getattr(stats, "kind", "singletons") == "tagwise":
        raise UndefinedMetricError(
            "per-class values need each sample's own class mean; under the tag-wise estimate a sample belongs to "
            "several classes (pass class_means='singletons' to use the single-label samples)")
    return stats.groups.sample_class()


def class_variability(features, y, *, global_mean="class", between="class", class_means="auto"):
    """Each class's within-class variability and its share of NC1, one row per class.

    Columns:

    * ``n_samples``: the class's samples (multi-label: single-label ones);
    * ``within_variance``: ``tr(Sigma_k)``, the mean squared distance of the
      class's samples from its mean;
    * ``nc1``: ``tr(Sigma_k Sigma_B^+) / K``, so that the class-size weighted
      mean ``sum_k (n_k / N) nc1_k`` is :func:`sknc.nc1`;
    * ``relative_variability``: ``tr(Sigma_k) / tr(Sigma_B)``, whose weighted
      mean is :func:`sknc.nc1_trace_quotient`.

    Examples
    --------
    >>> import numpy as np
    >>> import sknc
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(3), 40)
    >>> spread = np.array([0.01, 0.05, 0.2])[y][:, None]  # class 2 has not collapsed
    >>> H = sknc.simplex_etf(3, 5, random_state=0)[y] + spread * rng.standard_normal((120, 5))
    >>> table = sknc.metrics.class_variability(H, y)
    >>> int(table["nc1"].idxmax())
    2
    >>> bool(np.isclose(table["nc1"].mean(), sknc.nc1(H, y)))  # equal class sizes: the plain mean
    True
    """
    stats, geom, *_ = statistics_and_geometry(features, y, global_mean=global_mean, between=between,
                                              class_means=class_means, per_class=True)
    stats.require_class_means()
    _class_rows(stats)
    return _variability_frame(stats, geom, _per_class_projection(stats, geom))


def _per_class_projection(stats, geom):
    """Per class ``sum_i ||(h_i - mu_k) V / sigma||^2`` in the geometry's units (``V``, ``sigma``: the basis and
    singular values NC1 reads), from the second pass's per-class scatter along the class means."""
    nc1_geom = C.nc1_geometry(stats, geom)
    C._require_rank(nc1_geom, "the per-class NC1")
    values, exp = stats.weighted_projection_per_class(nc1_geom.basis, nc1_geom.singular_values)
    return np.maximum(np.ldexp(values, 2 * (exp - nc1_geom.exp)), 0.0)


def cdnv_matrix(features, y, *, power=1.0, class_means="auto", tile_bytes=None):
    """Class-distance normalised variance of every pair of classes, as a ``K x K`` frame.

    ``(sigma_a^2 + sigma_b^2) / (2 ||mu_a - mu_b||^(2 power))`` (Galanti et al.
    2022), ``sigma_k^2`` the class's mean squared distance from its mean; the
    diagonal is NaN and the mean of the off-diagonal entries is
    :func:`sknc.cdnv`. Large entries name the pairs that have not separated;
    a pair whose means coincide (to the data's resolution) is NaN, with an
    :class:`sknc.NCWarning`. With more classes than fit one ``tile_bytes``
    tile (default 64 MiB: ``K > 2896``) the frame is filled tile by tile and
    is the only ``K x K`` array formed (``8 K^2`` bytes).

    Examples
    --------
    >>> import numpy as np
    >>> import sknc
    >>> H = np.array([[0.0, 0], [0, 0.2], [1, 0], [1, 0.2], [10, 0], [10, 0.2]])
    >>> m = sknc.metrics.cdnv_matrix(H, [0, 0, 1, 1, 2, 2])
    >>> round(float(m.loc[0, 1]), 4), round(float(m.loc[0, 2]), 6)  # near pair, far pair
    (0.01, 0.0001)
    """
    stats, geom, *_ = statistics_and_geometry(features, y, class_means=class_means)
    return _cdnv_frame(stats, geom, power, "cdnv_matrix", tile_bytes)


def _cdnv_frame(stats, geom, power, source, tile_bytes=None):
    """The pairwise CDNV of the statistics' classes as a labelled ``K x K`` frame (one table: the mean's)."""
    stats.require_class_means()
    classes = stats.groups.classes
    if P.tiled(stats.groups.n_classes, tile_bytes):  # many classes: the frame is the only K x K array
        matrix, n_close, first = C.cdnv_matrix_tiled(stats, geom, power, P.tile_size(tile_bytes))
        names = None if first is None else [classes[i].item() if hasattr(classes[i], "item") else classes[i]
                                             for i in first]
    else:
        terms, e, close = C.cdnv_table(stats, geom, power, geom.gram)
        matrix = terms * np.exp2(e)  # back to the data's units
        n_close = int(close.sum() // 2)
        names = C.coincide_names(close, classes) if n_close else None
        matrix[close] = np.nan
    if n_close:  # means that coincide to the data's resolution: their CDNV is undefined, not huge
        warn_once(f"{source}: NaN for {n_close} pair(s) whose class means coincide (first: "
                  f"{names[0]!r} and {names[1]!r}).", NCWarning, stacklevel=3)
    for start in range(0, matrix.shape[0], 1024):  # in row blocks: no K x K mask
        block = matrix[start : start + 1024]
        block[~np.isfinite(block)] = np.nan
    labels = pd.Index(stats.groups.classes, name="class")
    return pd.DataFrame(matrix, index=labels, columns=labels, copy=False)  # (pandas 3 copies by default)


def _variability_frame(stats, geom, projected=None):
    """Per-class ``n_samples``, ``within_variance``, ``relative_variability`` and, given each class's
    ``sum_i ||(h_i - mu_k) V / sigma||^2`` (``projected``, in the geometry's units), ``nc1``."""
    stats.require_class_means()
    within, wexp = stats.within_trace()
    counts = stats.counts
    columns = {"n_samples": counts.astype(np.int64)}
    with np.errstate(invalid="ignore", divide="ignore"):
        columns["within_variance"] = np.ldexp(within / counts, 2 * wexp)
        if projected is not None:
            columns["nc1"] = projected / counts / stats.groups.n_classes
        columns["relative_variability"] = np.ldexp(within / counts / geom.trace_sigma_b, 2 * (wexp - geom.exp))
    return pd.DataFrame(columns, index=pd.Index(stats.groups.classes, name="class"))


class PerClassMixin:
    """Per-class tables of an :class:`sknc.NCAccumulator`, from its additive state."""

    def cdnv_matrix(self, power=1.0, tile_bytes=None):
        """The pairwise CDNV of the classes seen so far, a ``K x K`` frame (see :func:`sknc.metrics.cdnv_matrix`).

        Needs the first pass only: the class means and each class's squared
        distances from its mean are part of the state, so shards merged,
        all-reduced over ranks or map-reduced on Dask give the matrix of the
        whole data. The frame holds ``K^2`` float64 values (8.6 GB at
        ``K = 32 768``); the report's mean ``cdnv`` never forms it.

        Examples
        --------
        >>> import numpy as np
        >>> import sknc
        >>> H = np.array([[0.0, 0], [0, 0.2], [1, 0], [1, 0.2], [10, 0], [10, 0.2]])
        >>> acc = sknc.NCAccumulator().update(H[:3], [0, 0, 1]).update(H[3:], [1, 2, 2])
        >>> round(float(acc.cdnv_matrix().loc[0, 1]), 4)  # as sknc.metrics.cdnv_matrix(H, y)
        0.01
        """
        from ._report import _check_conventions

        _check_conventions("class", "class", power, None)
        stats = self._statistics()
        stats.require_class_means()
        return _cdnv_frame(stats, geometry_of(stats), power, "NCAccumulator.cdnv_matrix", tile_bytes)

    def class_variability(self):
        """Each class's size, within-class variance and relative variability, from the state.

        The columns of :func:`sknc.metrics.class_variability`:
        ``n_samples``, ``within_variance`` and ``relative_variability`` (whose
        class-size weighted mean is ``nc1_trace_quotient``) from the first
        pass (exact after the second), and, for an accumulator built with
        ``per_class=True``, each class's share of NC1 ``nc1`` from the second
        pass (NaN, with an :class:`sknc.NCWarning`, until it has run).

        Examples
        --------
        >>> import numpy as np
        >>> from sknc import NCAccumulator
        >>> noise = np.random.default_rng(0).standard_normal((120, 3))
        >>> y = np.arange(120) % 3
        >>> H = 4 * np.eye(3)[y] + np.array([0.1, 0.1, 1.0])[y][:, None] * noise  # class 2 spread out
        >>> acc = NCAccumulator(per_class=True).update(H, y).update_second_pass(H, y)
        >>> table = acc.class_variability()
        >>> int(table["nc1"].idxmax()), list(table.columns)
        (2, ['n_samples', 'within_variance', 'nc1', 'relative_variability'])
        """
        stats = self._statistics()
        stats.require_class_means()
        geom = geometry_of(stats, self.global_mean, self.between)
        _class_rows(stats)  # one class per sample, or a clear refusal (before any NaN column)
        projected = None
        if self.per_class:
            try:
                projected = _per_class_projection(stats, geom)
            except UndefinedMetricError as exc:
                projected = np.full(stats.groups.n_classes, np.nan)
                warn_once(f"NCAccumulator.class_variability: NaN for nc1 ({exc}).", NCWarning, stacklevel=2)
        return _variability_frame(stats, geom, projected)
