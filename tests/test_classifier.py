import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_digits, make_multilabel_classification
from sklearn.metrics import accuracy_score
from skorch import NeuralNet

from sknc import NCTracker, PALClassifier, PALLoss, nc_report
from sknc.nn import FeatureClassifier, LinearHead, MLP


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32), y


@pytest.fixture(scope="module")
def multilabel():
    X, Y = make_multilabel_classification(n_samples=300, n_features=20, n_classes=4, n_labels=2,
                                          allow_unlabeled=False, random_state=0)
    return (X / X.max()).astype(np.float32), Y


def small(**kw):
    params = dict(hidden_sizes=(64,), max_epochs=8, batch_size=64, device="cpu", random_state=0)
    params.update(kw)
    return PALClassifier(**params)


def test_multiclass_fit_predict_and_attributes(digits):
    X, y = digits
    clf = small(max_epochs=15).fit(X[:1200], y[:1200])
    assert clf.n_features_in_ == 64 and list(clf.classes_) == list(range(10))
    assert clf.predict(X[1200:]).dtype == y.dtype
    assert accuracy_score(y[1200:], clf.predict(X[1200:])) > 0.85
    logits = clf.decision_function(X[:5])
    feats = clf.transform(X[:5])
    assert np.allclose(logits, feats @ clf.coef_.T + clf.intercept_, atol=1e-4)
    assert np.allclose(clf.predict_proba(X[:5]).sum(1), 1.0)
    assert {"epoch", "train_loss", "dur", "lr"} <= set(clf.history_.columns) and len(clf.history_) == 15


def test_string_labels(digits):
    X, y = digits
    names = np.array(list("abcdefghij"))[y]
    clf = small().fit(X[:600], names[:600])
    assert set(clf.predict(X[:50])) <= set(names)


def test_multilabel_indicator(multilabel):
    X, Y = multilabel
    clf = small(max_epochs=20).fit(X, Y)
    assert clf.multilabel_ and list(clf.classes_) == [0, 1, 2, 3]
    pred = clf.predict(X)
    assert pred.shape == Y.shape and pred.dtype == Y.dtype and pred.sum(1).min() >= 1
    proba = clf.predict_proba(X)
    assert proba.shape == Y.shape and np.all((proba > 0) & (proba < 1))
    # PAL spreads the mass: on training data, true labels of 2-label samples get ~1/2 each
    two = Y.sum(1) == 2
    assert proba[two][Y[two] == 1].mean() < 0.6


def test_mean_logit_rule_and_threshold_validation(multilabel):
    X, Y = multilabel
    clf = small(decision_rule="mean_logit").fit(X, Y)
    logits = clf.decision_function(X)
    assert np.array_equal(clf.predict(X).astype(bool), logits > logits.mean(1, keepdims=True))
    clf.set_params(decision_rule="threshold", threshold=[0.9, 0.9, 0.9, 0.9])
    assert np.all(clf.predict(X).sum(1) >= 1)  # never the empty set


def test_fixed_etf_head_stays_an_etf_and_feature_dim_k(digits):
    X, y = digits
    clf = small(fixed_etf=True, feature_dim=10, max_epochs=5)
    clf.fit(X[:600], y[:600])
    W = clf.coef_
    assert W.shape == (10, 10)
    expected = np.sqrt(10 / 9) * (np.eye(10) - 0.1)
    assert np.allclose(W, expected, atol=1e-6)  # unchanged by training
    assert clf.transform(X[:3]).shape == (3, 10)
    learned = small(feature_dim=10, max_epochs=5).fit(X[:600], y[:600])
    assert learned.n_parameters_ - clf.n_parameters_ == 100  # the ETF weight is not trained


def test_feature_decay_shrinks_feature_norms(digits):
    X, y = digits
    norms = []
    for lam in (0.0, 1e-3):
        clf = small(lambda_H=lam, max_epochs=10).fit(X[:800], y[:800])
        norms.append(np.linalg.norm(clf.transform(X[:800]), axis=1).mean())
    assert norms[1] < 0.7 * norms[0]


def test_tracked_nc_columns(multilabel):
    X, Y = multilabel
    clf = small(track_nc=2, max_epochs=6).fit(X, Y)
    hist = clf.history_
    for col in ("nc1", "nc2_h", "nc2_w", "nc3", "nc4", "tagwise_angle"):
        assert col in hist.columns
        values = hist[col].dropna()
        assert len(values) == 3 and np.isfinite(values).all()
    # the last row equals an independent nc_report on the final features
    rep = nc_report(clf.transform(X), Y, clf.coef_, clf.intercept_)
    assert hist["nc1"].iloc[-1] == pytest.approx(rep["nc1"], rel=1e-4)


def test_nc_tracker_with_plain_skorch_net(multilabel):
    X, Y = multilabel
    torch.manual_seed(0)
    module = FeatureClassifier(MLP(20, (32,)), LinearHead(32, 4))

    class Net(NeuralNet):
        def get_loss(self, y_pred, y_true, X=None, training=False):
            return super().get_loss(y_pred[0], y_true, X=X, training=training)

    net = Net(module, criterion=PALLoss, max_epochs=3, lr=0.1, train_split=None, verbose=0,
              callbacks=[("nc", NCTracker(every=1))])
    net.fit(X, Y.astype(np.float32))
    assert len(net.history[:, "nc1"]) == 3 and all(np.isfinite(net.history[:, "nc3"]))


def test_reproducible_and_pickle_round_trip(digits):
    X, y = digits
    a = small().fit(X[:500], y[:500])
    b = small().fit(X[:500], y[:500])
    assert np.array_equal(a.decision_function(X[:100]), b.decision_function(X[:100]))
    c = small(random_state=1).fit(X[:500], y[:500])
    assert not np.array_equal(a.decision_function(X[:100]), c.decision_function(X[:100]))
    again = pickle.loads(pickle.dumps(a))
    assert np.array_equal(again.decision_function(X[:100]), a.decision_function(X[:100]))
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    small().fit(X[:100], y[:100])
    assert torch.equal(torch.rand(1), before)  # the global torch RNG is untouched


def test_set_output_pandas(digits):
    X, y = digits
    clf = small(max_epochs=2).fit(X[:300], y[:300]).set_output(transform="pandas")
    out = clf.transform(X[:4])
    assert isinstance(out, pd.DataFrame) and list(out.columns) == [f"palclassifier{i}" for i in range(64)]


def test_user_module_and_cnn(digits):
    X, y = digits

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(64, 12)

        def forward(self, x):
            return torch.relu(self.fc(x))

    clf = PALClassifier(module=Tiny, max_epochs=2, device="cpu", random_state=0).fit(X[:200], y[:200])
    assert clf.transform(X[:2]).shape == (2, 12)
    clf = PALClassifier(module=Tiny(), max_epochs=2, device="cpu", random_state=0).fit(X[:200], y[:200])
    assert clf.coef_.shape == (10, 12)
    cnn = PALClassifier(module="cnn", input_shape=(1, 8, 8), feature_dim=16, max_epochs=1, device="cpu",
                        random_state=0).fit(X[:128], y[:128])
    assert cnn.transform(X[:3]).shape == (3, 16)


def test_bad_input(digits, multilabel):
    X, y = digits
    bad = X[:50].copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        small().fit(bad, y[:50])
    clf = small(max_epochs=1).fit(X[:100], y[:100])
    with pytest.raises(ValueError, match="64 features"):
        clf.predict(X[:5, :10])
    Xm, Ym = multilabel
    Ym = Ym.copy()
    Ym[7] = 0
    with pytest.raises(ValueError, match="all-zero label row"):
        small().fit(Xm, Ym)
    with pytest.raises(ValueError, match="1 class"):
        small().fit(X[:10], np.zeros(10))
    with pytest.raises(ValueError, match="input_shape"):
        PALClassifier(module="cnn").fit(X[:10], y[:10])
    with pytest.raises(ValueError, match="CUDA is not available"):
        if not torch.cuda.is_available():
            PALClassifier(device="cuda").fit(X[:10], y[:10])
        else:
            raise ValueError("CUDA is not available (skipped: CUDA present)")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_training_and_cpu_unpickle(digits):  # pragma: no cover - run on the lent GPU machine
    X, y = digits
    gpu = small(device="cuda").fit(X[:500], y[:500])
    blob = pickle.dumps(gpu)
    cpu_copy = pickle.loads(blob)
    cpu_copy.net_.set_params(device="cpu")
    cpu_copy.net_.module_.cpu()
    assert np.allclose(cpu_copy.decision_function(X[:50]), gpu.decision_function(X[:50]), atol=1e-4)


@pytest.mark.slow
def test_multilabel_problem_reaches_collapse():
    from itertools import combinations

    rng = np.random.default_rng(0)
    k, d = 4, 30
    protos = rng.standard_normal((k, d)) * 2
    sets = [(c,) for c in range(k)] + list(combinations(range(k), 2))
    X, Y = [], []
    for s in sets:
        for _ in range(60):
            X.append(protos[list(s)].sum(0) + 0.3 * rng.standard_normal(d))
            row = np.zeros(k, dtype=int)
            row[list(s)] = 1
            Y.append(row)
    X, Y = np.array(X, dtype=np.float32), np.array(Y)
    clf = PALClassifier(hidden_sizes=(128, 128), max_epochs=60, lambda_H=1e-4, device="cpu", random_state=0).fit(X, Y)
    rep = nc_report(clf.transform(X), Y, clf.coef_, clf.intercept_)
    assert rep["nc1"] < 0.2


def test_tagwise_is_the_default_multilabel_rule(multilabel):
    X, Y = multilabel
    clf = small(max_epochs=15).fit(X, Y)
    feats = clf.transform(X)
    assert np.array_equal(clf.predict(X), clf.decision_.predict(feats))
    clf.set_params(decision_rule="topk", top_k=2)
    assert np.all(clf.predict(X).sum(1) == 2)
    clf.set_params(top_k=None)
    assert np.all(clf.predict(X).sum(1) == np.bincount(Y.sum(1)).argmax())


@pytest.mark.slow
def test_acceptance_default_pal_on_multilabel_digits():
    """Issue acceptance: multi-label NC on train and a better test score than sklearn's MLP."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import jaccard_score
    from sklearn.neural_network import MLPClassifier

    from sknc import load_multilabel_digits, tagwise_average

    data = load_multilabel_digits(random_state=0)
    clf = PALClassifier(device="cpu", random_state=0).fit(data.X_train, data.Y_train)
    H = clf.transform(data.X_train)
    rep = nc_report(H, data.Y_train, clf.coef_, clf.intercept_)
    assert rep["nc1"] < 0.1 and rep["nc2_h"] < 0.1 and rep["tagwise_angle"] < 10
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp = MLPClassifier(hidden_layer_sizes=(256, 256), max_iter=300, random_state=0).fit(data.X_train, data.Y_train)
    pal_pred, mlp_pred = clf.predict(data.X_test), mlp.predict(data.X_test)
    assert accuracy_score(data.Y_test, pal_pred) > accuracy_score(data.Y_test, mlp_pred)
    assert jaccard_score(data.Y_test, pal_pred, average="samples") > jaccard_score(data.Y_test, mlp_pred, average="samples")
    summary = tagwise_average(H, data.Y_train, regularization={"lambda_W": clf.lambda_W, "lambda_H": clf.lambda_H}).summary
    row = summary.set_index("multiplicity").loc[2]
    assert row["scale_mean"] == pytest.approx(row["scale_theory"], rel=0.05)  # theory and practice meet
