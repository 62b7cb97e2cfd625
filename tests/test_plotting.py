"""Plots are checked by what they draw (Agg backend, no display)."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from sknc import UFMSolver, simplex_etf, tagwise_average
from sknc.plotting import plot_class_means, plot_nc_history, plot_study, plot_tagwise, plot_ufm_dynamics

from .test_metrics import _multilabel_fixture


def test_nc_history_draws_the_recorded_values():
    hist = pd.DataFrame({"epoch": [1, 2, 3, 4], "nc1": [np.nan, 0.5, np.nan, 0.01], "nc4": [np.nan, 0.2, np.nan, 0.0],
                         "tagwise_angle": [np.nan, 20.0, np.nan, 5.0]})
    fig = plot_nc_history(hist)
    left, right = fig.axes
    lines = {line.get_label(): line for line in left.get_lines()}
    assert np.allclose(lines["nc1"].get_ydata(), [0.5, 0.01]) and np.allclose(lines["nc1"].get_xdata(), [2, 4])
    assert np.allclose(lines["nc4 (zeros not shown)"].get_ydata(), [0.2])  # the exact zero is left out
    assert left.get_yscale() == "log"  # a factor of 50
    narrow = plot_nc_history(hist.assign(nc1=[np.nan, 0.5, np.nan, 0.3]), metrics=["nc1"])
    assert narrow.axes[0].get_yscale() == "linear"  # within a factor of 5
    assert np.allclose(right.get_lines()[0].get_ydata(), [20.0, 5.0])
    with pytest.raises(ValueError, match="no NC metric"):
        plot_nc_history(pd.DataFrame({"epoch": [1], "train_loss": [0.3]}))


def test_class_means_projection_keeps_the_simplex(rng):
    k, d = 3, 6
    M = simplex_etf(k, d, norm=2.0, random_state=0)
    y = np.repeat(np.arange(k), 10)
    H = 5 + M[y] + 0.01 * rng.standard_normal((len(y), d))
    fig = plot_class_means(H, y, W=M, dims=2)
    pts = fig.axes[0].collections[0].get_offsets()
    means = np.stack([H[y == c].mean(0) for c in range(k)])
    drawn = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    true = np.linalg.norm(means[:, None] - means[None], axis=-1)
    assert np.allclose(drawn, true, atol=1e-8)  # K=3 lies in 2-D: distances are exact
    assert len(fig.axes[0].collections) == 2  # means and classifier rows
    fig3 = plot_class_means(np.vstack([H, H[:3] + 1]), np.r_[y, [0, 1, 2]], dims=2)
    assert fig3 is not None
    with pytest.raises(ValueError, match="span 2 dimension"):
        plot_class_means(H, y, dims=3)


def test_tagwise_plot_draws_every_set_and_theory(rng):
    H, Y, *_ = _multilabel_fixture(rng, noise=0.1)
    result = tagwise_average(H, Y, regularization={"lambda_W": 5e-3, "lambda_H": 5e-3})
    fig = plot_tagwise(result)
    ax_angle, ax_scale = fig.axes
    points = [c for c in ax_angle.collections if c.__class__.__name__ == "PathCollection"]
    assert sum(len(c.get_offsets()) for c in points) == len(result.sets)
    scales = np.concatenate([c.get_offsets()[:, 1] for c in ax_scale.collections
                             if c.__class__.__name__ == "PathCollection"])
    assert np.allclose(np.sort(scales), np.sort(result.sets["scale"]))
    segments = [c for c in ax_scale.collections if c.__class__.__name__ == "LineCollection"]
    assert np.allclose(sorted(s[0][1] for c in segments for s in c.get_segments()),
                       sorted(result.summary["scale_theory"]))


def test_ufm_dynamics_and_study_plots():
    y = np.repeat(np.arange(3), 3)
    ufm = UFMSolver(lambda_W=5e-3, lambda_H=5e-3, feature_dim=3, record_every=2, random_state=0).fit(y)
    fig = plot_ufm_dynamics(ufm.history_)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert np.allclose(lines["objective"].get_ydata(), ufm.history_["objective"])
    cv = {"param_lambda_H": [1e-4, 1e-3, 1e-4, 1e-3], "param_fixed_etf": [True, True, False, False],
          "mean_test_acc": [0.5, 0.6, 0.55, 0.7], "std_test_acc": [0.01, 0.02, 0.03, 0.04]}
    fig = plot_study(cv, "lambda_H", "acc")
    ys = sorted(tuple(np.round(np.asarray(c[0].get_ydata(), dtype=float), 12)) for c in fig.axes[0].containers)
    assert ys == [(0.5, 0.6), (0.55, 0.7)]
    with pytest.raises(ValueError, match="no score"):
        plot_study(cv, "lambda_H", "f1")


def test_layerwise_plot_draws_each_metric_over_depth():
    from sknc.plotting import plot_layerwise

    report = pd.DataFrame({"nc1": [0.9, 0.3, 0.1], "nc2_h": [0.7, 0.6, 0.5], "nc4": [np.nan, np.nan, 0.0]},
                          index=["pixels", "relu1", "relu2"])
    fig = plot_layerwise(report, metrics=["nc1", "nc2_h", "nc4"])
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert np.allclose(lines["nc1"].get_ydata(), [0.9, 0.3, 0.1])
    assert np.allclose(lines["nc1"].get_xdata(), [0, 1, 2])
    assert len(lines["nc4: undefined on this data"].get_ydata()) == 0
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["pixels", "relu1", "relu2"]
    with pytest.raises(ValueError, match="no column"):
        plot_layerwise(report, metrics=["cdnv"])
    with pytest.raises(ValueError, match="non-empty DataFrame"):
        plot_layerwise(pd.DataFrame())


def test_class_means_are_named_and_the_title_says_what_was_projected(rng):
    # the demo's figure said "2-D simplex subspace" for 10 means projected on 2 of 9 directions, unlabelled
    k = 6
    M = simplex_etf(k, 8, random_state=0)
    y = np.repeat(np.arange(k), 10)
    H = M[y] + 0.01 * rng.standard_normal((len(y), 8))
    ax = plot_class_means(H, y, dims=2).axes[0]
    assert sorted(t.get_text() for t in ax.texts) == [str(c) for c in range(k)]
    assert "2 of the 5 directions" in ax.get_title() and "simplex subspace" not in ax.get_title()
    # an ETF spreads evenly: each drawn direction carries 1/(K-1) of the spread
    assert ax.get_xlabel() == "direction 1 (20 %)" and ax.get_ylabel() == "direction 2 (20 %)"
    ax3 = plot_class_means(H[y < 3], y[y < 3], dims=2).axes[0]
    assert "in their 2-D span" in ax3.get_title()


def test_ufm_dynamics_draw_round_off_at_a_floor_not_at_1e_300():
    hist = pd.DataFrame({"iteration": [0, 10, 20], "objective": [2.0, 1.0, 0.9], "nc1": [1e-300, 1e-310, 0.0],
                         "nc3": [0.5, 1e-3, 1e-20]})
    ax = plot_ufm_dynamics(hist, columns=("objective", "nc1", "nc3")).axes[0]
    lines = {line.get_label(): line.get_ydata() for line in ax.get_lines()}
    assert np.allclose(lines["nc1 (0 to round-off throughout)"], 1e-16)
    assert np.allclose(lines["nc3 (round-off drawn at 1e-16)"], [0.5, 1e-3, 1e-16])
    assert ax.get_ylim()[0] > 1e-20


def test_study_table_has_no_negative_zero():
    from sknc.study import study_table

    cv = {"param_C": [1.0, 2.0], "params": [{"C": 1.0}, {"C": 2.0}], "mean_test_neg_nc4": [0.0, -0.0],
          "std_test_neg_nc4": [0.0, 0.0], "mean_train_neg_nc4": [-0.0, 0.0], "std_train_neg_nc4": [0.0, 0.0]}
    table = study_table(cv)
    assert not np.signbit(table[["nc4_train", "nc4_test"]].to_numpy()).any()
    assert "-0" not in table.to_string()


def _texts(ax):
    return " ".join(t.get_text().replace("\n", " ") for t in ax.texts)


def test_an_undefined_metric_says_so_in_every_plot():
    from sknc.plotting import plot_layerwise, plot_study_heatmap, plot_trajectories

    # a study on data where nc1 is NaN in every candidate (e.g. a class mean the label sets leave free)
    cv = {"param_lambda_H": [1e-4, 1e-3, 1e-2, 1e-4, 1e-3, 1e-2], "param_lr": [0.1] * 3 + [0.01] * 3,
          "mean_test_nc1": [np.nan] * 6, "std_test_nc1": [np.nan] * 6,
          "mean_test_acc": [0.5, 0.6, 0.7, 0.5, 0.55, 0.58], "std_test_acc": [0.01] * 6,
          "mean_test_history_nc1@1": [np.nan] * 6, "std_test_history_nc1@1": [np.nan] * 6,
          "mean_test_history_nc1@2": [np.nan] * 6, "std_test_history_nc1@2": [np.nan] * 6}
    fig = plot_study(cv, "lambda_H", ["nc1", "acc"])
    nan_panel, acc_panel = fig.axes
    assert "nc1: undefined on this data (NaN when" in _texts(nan_panel) and not nan_panel.lines
    assert acc_panel.containers and not acc_panel.texts
    assert acc_panel.get_xscale() == "log" and acc_panel.get_yscale() == "linear"  # 1e-4..1e-2; 0.5..0.7
    heat = plot_study_heatmap(cv, "lambda_H", "lr", metric="nc1", split="test")
    assert "undefined on this data" in _texts(heat.axes[0]) and not heat.axes[0].images
    traj = plot_trajectories(cv, metric="nc1")
    assert "undefined on this data" in _texts(traj.axes[0])
    hist = plot_nc_history(pd.DataFrame({"epoch": [1, 2], "nc1": [np.nan, np.nan], "nc3": [np.nan, np.nan]}))
    assert "undefined on this data" in _texts(hist.axes[0])
    mixed = plot_nc_history(pd.DataFrame({"epoch": [1, 2], "nc1": [np.nan, np.nan], "nc3": [0.9, 0.01]}))
    labels = [line.get_label() for line in mixed.axes[0].get_lines()]
    assert labels == ["nc3", "nc1: undefined on this data"] and mixed.axes[0].get_yscale() == "log"
    layers = plot_layerwise(pd.DataFrame({"nc1": [np.nan, np.nan]}, index=["a", "b"]), metrics=["nc1"])
    assert "undefined on this data" in _texts(layers.axes[0])


def test_per_class_plots_draw_the_values(rng):
    import sknc
    from sknc.plotting import plot_cdnv_matrix, plot_class_variability

    y = np.repeat(np.arange(4), 20)
    spread = np.array([0.01, 0.05, 0.2, 0.4])[y][:, None]
    H = simplex_etf(4, 6, random_state=0)[y] + spread * rng.standard_normal((80, 6))
    matrix = sknc.metrics.cdnv_matrix(H, y)
    fig = plot_cdnv_matrix(matrix)
    image = fig.axes[0].images[0]
    drawn = np.ma.filled(image.get_array(), np.nan)
    assert np.allclose(drawn, matrix.to_numpy(), equal_nan=True)
    assert type(image.norm).__name__ == "LogNorm"  # pair values span far more than a factor of 5
    table = sknc.metrics.class_variability(H, y)
    bars = plot_class_variability(table).axes[0].patches
    assert np.allclose([b.get_height() for b in bars], table["nc1"])
    with pytest.raises(ValueError, match="column 'nope'"):
        plot_class_variability(table, column="nope")
    with pytest.raises(ValueError, match="square DataFrame"):
        plot_cdnv_matrix(table.iloc[:, :3])


def test_layerwise_plot_puts_shares_on_their_own_axis():
    from sknc.plotting import plot_layerwise

    report = pd.DataFrame({"nc1": [3.0, 0.5, 0.02], "ncc_accuracy": [0.4, 0.7, 0.95]}, index=["a", "b", "c"])
    fig = plot_layerwise(report, metrics=["nc1", "ncc_accuracy"])
    left, right = fig.axes
    assert left.get_yscale() == "log" and right.get_yscale() == "linear"
    assert np.allclose(right.get_lines()[0].get_ydata(), [0.4, 0.7, 0.95])
    assert np.allclose(left.get_lines()[0].get_ydata(), [3.0, 0.5, 0.02])
