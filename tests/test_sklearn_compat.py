"""scikit-learn API compliance, GridSearchCV with NC scorers, and the Dask backend."""

import os

import numpy as np
import pytest
import torch
from sklearn.datasets import make_multilabel_classification
from sklearn.model_selection import GridSearchCV
from sklearn.utils.estimator_checks import check_estimator, parametrize_with_checks

from sknc import (
    MultilabelStratifiedKFold,
    NCMetrics,
    PALClassifier,
    TagWiseAverageClassifier,
    UFMSolver,
    multilabel_scorers,
    nc_scorers,
)

from .conftest import multilabel_blobs

def _expected_failures(estimator):
    out = {}
    if isinstance(estimator, PALClassifier):
        out["check_methods_subset_invariance"] = "float32 matrix products depend on batch composition (~1e-7)"
    return out


@parametrize_with_checks(
    [
        PALClassifier(hidden_sizes=(32,), feature_dim=16, max_epochs=15, device="cpu", random_state=0),
        TagWiseAverageClassifier(),
        NCMetrics(),
    ],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("estimator", [PALClassifier(hidden_sizes=(16,), feature_dim=8, max_epochs=5, device="cpu",
                                                     random_state=0), TagWiseAverageClassifier()])
def test_multilabel_output_formats_with_label_free_rows(estimator):
    """Multi-label outputs in scikit-learn's formats, on data that includes label-free samples."""
    X, Y = make_multilabel_classification(n_samples=120, n_features=10, n_classes=5, allow_unlabeled=True,
                                          random_state=0)
    assert np.any(Y.sum(1) == 0)
    X = X.astype(np.float32)
    est = estimator.fit(X, Y)
    pred = est.predict(X)
    assert isinstance(pred, np.ndarray) and pred.shape == Y.shape and pred.dtype == Y.dtype
    same = type(estimator)(**estimator.get_params()).fit(X, [list(r) for r in Y]).predict(X)
    assert np.array_equal(pred, same)  # list-of-lists y gives identical output
    if hasattr(est, "predict_proba"):
        p = est.predict_proba(X)
        assert p.shape == Y.shape and np.all((p >= 0) & (p <= 1))
        assert est.decision_function(X).shape == Y.shape


def test_ufm_solver_api_checks():
    results = check_estimator(UFMSolver(max_iter=50), legacy=False, on_fail=None)
    failed = {r["check_name"] for r in results if r["status"] == "failed"}
    # These checks call fit(X, y) with a float feature matrix X; UFMSolver.fit takes the labels
    # (its features are free variables), so a float matrix is rightly rejected as labels.
    allowed = {
        "check_fit_score_takes_y",
        "check_estimators_overwrite_params",
        "check_dont_overwrite_parameters",
        "check_estimators_fit_returns_self",
        "check_readonly_memmap_input",
        "check_n_features_in_after_fitting",
        "check_positive_only_tag_during_fit",
    }
    assert failed <= allowed, failed - allowed
    passed = {r["check_name"] for r in results if r["status"] == "passed"}
    assert {"check_estimator_cloneable", "check_no_attributes_set_in_init", "check_estimators_unfitted",
            "check_do_not_raise_errors_in_init_or_set_params", "check_mixin_order"} <= passed


def _search_data():
    return multilabel_blobs(seed=3)


def _torch_threads(estimator, X, y):
    """A 'score' that reports how many threads torch uses where the scoring runs (the worker)."""
    return float(torch.get_num_threads())


def _search(n_jobs):
    X, Y = _search_data()
    scoring = nc_scorers() | multilabel_scorers() | {"torch_threads": _torch_threads}
    gs = GridSearchCV(
        PALClassifier(hidden_sizes=(32,), feature_dim=8, max_epochs=6, device="cpu", random_state=0),
        {"lambda_H": [1e-4, 1e-3], "fixed_etf": [True, False]},
        scoring=scoring,
        refit="jaccard_samples",
        cv=MultilabelStratifiedKFold(3),
        n_jobs=n_jobs,
        error_score="raise",
    )
    return gs.fit(X, Y)


def test_grid_search_with_nc_and_quality_scorers_n_jobs_2():
    gs = _search(n_jobs=2)
    res = gs.cv_results_
    for name in ("neg_nc1", "neg_nc2_h", "neg_nc2_w", "neg_nc3", "neg_nc4", "jaccard_samples", "subset_accuracy"):
        values = np.asarray(res[f"mean_test_{name}"], dtype=float)
        assert values.shape == (4,) and np.isfinite(values).all(), name
    assert np.all(np.asarray(res["mean_test_neg_nc1"]) < 0)
    assert hasattr(gs.best_estimator_, "coef_")
    # loky workers: one torch thread each (2 cores / 2 jobs), so fits do not oversubscribe the CPU
    assert np.all(np.asarray(res["mean_test_torch_threads"]) == max(1, (os.cpu_count() or 2) // 2))


@pytest.mark.slow
def test_dask_backend_equals_sequential():
    distributed = pytest.importorskip("distributed")
    import joblib

    sequential = _search(n_jobs=1).cv_results_
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster):
            with joblib.parallel_config(backend="dask"):
                remote = _search(n_jobs=-1).cv_results_
    assert np.all(np.asarray(remote["mean_test_torch_threads"]) == 1)  # dask's nanny pins one thread
    for key in sequential:
        if key.startswith(("mean_test_", "split")) and "time" not in key and "torch_threads" not in key:
            assert np.allclose(np.asarray(remote[key], float), np.asarray(sequential[key], float), rtol=1e-4,
                               atol=1e-5), key
    assert list(remote["params"]) == list(sequential["params"])


def test_torch_threads_are_restored_after_fit():
    before = torch.get_num_threads()
    X, Y = _search_data()
    PALClassifier(hidden_sizes=(8,), feature_dim=4, max_epochs=1, device="cpu", random_state=0).fit(X, Y)
    assert torch.get_num_threads() == before
