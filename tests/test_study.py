"""Studies: training-fold NC through a search, per-candidate trajectories under every backend, the study plots."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, KFold

from sknc import PALClassifier, nc_report, nc_scorers
from sknc.plotting import plot_study, plot_study_heatmap, plot_trajectories
from sknc.study import HistoryScorer, history_scorers, study_table, study_trajectories, tracked_epochs


def _digits(n=300):
    X, y = load_digits(return_X_y=True)
    return (X[:n] / 16).astype(np.float32), y[:n]


def _search(n_jobs=1, cv=KFold(3, shuffle=True, random_state=0)):
    scoring = nc_scorers(["nc1", "nc2_h"]) | {"accuracy": "accuracy"} | history_scorers(
        tracked_epochs(4, 2), ["nc1", "train_loss"])
    return GridSearchCV(
        PALClassifier(hidden_sizes=(32,), max_epochs=4, track_nc=2, device="cpu", random_state=0),
        {"lambda_H": [0.03, 0.3], "fixed_etf": [False, True]},
        scoring=scoring, refit=False, cv=cv, return_train_score=True, n_jobs=n_jobs, error_score="raise",
    )


@pytest.fixture
def one_thread():
    """Reductions depend on the thread count; parallel workers get one thread, so the reference does too."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_tracked_epochs_match_what_the_tracker_records():
    assert tracked_epochs(10, 5) == [5, 10]
    assert tracked_epochs(7, 3) == [3, 6, 7]
    assert tracked_epochs(2, 5) == [2]
    X, y = _digits(200)
    clf = PALClassifier(hidden_sizes=(16,), max_epochs=7, track_nc=3, device="cpu", random_state=0).fit(X, y)
    recorded = clf.history_.loc[clf.history_["nc1"].notna(), "epoch"].tolist()
    assert recorded == tracked_epochs(7, 3)
    with pytest.raises(ValueError, match="every"):
        tracked_epochs(5, 0)


def test_history_scorer_reads_the_fitted_history_and_nan_elsewhere():
    X, y = _digits(200)
    clf = PALClassifier(hidden_sizes=(16,), max_epochs=4, track_nc=2, device="cpu", random_state=0).fit(X, y)
    hist = clf.history_.set_index("epoch")
    assert HistoryScorer("nc1", 2)(clf) == hist.loc[2, "nc1"]
    assert HistoryScorer("train_loss", 3)(clf) == hist.loc[3, "train_loss"]
    assert np.isnan(HistoryScorer("nc1", 3)(clf))  # not a tracked epoch
    assert np.isnan(HistoryScorer("nc1", 99)(clf))  # never reached
    assert np.isnan(HistoryScorer("no_such_column", 2)(clf))
    with pytest.raises(TypeError, match="history"):
        HistoryScorer("nc1", 2)(object())
    with pytest.raises(ValueError, match="positive"):
        history_scorers([0, 2])


def test_train_fold_nc_equals_the_report_of_each_refitted_fold(one_thread):
    X, y = _digits()
    search = _search().fit(X, y)
    res = search.cv_results_
    splits = list(search.cv.split(X, y))
    for c, params in enumerate(res["params"]):
        for f, (train, test) in enumerate(splits):
            est = clone(search.estimator).set_params(**params).fit(X[train], y[train])
            for part, idx in (("train", train), ("test", test)):
                report = nc_report(est.transform(X[idx]), y[idx], est.coef_, est.intercept_)
                assert res[f"split{f}_{part}_neg_nc1"][c] == pytest.approx(-report["nc1"], rel=1e-9)
                assert res[f"split{f}_{part}_neg_nc2_h"][c] == pytest.approx(-report["nc2_h"], rel=1e-9)
            hist = est.history_.set_index("epoch")
            assert res[f"split{f}_test_history_nc1@4"][c] == pytest.approx(hist.loc[4, "nc1"], rel=1e-9)
    table = study_table(res)
    assert list(table.columns[:2]) == ["fixed_etf", "lambda_H"]
    assert np.allclose(table["nc1_train"], -np.asarray(res["mean_train_neg_nc1"]))
    assert np.allclose(table["nc1_test"], -np.asarray(res["mean_test_neg_nc1"]))
    assert np.allclose(table["accuracy_test"], res["mean_test_accuracy"])
    assert not any(c.startswith("history_") for c in table.columns)


def test_trajectories_are_the_fold_mean_of_each_history(one_thread):
    X, y = _digits()
    search = _search().fit(X, y)
    traj = study_trajectories(search.cv_results_)
    assert set(traj["metric"]) == {"nc1", "train_loss"}
    assert sorted(traj.loc[traj["metric"] == "nc1", "epoch"].unique()) == [2, 4]
    splits = list(search.cv.split(X, y))
    c = 3
    params = search.cv_results_["params"][c]
    runs = [clone(search.estimator).set_params(**params).fit(X[tr], y[tr]).history_.set_index("epoch")
            for tr, _ in splits]
    row = traj[(traj["candidate"] == c) & (traj["metric"] == "nc1") & (traj["epoch"] == 4)].iloc[0]
    values = [h.loc[4, "nc1"] for h in runs]
    assert row["mean"] == pytest.approx(np.mean(values), rel=1e-9)
    assert row["std"] == pytest.approx(np.std(values), rel=1e-9, abs=1e-12)
    assert row["lambda_H"] == params["lambda_H"] and row["fixed_etf"] == params["fixed_etf"]
    with pytest.raises(ValueError, match="history_scorers"):
        study_trajectories({"params": [{}], "mean_test_accuracy": [1.0]})


@pytest.mark.slow
def test_trajectories_identical_sequential_loky_and_dask(one_thread):
    distributed = pytest.importorskip("distributed")
    import joblib

    X, y = _digits()
    sequential = study_trajectories(_search().fit(X, y).cv_results_)
    with joblib.parallel_config(backend="loky", inner_max_num_threads=1):
        loky = study_trajectories(_search(n_jobs=2).fit(X, y).cv_results_)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl:
        with distributed.Client(cl), joblib.parallel_config(backend="dask"):
            dask = study_trajectories(_search(n_jobs=-1).fit(X, y).cv_results_)
    pd.testing.assert_frame_equal(loky, sequential, check_exact=True)
    pd.testing.assert_frame_equal(dask, sequential, check_exact=True)


def _fake_results():
    """cv_results_ of a 3 x 2 grid with known values (log-spaced lambda_H)."""
    lam = [1e-3, 1e-2, 1e-1] * 2
    etf = [False] * 3 + [True] * 3
    nc1_train = np.array([0.5, 0.05, 0.005, 0.4, 0.04, 0.004])
    res = {"param_lambda_H": lam, "param_fixed_etf": etf,
           "params": [{"lambda_H": a, "fixed_etf": b} for a, b in zip(lam, etf)],
           "mean_train_neg_nc1": -nc1_train, "std_train_neg_nc1": 0.1 * nc1_train,
           "mean_test_neg_nc1": -2 * nc1_train, "std_test_neg_nc1": 0.1 * nc1_train,
           "mean_test_accuracy": [0.9, 0.92, 0.95, 0.91, 0.93, 0.96], "std_test_accuracy": [0.01] * 6}
    for e, scale in ((10, 1.0), (20, 0.5)):
        res[f"mean_test_history_nc1@{e}"] = scale * nc1_train
        res[f"std_test_history_nc1@{e}"] = [0.0] * 6
    return res, nc1_train


def test_plot_study_draws_positive_nc_on_log_axes_train_and_test():
    res, nc1_train = _fake_results()
    fig = plot_study(res, "lambda_H", ["nc1", "accuracy"])
    ax_nc, ax_acc = fig.axes
    assert ax_nc.get_xscale() == "log" and ax_nc.get_yscale() == "log"
    assert ax_acc.get_yscale() == "linear"  # accuracies span less than a decade
    lines = {c.get_label(): c.lines[0] for c in ax_nc.containers}  # errorbar containers hold the data line
    assert set(lines) == {"fixed_etf=False, train folds", "fixed_etf=False, test folds",
                          "fixed_etf=True, train folds", "fixed_etf=True, test folds"}
    assert np.allclose(lines["fixed_etf=False, train folds"].get_ydata(), nc1_train[:3])
    assert np.allclose(lines["fixed_etf=True, test folds"].get_ydata(), 2 * nc1_train[3:])
    train, test = lines["fixed_etf=False, train folds"], lines["fixed_etf=False, test folds"]
    assert train.get_linestyle() == "-" and test.get_linestyle() == "--"
    # the legend tells the splits apart by the marker too: filled and open
    assert train.get_marker() != test.get_marker() and test.get_markerfacecolor() in ("white", (1, 1, 1, 1))
    assert "nc1" in ax_nc.get_ylabel() and "global_mean" in ax_nc.get_title()
    assert "rtol" not in ax_nc.get_title()  # None: no convention to print
    with pytest.raises(ValueError, match="no parameter"):
        plot_study(res, "lr")
    with pytest.raises(ValueError, match="no score"):
        plot_study(res, "lambda_H", "nc3")


def test_plot_study_heatmap_and_trajectories():
    res, nc1_train = _fake_results()
    fig = plot_study_heatmap(res, "lambda_H", "fixed_etf", "nc1")
    image = fig.axes[0].get_images()[0]
    assert np.allclose(image.get_array(), nc1_train.reshape(2, 3))  # rows fixed_etf False/True, columns lambda_H
    assert type(image.norm).__name__ == "LogNorm"
    texts = sorted(t.get_text() for t in fig.axes[0].texts)
    assert texts == sorted(f"{v:.3g}" for v in nc1_train)
    with pytest.raises(ValueError, match="also vary"):
        plot_study_heatmap({**res, "param_lr": [1, 2, 1, 2, 1, 2]}, "lambda_H", "fixed_etf")

    fig = plot_trajectories(res, "nc1")
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert len(lines) == 6 and ax.get_yscale() == "log"
    assert np.allclose(lines[0].get_xdata(), [10, 20]) and np.allclose(lines[0].get_ydata(), [0.5, 0.25])
    with pytest.raises(ValueError, match="no trajectory"):
        plot_trajectories(res, "nc2_h")
