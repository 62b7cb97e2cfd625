import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import hamming_loss, jaccard_score, label_ranking_average_precision_score
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sknc import (
    MultilabelStratifiedKFold,
    NCMetrics,
    PALClassifier,
    multilabel_scorers,
    nc_report,
    nc_report_scorer,
    nc_scorer,
    nc_scorers,
    simplex_etf,
)

from .conftest import multilabel_blobs


@pytest.fixture(scope="module")
def fitted():
    X, Y = multilabel_blobs(seed=1)
    clf = PALClassifier(hidden_sizes=(32,), feature_dim=8, max_epochs=10, device="cpu", random_state=0).fit(X, Y)
    return clf, X, Y


def test_nc_scorers_equal_negated_report(fitted):
    clf, X, Y = fitted
    rep = nc_report(clf.transform(X), Y, clf.coef_, clf.intercept_)
    scores = nc_report_scorer(clf, X, Y)
    for key in ("nc1", "nc2_h", "nc2_w", "nc3", "nc4", "tagwise_angle"):
        assert scores[f"neg_{key}"] == pytest.approx(-rep[key])
    assert scores["ncc_agreement"] == pytest.approx(rep["ncc_agreement"])
    assert nc_scorer("nc1")(clf, X, Y) == pytest.approx(-rep["nc1"])
    assert set(nc_scorers()) == {"neg_nc1", "neg_nc2_h", "neg_nc2_w", "neg_nc3", "neg_nc4"}
    with pytest.raises(ValueError, match="unknown NC metric"):
        nc_scorer("nc9")


def test_scorers_in_pipelines(fitted):
    _, X, Y = fitted
    pipe = make_pipeline(StandardScaler(), PALClassifier(hidden_sizes=(32,), feature_dim=8, max_epochs=3,
                                                         device="cpu", random_state=0)).fit(X, Y)
    inner = pipe[-1]
    expected = nc_report(inner.transform(pipe[0].transform(X)), Y, inner.coef_, inner.intercept_)
    assert nc_scorer("nc3")(pipe, X, Y) == pytest.approx(-expected["nc3"])
    with pytest.raises(TypeError, match="not a classifier whose features sknc can read"):
        nc_scorer("nc1")(make_pipeline(StandardScaler()).fit(X), X, Y)


def test_multilabel_quality_scorers_match_sklearn(fitted):
    clf, X, Y = fitted
    pred = clf.predict(X)
    s = multilabel_scorers()
    assert s["jaccard_samples"](clf, X, Y) == pytest.approx(jaccard_score(Y, pred, average="samples"))
    assert s["neg_hamming_loss"](clf, X, Y) == pytest.approx(-hamming_loss(Y, pred))
    assert s["subset_accuracy"](clf, X, Y) == pytest.approx(np.mean(np.all(pred == Y, axis=1)))
    assert s["label_ranking_average_precision"](clf, X, Y) == pytest.approx(
        label_ranking_average_precision_score(Y, clf.decision_function(X)))


def test_nc_metrics_transformer_projects_onto_the_simplex(rng):
    k, d = 4, 7
    M = simplex_etf(k, d, norm=2.0, random_state=0)
    y = np.repeat(np.arange(k), 20)
    H = 3.0 + M[y] + 0.01 * rng.standard_normal((len(y), d))
    nc = NCMetrics().fit(H, y)
    assert nc.report_["nc1"] == pytest.approx(nc_report(H, y)["nc1"])
    Z = nc.transform(H)
    assert Z.shape == (len(y), k - 1)
    means = np.stack([Z[y == c].mean(0) for c in range(k)])
    emp = np.stack([H[y == c].mean(0) for c in range(k)])
    emp -= emp.mean(0)
    assert np.allclose(means @ means.T, emp @ emp.T, atol=1e-10)  # the projection keeps the simplex exactly
    assert np.allclose(means @ means.T, M @ M.T, atol=0.05)  # which is the ETF up to the noise
    assert list(nc.get_feature_names_out()) == ["ncmetrics0", "ncmetrics1", "ncmetrics2"]
    out = make_pipeline(NCMetrics()).set_output(transform="pandas").fit(H, y).transform(H)
    assert isinstance(out, pd.DataFrame) and out.shape == (len(y), 3)


def test_multilabel_stratified_kfold_balances_rare_labels():
    rng = np.random.default_rng(0)
    Y = (rng.random((300, 6)) < [0.5, 0.3, 0.2, 0.1, 0.05, 0.03]).astype(int)
    cv = MultilabelStratifiedKFold(n_splits=5)
    tests = [t for _, t in cv.split(np.zeros((300, 1)), Y)]
    assert np.array_equal(np.sort(np.concatenate(tests)), np.arange(300))  # a partition
    ideal = Y.sum(0) / 5
    per_fold = np.array([Y[t].sum(0) for t in tests])
    assert np.all(np.abs(per_fold - ideal) <= 1.0)  # every label within one sample of its share
    kfold = np.array([Y[t].sum(0) for _, t in KFold(5).split(Y)])
    assert np.abs(kfold - ideal).max() > 1.0  # plain K-fold does worse on this data
    sizes = [len(t) for t in tests]
    assert max(sizes) - min(sizes) <= 3


def test_multilabel_stratified_kfold_shuffle_and_1d():
    Y = (np.random.default_rng(1).random((60, 3)) < 0.4).astype(int)
    a = [t.tolist() for _, t in MultilabelStratifiedKFold(3, shuffle=True, random_state=0).split(Y, Y)]
    b = [t.tolist() for _, t in MultilabelStratifiedKFold(3, shuffle=True, random_state=0).split(Y, Y)]
    c = [t.tolist() for _, t in MultilabelStratifiedKFold(3, shuffle=True, random_state=1).split(Y, Y)]
    assert a == b and a != c
    y = np.repeat([0, 1, 2], [30, 6, 3])
    for _, t in MultilabelStratifiedKFold(3).split(y, y):
        assert np.bincount(y[t], minlength=3).tolist() == [10, 2, 1]
    with pytest.raises(ValueError, match="random_state"):
        MultilabelStratifiedKFold(3, random_state=0)
    with pytest.raises(ValueError, match="needs y"):
        list(MultilabelStratifiedKFold(3).split(Y, None))


# --------------------------------------------------------------------- scorers for any classifier
def _mlp_by_hand(mlp, X):
    h = X
    for W, b in zip(mlp.coefs_[:-1], mlp.intercepts_[:-1]):
        h = np.maximum(h @ W + b, 0.0)  # relu, written out
    return h


def test_scorers_on_mlpclassifier_equal_the_metrics_by_hand():
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    X, y = load_digits(return_X_y=True)
    X = X / 16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp = MLPClassifier((32, 16), max_iter=60, random_state=0).fit(X, y)
    H = _mlp_by_hand(mlp, X)
    expected = nc_report(H, y, mlp.coefs_[-1].T, mlp.intercepts_[-1])
    scores = nc_report_scorer(mlp, X, y)
    for key in ("nc1", "nc2_h", "nc2_w", "nc3", "nc4"):
        assert scores[f"neg_{key}"] == pytest.approx(-expected[key], rel=1e-9), key
    assert NCMetrics(estimator=mlp).fit(X, y).report_["nc1"] == pytest.approx(expected["nc1"], rel=1e-9)


def test_opt_in_keys_are_scored_by_name_from_one_shared_report(monkeypatch):
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    import sknc.scoring as scoring

    X, y = load_digits(return_X_y=True)
    X = X / 16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp = MLPClassifier((32, 16), max_iter=40, random_state=0).fit(X, y)
    expected = nc_report(_mlp_by_hand(mlp, X), y, ncc_accuracy=True, feature_rank=True)
    assert nc_scorer("ncc_accuracy")(mlp, X, y) == pytest.approx(expected["ncc_accuracy"], rel=1e-12)
    assert nc_scorer("features_effective_rank")(mlp, X, y) == pytest.approx(-expected["features_effective_rank"],
                                                                              rel=1e-9)
    calls = []
    real = scoring.nc_report_of
    monkeypatch.setattr(scoring, "nc_report_of", lambda *a, **k: calls.append(k) or real(*a, **k))
    scorers = nc_scorers(["nc1", "ncc_accuracy", "features_stable_rank"])
    assert sorted(scorers) == ["ncc_accuracy", "neg_features_stable_rank", "neg_nc1"]
    values = {name: s(mlp, X[:500], y[:500]) for name, s in scorers.items()}
    assert len(calls) == 1 and calls[0]["feature_rank"] and calls[0]["ncc_accuracy"]  # one report for all three
    assert all(np.isfinite(list(values.values())))
    with pytest.raises(ValueError, match="unknown NC metric"):
        nc_scorers(["nc1", "features_rank"])


def test_scorers_on_a_linear_pipeline_including_binary():
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    Z = pipe[0].transform(X)
    lr = pipe[-1]
    expected = nc_report(Z, y, lr.coef_, lr.intercept_)
    assert nc_scorer("nc3")(pipe, X, y) == pytest.approx(-expected["nc3"], rel=1e-9)
    yb = (y > 0).astype(int)
    binary = LogisticRegression(max_iter=500).fit(X, yb)
    w, c = binary.coef_[0], binary.intercept_[0]
    # the one-row classifier is measured as the pair that decides like it
    expected = nc_report(X, yb, np.vstack([-w / 2, w / 2]), np.array([-c / 2, c / 2]))
    got = nc_report_scorer(binary, X, yb)
    assert got["ncc_agreement"] == pytest.approx(expected["ncc_agreement"])
    agree = np.mean((X @ w + c > 0) == (np.linalg.norm(X - X[yb == 1].mean(0), axis=1) <
                                          np.linalg.norm(X - X[yb == 0].mean(0), axis=1)))
    assert got["ncc_agreement"] == pytest.approx(agree)


def test_scorers_on_a_plain_skorch_net_equal_the_metrics_by_hand():
    import torch
    from skorch import NeuralNetClassifier

    X, Y = multilabel_blobs(seed=2)
    y = Y.argmax(1)
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    net = NeuralNetClassifier(module, max_epochs=5, lr=0.1, train_split=None, verbose=0).fit(X, y)
    with torch.no_grad():
        H = module[1](module[0](torch.as_tensor(X))).numpy()
    W, b = module[2].weight.detach().numpy(), module[2].bias.detach().numpy()
    expected = nc_report(H, y, W, b)
    scores = nc_report_scorer(net, X, y)
    for key in ("nc1", "nc2_w", "nc3", "nc4"):
        assert scores[f"neg_{key}"] == pytest.approx(-expected[key], rel=1e-6), key


def test_report_scorer_survives_a_search_with_degenerate_folds():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV

    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 3))
    y = np.repeat([0, 1, 2], 20)
    X[y == 2] = X[y == 1]  # classes 1 and 2 share their features: CDNV is undefined on every split
    search = GridSearchCV(LogisticRegression(max_iter=200), {"C": [0.1, 1.0]}, scoring=nc_report_scorer,
                          refit="neg_nc1", return_train_score=True, n_jobs=2, error_score="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search.fit(X, y)
    res = search.cv_results_
    assert np.all(np.isnan(res["mean_train_neg_cdnv"]))
    assert np.all(np.isfinite(res["mean_train_neg_nc1"])) and np.all(np.isfinite(res["mean_test_neg_nc2_w"]))


def test_ranking_scorer_reads_per_label_probabilities_of_multioutput_models():
    # MultiOutputClassifier and forests answer predict_proba with one (n, 2) array per label
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.multioutput import MultiOutputClassifier
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 5))
    Y = np.column_stack([X[:, 0] > 0, X[:, 1] > 0, X[:, 2] > 0.5]).astype(int)
    lrap = multilabel_scorers()["label_ranking_average_precision"]
    for model in (MultiOutputClassifier(LogisticRegression()), RandomForestClassifier(n_estimators=5, random_state=0)):
        model.fit(X[:60], Y[:60])
        by_hand = np.column_stack([p[:, 1] for p in model.predict_proba(X[60:])])
        assert lrap(model, X[60:], Y[60:]) == label_ranking_average_precision_score(Y[60:], by_hand)


def _true_neg_nc1(estimator, X, y):
    from sknc.scoring import features_and_classifier

    H, W, b = features_and_classifier(estimator, X)
    return -nc_report(H, y, W, b)["nc1"]


def test_scorers_measure_the_estimator_as_it_is_now_not_as_it_was():
    # issue 24: one cached report was served for the same objects after set_params().fit() and partial_fit()
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    X, y = load_digits(return_X_y=True)
    X = X[:600] / 16.0
    y = y[:600]
    est = MLPClassifier(hidden_layer_sizes=(16,), max_iter=30, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence
        est.fit(X, y)
        scorer = nc_scorer("nc1")
        first = scorer(est, X, y)
        assert first == pytest.approx(_true_neg_nc1(est, X, y), rel=1e-12)
        est.set_params(alpha=10.0, max_iter=5).fit(X, y)
        refit = scorer(est, X, y)
        assert refit == pytest.approx(_true_neg_nc1(est, X, y), rel=1e-12)
        assert refit != pytest.approx(first, rel=1e-3)
        seen = []
        for _ in range(3):
            est.partial_fit(X, y)
            seen.append(scorer(est, X, y))
            assert seen[-1] == pytest.approx(_true_neg_nc1(est, X, y), rel=1e-12)
    assert len(set(seen)) == 3
    # data changed in place: measured again as well
    X[:, 10] += 1.0
    assert scorer(est, X, y) == pytest.approx(_true_neg_nc1(est, X, y), rel=1e-12)


def test_scorers_of_one_call_still_share_one_report(fitted, monkeypatch):
    # the cache keyed on contents still serves the second scorer of the same (estimator, X, y)
    import sknc.scoring as scoring

    clf, X, Y = fitted
    calls = []
    real = scoring.nc_report_of
    monkeypatch.setattr(scoring, "nc_report_of", lambda *a, **k: calls.append(1) or real(*a, **k))
    scorers = nc_scorers(["nc1", "nc2_h", "nc3"])
    values = [s(clf, X, Y) for s in scorers.values()]
    assert len(calls) == 1 and all(np.isfinite(values))
