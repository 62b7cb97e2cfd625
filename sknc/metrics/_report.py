"""The NC report and the single-metric functions.

:func:`nc_report` computes every key that applies; a key that is undefined on
the data is NaN, and one :class:`~sknc.NCWarning` per report names those keys
and why. The single-metric functions raise
:class:`~sknc.UndefinedMetricError` (a ``ValueError``) instead.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pandas as pd

from ..exceptions import NCWarning, UndefinedMetricError, warn_once
from .._validation import as_feature_array, as_float64_matrix, group_labels, missing_singletons_message, untensor
from . import _collapse as C
from . import _pairwise as P
from ._imbalance import mean_norms, minority_table
from . import _tagwise_means as TM
from ._multilabel import TagwiseResult, angle_ratio_value, tagwise_tables
from ._stats import array_statistics

__all__ = [
    "nc_report",
    "nc1",
    "nc1_trace_quotient",
    "cdnv",
    "nc2_h",
    "nc2_w",
    "equinorm",
    "equiangularity",
    "nc3",
    "nc4",
    "ncc_agreement",
    "bias_collapse",
    "class_means",
    "class_mean_norms",
    "mean_orthogonality",
    "minority_collapse",
    "tagwise_average",
    "tagwise_angle_ratio",
]

_CONVENTIONS = dict(global_mean="class", between="class", normalize=True, rtol=None, nc3_squared=False, cdnv_power=1.0,
                    pair_sample=None, tile_bytes=None, random_state=0)
_PAIR_OPTIONS = ("pair_sample", "tile_bytes", "random_state")


def check_classifier(W, b, d, k):
    """Validate ``W`` (K, d) and ``b`` (K,); returns float64 arrays (``b`` zero when omitted)."""
    if W is None:
        if b is not None:
            raise ValueError("b was given without W; pass the classifier weights W as well (or neither).")
        return None, None
    w = as_float64_matrix(W, "W")
    if w.shape != (k, d):
        raise ValueError(f"W must have shape (n_classes, n_dims) = ({k}, {d}); got {w.shape}.")
    if b is None:
        bias = np.zeros(k)
    else:
        bias = np.asarray(untensor(b), dtype=np.float64).reshape(-1)
        if bias.shape != (k,):
            raise ValueError(f"b must have shape ({k},) to match W; got {bias.shape}.")
        if not np.isfinite(bias).all():
            raise ValueError("b contains NaN or infinity.")
    return w, bias


class ClassifierMatch:
    """A classifier matched to the classes of the data.

    ``w``/``bias``: the rows of the classes present, in the order of the sorted
    classes (what every formula reads); ``w_full``: all rows; ``missing``: the
    classifier's classes that the data lack (then the keys that compare the
    classifier with every class mean are undefined).
    """

    def __init__(self, w, bias, w_full=None, missing=()):
        self.w, self.bias = w, bias
        self.w_full = w if w_full is None else w_full
        self.missing = list(missing)

    @property
    def complete(self):
        return not self.missing


def align_classifier(W, b, d, groups, classes=None):
    """Match ``W`` (one row per class of ``classes``) to the classes of the data; returns a ClassifierMatch.

    ``classes`` defaults to the data's sorted classes, or to ``0 .. K_W - 1``
    when the data's labels are integers in that range and fewer than the rows
    of ``W`` (a split that misses some classes).
    """
    k = groups.n_classes
    if W is None:
        w, bias = check_classifier(None, b, d, k)
        return ClassifierMatch(None, None)
    if classes is None and isinstance(W, np.ndarray) and W.dtype == np.float32 and W.shape == (k, d):
        # a float32 classifier as it is (at 32 768 classes a float64 copy is 268 MB per 1024 dims): the formulas
        # read it in float64 as they go
        if not np.isfinite(W).all():
            raise ValueError(f"W contains NaN or infinity in {int((~np.isfinite(W)).any(axis=1).sum())} row(s).")
        return ClassifierMatch(W, check_classifier(np.zeros((k, 1)), b, 1, k)[1])
    w_all = as_float64_matrix(W, "W")
    k_w = w_all.shape[0]
    if classes is None:
        if k_w == k or groups.multilabel or w_all.ndim != 2:
            return ClassifierMatch(*check_classifier(w_all, b, d, k))
        labels = np.asarray(groups.classes)
        integral = labels.dtype.kind in "iu" or (labels.dtype.kind == "f" and np.all(labels == np.round(labels)))
        if not (k_w > k and integral and labels.min() >= 0 and labels.max() < k_w):
            raise ValueError(
                f"W has {k_w} rows but the data have {k} classes ({_shown(labels)}); give classes=, the class of "
                "each row of W."
            )
        classes = np.arange(k_w)
    if groups.multilabel:
        raise ValueError("classes= is for 1-D labels; an indicator's columns are the classifier's classes already.")
    classes = np.asarray(untensor(classes)).ravel()
    if len(classes) != k_w:
        raise ValueError(f"classes has {len(classes)} entries but W has {k_w} rows (one class per row).")
    listed = classes.tolist()
    if len(set(listed)) != len(listed):
        raise ValueError("classes has repeated entries.")
    row_of = {c: i for i, c in enumerate(listed)}
    present = np.asarray(groups.classes).tolist()
    unknown = [c for c in present if c not in row_of]
    if unknown:
        raise ValueError(f"y holds label(s) {_shown(unknown)} that are not in classes ({_shown(listed)}).")
    w_full, bias_full = check_classifier(w_all, b, d, k_w)
    rows = np.array([row_of[c] for c in present], dtype=np.intp)
    have = set(present)
    missing = [c for c in listed if c not in have]
    if not missing and np.array_equal(rows, np.arange(k_w)):  # W's rows are the classes in order: no copy
        return ClassifierMatch(w_full, bias_full)
    return ClassifierMatch(w_full[rows], bias_full[rows], w_full, missing)


def _shown(values, limit=10):
    values = list(np.asarray(values).tolist()) if not isinstance(values, list) else values
    return ", ".join(str(v) for v in values[:limit]) + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _check_pair_options(pair_sample, tile_bytes, random_state):
    for name, value, low in (("pair_sample", pair_sample, 1), ("tile_bytes", tile_bytes, 8)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low):
            raise ValueError(f"{name} must be None or an integer >= {low}; got {value!r}.")


def _check_conventions(global_mean, between, cdnv_power, rtol):
    C.check_choice("global_mean", global_mean, ("class", "sample"))
    C.check_choice("between", between, ("class", "sample"))
    if not (isinstance(cdnv_power, (int, float, np.floating, np.integer)) and np.isfinite(cdnv_power) and cdnv_power > 0):
        raise ValueError(f"cdnv_power must be a positive number; got {cdnv_power!r}.")
    if rtol is not None and not (np.isfinite(rtol) and rtol >= 0):
        raise ValueError(f"rtol must be a non-negative number or None; got {rtol!r}.")


def statistics_and_geometry(features, y, W=None, b=None, *, global_mean="class", between="class", rtol=None,
                            second_pass=True, n_threads=None, classes=None, return_match=False,
                            class_means="auto", ncc_accuracy=False, feature_rank=False, per_class=False):
    """Statistics of in-memory features and the geometry of the requested convention.

    Everything about the inputs (features, labels, classifier) is checked before
    the first pass over the data. With ``return_match`` the last item is the
    :class:`ClassifierMatch` instead of ``(w, bias)``. ``class_means``: see
    :func:`nc_report` (multi-label data only).
    """
    _check_conventions(global_mean, between, 1.0, rtol)
    TM.check_class_means(class_means)
    X, eps = as_feature_array(features)
    groups = group_labels(y, X.shape[0])
    match = align_classifier(W, b, X.shape[1], groups, classes)
    # the NCC agreement compares the classifier's decisions with every class mean: not with classes missing
    w, bias = (match.w, match.bias) if match.complete else (None, None)
    if TM.resolve_class_means(class_means, groups, groups.counts()) == "tagwise":
        first = array_statistics(X, groups, eps, basis_for=None, second_pass=False, n_threads=n_threads)
        stats, geom = TM.tagwise_array_statistics(first, X, W=w, b=bias, global_mean=global_mean, between=between,
                                                  rtol=rtol, second_pass=second_pass)
        stats.ncc_requested = bool(ncc_accuracy)
        _gather_feature_scatter(stats, X, first, feature_rank)
        if return_match:
            return stats, geom, match
        return stats, geom, match.w, match.bias
    holder = {}

    def basis_for(stats):
        geom = geometry_of(stats, global_mean, between, rtol)
        holder["geom"] = None if second_pass else geom
        stats.nc1_geometry = replace(geom, centred=None, gram=None)  # NC1 may be read in this geometry's basis
        return geom

    stats = array_statistics(X, groups, eps, basis_for=basis_for, W=w, b=bias, second_pass=second_pass,
                             n_threads=n_threads, ncc_accuracy=ncc_accuracy, per_class=per_class)
    stats.ncc_requested = bool(ncc_accuracy)
    _gather_feature_scatter(stats, X, stats, feature_rank)
    geom = holder.get("geom")
    if stats.has_class_means and (geom is None or second_pass):
        # the second pass corrected the class means: the report's geometry uses the exact ones
        geom = geometry_of(stats, global_mean, between, rtol)
    if return_match:
        return stats, geom, match
    return stats, geom, match.w, match.bias


def _gather_feature_scatter(stats, X, first, feature_rank):
    """``feature_rank``: one more read gives the scatter of every row about the mean of all rows."""
    stats.feature_rank_requested = bool(feature_rank)
    if feature_rank:
        from ._stats import feature_scatter

        stats.feature_scatter = feature_scatter(X, first)


def geometry_of(stats, global_mean="class", between="class", rtol=None):
    """The between-class geometry of statistics under a convention."""
    sample_sq = stats.within_trace() if stats.has_within else None
    return C.between_geometry(stats.means_rel, stats.counts, global_mean, between, rtol, stats.eps, stats.origin,
                              sample_sq, cache=stats.decompositions)


# --------------------------------------------------------------------------------- report
class _Keys:
    """Collect report values; an undefined key becomes NaN and its reason is remembered."""

    def __init__(self):
        self.values = {}
        self.reasons = {}

    def put(self, key, fn):
        try:
            self.values[key] = fn()
        except UndefinedMetricError as exc:
            self.values[key] = np.nan
            self.reasons.setdefault(str(exc), []).append(key)

    def nan(self, keys, reason):
        for key in keys:
            self.values[key] = np.nan
        self.reasons.setdefault(reason, []).extend(keys)


def _emit(reasons, source="nc_report", stacklevel=3):
    if not reasons:
        return
    parts = [f"{', '.join(keys)} ({reason})" for reason, keys in reasons.items()]
    warn_once(f"{source}: NaN for " + "; ".join(parts) + ".", NCWarning, stacklevel=stacklevel)


def report_from(stats, geom, w, bias, *, normalize=True, nc3_squared=False, cdnv_power=1.0, warn=True,
                source="nc_report", stacklevel=4, match=None, pair_sample=None, tile_bytes=None, random_state=0):
    """Assemble the report Series from statistics, geometry and a validated classifier (or None).

    ``match``: a :class:`ClassifierMatch` whose classifier has classes the data
    lack (``w``, ``bias`` are then the rows of the classes present).
    ``pair_sample``, ``tile_bytes``, ``random_state``: see :mod:`._pairwise`.
    """
    g = stats.groups
    k = g.n_classes
    keys = _Keys()
    missing = [] if match is None else match.missing
    w_full = w if match is None or w is None else match.w_full
    lacking = (f"the data have no sample of class(es) {_shown(missing)} of the classifier, and these keys compare "
               "it with every class mean" if missing else None)
    keys.values.update(n_samples=int(stats.group_counts.sum()), n_classes=k, n_dims=stats.n_dims)
    if g.multilabel:
        keys.values["n_singletons"] = stats.n_singletons
        keys.values["class_means_estimated"] = stats.kind == "tagwise"
    mean_keys = ["nc1", "nc1_rank", "means_effective_rank", "means_stable_rank", "nc1_trace_quotient", "cdnv",
                 "nc2_h", "nc2_h_equinorm", "nc2_h_equiangular", "mean_max_abs_cos"]
    w_keys = ["nc2_w", "nc2_w_equinorm", "nc2_w_equiangular", "nc3", "nc3_difference", "nc4", "ncc_agreement",
              "bias_collapse"]
    multi = g.multilabel and np.any((g.multiplicity >= 2) & (g.multiplicity < k))
    if geom is None:  # no class means: everything built on them is undefined
        reason = getattr(stats, "class_means_problem", None) or missing_singletons_message(g)
        keys.nan(mean_keys, reason)
        if w is not None:
            keys.put("nc2_w", lambda: C.gram_error(w_full, "the classifier rows"))
            keys.put("nc2_w_equinorm", lambda: C.equinorm_value(w_full, 1, "the classifier rows"))
            keys.put("nc2_w_equiangular", lambda: C.equiangularity_value(w_full, "the classifier rows"))
            keys.nan([x for x in w_keys if not x.startswith("nc2_w")], reason)
        if multi:
            keys.nan(["tagwise_angle", "tagwise_angle_max", "tagwise_residual"], reason)
        if getattr(stats, "ncc_requested", False):
            keys.nan(["ncc_accuracy"], reason)
        _put_feature_ranks(keys, stats)
        if warn:
            _emit(keys.reasons, source, stacklevel)
        return pd.Series(keys.values, name="nc_report", dtype=object).infer_objects()

    m = geom.centred
    pairwise = None
    if pair_sample is not None or P.tiled(k, tile_bytes):  # no K x K array: tiles, or a sample of the pairs
        pairwise = dict(pair_sample=pair_sample, tile_bytes=tile_bytes, random_state=random_state)
        return _report_tiled(keys, stats, geom, w, w_full, bias, missing, lacking, multi, normalize, nc3_squared,
                             cdnv_power, pairwise, warn, source, stacklevel)
    # shared by three metrics; the centred means are stored below 1 in magnitude, so it cannot overflow
    gram_m = geom.gram if geom.gram is not None else m @ m.T
    keys.values["nc1_rank"] = C.nc1_geometry(stats, geom).rank
    keys.put("means_effective_rank", lambda: C.effective_rank(geom.singular_values))
    keys.put("means_stable_rank", lambda: C.stable_rank(geom.singular_values))
    # every class mean at the same point (to the data's resolution): what is left of the centred means is
    # rounding, and every key built on them would measure it
    coincide = C.coincide_reason(geom)
    centred_keys = ["nc1", "nc1_trace_quotient", "cdnv", "nc2_h", "nc2_h_equinorm", "nc2_h_equiangular"]
    if coincide:
        keys.nan(centred_keys, coincide)
    else:
        keys.put("nc1", lambda: C.nc1_value(stats, geom, normalize))
        keys.put("nc1_trace_quotient", lambda: C.trace_quotient_value(stats, geom))
        keys.put("cdnv", lambda: C.cdnv_value(stats, geom, cdnv_power, g.classes, gram_m))
        keys.put("nc2_h", lambda: C.gram_error(m, "the centred class means", gram_m))
        keys.put("nc2_h_equinorm", lambda: C.equinorm_value(m, 1, "the centred class means"))
        keys.put("nc2_h_equiangular", lambda: C.equiangularity_value(m, "centred class means", gram_m))
    keys.put("mean_max_abs_cos", lambda: C.max_abs_cos(stats.means))
    if w is not None:
        w_s, _ = C.scaled(w_full)
        gram_w = w_s @ w_s.T
        keys.put("nc2_w", lambda: C.gram_error(w_full, "the classifier rows", gram_w))
        keys.put("nc2_w_equinorm", lambda: C.equinorm_value(w_full, 1, "the classifier rows"))
        keys.put("nc2_w_equiangular", lambda: C.equiangularity_value(w_full, "classifier rows", gram_w))
        _put_classifier_vs_means(keys, stats, coincide, lacking,
                                 nc3=lambda: C.alignment_error(w, m),
                                 nc3_difference=lambda: C.difference_error(w, m, nc3_squared),
                                 bias_collapse=lambda: C.bias_collapse_value(w, bias, geom.global_mean))
    _put_ncc_accuracy(keys, stats)
    _put_feature_ranks(keys, stats)
    if multi:
        _put_tagwise(keys, stats, geom)
    if warn:
        _emit(keys.reasons, source, stacklevel)
    return pd.Series(keys.values, name="nc_report", dtype=object).infer_objects()


def _report_tiled(keys, stats, geom, w, w_full, bias, missing, lacking, multi, normalize, nc3_squared, cdnv_power,
                  pairwise, warn, source, stacklevel):
    """:func:`report_from` for many classes: the all-pairs keys from tiles (or a sample of the pairs)."""
    g = stats.groups
    m = geom.centred  # scaled below 1
    keys.values["nc1_rank"] = C.nc1_geometry(stats, geom).rank
    keys.put("means_effective_rank", lambda: C.effective_rank(geom.singular_values))
    keys.put("means_stable_rank", lambda: C.stable_rank(geom.singular_values))
    coincide = C.coincide_reason(geom)
    centred_keys = ["nc1", "nc1_trace_quotient", "cdnv", "nc2_h", "nc2_h_equinorm", "nc2_h_equiangular"]
    sample, tile_bytes, seed = pairwise["pair_sample"], pairwise["tile_bytes"], pairwise["random_state"]
    if coincide:
        keys.nan(centred_keys, coincide)
    else:
        keys.put("nc1", lambda: C.nc1_value(stats, geom, normalize))
        keys.put("nc1_trace_quotient", lambda: C.trace_quotient_value(stats, geom))
        within, wexp = stats.within_trace() if stats.has_within else (None, 0)
        floor = 2.0 * geom.tolerance**2 / float(np.min(geom.weights))
        offset = geom.global_mean * np.ldexp(1.0, -geom.exp)
        finite_offset = bool(np.all(np.isfinite(offset))) and C.max_exponent(offset) < 500
        sweep = P.PairSweep(m, variances=None if within is None else within / stats.counts, power=cdnv_power,
                            offset=offset if finite_offset else None, floor=floor, sample=sample,
                            random_state=seed, tile_bytes=tile_bytes)
        keys.put("cdnv", lambda: C.times_pow2(sweep.cdnv(g.classes), 2.0 * (wexp - cdnv_power * geom.exp))
                 if within is not None else stats.within_trace())
        keys.put("nc2_h", lambda: P.gram_error(m, what="the centred class means", tile_bytes=tile_bytes))
        keys.put("nc2_h_equinorm", lambda: C.equinorm_value(m, 1, "the centred class means"))
        keys.put("nc2_h_equiangular", lambda: sweep.equiangularity("centred class means"))
    if not coincide and finite_offset:
        keys.put("mean_max_abs_cos", sweep.max_abs_cos)
    else:  # the uncentred means on their own (every mean at one point, or means far out relative to their spread)
        keys.put("mean_max_abs_cos", lambda: P.PairSweep(C.scaled(stats.means)[0], offset=np.zeros(m.shape[1]),
                                                         sample=sample, random_state=seed,
                                                         tile_bytes=tile_bytes).max_abs_cos())
    if w is not None:
        w_s, w_exp = C.scaled(w_full)  # one scaled copy of W (K x d) serves every key below
        w_sweep = P.PairSweep(w_s, sample=sample, random_state=seed, tile_bytes=tile_bytes)
        keys.put("nc2_w", lambda: P.gram_error(w_s, what="the classifier rows", tile_bytes=tile_bytes))
        keys.put("nc2_w_equinorm", lambda: C.equinorm_value(w_s, 1, "the classifier rows"))
        keys.put("nc2_w_equiangular", lambda: w_sweep.equiangularity("classifier rows"))
        del w_sweep
        w_rows = w_s if w is w_full else C.scaled(w)[0]
        _put_classifier_vs_means(keys, stats, coincide, lacking,
                                 nc3=lambda: P.gram_error(w_rows, m, tile_bytes=tile_bytes),
                                 nc3_difference=lambda: C.difference_error(w_rows, m, nc3_squared),
                                 bias_collapse=lambda: C.bias_collapse_scaled(w_s, w_exp, bias, geom.global_mean))
    _put_ncc_accuracy(keys, stats)
    _put_feature_ranks(keys, stats)
    if multi:  # many classes with label sets: the tag-wise tables are per set, not per pair of classes
        _put_tagwise(keys, stats, geom)
    if sample is not None:
        keys.values["pairs_sampled"] = int(sample)
    if warn:
        _emit(keys.reasons, source, stacklevel + 1)
    return pd.Series(keys.values, name="nc_report", dtype=object).infer_objects()


def _put_classifier_vs_means(keys, stats, coincide, lacking, *, nc3, nc3_difference, bias_collapse):
    """The keys that compare the classifier with the class means (each a thunk, or NaN with its reason)."""
    # the Gram form compares the present rows with the means centred on their own mean: at collapse both are
    # an ETF of the present classes, so it stays defined when classes are missing
    if coincide:
        keys.nan(["nc3", "nc3_difference"], coincide)
    else:
        keys.put("nc3", nc3)
    if lacking:
        keys.nan(["nc3_difference", "nc4", "ncc_agreement", "bias_collapse"], lacking)
        return
    if not coincide:
        keys.put("nc3_difference", nc3_difference)
    keys.put("nc4", lambda: 1.0 - stats.agreement())
    keys.put("ncc_agreement", lambda: stats.agreement())
    keys.put("bias_collapse", bias_collapse)


def _put_feature_ranks(keys, stats):
    """``features_effective_rank`` and ``features_stable_rank`` when they were asked for (they need no class
    mean: the scatter of every row about the mean of all rows)."""
    if not getattr(stats, "feature_rank_requested", False):
        return
    try:
        sing = C.feature_singular_values(stats.feature_scatter)
    except UndefinedMetricError as exc:
        keys.nan(["features_effective_rank", "features_stable_rank"], str(exc))
        return
    keys.values["features_effective_rank"] = C.effective_rank(sing)
    keys.values["features_stable_rank"] = C.stable_rank(sing)


def _put_ncc_accuracy(keys, stats):
    """``ncc_accuracy`` when it was asked for: counted, or NaN with the reason it was not."""
    if getattr(stats, "ncc_correct", None) is not None and stats.n_singletons:
        keys.values["ncc_accuracy"] = float(stats.ncc_correct) / stats.n_singletons
    elif getattr(stats, "ncc_requested", False):
        reason = (stats.second_pass_problem or getattr(stats, "class_means_problem", None)
                  or ("the nearest-class-mean accuracy needs each sample's own class mean: single-label class "
                      "means (class_means='singletons'), not the tag-wise estimate"
                      if getattr(stats, "kind", "") == "tagwise" else
                      "the nearest-class-mean accuracy needs the second pass over the data"))
        keys.nan(["ncc_accuracy"], reason)


def _put_tagwise(keys, stats, geom):
    """The tag-wise keys of multi-label data (angles, residual, scale per multiplicity, the angle ratio)."""
    try:
        table, summary, undefined = tagwise_tables(stats, geom)
    except UndefinedMetricError as exc:
        keys.nan(["tagwise_angle", "tagwise_angle_max", "tagwise_residual"], str(exc))
    else:
        if undefined:
            shown = ", ".join(str(s) for s in undefined[:5]) + (" ..." if len(undefined) > 5 else "")
            keys.reasons.setdefault(
                f"label set(s) {shown} have a zero mean or tag sum; their angle is NaN and left out of the means",
                [],
            ).append("tagwise_angle")
        _put_nanmean(keys, "tagwise_angle", table["angle"])
        _put_nanmean(keys, "tagwise_angle_max", table["angle"], np.nanmax)
        _put_nanmean(keys, "tagwise_residual", table["residual"])
        for _, row in summary.iterrows():
            keys.values[f"tagwise_scale_m{int(row['multiplicity'])}"] = float(row["scale_mean"])
    if np.any(stats.groups.multiplicity == 2):
        keys.put("tagwise_angle_ratio", lambda: angle_ratio_value(stats))


def _put_nanmean(keys, key, column, fn=np.nanmean):
    values = column.to_numpy(dtype=float)
    if np.isfinite(values).any():
        keys.values[key] = float(fn(values))
    else:
        keys.nan([key], "every label set's angle is undefined")


def nc_report(
    features,
    y,
    W=None,
    b=None,
    *,
    global_mean="class",
    between="class",
    normalize=True,
    rtol=None,
    nc3_squared=False,
    cdnv_power=1.0,
    classes=None,
    pair_sample=None,
    tile_bytes=None,
    random_state=0,
    class_means="auto",
    ood_features=None,
    ncc_accuracy=False,
    feature_rank=False,
):
    """Every NC metric that applies, in two passes over the data.

    Parameters
    ----------
    features : array-like, torch.Tensor or dask array of shape (n_samples, d)
        Any float dtype, any device. Computed in float64 without a float64 copy
        of the data (row blocks; CUDA tensors are reduced on their device). A
        dask array (``y`` too, or a numpy ``y``) is map-reduced on its cluster:
        each row chunk's statistics are computed where the chunk lives and
        merged in a tree, and only the merged ``K x d`` statistics reach the
        client (see :class:`NCAccumulator`).
    y : array-like of shape (n_samples,) or (n_samples, K)
        Class labels or a 0/1 indicator matrix (multi-label; all-zero rows are
        label-free samples, counted but not used by any metric).
    W : array-like of shape (K, d), optional
        Classifier rows in the order of the sorted classes.
    b : array-like of shape (K,), optional
        Classifier bias (zero if omitted; needs ``W``).
    global_mean, between, normalize, rtol
        NC1 conventions, see :func:`nc1`.
    nc3_squared : bool, default=False
        Square the difference form of NC3.
    cdnv_power : float, default=1.0
        See :func:`cdnv`.
    classes : array-like, optional
        The class of each row of ``W`` (1-D labels). Default: the sorted classes
        of ``y``, or ``0 .. K_W - 1`` when ``y`` holds integers in that range but
        not all of them. Classes of ``W`` that ``y`` lacks leave
        ``nc3_difference``, ``nc4``, ``ncc_agreement`` and ``bias_collapse``
        NaN (they compare the classifier with every class mean); ``nc2_w*`` are
        of all of ``W``, everything else of the classes present.
    pair_sample : int, optional
        Estimate the all-pairs keys (``cdnv``, ``nc2_h_equiangular``,
        ``nc2_w_equiangular``, ``mean_max_abs_cos``) from this many uniformly
        drawn pairs of classes (``O(pair_sample d)``) instead of all
        ``K(K-1)/2`` (``O(K^2 d)``); ``mean_max_abs_cos`` is then the largest
        over the sample (a lower bound). The report says so in
        ``pairs_sampled``. Default: every pair, exactly.
    tile_bytes : int, optional
        Memory of one tile of a ``K x K`` product (default 64 MiB): with more
        classes than fit one tile (``K > 2896``), the pairwise keys are
        accumulated tile by tile and no ``K x K`` array is formed.
    random_state : int, default=0
        Seeds the pairs of ``pair_sample``.
    class_means : {'auto', 'singletons', 'tagwise'}, default='auto'
        Multi-label data: where the class means come from. ``'singletons'``:
        the means of single-label samples (the papers' definition; a class
        never alone leaves every key built on class means NaN).
        ``'tagwise'``: estimated from the means of all label sets under the
        tag-wise-average model (set mean ``= g + c_|S| * mean of its classes'
        means``, one scale per multiplicity), NC1 from every labelled sample's
        scatter about its set's mean, NC4 from its ``|S|`` nearest class means
        against its ``|S|`` largest logits (the theory page defines each key).
        ``'auto'``: the single-label means when every class has at least two
        single-label samples, the estimate otherwise. The report says which in
        ``class_means_estimated``. Ignored for 1-D labels.
    ood_features : array-like of shape (n_ood, d), optional
        Features of out-of-distribution inputs: adds ``nc5``, the mean
        ``|cos|`` between the centred class means and the OOD mean feature
        (centred on the same global mean; 0 when orthogonal). In-memory
        features only.
    ncc_accuracy : bool, default=False
        Add ``ncc_accuracy``: the share of samples whose nearest class mean is
        their own class's (no classifier needed), at the cost of one more
        read of the features. Single-label class means only.
    feature_rank : bool, default=False
        Add ``features_effective_rank`` and ``features_stable_rank``: the
        ranks of the features themselves (every sample, centred on the mean of
        all samples; no class mean involved), from their ``d x d`` scatter, at
        the cost of one more read and ``n d^2`` operations (streamed: a
        ``d x d`` state).

    Returns
    -------
    pandas.Series
        Keys ``n_samples``, ``n_classes``, ``n_dims``, ``nc1``, ``nc1_rank``,
        ``nc1_trace_quotient``, ``cdnv``, ``nc2_h``, ``nc2_h_equinorm``,
        ``nc2_h_equiangular``, ``mean_max_abs_cos``; with ``W``: ``nc2_w``,
        ``nc2_w_equinorm``, ``nc2_w_equiangular``, ``nc3`` (Gram form),
        ``nc3_difference``, ``nc4`` (NCC mismatch), ``ncc_agreement`` and
        ``bias_collapse``; for multi-label data also ``n_singletons``,
        ``class_means_estimated`` (True under the tag-wise estimate),
        ``tagwise_angle``, ``tagwise_angle_max``, ``tagwise_residual``,
        ``tagwise_scale_m<m>`` per multiplicity and ``tagwise_angle_ratio``.
        The metrics reference of the documentation gives each key's formula,
        conventions and source.

    Warns
    -----
    sknc.NCWarning
        When some keys are undefined on the data; they are NaN and the warning
        names them and the reason. Everything else is still computed.

    Notes
    -----
    Which degeneracy makes which key NaN:

    * a class without multiplicity-1 samples (multi-label,
      ``class_means='singletons'``), or whose mean the label sets do not
      determine (``'tagwise'``: a class that only ever appears with the same
      partners): every key built on class means;
    * all class means coincide (between-class rank 0): ``nc1``,
      ``nc1_trace_quotient``, ``cdnv``, ``nc2_h*``, ``nc3*``;
    * two class means coincide: ``cdnv``; a zero centred mean:
      ``nc2_h_equiangular``; fewer than two non-zero means: ``mean_max_abs_cos``;
    * ``W = 0`` or a zero row: ``nc2_w*``, ``nc3*``;
    * a class of ``W`` without samples (see ``classes``): ``nc3_difference``,
      ``nc4``, ``ncc_agreement``, ``bias_collapse``;
    * a label set whose mean or tag sum is zero: its angle (the set is left
      out of ``tagwise_angle``); a zero uncentred mean: ``tagwise_angle_ratio``.

    Examples
    --------
    >>> import numpy as np
    >>> import sknc
    >>> y = np.repeat(np.arange(3), 20)
    >>> M = sknc.simplex_etf(3, 4, random_state=0)
    >>> H = M[y] + 0.01 * np.random.default_rng(0).standard_normal((60, 4))
    >>> report = sknc.nc_report(H, y, W=M)
    >>> bool(report["nc1"] < 1e-3), int(report["nc1_rank"]), float(report["ncc_agreement"])
    (True, 2, 1.0)
    """
    _check_conventions(global_mean, between, cdnv_power, rtol)
    TM.check_class_means(class_means)
    from ._dask import is_dask_array

    if (is_dask_array(features) or is_dask_array(y)) and ood_features is not None:
        raise ValueError("ood_features needs in-memory features; compute nc5 with sknc.ood.nc5 on a sample.")
    if is_dask_array(features) or is_dask_array(y):  # map-reduced on the cluster: no chunk comes to the client
        from ._accumulator import NCAccumulator
        from ._dask import dask_states

        params = dict(mode="two_pass", global_mean=global_mean, between=between, classes=classes,
                      class_means=class_means, ncc_accuracy=ncc_accuracy, feature_rank=feature_rank)
        acc = NCAccumulator(**params).load_state_dict(dask_states(features, y, params, W, b))
        return acc.report(W, b, global_mean=global_mean, between=between, normalize=normalize, rtol=rtol,
                          nc3_squared=nc3_squared, cdnv_power=cdnv_power, pair_sample=pair_sample,
                          tile_bytes=tile_bytes, random_state=random_state)
    ood = None
    if ood_features is not None:
        ood = as_float64_matrix(ood_features, "ood_features")
        if ood.shape[0] == 0:
            raise ValueError("ood_features holds no rows.")
    stats, geom, match = statistics_and_geometry(features, y, W, b, global_mean=global_mean, between=between,
                                                 rtol=rtol, classes=classes, return_match=True,
                                                 class_means=class_means, ncc_accuracy=ncc_accuracy,
                                                 feature_rank=feature_rank)
    if ood is not None and ood.shape[1] != stats.n_dims:
        raise ValueError(f"ood_features has {ood.shape[1]} columns; the features have {stats.n_dims}.")
    _check_pair_options(pair_sample, tile_bytes, random_state)
    report = report_from(stats, geom, match.w, match.bias, normalize=normalize, nc3_squared=nc3_squared,
                         cdnv_power=cdnv_power, match=match, pair_sample=pair_sample, tile_bytes=tile_bytes,
                         random_state=random_state)
    if ood is not None:
        try:
            if geom is None:
                stats.require_class_means()
            report["nc5"] = C.nc5_value(geom.centred, geom.global_mean, ood.mean(axis=0))
        except UndefinedMetricError as exc:
            report["nc5"] = np.nan
            _emit({str(exc): ["nc5"]})
    return report


# ----------------------------------------------------------------------- single metrics
def _geometry(features, y, global_mean="class", between="class", rtol=None, *, second_pass=True, W=None, b=None,
              class_means="auto"):
    stats, geom, w, bias = statistics_and_geometry(features, y, W, b, global_mean=global_mean, between=between,
                                                   rtol=rtol, second_pass=second_pass, class_means=class_means)
    stats.require_class_means()
    return stats, geom, w, bias


def nc1(features, y, *, global_mean="class", between="class", normalize=True, rtol=None, class_means="auto"):
    """Within-class variability collapse ``tr(Sigma_W Sigma_B^+) / K``.

    ``Sigma_B^+`` is applied through the SVD of the ``K x d`` matrix of (weighted)
    centred class means, so the trace is
    ``sum_r (v_r^T Sigma_W v_r) / sigma_r^2`` over the ``r <= K-1`` retained
    directions; no ``d x d`` matrix is formed or inverted, and float32-stored
    features give the float64 answer.

    Parameters
    ----------
    features : array-like or torch.Tensor of shape (n_samples, d)
    y : array-like of shape (n_samples,) or (n_samples, K)
        Class labels, or a 0/1 indicator (multi-label: multiplicity-1 samples only).
    global_mean : {'class', 'sample'}, default='class'
        Centre of the class means: the mean of the class means (Papyan et al.
        2020; Li et al. 2024) or the sample mean (Zhu et al. 2021).
    between : {'class', 'sample'}, default='class'
        Weighting of ``Sigma_B``: ``1/K`` per class (Papyan et al., Zhu et al.)
        or ``n_k/N`` (Hong & Ling 2023).
    normalize : bool, default=True
        Divide the trace by ``K`` (the Papyan et al. notebook does not).
    rtol : float, optional
        Keep the directions whose singular value exceeds ``rtol`` times the
        larger of the top singular value and the largest weighted uncentred
        class-mean norm. Default: a tolerance from what the stored dtype can
        resolve after averaging each class (see the Notes); the rank used is
        the report's ``nc1_rank``.
    class_means : {'auto', 'singletons', 'tagwise'}, default='auto'
        Multi-label ``y``: single-label class means, or means estimated from
        every label set with ``Sigma_W`` the scatter of every labelled sample
        about its set's mean (see :func:`nc_report`). Every function of this
        module built on class means takes it.

    Returns
    -------
    float
        Non-negative; 0 at exact within-class collapse.

    Raises
    ------
    sknc.UndefinedMetricError
        If all class means coincide (rank 0), or a class mean is undefined
        (``class_means='singletons'`` and a class has no multiplicity-1
        sample; or the label sets do not determine it).

    Notes
    -----
    The default tolerance is the largest of ``max(K, d) eps64 sigma_1``,
    ``max(K, d) eps64 ||M||_w`` and ``eps_stored sqrt(sum_k w_k ||mu_k||^2 / n_k)``:
    directions weaker than the rounding of the stored features, averaged over
    each class, are noise. float32 features far from the origin keep their
    true rank (their class means resolve far below one float32 step).

    Examples
    --------
    >>> import numpy as np
    >>> from sknc import nc1, simplex_etf
    >>> y = np.repeat(np.arange(4), 50)
    >>> H = simplex_etf(4, 8, random_state=0)[y] + 0.01 * np.random.default_rng(1).standard_normal((200, 8))
    >>> round(nc1(H, y), 5)  # theory: Sigma_W = 1e-4 I, Sigma_B^+ = 3 on 3 directions: 3 * 3e-4 / 4
    0.00023
    """
    stats, geom, *_ = _geometry(features, y, global_mean, between, rtol, class_means=class_means)
    return C.nc1_value(stats, geom, normalize)


def nc1_trace_quotient(features, y, *, global_mean="class", between="class", class_means="auto"):
    """``tr(Sigma_W) / tr(Sigma_B)`` (the quotient variant of NC1, Tirer et al. 2023).

    Examples
    --------
    >>> import numpy as np
    >>> from sknc import nc1_trace_quotient
    >>> H = np.array([[0.0, 1], [0, -1], [4, 1], [4, -1]])
    >>> nc1_trace_quotient(H, [0, 0, 1, 1])
    0.25
    """
    stats, geom, *_ = _geometry(features, y, global_mean, between, class_means=class_means)
    return C.trace_quotient_value(stats, geom)


def cdnv(features, y, *, power=1.0, class_means="auto"):
    """Class-distance-normalised variance (Galanti et al. 2022), averaged over pairs.

    ``mean_{i<j} (sigma_i^2 + sigma_j^2) / (2 ||mu_i - mu_j||^(2 power))`` where
    ``sigma_k^2`` is the mean squared distance of class ``k``'s samples to its mean.
    ``power=1`` is the published definition; ``power=2`` reproduces the quartic
    denominator used in some code. Distances are computed from differences, so
    close but distinct means are resolved.

    Raises
    ------
    sknc.UndefinedMetricError
        If two class means coincide (the message names them).

    Examples
    --------
    >>> from sknc import cdnv
    >>> cdnv([[0.0], [2.0], [10.0], [12.0]], [0, 0, 1, 1])
    0.01
    """
    _check_conventions("class", "class", power, None)
    stats, geom, *_ = _geometry(features, y, class_means=class_means)
    return C.cdnv_value(stats, geom, power, stats.groups.classes)


def class_means(features, y, *, class_means="auto"):
    """Class means (multiplicity-1 samples for multi-label ``y``), classes sorted.

    Examples
    --------
    >>> from sknc import class_means
    >>> class_means([[0.0, 1], [2, 1], [5, 5]], ["b", "b", "a"])
    array([[5., 5.],
           [1., 1.]])
    """
    stats, *_ = statistics_and_geometry(features, y, second_pass=False, class_means=class_means)
    return stats.means


def equinorm(vectors, *, ddof=1):
    """Coefficient of variation ``std/mean`` of the row norms (``ddof=1`` as in Papyan et al.).

    Examples
    --------
    >>> from sknc import equinorm
    >>> round(equinorm([[3.0, 4.0], [0.0, 5.0]]), 12)
    0.0
    """
    return C.equinorm_value(as_float64_matrix(vectors, "vectors"), ddof)


def equiangularity(vectors):
    """Mean over ordered pairs ``i != j`` of ``|cos(v_i, v_j) + 1/(K-1)|`` (Papyan et al.).

    Examples
    --------
    >>> from sknc import equiangularity, simplex_etf
    >>> round(equiangularity(simplex_etf(5)), 12)
    0.0
    """
    v = as_float64_matrix(vectors, "vectors")
    if v.shape[0] < 2:
        raise ValueError(f"equiangularity needs at least 2 vectors; got {v.shape[0]}.")
    return C.equiangularity_value(v)


def nc2_h(features, y, *, global_mean="class", class_means="auto"):
    """NC2 of the centred class means.

    Returns
    -------
    dict
        ``gram``: distance of the normalised Gram to the ETF Gram (Zhu et al.),
        ``equinorm`` and ``equiangular`` (Papyan et al.).

    Examples
    --------
    >>> import numpy as np
    >>> from sknc import nc2_h, simplex_etf
    >>> y = np.repeat(np.arange(3), 2)
    >>> out = nc2_h(simplex_etf(3, 5, random_state=0)[y] + 7.0, y)
    >>> round(out["gram"], 10), round(out["equiangular"], 10)
    (0.0, 0.0)
    """
    stats, geom, *_ = _geometry(features, y, global_mean, second_pass=False, class_means=class_means)
    m = geom.centred
    return {
        "gram": C.gram_error(m, "the centred class means"),
        "equinorm": C.equinorm_value(m, 1, "the centred class means"),
        "equiangular": C.equiangularity_value(m, "centred class means"),
    }


def nc2_w(W):
    """NC2 of the classifier rows (uncentred, as every reference code does).

    Examples
    --------
    >>> from sknc import nc2_w, simplex_etf
    >>> round(nc2_w(simplex_etf(4))["gram"], 10)
    0.0
    """
    w = as_float64_matrix(W, "W")
    if w.shape[0] < 2:
        raise ValueError(f"W needs at least 2 rows (classes); got {w.shape[0]}.")
    return {
        "gram": C.gram_error(w, "the classifier rows"),
        "equinorm": C.equinorm_value(w, 1, "the classifier rows"),
        "equiangular": C.equiangularity_value(w, "classifier rows"),
    }


def nc3(features, y, W, *, form="gram", squared=False, global_mean="class", class_means="auto"):
    """Self-duality of the classifier and the centred class means.

    Parameters
    ----------
    form : {'gram', 'difference'}, default='gram'
        ``'gram'``: ``||W M^T/||W M^T|| - E_K||_F`` (Zhu et al.; Li et al.).
        ``'difference'``: ``||W/||W|| - M/||M|| ||_F`` (Papyan et al.).
    squared : bool, default=False
        Square the ``'difference'`` form (Papyan et al. report it squared).

    Examples
    --------
    >>> import numpy as np
    >>> from sknc import nc3, simplex_etf
    >>> M = simplex_etf(3, 4, random_state=0)
    >>> y = np.repeat(np.arange(3), 2)
    >>> round(nc3(M[y], y, 2 * M), 10)
    0.0
    """
    C.check_choice("form", form, ("gram", "difference"))
    if W is None:
        raise ValueError("nc3 needs the classifier weights W.")
    stats, geom, w, _ = _geometry(features, y, global_mean, second_pass=False, W=W, class_means=class_means)
    if form == "gram":
        return C.alignment_error(w, geom.centred)
    return C.difference_error(w, geom.centred, squared)


def ncc_agreement(features, y, W, b=None, *, class_means="auto"):
    """Fraction of (multiplicity-1) samples where the nearest class mean and ``argmax(W h + b)`` agree.

    Rows of ``W`` follow the sorted classes (indicator columns for multi-label ``y``).

    Examples
    --------
    >>> from sknc import ncc_agreement
    >>> H = [[0.0, 0.0], [0.0, 1.0], [4.0, 0.0], [4.0, 1.0]]
    >>> ncc_agreement(H, [0, 0, 1, 1], W=[[-1.0, 0.0], [1.0, 0.0]], b=[2.0, -2.0])
    1.0
    """
    if W is None:
        raise ValueError("ncc_agreement needs the classifier weights W.")
    stats, *_ = _geometry(features, y, W=W, b=b, class_means=class_means)
    return stats.agreement()


def nc4(features, y, W, b=None, *, class_means="auto"):
    """NCC mismatch ``1 - ncc_agreement`` (Papyan et al.): 0 at collapse.

    Examples
    --------
    The classifier calls every row class 0 (all have ``x > 0``); the nearest
    class mean disagrees on the two class-1 rows:

    >>> from sknc import nc4
    >>> H = [[1.0, 0.0], [1.0, 1.0], [4.0, 0.0], [4.0, 1.0]]
    >>> nc4(H, [0, 0, 1, 1], W=[[1.0, 0.0], [-1.0, 0.0]])
    0.5
    """
    return 1.0 - ncc_agreement(features, y, W, b, class_means=class_means)


def bias_collapse(features, y, W, b=None, *, global_mean="sample", class_means="auto"):
    """``||W mu_G + b||`` (Zhu et al.'s NC4, with ``mu_G`` the sample mean by default).

    Examples
    --------
    >>> from sknc import bias_collapse
    >>> bias_collapse([[1.0, 0.0], [3.0, 0.0]], [0, 1], W=[[1.0, 0.0], [0.0, 1.0]], b=[-2.0, 0.0])
    0.0
    """
    if W is None:
        raise ValueError("bias_collapse needs the classifier weights W.")
    stats, geom, w, bias = _geometry(features, y, global_mean, second_pass=False, W=W, b=b, class_means=class_means)
    return C.bias_collapse_value(w, bias, geom.global_mean)


# ---------------------------------------------------------------------- imbalance
def class_mean_norms(features, y, *, centred=False, global_mean="class", class_means="auto"):
    """Norm of each class mean (uncentred by default, as for non-negative features).

    Examples
    --------
    >>> from sknc import class_mean_norms
    >>> class_mean_norms([[3.0, 4.0], [0.0, 1.0]], [0, 1])
    array([5., 1.])
    """
    stats, geom, *_ = _geometry(features, y, global_mean, second_pass=False, class_means=class_means)
    if centred:
        return np.ldexp(np.linalg.norm(geom.centred, axis=1), geom.exp)
    return mean_norms(stats.means)


def mean_orthogonality(features, y, *, class_means="auto"):
    """Largest ``|cos|`` between distinct non-zero *uncentred* class means.

    0 for the orthogonal frame that non-negative features reach under imbalance
    (Dang et al. 2024); ``1/(K-1)``-ish values indicate a centred ETF instead.

    Examples
    --------
    >>> from sknc import mean_orthogonality
    >>> mean_orthogonality([[1.0, 0.0], [0.0, 2.0]], [0, 1])
    0.0
    """
    stats, *_ = _geometry(features, y, second_pass=False, class_means=class_means)
    return C.max_abs_cos(stats.means)


MINORITY_THRESHOLD = 0.5


def minority_collapse(features, y, W=None, b=None, *, global_mean="class", threshold=MINORITY_THRESHOLD):
    r"""Minority collapse, measured per class: the quantities of Fang et al. and Dang et al. and a score.

    Under strong imbalance the classifier rows of minority classes merge and
    their features lose their margin (Fang et al. 2021, "minority collapse");
    in the non-negative UFM a class collapses exactly when its optimal margin
    is zero, its features then being zero (Dang et al. 2024). Per class ``k``
    (class means from the samples, multiplicity-1 samples for multi-label
    data):

    * ``mean_norm_ratio``: :math:`\lVert\mu_k - \mu_G\rVert / \max_l
      \lVert\mu_l - \mu_G\rVert` (1 for every class of a balanced ETF);
    * ``classifier_norm_ratio``: :math:`\lVert w_k\rVert / \max_l \lVert w_l\rVert`;
    * ``max_classifier_cosine`` and ``closest_classifier``: the largest cosine
      between :math:`w_k` and another row, and that row's class
      (:math:`-1/(K-1)` for the simplex ETF, 1 for merged minority rows);
    * ``margin``: the margin of the class mean, :math:`z_k - \max_{l \ne k} z_l`
      with :math:`z = W\mu_k + b`, and ``margin_ratio``, the margin over the
      largest margin of any class (NaN when that is below ``1e-6``: no class
      is separated, as in the complete collapse ``W = H = 0``);
    * ``collapse_score``: :math:`1 - \mathrm{clip}(\text{margin ratio}, 0, 1)`,
      continuous in :math:`[0, 1]`; 0 for the best-separated class, 1 for a class
      whose mean is not classified as its own. Without ``W`` the score is
      :math:`1 - ` ``mean_norm_ratio``.
    * ``collapsed``: ``collapse_score >= threshold``.

    On a UFM optimum the score is exactly 1 for the classes that
    :func:`sknc.theory.nonnegative_ce_optimum` says collapse (zero margin) and
    below 1 for the others, rising continuously as a class approaches its
    critical size; the default ``threshold=0.5`` (a margin below half the
    best class's) flags every collapsed class and the ones on their way there:
    over UFM optima with K = 4 to 6 classes and imbalance up to 32, no class
    with more than about three times its critical size was flagged. On a
    network trained on long-tailed digits (imbalance 55) the minority classes,
    whose test accuracy is 0, score 1 (their training means are
    misclassified) and the majority classes below 0.1, where fixed thresholds
    on norms (1% of the largest) flag nothing (``tests/test_metrics.py``). The
    score is relative to the best-separated class: it says which classes
    lost their margin compared with the others, not whether training
    converged.

    Parameters
    ----------
    features : array-like or torch.Tensor of shape (n_samples, d)
    y : array-like of shape (n_samples,) or (n_samples, K)
    W : array-like of shape (K, d), optional
    b : array-like of shape (K,), optional
    global_mean : {'class', 'sample'}, default='class'
        Centre of the class means for ``mean_norm_ratio``.
    threshold : float in (0, 1], default=0.5

    Returns
    -------
    pandas.DataFrame
        One row per class (indexed by the class labels).

    Examples
    --------
    >>> import numpy as np
    >>> from sknc import minority_collapse, theory, UFMSolver
    >>> y = np.repeat(np.arange(4), [2, 8, 16, 32])
    >>> ufm = UFMSolver(lambda_W=0.03, lambda_H=0.03, nonnegative=True, bias=False, random_state=0).fit(y)
    >>> theory.nonnegative_ce_optimum([2, 8, 16, 32], 0.03, 0.03).minority_collapsed.tolist()
    [True, False, False, False]
    >>> table = minority_collapse(ufm.H_, y, ufm.W_)
    >>> table["collapse_score"].round(3).tolist()
    [1.0, 0.542, 0.241, 0.0]
    >>> table["collapsed"].tolist()  # class 1, at twice its critical size, is on its way
    [True, True, False, False]
    """
    if not 0 < float(threshold) <= 1:
        raise ValueError(f"threshold must be in (0, 1]; got {threshold!r}.")
    stats, geom, w, bias = _geometry(features, y, global_mean, second_pass=False, W=W, b=b)
    columns = minority_table(geom.centred, stats.means, w, bias, stats.counts)
    frame = pd.DataFrame(columns, index=pd.Index(stats.groups.classes, name="class"))
    if "closest_classifier" in frame:
        frame["closest_classifier"] = stats.groups.classes[frame["closest_classifier"].to_numpy()]
    frame["collapsed"] = frame["collapse_score"] >= threshold
    if frame["collapse_score"].isna().any():
        warnings.warn("minority_collapse: no class mean has a margin above 1e-6 (complete collapse, or an "
                      "untrained classifier; or every class mean coincides), so the collapse score is undefined "
                      "(NaN).", NCWarning, stacklevel=2)
    return frame


# ---------------------------------------------------------------------- multi-label
def _theory_scales(summary, stats, regularization):
    from ..theory import pal_optimum  # theory is pure numpy/scipy; imported lazily

    g = stats.groups
    counts = np.bincount(g.multiplicity[g.group], minlength=g.n_classes + 1)
    sizes = {m: int(c) for m, c in enumerate(counts) if c > 0 and m > 0}
    opt = pal_optimum(g.n_classes, sizes, **regularization)
    summary = summary.copy()
    summary["scale_theory"] = [opt.scales.get(int(m), np.nan) for m in summary["multiplicity"]]
    return summary


def tagwise_average(features, Y, *, global_mean="class", regularization=None, class_means="auto"):
    """Measure the tag-wise-average property of multi-label features.

    Every label set ``S`` with ``2 <= |S| < K`` present in ``Y`` gets the angle
    between its centred mean and ``sum_{k in S} m_k``, the least-squares scale
    ``c_S`` with respect to the *average* ``(1/|S|) sum m_k`` (the ``c_m`` of Li
    et al.), and the relative residual. Sets with ``|S| = K`` are skipped: their
    prototype is the sum of all centred means, which is zero.

    Parameters
    ----------
    features : array-like of shape (n_samples, d)
    Y : array-like of shape (n_samples, K)
        0/1 indicator with at least one multiplicity-1 sample per class.
    global_mean : {'class', 'sample'}, default='class'
        Centre; ``'class'`` is the mean of the multiplicity-1 class means.
    regularization : dict, optional
        ``{'lambda_W': ..., 'lambda_H': ..., 'loss': 'pal'|'pal_mean'}`` in the UFM
        normalisation of :mod:`sknc.theory`; adds a ``scale_theory`` column to the
        summary with the UFM-optimal ``c_m`` for these multiplicity proportions.

    Returns
    -------
    TagwiseResult

    Examples
    --------
    >>> import numpy as np
    >>> from sknc import simplex_etf, tagwise_average
    >>> M = simplex_etf(3, 4, random_state=0)
    >>> Y = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    >>> H = np.vstack([M, 1.5 * (M[0] + M[1]) / 2])
    >>> res = tagwise_average(H, Y)
    >>> round(float(res.sets["scale"][0]), 6), round(float(res.sets["angle"][0]), 6)
    (1.5, 0.0)
    """
    stats, geom, *_ = _geometry(features, Y, global_mean, second_pass=False, class_means=class_means)
    if not stats.groups.multilabel:
        raise ValueError("tagwise_average needs a 2-D 0/1 indicator Y (multi-label data).")
    table, summary, _ = tagwise_tables(stats, geom)
    if regularization is not None:
        summary = _theory_scales(summary, stats, dict(regularization))
    return TagwiseResult(sets=table, summary=summary)


def tagwise_angle_ratio(features, Y, *, class_means="auto"):
    """The angle ratio of Li et al.'s code (uncentred means, multiplicity 2).

    Mean angle between each pair-set mean and the sum of its two tag means,
    divided by the mean angle over all class pairs and all pair-set means.
    Tends to 0 under the tag-wise-average property.

    Examples
    --------
    Features that follow the tag-wise-average property give a ratio near 0:

    >>> import numpy as np
    >>> import sknc
    >>> rng = np.random.default_rng(0)
    >>> means = sknc.simplex_etf(3, 6, random_state=0)
    >>> Y = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1]] * 10)
    >>> scale = np.where(Y.sum(1) == 2, 1.8, 1.0)[:, None]  # pair features 1.8x the average of their tags
    >>> H = scale * (Y @ means) / Y.sum(1, keepdims=True) + 0.01 * rng.standard_normal((50, 6))
    >>> from sknc.metrics import tagwise_angle_ratio
    >>> round(tagwise_angle_ratio(H, Y), 3)
    0.007
    """
    stats, *_ = _geometry(features, Y, second_pass=False, class_means=class_means)
    if not stats.groups.multilabel:
        raise ValueError("tagwise_angle_ratio needs a 2-D 0/1 indicator Y (multi-label data).")
    return angle_ratio_value(stats)
