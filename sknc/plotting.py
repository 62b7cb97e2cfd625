"""Matplotlib figures of NC quantities (optional extra: ``pip install sknc[plot]``).

Every function returns the :class:`matplotlib.figure.Figure` it draws; nothing is
shown. Quantities come from :mod:`sknc.metrics` and friends, never recomputed here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["plot_nc_history", "plot_class_means", "plot_tagwise", "plot_ufm_dynamics", "plot_study"]

_NC_KEYS = ("nc1", "nc2_h", "nc2_w", "nc3", "nc4", "tagwise_angle")


def _pyplot():
    try:
        import matplotlib.pyplot as plt  # matplotlib falls back to Agg when there is no display
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("sknc.plotting needs matplotlib: pip install 'sknc[plot]'.") from exc
    return plt


def plot_nc_history(history, metrics=None, x="epoch"):
    """NC metrics against epochs: a log-scale panel, plus the tag-wise angle (degrees) when present.

    Exact zeros (e.g. NC4 once the NCC rule agrees everywhere) cannot sit on a
    log axis; they are left out and the legend says so.

    Parameters
    ----------
    history : pandas.DataFrame
        ``PALClassifier.history_`` or ``UFMSolver.history_`` (rows without a
        recorded metric are skipped).
    metrics : sequence of str, optional
        Columns to draw; default every NC column present.
    x : str, default='epoch'
    """
    plt = _pyplot()
    if x not in history.columns:
        raise ValueError(f"history has no column {x!r}; columns are {list(history.columns)}.")
    metrics = [m for m in (metrics or _NC_KEYS) if m in history.columns]
    if not metrics:
        raise ValueError("history holds no NC metric columns: train with track_nc=k or UFMSolver(record_every=k).")
    log_metrics = [m for m in metrics if m != "tagwise_angle"]
    with_angle = "tagwise_angle" in metrics
    fig, axes = plt.subplots(1, 2 if with_angle else 1, figsize=(10 if with_angle else 6, 4), squeeze=False)
    ax = axes[0, 0]
    for m in log_metrics:
        rows = history[[x, m]].dropna()
        values = rows[m].to_numpy(dtype=float)
        positive = values > 0
        label = m if positive.all() else f"{m} (zeros not shown)"
        ax.plot(rows[x].to_numpy()[positive], values[positive], marker="o", label=label)
    ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel("metric (log scale)")
    ax.set_title("Neural collapse during training")
    ax.legend(fontsize=8)
    if with_angle:
        rows = history[[x, "tagwise_angle"]].dropna()
        axes[0, 1].plot(rows[x], rows["tagwise_angle"], marker="o", color="C5")
        axes[0, 1].set_xlabel(x)
        axes[0, 1].set_ylabel("mean tag-wise angle (degrees)")
        axes[0, 1].set_title("Tag-wise-average property")
        axes[0, 1].set_ylim(bottom=0)
    fig.tight_layout()
    return fig


def plot_class_means(features, y, W=None, dims=2, ax=None):
    """Class means (and classifier rows) projected onto the span of the centred means.

    Uses :class:`sknc.transformers.NCMetrics` for the projection, so the simplex
    appears undistorted. ``dims`` is 2 or 3 (a 3-D axis).
    """
    from .transformers import NCMetrics

    plt = _pyplot()
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3; got {dims}.")
    nc = NCMetrics().fit(features, y)
    if nc.components_.shape[0] < dims:
        raise ValueError(f"the class means span {nc.components_.shape[0]} dimension(s); cannot draw {dims}-D.")
    basis = nc.components_[:dims]
    from .metrics import class_means

    means = (class_means(features, y) - nc.center_) @ basis.T
    fig = plt.figure(figsize=(5, 5)) if ax is None else ax.figure
    if ax is None:
        ax = fig.add_subplot(111, projection="3d" if dims == 3 else None)
    coords = means.T
    ax.scatter(*coords, s=60, c="C0", label="class means", zorder=3)
    k = means.shape[0]
    for i in range(k):
        for j in range(i + 1, k):
            ax.plot(*np.stack([means[i], means[j]]).T, color="C0", alpha=0.25, lw=0.8)
    if W is not None:
        w = np.asarray(W, dtype=float) @ basis.T
        scale = np.linalg.norm(means, axis=1).mean() / max(np.linalg.norm(w, axis=1).mean(), 1e-300)
        ax.scatter(*(w * scale).T, marker="^", s=60, c="C3", label="classifier rows (rescaled)", zorder=3)
    ax.set_title(f"Class means in their {dims}-D simplex subspace")
    ax.legend(loc="best")
    return fig


def plot_tagwise(result, ax=None):
    """Tag-wise property: angle and scale per label set, by multiplicity.

    ``result`` is a :class:`sknc.metrics.TagwiseResult`; a ``scale_theory``
    column in its summary is drawn as a dashed line per multiplicity.
    """
    plt = _pyplot()
    sets, summary = result.sets, result.summary
    if ax is None:
        fig, (ax_angle, ax_scale) = plt.subplots(1, 2, figsize=(9, 3.8))
    else:
        fig = ax[0].figure
        ax_angle, ax_scale = ax
    mults = sorted(sets["multiplicity"].unique())
    for i, m in enumerate(mults):
        rows = sets[sets["multiplicity"] == m]
        ax_angle.scatter(np.full(len(rows), m) + 0.08 * (np.arange(len(rows)) % 5 - 2), rows["angle"], s=14,
                         color=f"C{i}", label=f"|S|={m}")
        ax_scale.scatter(np.full(len(rows), m) + 0.08 * (np.arange(len(rows)) % 5 - 2), rows["scale"], s=14,
                         color=f"C{i}")
    if "scale_theory" in summary.columns:
        for i, (m, c) in enumerate(zip(summary["multiplicity"], summary["scale_theory"])):
            ax_scale.hlines(c, m - 0.3, m + 0.3, colors="k", linestyles="--", label="UFM theory" if i == 0 else None)
        ax_scale.legend()
    ax_angle.set_xlabel("multiplicity |S|")
    ax_angle.set_ylabel("angle to the sum of tag means (deg)")
    ax_scale.set_xlabel("multiplicity |S|")
    ax_scale.set_ylabel("scale c_S of the tag average")
    ax_angle.set_xticks(mults)
    ax_scale.set_xticks(mults)
    ax_angle.legend()
    fig.suptitle("Tag-wise-average property")
    fig.tight_layout()
    return fig


def plot_ufm_dynamics(history, columns=("objective", "grad_norm", "nc1", "nc2_w", "nc3"), ax=None):
    """UFM solver history (``UFMSolver.history_``) against iterations, log scale."""
    plt = _pyplot()
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 4))
    drawn = 0
    for col in columns:
        if col in history.columns:
            rows = history[["iteration", col]].dropna()
            ax.plot(rows["iteration"], np.abs(rows[col].to_numpy(dtype=float)) + 1e-300, label=col)
            drawn += 1
    if not drawn:
        raise ValueError(f"history has none of the columns {columns}.")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_title("UFM dynamics")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_study(cv_results, param, metrics, ax=None):
    """Mean test score (with std bars) of each metric against one hyperparameter.

    ``cv_results`` is ``GridSearchCV.cv_results_`` or a DataFrame of it. Other
    hyperparameters are shown as separate lines.
    """
    plt = _pyplot()
    frame = pd.DataFrame(cv_results)
    column = f"param_{param}"
    if column not in frame.columns:
        raise ValueError(f"cv_results has no parameter {param!r}.")
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    others = [c for c in frame.columns if c.startswith("param_") and c != column]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.6), squeeze=False) if ax is None else (
        ax.figure, np.array([[ax]]))
    for a, metric in zip(axes[0], metrics):
        if f"mean_test_{metric}" not in frame.columns:
            raise ValueError(f"cv_results has no score {metric!r}.")
        groups = frame.groupby([frame[c].astype(str) for c in others]) if others else [("", frame)]
        for key, rows in groups:
            rows = rows.sort_values(column)
            label = ", ".join(f"{o[6:]}={v}" for o, v in zip(others, key if isinstance(key, tuple) else (key,))) or None
            xs = rows[column].astype(float) if pd.api.types.is_numeric_dtype(rows[column]) else rows[column].astype(str)
            a.errorbar(xs, rows[f"mean_test_{metric}"], yerr=rows[f"std_test_{metric}"], marker="o", capsize=3,
                       label=label)
        a.set_xlabel(param)
        a.set_ylabel(metric)
        if others:
            a.legend(fontsize=8)
    fig.tight_layout()
    return fig
