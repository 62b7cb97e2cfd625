"""UFMSolver against the closed forms of sknc.theory (and thus theory.md's tables)."""

import math
import pickle
import warnings
from itertools import combinations

import numpy as np

import sknc
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from sknc import UFMSolver, nc_report, theory

TOL = 1e-6


def _label_sets(k, per_set):
    rows = []
    for m, count in per_set.items():
        for s in combinations(range(k), m):
            row = np.zeros(k, dtype=int)
            row[list(s)] = 1
            rows += [row] * count
    return np.array(rows)


def _assert_gap(ufm, keys=None):
    assert ufm.theory_gap_ is not None
    for key, gap in ufm.theory_gap_.items():
        if keys is None or key in keys:
            assert gap <= TOL, (key, gap)


@pytest.mark.parametrize("lw,lh,lb", [(5e-3, 5e-3, 0.0), (1e-2, 2e-3, 5e-3), (2e-2, 2e-2, 0.0), (0.12, 0.12, 0.0)])
def test_balanced_ce_reaches_closed_form(lw, lh, lb):
    y = np.repeat(np.arange(4), 5)
    ufm = UFMSolver(lambda_W=lw, lambda_H=lh, lambda_b=lb, feature_dim=6, random_state=0).fit(y)
    assert isinstance(ufm.theory_, theory.BalancedCEOptimum)
    assert ufm.converged_
    _assert_gap(ufm)
    if ufm.theory_.collapsed:
        assert np.abs(ufm.W_).max() < 1e-6 and np.abs(ufm.H_).max() < 1e-6
    else:
        rep = nc_report(ufm.H_, y, ufm.W_, ufm.b_)
        assert rep["nc1"] < 1e-12 and rep["nc2_w"] < 1e-6 and rep["nc3"] < 1e-6


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nonnegative_minority_collapse(seed):
    y = np.repeat(np.arange(4), [2, 4, 8, 16])
    ufm = UFMSolver(lambda_W=0.05, lambda_H=0.05, feature_dim=8, nonnegative=True, bias=False, random_state=seed)
    ufm.fit(y)
    assert isinstance(ufm.theory_, theory.NonnegativeCEOptimum)
    assert ufm.theory_.minority_collapsed.tolist() == [True, False, False, False]
    _assert_gap(ufm)
    assert ufm.H_.min() >= 0
    assert np.abs(ufm.H_[y == 0]).max() < 1e-6  # the minority class sits at the origin
    means = np.stack([ufm.H_[y == c].mean(0) for c in range(1, 4)])
    cos = means @ means.T / np.outer(np.linalg.norm(means, axis=1), np.linalg.norm(means, axis=1))
    assert np.abs(cos - np.eye(3)).max() < 1e-6  # orthogonal frame


def test_nonnegative_complete_collapse():
    y = np.repeat(np.arange(4), [2, 4, 8, 16])
    ufm = UFMSolver(lambda_W=0.2, lambda_H=0.2, feature_dim=8, nonnegative=True, bias=False, random_state=0).fit(y)
    assert ufm.theory_.complete_collapse
    _assert_gap(ufm)
    assert ufm.objective_ == pytest.approx(math.log(4), rel=1e-10)
    assert np.abs(ufm.H_).max() < 1e-6 and np.abs(ufm.W_).max() < 1e-6


@pytest.mark.parametrize(
    "k,per_set,lw,lh,loss",
    [
        (4, {1: 3, 2: 1}, 5e-3, 5e-3, "pal"),
        (4, {1: 3, 2: 1}, 5e-3, 5e-3, "pal_mean"),
        (5, {1: 4, 2: 1, 3: 2}, 1e-2, 2e-3, "pal"),
        (4, {1: 2, 2: 2, 3: 1}, 2e-2, 2e-2, "pal_mean"),
    ],
)
def test_pal_reaches_mlab_etf(k, per_set, lw, lh, loss):
    Y = _label_sets(k, per_set)
    ufm = UFMSolver(loss=loss, lambda_W=lw, lambda_H=lh, lambda_b=1e-2, feature_dim=k + 2, random_state=0).fit(Y)
    assert isinstance(ufm.theory_, theory.PALOptimum)
    _assert_gap(ufm)
    assert {f"scale_m{m}" for m in per_set if m > 1} <= set(ufm.theory_gap_)
    assert np.abs(ufm.b_).max() < 1e-6  # lambda_b > 0 pins the bias at 0


def test_pal_unbalanced_sets_have_no_theory():
    Y = _label_sets(4, {1: 3, 2: 1})[:-1]  # drop one pair sample
    ufm = UFMSolver(loss="pal", lambda_W=5e-3, lambda_H=5e-3, feature_dim=5, random_state=0).fit(Y)
    assert ufm.theory_ is None and ufm.theory_gap_ is None


def test_mse_strong_collapse_from_small_initialisation():
    y = np.repeat(np.arange(3), 3)
    errors = {}
    for eps in (0.1, 0.01):
        ufm = UFMSolver(loss="mse", lambda_W=0, lambda_H=0, feature_dim=15, solver="gd", lr=0.5, max_iter=3000,
                        tol=1e-10, init="norm", init_scale=eps, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ufm.fit(y)
        assert isinstance(ufm.theory_, theory.StrongCollapse)
        assert ufm.objective_ < 1e-6  # interpolation
        errors[eps] = ufm.theory_gap_
    # err1 shrinks like eps^2, err2 and err3 like eps (Mixon et al., Figure 1)
    assert 30 < errors[0.1]["strong_nc_gram"] / errors[0.01]["strong_nc_gram"] < 300
    assert 5 < errors[0.1]["strong_nc_features"] / errors[0.01]["strong_nc_features"] < 20
    assert 5 < errors[0.1]["strong_nc_bias"] / errors[0.01]["strong_nc_bias"] < 20


@pytest.mark.parametrize("solver,lr,max_iter,tol", [("gd", 0.5, 20000, 1e-7), ("adam", 1e-2, 20000, 1e-7)])
def test_first_order_solvers_approach_theory(solver, lr, max_iter, tol):
    y = np.repeat(np.arange(3), 2)
    ufm = UFMSolver(lambda_W=1e-2, lambda_H=1e-2, feature_dim=3, solver=solver, lr=lr, max_iter=max_iter,
                    tol=tol, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ufm.fit(y)
    assert ufm.theory_gap_["objective"] < 1e-6


def test_projected_gd_keeps_features_nonnegative():
    y = np.repeat(np.arange(3), [2, 3, 5])
    ufm = UFMSolver(lambda_W=0.02, lambda_H=0.02, feature_dim=3, nonnegative=True, bias=False, solver="gd", lr=0.2,
                    max_iter=20000, tol=1e-8, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ufm.fit(y)
    assert ufm.H_.min() >= 0
    assert ufm.theory_gap_["objective"] < 1e-5


def test_history_and_convergence_warning():
    y = np.repeat(np.arange(3), 4)
    ufm = UFMSolver(lambda_W=5e-3, lambda_H=5e-3, feature_dim=4, record_every=5, reduce=False,
                    random_state=0).fit(y)
    hist = ufm.history_
    assert list(hist.columns[:3]) == ["iteration", "objective", "grad_norm"]
    assert {"nc1", "nc2_h", "nc2_w", "nc3"} <= set(hist.columns)
    assert hist["iteration"].iloc[0] == 0 and hist["iteration"].iloc[-1] == ufm.n_iter_
    assert hist["objective"].iloc[-1] < hist["objective"].iloc[0]
    assert hist["nc1"].iloc[-1] < 1e-8 < hist["nc1"].iloc[0]
    with pytest.warns(ConvergenceWarning, match="stopped after 3 iterations"):
        UFMSolver(lambda_W=5e-3, lambda_H=5e-3, max_iter=3, random_state=0).fit(y)


def test_transform_and_api():
    Y = _label_sets(4, {1: 2, 2: 1})
    ufm = UFMSolver(loss="pal", lambda_W=5e-3, lambda_H=5e-3, feature_dim=5, random_state=0)
    assert clone(ufm).get_params() == ufm.get_params()
    assert not hasattr(ufm, "W_")
    ufm.fit(Y)
    feats = ufm.transform(Y[[0, 8]])
    assert np.allclose(feats[0], ufm.H_[0], atol=1e-6) and np.allclose(feats[1], ufm.H_[8], atol=1e-6)
    with pytest.raises(ValueError, match=r"label set \(0, 1, 2\) was never seen"):
        ufm.transform(np.array([[1, 1, 1, 0]]))
    again = pickle.loads(pickle.dumps(ufm))
    assert np.array_equal(again.W_, ufm.W_)
    y = np.repeat(["a", "b", "c"], 3)
    single = UFMSolver(lambda_W=5e-3, lambda_H=5e-3, feature_dim=3, random_state=0).fit(y)
    assert single.transform(["c"]).shape == (1, 3)
    with pytest.raises(ValueError, match="'z' was never seen"):
        single.transform(["z"])


def test_random_state_and_invariances():
    y = np.repeat(np.arange(3), 4)
    a = UFMSolver(lambda_W=5e-3, lambda_H=5e-3, feature_dim=4, random_state=3).fit(y)
    b = UFMSolver(lambda_W=5e-3, lambda_H=5e-3, feature_dim=4, random_state=3).fit(y)
    assert np.array_equal(a.W_, b.W_)
    relabelled = UFMSolver(lambda_W=5e-3, lambda_H=5e-3, feature_dim=4, random_state=5).fit(np.array(list("xyz"))[y])
    assert relabelled.objective_ == pytest.approx(a.objective_, rel=1e-9)


@pytest.mark.parametrize(
    "Y,params,match",
    [
        (np.array([]), {}, "empty"),
        (np.zeros(5, dtype=int), {}, "at least 2"),
        (np.repeat(np.arange(5), 2), {"feature_dim": 3}, r"feature_dim=3 < K-1=4"),
        (np.repeat(np.arange(3), 2), {"feature_dim": 2, "nonnegative": True}, "non-negative features need d >= K"),
        (np.repeat(np.arange(3), 2), {"lambda_W": -1.0}, "lambda_W"),
        (np.array([[1, 0, 1], [0, 1, 0], [1, 0, 0], [0, 0, 1]]), {"loss": "ce"}, "loss='ce' needs 1-D"),
    ],
)
def test_bad_input(Y, params, match):
    with pytest.raises(ValueError, match=match):
        UFMSolver(**params).fit(Y)


# ------------------------------------------------------------------------- label-set reduction
@pytest.mark.parametrize("loss,nonnegative", [("ce", False), ("pal", False), ("pal_mean", False), ("mse", False),
                                              ("ce", True)])
def test_label_set_reduction_reaches_the_per_sample_optimum(loss, nonnegative):
    if loss in ("pal", "pal_mean"):
        Y = _label_sets(4, {1: 3, 2: 2})
    else:
        Y = np.repeat(np.arange(4), [3, 5, 8, 4])  # imbalanced
    params = dict(loss=loss, lambda_W=5e-3, lambda_H=5e-3, feature_dim=5, nonnegative=nonnegative, bias=not nonnegative,
                  random_state=0, tol=1e-10)
    full = UFMSolver(reduce=False, **params).fit(Y)
    red = UFMSolver(**params).fit(Y)
    assert red.reduced_ and not full.reduced_
    assert red.objective_ == pytest.approx(full.objective_, rel=1e-10)
    assert red.H_.shape == full.H_.shape
    # at the optimum every sample of a label set shares one feature
    groups = sknc._validation.group_labels(Y)
    for g in range(groups.n_groups):
        rows = red.H_[groups.group == g]
        assert np.allclose(rows, rows[0])


def test_reduced_solver_cost_does_not_grow_with_n():
    # N = 20 000, K = 100, d = 128: the closed form of Zhu et al., reached in seconds
    y = np.repeat(np.arange(100), 200)
    ufm = UFMSolver(lambda_W=5e-4, lambda_H=5e-4, feature_dim=128, random_state=0).fit(y)
    assert ufm.converged_ and ufm.theory_gap_["objective"] < 1e-8
    assert ufm.theory_gap_["margin"] < 1e-6


def test_reduce_needs_feature_decay():
    with pytest.raises(ValueError, match="lambda_H > 0"):
        UFMSolver(lambda_H=0.0, reduce=True).fit(np.repeat(np.arange(3), 2))
    assert not UFMSolver(lambda_H=0.0, loss="mse", lambda_W=0.0, max_iter=5).fit(np.repeat(np.arange(3), 2)).reduced_


def _imbalanced_pal_labels(counts1, count2, k=4):
    rows = []
    for c in range(k):
        rows += [np.eye(k, dtype=int)[c]] * counts1[c]
    for s in combinations(range(k), 2):
        row = np.zeros(k, dtype=int)
        row[list(s)] = 1
        rows += [row] * count2
    return np.array(rows)


@pytest.mark.parametrize("options", [{"label_smoothing": 0.1}, {"focal_gamma": 2.0},
                                     {"label_smoothing": 0.2, "focal_gamma": 1.0}])
@pytest.mark.parametrize("loss", ["pal", "pal_mean"])
def test_smoothed_and_focal_objective_is_the_palloss_objective(loss, options):
    import torch

    Y = _imbalanced_pal_labels([6, 4, 3, 2], 2)
    ufm = UFMSolver(loss=loss, lambda_W=5e-3, lambda_H=5e-3, feature_dim=5, random_state=0, **options).fit(Y)
    assert ufm.converged_ and ufm.grad_norm_ <= 1e-8  # stationary
    assert ufm.theory_ is None  # no closed form covers these losses
    z = torch.tensor(ufm.H_ @ ufm.W_.T + ufm.b_)
    data = sknc.PALLoss(normalize=loss == "pal_mean", **options)(z, torch.tensor(Y, dtype=torch.float64)).item()
    penalty = 0.5 * 5e-3 * (np.sum(ufm.W_ ** 2) + np.sum(ufm.H_ ** 2))
    assert ufm.objective_ == pytest.approx(data + penalty, rel=1e-12)
    per_sample = UFMSolver(loss=loss, lambda_W=5e-3, lambda_H=5e-3, feature_dim=5, reduce=False, random_state=1,
                           **options).fit(Y)
    assert ufm.reduced_ and not per_sample.reduced_
    assert per_sample.objective_ == pytest.approx(ufm.objective_, rel=1e-10)


@pytest.mark.parametrize("counts1", [[20, 10, 5, 2], [30, 30, 3, 3]])
def test_imbalanced_multiplicity_one_pal_is_stationary(counts1):
    Y = _imbalanced_pal_labels(counts1, 3)
    ufm = UFMSolver(loss="pal", lambda_W=5e-3, lambda_H=5e-3, feature_dim=6, random_state=0).fit(Y)
    assert ufm.converged_ and ufm.grad_norm_ <= 1e-8
    assert ufm.theory_ is None  # pal_optimum needs equal counts per multiplicity
    # imbalance bends the tag-wise-average property: pair means leave their tags' sum direction ...
    angles = sknc.tagwise_average(ufm.H_, Y).sets["angle"].to_numpy()  # pairs in combinations order
    assert angles.max() > 1.0  # degrees
    if counts1 == [30, 30, 3, 3]:  # ... except for pairs whose two tags are exchangeable
        assert angles[0] < 1e-3 and angles[5] < 1e-3  # {0, 1} and {2, 3}
        assert np.all(angles[1:5] > 1.0)


def test_smoothing_needs_a_cross_entropy_loss():
    with pytest.raises(ValueError, match="not to loss='mse'"):
        UFMSolver(loss="mse", label_smoothing=0.1).fit(np.repeat(np.arange(3), 2))
