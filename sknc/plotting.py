"""Matplotlib figures of NC quantities (optional extra: ``pip install sknc[plot]``).

Every function returns the :class:`matplotlib.figure.Figure` it draws; nothing is
shown. Quantities come from :mod:`sknc.metrics` and friends, never recomputed here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "plot_cdnv_matrix",
    "plot_class_means",
    "plot_class_variability",
    "plot_layerwise",
    "plot_nc_history",
    "plot_study",
    "plot_study_heatmap",
    "plot_tagwise",
    "plot_trajectories",
    "plot_ufm_dynamics",
]

_NC_KEYS = ("nc1", "nc2_h", "nc2_w", "nc3", "nc4", "tagwise_angle")


def _pyplot():
    try:
        import matplotlib.pyplot as plt  # matplotlib falls back to Agg when there is no display
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("sknc.plotting needs matplotlib: pip install 'sknc[plot]'.") from exc
    return plt


_LOG_SPAN = 5.0  # positive values spread over more than this factor get a log axis
_SHARE_KEYS = ("ncc_accuracy", "ncc_agreement")  # shares in [0, 1], drawn on a linear axis of their own


def _nan_reason(metric):
    """Why a metric can be NaN, from the report-key registry (a generic phrase for other columns)."""
    from .metrics import key_info

    try:
        return f"NaN when {key_info(metric).nan_when}"
    except KeyError:
        return "every recorded value is NaN"


def _undefined(ax, metric, reason=None):
    """An axis that says a metric is undefined on the data, and why, instead of staying empty."""
    import textwrap

    text = f"{metric}: undefined on this data ({reason or _nan_reason(metric)})"
    ax.text(0.5, 0.5, textwrap.fill(text, 48), ha="center", va="center", transform=ax.transAxes, fontsize=8,
            color="0.3")
    ax.set_xticks([])
    ax.set_yticks([])


def _undefined_label(metric):
    return f"{metric}: undefined on this data"


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

    Examples
    --------
    >>> from sknc import UFMSolver
    >>> from sknc.plotting import plot_nc_history
    >>> solver = UFMSolver(max_iter=200, record_every=20, random_state=0).fit([0, 1, 2] * 5)
    >>> fig = plot_nc_history(solver.history_, metrics=["nc1", "nc3"], x="iteration")
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
    drawn, undefined = [], []
    for m in log_metrics:
        rows = history[[x, m]].dropna()
        if rows.empty:
            undefined.append(m)
            continue
        values = rows[m].to_numpy(dtype=float)
        positive = values > 0
        label = m if positive.all() else f"{m} (zeros not shown)"
        ax.plot(rows[x].to_numpy()[positive], values[positive], marker="o", label=label)
        drawn.append(values[positive])
    ax.set_title("Neural collapse during training")
    if not drawn and log_metrics:
        _undefined(ax, ", ".join(undefined), "every recorded value is NaN: see the NCWarning of the run")
    elif log_metrics:
        for m in undefined:  # in the legend, so that a missing line is not mistaken for one off the axis
            ax.plot([], [], linestyle="none", label=_undefined_label(m))
        log = _log_spaced(np.concatenate(drawn))
        if log:
            ax.set_yscale("log")
        ax.set_xlabel(x)
        ax.set_ylabel("metric (log scale)" if log else "metric")
        ax.legend(fontsize=8)
    if with_angle:
        rows = history[[x, "tagwise_angle"]].dropna()
        axes[0, 1].set_title("Tag-wise-average property")
        if rows.empty:
            _undefined(axes[0, 1], "tagwise_angle")
        else:
            axes[0, 1].plot(rows[x], rows["tagwise_angle"], marker="o", color="C5")
            axes[0, 1].set_xlabel(x)
            axes[0, 1].set_ylabel("mean tag-wise angle (degrees)")
            axes[0, 1].set_ylim(bottom=0)
    fig.tight_layout()
    return fig


def plot_class_means(features, y, W=None, dims=2, ax=None):
    """Class means (and classifier rows) projected onto the span of the centred means.

    Uses :class:`sknc.transformers.NCMetrics` for the projection, so the simplex
    appears undistorted. ``dims`` is 2 or 3 (a 3-D axis).

    Examples
    --------
    >>> import numpy as np
    >>> import sknc
    >>> from sknc.plotting import plot_class_means
    >>> y = np.repeat(np.arange(4), 20)
    >>> H = sknc.simplex_etf(4, 8, random_state=0)[y] + 0.1 * np.random.default_rng(0).standard_normal((80, 8))
    >>> fig = plot_class_means(H, y)
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
    from ._validation import group_labels

    names = group_labels(y).classes
    reach = float(np.abs(means).max()) or 1.0
    for i, name in enumerate(names):  # each mean named, just outside its point
        ax.text(*(means[i] * 1.08 + 0.02 * reach), str(name), fontsize=8, color="C0")
    if W is not None:
        w = np.asarray(W, dtype=float) @ basis.T
        scale = np.linalg.norm(means, axis=1).mean() / max(np.linalg.norm(w, axis=1).mean(), 1e-300)
        ax.scatter(*(w * scale).T, marker="^", s=60, c="C3", label="classifier rows (rescaled)", zorder=3)
    span = nc.components_.shape[0]
    share = nc.singular_values_**2 / np.sum(nc.singular_values_**2)
    for i, setter in enumerate((ax.set_xlabel, ax.set_ylabel) + ((ax.set_zlabel,) if dims == 3 else ())):
        setter(f"direction {i + 1} ({100 * share[i]:.0f} %)", fontsize=8)
    if span == dims:
        title = f"Class means in their {dims}-D span (a simplex at collapse)"
    else:
        title = (f"Class means on {dims} of the {span} directions they span\n"
                 f"(% of their spread; an ETF spreads it evenly, {100 / span:.0f} % each)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="best", fontsize=8)
    return fig


def plot_tagwise(result, ax=None):
    """Tag-wise property: angle and scale per label set, by multiplicity.

    ``result`` is a :class:`sknc.metrics.TagwiseResult`; a ``scale_theory``
    column in its summary is drawn as a dashed line per multiplicity.

    Examples
    --------
    >>> import numpy as np
    >>> import sknc
    >>> from sknc.plotting import plot_tagwise
    >>> means = sknc.simplex_etf(3, 6, random_state=0)
    >>> Y = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1]] * 10)
    >>> H = np.where(Y.sum(1) == 2, 1.8, 1.0)[:, None] * (Y @ means) / Y.sum(1, keepdims=True)
    >>> fig = plot_tagwise(sknc.tagwise_average(H, Y))
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
    """UFM solver history (``UFMSolver.history_``) against iterations, log scale.

    Examples
    --------
    >>> from sknc import UFMSolver
    >>> from sknc.plotting import plot_ufm_dynamics
    >>> solver = UFMSolver(max_iter=200, record_every=20, random_state=0).fit([0, 1, 2] * 5)
    >>> fig = plot_ufm_dynamics(solver.history_)
    """
    plt = _pyplot()
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 4))
    drawn = 0
    for col in columns:
        if col in history.columns:
            rows = history[["iteration", col]].dropna()
            values = np.abs(rows[col].to_numpy(dtype=float))
            # an exact optimum drives NC metrics to round-off (1e-300 and below): a log axis reaching that far
            # flattens every other curve. NC metrics are scale-free, so below 1e-16 they are round-off; the
            # objective and the gradient are drawn down to 1e-16 of their largest value.
            top = float(values.max()) if values.size else 0.0
            floor = 1e-16 if col.startswith("nc") else (1e-16 * top if top > 0 else 1e-300)
            if values.size and np.all(values <= floor):
                label = f"{col} (0 to round-off throughout)"
            elif np.any(values < floor):
                label = f"{col} (round-off drawn at {floor:.0e})"
            else:
                label = col
            ax.plot(rows["iteration"], np.maximum(values, floor), label=label)
            drawn += 1
    if not drawn:
        raise ValueError(f"history has none of the columns {columns}.")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_title("UFM dynamics")
    ax.legend()
    fig.tight_layout()
    return fig


def _log_spaced(values):
    """Positive numbers spread over more than a factor of ``_LOG_SPAN`` read best on a log axis."""
    try:
        values = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        return False
    values = values[np.isfinite(values)]
    return values.size > 1 and bool((values > 0).all()) and values.max() / values.min() > _LOG_SPAN


def _metric_label(metric):
    """Axis text that names the metric and what it measures (from the report-key registry)."""
    import textwrap

    from .metrics import key_info

    try:
        meaning = key_info(metric).meaning
    except KeyError:
        return metric
    return textwrap.fill(f"{metric}: {meaning}", 44)


def _conventions(metric):
    """``"global_mean='class', between='class'"``: the nc_report defaults the scorers measure with."""
    import inspect

    from .metrics import key_info, nc_report

    try:
        names = key_info(metric).conventions
    except KeyError:
        return ""
    defaults = inspect.signature(nc_report).parameters
    # a None default means "sknc decides" (rtol: the tolerance from the data), which is no convention to print
    return ", ".join(f"{n}={defaults[n].default!r}" for n in names
                     if n in defaults and defaults[n].default is not None)


def _numeric_or_text(series):
    numeric = pd.to_numeric(series, errors="coerce")
    return numeric if numeric.notna().all() else series.astype(str)


def plot_study(cv_results, param, metrics=("nc1",), hue=None, splits=("train", "test"), ax=None):
    """NC (or quality) metrics of a search against one hyperparameter, the papers' way.

    NC scores (``neg_nc1``) are drawn as the positive metric (``nc1``); the
    training-fold values (solid, what neural collapse is about: search with
    ``return_train_score=True``) and the test-fold values (dashed) are told
    apart. Axes are logarithmic where the values are positive and span more
    than a decade; one line per value of ``hue`` (another parameter).

    Parameters
    ----------
    cv_results : dict or DataFrame
        ``GridSearchCV.cv_results_``.
    param : str
        Hyperparameter on the x axis.
    metrics : str or sequence of str, default=('nc1',)
        Metric names (``'nc1'``, ``'nc2_h'``, ``'jaccard_samples'``, ...) or
        score names (``'neg_nc1'``); one panel each.
    hue : str, optional
        Second hyperparameter, one line per value; default the only other
        varied parameter, if there is exactly one.
    splits : sequence of {'train', 'test'}, default=('train', 'test')
        Which folds to draw (those present in ``cv_results``).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sknc import nc_scorers
    >>> X, y = load_iris(return_X_y=True)
    >>> from sknc.plotting import plot_study
    >>> search = GridSearchCV(LogisticRegression(max_iter=1000), {"C": [0.01, 0.1, 1.0, 10.0]}, cv=3,
    ...                       scoring=nc_scorers(["nc1", "nc3"]), refit=False,
    ...                       return_train_score=True).fit(X, y)
    >>> fig = plot_study(search.cv_results_, "C", metrics=["nc1", "nc3"])
    """
    from .study import study_table

    plt = _pyplot()
    table = study_table(cv_results)
    if param not in table.columns:
        raise ValueError(f"cv_results has no parameter {param!r}; parameters: {list(_param_names(cv_results))}.")
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    metrics = [m[4:] if m.startswith("neg_") and f"{m[4:]}_test" in table.columns else m for m in metrics]
    others = [p for p in _param_names(cv_results) if p != param and table[p].astype(str).nunique() > 1]
    if hue is None and len(others) == 1:
        hue = others[0]
    if hue is not None and hue not in table.columns:
        raise ValueError(f"cv_results has no parameter {hue!r}.")
    if ax is None:
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.8 * len(metrics), 3.8), squeeze=False)
        axes = axes[0]
    else:
        fig, axes = ax.figure, [ax]
    xs_all = _numeric_or_text(table[param])
    groups = table.groupby(table[hue].astype(str), sort=False) if hue else [(None, table)]
    for a, metric in zip(axes, metrics):
        present = [s for s in splits if f"{metric}_{s}" in table.columns]
        if not present:
            raise ValueError(f"cv_results has no score for {metric!r}.")
        conv = _conventions(metric)
        a.set_title(f"{metric} vs {param}" + (f" [{conv}]" if conv else "")
                    + ("\nsolid, filled: training folds; dashed, open: test folds" if len(present) > 1 else ""),
                    fontsize=8)
        if not np.isfinite(table[[f"{metric}_{s}" for s in present]].to_numpy(dtype=float)).any():
            _undefined(a, metric)
            continue
        drawn = []
        for i, (key, rows) in enumerate(groups):
            order = np.argsort(xs_all.loc[rows.index].to_numpy(), kind="stable")
            rows = rows.iloc[order]
            xs = xs_all.loc[rows.index]
            for split in present:
                ys = rows[f"{metric}_{split}"].to_numpy(dtype=float)
                err = rows[f"{metric}_{split}_std"].to_numpy(dtype=float)
                label = ", ".join(t for t in (f"{hue}={key}" if hue else "", f"{split} folds") if t)
                # filled markers and solid lines for the training folds, open markers and dashes for the test
                # folds: the legend tells them apart even where the lines overlap
                a.errorbar(xs, ys, yerr=err, marker="o" if split == "train" else "s", capsize=3, color=f"C{i}",
                           markerfacecolor=f"C{i}" if split == "train" else "white",
                           linestyle="-" if split == "train" else "--", label=label)
                drawn.append(ys)
        values = np.concatenate(drawn) if drawn else np.array([])
        if xs_all.dtype.kind in "fi" and _log_spaced(xs_all):
            a.set_xscale("log")
        if _log_spaced(values):
            a.set_yscale("log")
        a.set_xlabel(param)
        a.set_ylabel(_metric_label(metric))
        a.legend(fontsize=7, handlelength=3)
    fig.tight_layout()
    return fig


def _param_names(cv_results):
    return [c[len("param_"):] for c in pd.DataFrame(cv_results).columns if c.startswith("param_")]


def plot_study_heatmap(cv_results, x, y, metric="nc1", split="train", ax=None):
    """A metric over a two-parameter grid as a heatmap (log colour scale for NC metrics).

    Cells are annotated with their value; parameters not on the axes must be
    fixed (one value), otherwise pick one by filtering ``cv_results`` first.

    Parameters
    ----------
    cv_results : dict or DataFrame
    x, y : str
        The two hyperparameters.
    metric : str, default='nc1'
        A metric (``'nc1'``) or score (``'neg_nc1'``) name.
    split : {'train', 'test'}, default='train'

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sknc import nc_scorers
    >>> X, y = load_iris(return_X_y=True)
    >>> from sknc.plotting import plot_study_heatmap
    >>> grid = {"C": [0.1, 1.0, 10.0], "fit_intercept": [True, False]}
    >>> search = GridSearchCV(LogisticRegression(max_iter=1000), grid, cv=3, scoring=nc_scorers(["nc3"]),
    ...                       refit=False, return_train_score=True).fit(X, y)
    >>> fig = plot_study_heatmap(search.cv_results_, "C", "fit_intercept", metric="nc3")
    """
    from matplotlib.colors import LogNorm

    from .study import study_table

    plt = _pyplot()
    table = study_table(cv_results)
    for p in (x, y):
        if p not in table.columns:
            raise ValueError(f"cv_results has no parameter {p!r}.")
    metric = metric[4:] if metric.startswith("neg_") and f"{metric[4:]}_{split}" in table.columns else metric
    column = f"{metric}_{split}"
    if column not in table.columns:
        raise ValueError(f"cv_results has no {split} score for {metric!r}.")
    rest = [p for p in _param_names(cv_results) if p not in (x, y) and table[p].astype(str).nunique() > 1]
    if rest:
        raise ValueError(f"parameters {rest} also vary; select one value of each before drawing a heatmap.")
    pivot = table.pivot_table(index=y, columns=x, values=column, aggfunc="mean")
    pivot = pivot.sort_index(axis=0).sort_index(axis=1)
    values = pivot.to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 * values.shape[1] + 2.5, 0.8 * values.shape[0] + 1.8)) if ax is None else (
        ax.figure, ax)
    conv = _conventions(metric)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        ax.set_title(f"{metric} ({split} folds)" + (f"\n[{conv}]" if conv else ""), fontsize=9)
        _undefined(ax, metric)
        fig.tight_layout()
        return fig
    norm = LogNorm() if _log_spaced(finite) else None
    image = ax.imshow(values, cmap="viridis", norm=norm, aspect="auto", origin="lower")
    ax.set_xticks(range(values.shape[1]), [f"{v:g}" if isinstance(v, float) else str(v) for v in pivot.columns])
    ax.set_yticks(range(values.shape[0]), [f"{v:g}" if isinstance(v, float) else str(v) for v in pivot.index])
    for (i, j), v in np.ndenumerate(values):
        bright = np.isfinite(v) and image.norm(v) > 0.6  # viridis is light at the top: dark text there
        ax.text(j, i, "NaN" if not np.isfinite(v) else f"{v:.3g}", ha="center", va="center", fontsize=8,
                color="k" if bright else "w")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"{metric} ({split} folds)" + (f"\n[{conv}]" if conv else ""), fontsize=9)
    fig.colorbar(image, ax=ax, label=_metric_label(metric))
    fig.tight_layout()
    return fig


def plot_trajectories(cv_results, metric="nc1", ax=None):
    """A metric against epochs, one line per candidate (mean over folds, band = std).

    Needs ``history_scorers(...)`` in the search's ``scoring`` (see
    :mod:`sknc.study`). The y axis is logarithmic for positive values.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sknc import PALClassifier, history_scorers
    >>> from sknc.plotting import plot_trajectories
    >>> X, y = load_iris(return_X_y=True)
    >>> net = PALClassifier(hidden_sizes=(16,), max_epochs=4, track_nc=1, random_state=0)
    >>> search = GridSearchCV(net, {"lr": [0.01, 0.03]}, cv=2, refit=False,
    ...                       scoring={"accuracy": "accuracy", **history_scorers(range(1, 5))})
    >>> fig = plot_trajectories(search.fit(X.astype(np.float32), y).cv_results_, metric="nc1")
    """
    from .study import study_trajectories

    plt = _pyplot()
    traj = study_trajectories(cv_results)
    rows = traj[traj["metric"] == metric]
    recorded = any(str(c).startswith(f"mean_test_history_{metric}@") for c in pd.DataFrame(cv_results).columns)
    if rows.empty and not recorded:
        raise ValueError(f"no trajectory of {metric!r}; recorded: {sorted(traj['metric'].unique())}.")
    params = [p for p in _param_names(cv_results) if traj[p].astype(str).nunique() > 1] or _param_names(cv_results)
    fig, ax = plt.subplots(figsize=(6.4, 4.2)) if ax is None else (ax.figure, ax)
    ax.set_title(f"{metric} during training, one line per candidate")
    if rows.empty:  # recorded, NaN at every epoch
        _undefined(ax, metric)
        fig.tight_layout()
        return fig
    for i, (candidate, line) in enumerate(rows.groupby("candidate", sort=True)):
        label = ", ".join(f"{p}={line[p].iloc[0]}" for p in params)
        epochs, mean, std = line["epoch"].to_numpy(), line["mean"].to_numpy(), line["std"].to_numpy()
        ax.plot(epochs, mean, marker="o", markersize=3, color=f"C{i % 10}", label=label)
        ax.fill_between(epochs, mean - std, mean + std, color=f"C{i % 10}", alpha=0.15, linewidth=0)
    if _log_spaced(rows["mean"]):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(_metric_label(metric))
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_layerwise(report, metrics=("nc1", "nc2_h", "nc4"), ax=None):
    """NC metrics against depth: one line per metric over the layers of a layer-wise report.

    ``report`` is what :func:`sknc.model_nc_report` returns for many layers
    (one row per layer, in forward order). Positive metrics share a log axis
    (when they span more than a factor of 5); ``ncc_accuracy`` and
    ``ncc_agreement`` (shares in [0, 1]) get a linear axis on the right, so
    NC1 and the nearest-class-mean accuracy through depth (the law of data
    separation) read on one figure. Layers where a metric is undefined (NaN)
    or zero are left out of its line.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import torch
    >>> from sknc import model_nc_report
    >>> from sknc.plotting import plot_layerwise
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> X, y = torch.randn(60, 4), torch.arange(60) % 3
    >>> fig = plot_layerwise(model_nc_report(model, X, y, layers=["0", "1", "2:input"]))
    """
    plt = _pyplot()
    if not isinstance(report, pd.DataFrame) or report.empty:
        raise ValueError("report must be the non-empty DataFrame of model_nc_report(..., layers=[...]).")
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    missing = [m for m in metrics if m not in report.columns]
    if missing:
        raise ValueError(f"report has no column(s) {missing}; columns: {list(report.columns)}.")
    names = [str(n) for n in report.index]
    depth = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(names) + 2), 4)) if ax is None else (ax.figure, ax)
    ax.set_title("Neural collapse across depth")
    shares = [m for m in metrics if m in _SHARE_KEYS]  # accuracies in [0, 1]: their own linear axis on the right
    metrics = [m for m in metrics if m not in _SHARE_KEYS]
    if shares:
        right = ax.twinx()
        for i, metric in enumerate(shares):
            values = report[metric].to_numpy(dtype=float)
            keep = np.isfinite(values)
            right.plot(depth[keep], values[keep], marker="s", linestyle="--", color=f"C{len(metrics) + i}",
                       label=metric if keep.all() else f"{metric} (NaN layers not shown)")
        right.set_ylim(0, 1.02)
        right.set_ylabel("share (right axis, dashed)")
        right.legend(fontsize=8, loc="center right")
    drawn = []
    for metric in metrics:
        values = report[metric].to_numpy(dtype=float)
        keep = np.isfinite(values) & (values > 0)
        if not keep.any():
            ax.plot([], [], linestyle="none", label=_undefined_label(metric))
            continue
        label = metric if keep.all() else f"{metric} (NaN/zero layers not shown)"
        ax.plot(depth[keep], values[keep], marker="o", label=label)
        drawn.append(values[keep])
    if not drawn and metrics:
        _undefined(ax, ", ".join(metrics), "NaN or zero at every layer: see the NCWarning of the report")
        fig.tight_layout()
        return fig
    if not drawn:  # shares only
        ax.set_yticks([])
        ax.set_xticks(depth, names, rotation=35, ha="right", fontsize=8)
        ax.set_xlabel("layer (forward order)")
        fig.tight_layout()
        return fig
    log = _log_spaced(np.concatenate(drawn))
    if log:
        ax.set_yscale("log")
    ax.set_xticks(depth, names, rotation=35, ha="right", fontsize=8)
    ax.set_xlabel("layer (forward order)")
    ax.set_ylabel("metric (log scale)" if log else "metric")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_cdnv_matrix(matrix, ax=None):
    """The pairwise CDNV as a heatmap (log colour scale): bright cells are pairs that have not separated.

    ``matrix`` is :func:`sknc.metrics.cdnv_matrix`'s frame (NaN diagonal).

    Examples
    --------
    >>> import numpy as np
    >>> import sknc
    >>> from sknc.plotting import plot_cdnv_matrix
    >>> H = np.array([[0.0, 0], [0, 0.2], [1, 0], [1, 0.2], [10, 0], [10, 0.2]])
    >>> fig = plot_cdnv_matrix(sknc.metrics.cdnv_matrix(H, [0, 0, 1, 1, 2, 2]))
    """
    from matplotlib.colors import LogNorm

    plt = _pyplot()
    if not isinstance(matrix, pd.DataFrame) or matrix.shape[0] != matrix.shape[1] or matrix.empty:
        raise ValueError("matrix must be the square DataFrame of sknc.metrics.cdnv_matrix.")
    values = matrix.to_numpy(dtype=float)
    k = values.shape[0]
    fig, ax = plt.subplots(figsize=(min(1.0 + 0.45 * k, 12), min(0.8 + 0.4 * k, 11))) if ax is None else (ax.figure, ax)
    ax.set_title("CDNV of each pair of classes", fontsize=9)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        _undefined(ax, "cdnv")
        return fig
    image = ax.imshow(values, cmap="magma", norm=LogNorm() if _log_spaced(finite) else None)
    if k <= 30:
        ax.set_xticks(range(k), [str(c) for c in matrix.columns], rotation=90, fontsize=7)
        ax.set_yticks(range(k), [str(c) for c in matrix.index], fontsize=7)
    ax.set_xlabel("class")
    ax.set_ylabel("class")
    fig.colorbar(image, ax=ax, label=_metric_label("cdnv"))
    fig.tight_layout()
    return fig


def plot_class_variability(table, column="nc1", ax=None):
    """One bar per class of a per-class quantity (log axis when it spans more than a factor of 5).

    ``table`` is :func:`sknc.metrics.class_variability`'s frame; ``column``
    one of its columns (``'nc1'``, ``'within_variance'``,
    ``'relative_variability'``).

    Examples
    --------
    >>> import numpy as np
    >>> import sknc
    >>> from sknc.plotting import plot_class_variability
    >>> y = np.repeat(np.arange(3), 20)
    >>> H = sknc.simplex_etf(3, 4, random_state=0)[y] + 0.1 * np.random.default_rng(0).standard_normal((60, 4))
    >>> fig = plot_class_variability(sknc.metrics.class_variability(H, y))
    """
    plt = _pyplot()
    if not isinstance(table, pd.DataFrame) or column not in table.columns:
        raise ValueError(f"table must be sknc.metrics.class_variability's frame with a column {column!r}.")
    values = table[column].to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * len(values) + 2), 3.6)) if ax is None else (ax.figure, ax)
    ax.set_title(f"{column} per class", fontsize=9)
    if not np.isfinite(values).any():
        _undefined(ax, column)
        return fig
    ax.bar(range(len(values)), np.where(np.isfinite(values), values, 0.0), color="C0")
    if _log_spaced(values):
        ax.set_yscale("log")
    ax.set_xticks(range(len(values)), [str(c) for c in table.index], rotation=90 if len(values) > 12 else 0,
                  fontsize=7)
    ax.set_xlabel("class")
    ax.set_ylabel(column)
    fig.tight_layout()
    return fig
