"""Multi-label metrics from statistics: the tag-wise-average property and Li et al.'s angle ratio."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..exceptions import UndefinedMetricError
from ._collapse import scaled

__all__ = ["TagwiseResult", "tagwise_tables", "angle_ratio_value", "angle_degrees"]


@dataclass
class TagwiseResult:
    """Tag-wise-average property of multi-label features.

    Attributes
    ----------
    sets : pandas.DataFrame
        One row per label set with ``2 <= |S| < K`` present: ``labels`` (tuple),
        ``multiplicity``, ``n_samples``, ``angle`` (degrees, between the centred
        set mean and ``sum_{k in S}`` of the centred tag means), ``scale``
        (least-squares ``c_S`` in ``mean_S ~ c_S * (1/|S|) sum_{k in S} m_k``) and
        ``residual`` (``||mean_S - c_S avg_S|| / ||mean_S||``). A set whose angle
        is undefined (its mean or its tags' sum is zero) has NaN there.
    summary : pandas.DataFrame
        Per multiplicity: number of sets and samples, mean and max angle, mean and
        standard deviation of the scale, mean residual (NaN rows left out; and,
        when provided, the UFM prediction of the scale).

    Examples
    --------
    >>> import numpy as np
    >>> import sknc
    >>> rng = np.random.default_rng(0)
    >>> means = sknc.simplex_etf(3, 6, random_state=0)
    >>> Y = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1]] * 10)
    >>> scale = np.where(Y.sum(1) == 2, 1.8, 1.0)[:, None]  # pair features 1.8x the average of their tags
    >>> H = scale * (Y @ means) / Y.sum(1, keepdims=True) + 0.01 * rng.standard_normal((50, 6))
    >>> result = sknc.tagwise_average(H, Y)
    >>> result.summary[["multiplicity", "n_sets", "n_samples"]].values.tolist()
    [[2, 2, 20]]
    >>> round(float(result.summary["scale_mean"].iloc[0]), 1)  # the 1.8 built in, up to the noise
    1.8
    """

    sets: pd.DataFrame
    summary: pd.DataFrame


def angle_degrees(u, v):
    """Row-wise angle in degrees, stable near 0 and 180 (unlike arccos of a cosine); NaN for a zero row."""
    un_n = np.linalg.norm(u, axis=-1, keepdims=True)
    vn_n = np.linalg.norm(v, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        un = u / un_n
        vn = v / vn_n
        ang = np.degrees(2.0 * np.arctan2(np.linalg.norm(un - vn, axis=-1), np.linalg.norm(un + vn, axis=-1)))
    return np.where((un_n[..., 0] > 0) & (vn_n[..., 0] > 0), ang, np.nan)


def tagwise_tables(stats, geom):
    """Per-set table and per-multiplicity summary; ``UndefinedMetricError`` when no set qualifies.

    Returns ``(table, summary, undefined_sets)``: the last lists the label sets
    whose angle is NaN.
    """
    g = stats.groups
    stats.require_class_means()
    multi = np.flatnonzero((g.multiplicity >= 2) & (g.multiplicity < g.n_classes))
    if multi.size == 0:
        raise UndefinedMetricError("no label set with 2 <= |S| < K is present, so the tag-wise property is undefined")
    mult = g.multiplicity[multi]
    set_centred, _ = scaled(stats.group_rel[multi] - geom.global_mean_rel, geom.exp)
    tag_sum = g.sets[multi].astype(np.float64) @ geom.centred
    avg = tag_sum / mult[:, None]
    sn = np.linalg.norm(set_centred, axis=1)
    angle = angle_degrees(set_centred, tag_sum)
    avg_sq = np.einsum("ij,ij->i", avg, avg)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(avg_sq > 0, np.einsum("ij,ij->i", set_centred, avg) / avg_sq, np.nan)
        resid = np.linalg.norm(set_centred - np.nan_to_num(scale)[:, None] * avg, axis=1) / sn
    resid = np.where((sn > 0) & (avg_sq > 0), resid, np.nan)
    labels = [tuple(g.classes[np.flatnonzero(row)].tolist()) for row in g.sets[multi]]
    table = pd.DataFrame(
        {
            "labels": labels,
            "multiplicity": mult,
            "n_samples": stats.group_counts[multi],
            "angle": angle,
            "scale": scale,
            "residual": resid,
        }
    )
    summary = (
        table.groupby("multiplicity")
        .agg(
            n_sets=("labels", "size"),
            n_samples=("n_samples", "sum"),
            angle_mean=("angle", "mean"),
            angle_max=("angle", "max"),
            scale_mean=("scale", "mean"),
            scale_std=("scale", lambda s: float(np.std(s.dropna())) if s.notna().any() else np.nan),
            residual_mean=("residual", "mean"),
        )
        .reset_index()
    )
    undefined = [lab for lab, a in zip(labels, angle) if not np.isfinite(a)]
    return table, summary, undefined


def angle_ratio_value(stats):
    """The angle ratio of Li et al.'s code (uncentred means, multiplicity 2), vectorised."""
    g = stats.groups
    pairs = np.flatnonzero(g.multiplicity == 2)
    if pairs.size == 0:
        raise UndefinedMetricError("no multiplicity-2 label set is present; the angle ratio needs them")
    means, exp = scaled(stats.means)
    set_means, _ = scaled(stats.group_means[pairs], exp)

    def unit(x, what):
        n = np.linalg.norm(x, axis=1, keepdims=True)
        if np.any(n == 0):
            raise UndefinedMetricError(f"{what} is zero, so the uncentred angle ratio is undefined")
        return x / n

    set_unit = unit(set_means, "a pair-set mean")
    own = unit(g.sets[pairs].astype(np.float64) @ means, "the sum of a pair's class means")
    numerator = angle_degrees(own, set_unit).mean()
    i, j = np.triu_indices(means.shape[0], 1)
    all_pairs = unit(means[i] + means[j], "the sum of two class means")
    denominator = np.degrees(np.arccos(np.clip(all_pairs @ set_unit.T, -1, 1))).mean()
    if denominator == 0:
        raise UndefinedMetricError("every pair-set mean points along every sum of class means; the ratio is 0/0")
    return float(numerator / denominator)
