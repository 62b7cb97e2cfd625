"""PALClassifier: training, outputs in scikit-learn's conventions, skorch's habits, guarded training."""

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_digits, make_multilabel_classification
from sklearn.metrics import accuracy_score
from sklearn.model_selection import GridSearchCV, KFold, train_test_split
from skorch.callbacks import Callback, Checkpoint, EarlyStopping, EpochScoring, LRScheduler

import sknc
from sknc import PALClassifier, nc_report, theory
from sknc.decision import pal_label_marginals


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


# ------------------------------------------------------------------------------- basics
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


def test_string_labels_and_tensors_with_grad(digits):
    X, y = digits
    names = np.array(list("abcdefghij"))[y]
    Xt = torch.as_tensor(X[:600]).requires_grad_(True)  # a tensor that is part of a graph
    clf = small().fit(Xt, names[:600])
    assert set(clf.predict(Xt[:50])) <= set(names)


def test_training_loss_is_pal_plus_a_per_sample_feature_decay(digits):
    # lambda_H does not grow with the number of samples: the batch loss is mean CE + lambda_H/2 mean ||h||^2
    X, y = digits
    clf = small(lambda_H=0.7, max_epochs=1).fit(X[:300], y[:300])
    net = clf.net_
    xb, yb = torch.as_tensor(X[:32]), torch.as_tensor(y[:32])
    out = net.infer(xb)
    logits, h = out
    expected = torch.nn.functional.cross_entropy(logits, yb) + 0.35 * (h**2).sum(1).mean()
    assert net.get_loss(out, yb, training=True).item() == pytest.approx(expected.item(), rel=1e-6)
    assert net.get_loss(out, yb, training=False).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, yb).item(), rel=1e-6)
    lw, lh = theory.estimator_to_ufm_lambdas(5e-4, 0.7, n_samples=300)
    assert (lw, lh) == (5e-4, pytest.approx(0.7 / 300))


def test_single_label_defaults_train_within_20_epochs(digits):
    # issue acceptance (a), short budget: >= 0.90 in 20 epochs, also with a 32-unit network
    X, y = digits
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    for hidden in [(32,), (256, 256)]:
        clf = PALClassifier(hidden_sizes=hidden, max_epochs=20, device="cpu", random_state=0).fit(Xtr, ytr)
        assert clf.score(Xte, yte) >= 0.90, hidden


@pytest.mark.slow
def test_single_label_defaults_reach_095_with_the_default_budget(digits):
    X, y = digits
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    for hidden in [(32,), (256, 256)]:
        clf = PALClassifier(hidden_sizes=hidden, device="cpu", random_state=0).fit(Xtr, ytr)
        assert clf.score(Xte, yte) >= 0.95, hidden


# --------------------------------------------------------------------------- multi-label
def test_multilabel_outputs_follow_sklearn(multilabel):
    X, Y = multilabel
    frame = pd.DataFrame(Y, columns=["cat", "dog", "owl", "eel"])
    clf = small(max_epochs=20).fit(X, frame)
    assert clf.multilabel_ and list(clf.classes_) == ["cat", "dog", "owl", "eel"]
    pred = clf.predict(X)
    assert pred.shape == Y.shape and pred.sum(1).min() >= 1
    proba = clf.predict_proba(X)
    assert proba.shape == Y.shape and np.all((proba >= 0) & (proba <= 1))
    assert not np.allclose(proba.sum(1), 1.0)  # one probability per label, not a softmax row
    assert np.allclose(proba, pal_label_marginals(clf.decision_function(X), clf._size_prior))
    # on the training data, true labels are far more probable than the others
    assert proba[Y == 1].mean() > proba[Y == 0].mean() + 0.2


def test_threshold_rule_is_close_to_the_tagwise_rule(multilabel):
    X, Y = multilabel
    clf = small(max_epochs=40, decision_rule="tagwise").fit(X, Y)
    tagwise = accuracy_score(Y, clf.predict(X))
    clf.set_params(decision_rule="threshold")
    assert accuracy_score(Y, clf.predict(X)) >= tagwise - 0.05


def test_other_rules(multilabel):
    X, Y = multilabel
    clf = small(decision_rule="mean_logit").fit(X, Y)
    logits = clf.decision_function(X)
    raw = logits > logits.mean(1, keepdims=True)
    pred = clf.predict(X).astype(bool)
    sizes, high = raw.sum(1), Y.sum(1).max()
    inside = (sizes >= 1) & (sizes <= high)
    assert inside.any() and np.array_equal(pred[inside], raw[inside])
    # a set larger than any seen in training keeps its labels with the largest logits
    for row in np.flatnonzero(sizes > high):
        assert pred[row].sum() == high and set(np.flatnonzero(pred[row])) == set(np.argsort(-logits[row])[:high])
    clf.set_params(decision_rule="threshold", threshold=[0.999] * 4)
    assert np.all(clf.predict(X).sum(1) >= 1)  # never the empty set without label-free training rows
    clf.set_params(decision_rule="topk", top_k=2)
    assert np.all(clf.predict(X).sum(1) == 2)
    clf.set_params(top_k=None)
    assert np.all(clf.predict(X).sum(1) == np.bincount(Y.sum(1)).argmax())
    clf.set_params(decision_rule="tagwise")
    assert np.array_equal(clf.predict(X), clf.decision_.predict(clf.transform(X)))


def test_auto_rule_is_chosen_on_held_out_rows(multilabel):
    from sknc.decision import holdout_rows

    X, Y = multilabel
    clf = small(decision_rule="auto", validation_fraction=0.2).fit(X, Y)
    assert set(clf.decision_scores_) == {"threshold", "tagwise", "topk", "mean_logit"}
    assert clf.decision_rule_ == max(clf.decision_scores_, key=clf.decision_scores_.get)
    assert clf.history_["valid_loss"].notna().all()  # the refit keeps validation_fraction's split
    assert clf._rule() == clf.decision_rule_
    # the scores are each rule's subset accuracy on the held-out rows of a network trained on the others:
    # that network, trained here on its own, gives them again
    keep, hold = holdout_rows(Y, 0.2, clf._seed())
    first = small(decision_rule="threshold").fit(X[keep], Y[keep])
    for rule, score in clf.decision_scores_.items():
        if rule != "tagwise":  # (the tag-wise rule's noise scale was fitted on those rows during the choice)
            assert score == pytest.approx(accuracy_score(Y[hold], first.set_params(decision_rule=rule)
                                                         .predict(X[hold]))), rule
    # then the network is trained again on every row: the same as a fixed-rule fit of all the data
    full = small(decision_rule="threshold", validation_fraction=0.2).fit(X, Y)
    assert np.allclose(clf.coef_, full.coef_)
    # the user's scoring is what is maximised: here, the number of labels predicted on the held-out rows
    many = small(decision_rule="auto", rule_scoring=lambda Y_true, Y_pred: float(Y_pred.sum())).fit(X, Y)
    keep, hold = holdout_rows(Y, 0.15, many._seed())  # 15% without validation_fraction
    first = small(decision_rule="threshold").fit(X[keep], Y[keep])
    for rule in ("threshold", "topk", "mean_logit"):
        assert many.decision_scores_[rule] == first.set_params(decision_rule=rule).predict(X[hold]).sum(), rule
    assert many.decision_rule_ == max(many.decision_scores_, key=many.decision_scores_.get)
    with pytest.raises(ValueError, match="rule_scoring must be"):
        small(decision_rule="auto", rule_scoring="accuracy").fit(X, Y)


def test_label_free_rows_train_and_the_empty_set_is_predicted(rng):
    k, d = 4, 12
    protos = 3 * rng.standard_normal((k, d))
    Y = np.vstack([np.eye(k, dtype=int).repeat(30, 0), np.zeros((60, k), dtype=int)])
    X = (Y @ protos + 0.3 * rng.standard_normal((len(Y), d))).astype(np.float32)
    clf = small(max_epochs=30, lambda_H=0.05).fit(X, Y)
    assert clf.decision_.empty_prototype_ is not None and clf._size_prior[0] == pytest.approx(1 / 3)
    pred = clf.predict(X)
    empty = Y.sum(1) == 0
    assert np.mean(pred[empty].sum(1) == 0) > 0.9
    assert np.mean(np.all(pred[~empty] == Y[~empty], axis=1)) > 0.9


def test_multilabel_to_multiclass_refit_forgets_the_rule(multilabel, digits):
    X, Y = multilabel
    clf = small(max_epochs=2).fit(X, Y)
    assert hasattr(clf, "decision_")
    Xd, y = digits
    clf.fit(Xd[:200], y[:200])
    assert not clf.multilabel_ and not hasattr(clf, "decision_") and not hasattr(clf, "_size_prior")


# -------------------------------------------------------------------------- skorch habits
def test_routed_parameters_reach_the_inner_net(digits):
    X, y = digits
    clf = small(module__activation="gelu", optimizer__nesterov=True, iterator_train__drop_last=True,
                max_epochs=2)
    assert clf.get_params()["module__activation"] == "gelu"
    clf.fit(X[:300], y[:300])
    assert any(isinstance(m, torch.nn.GELU) for m in clf.net_.module_.modules())
    assert clf.net_.optimizer_.param_groups[0]["nesterov"] is True
    clf.set_params(module__activation="tanh").fit(X[:300], y[:300])
    assert any(isinstance(m, torch.nn.Tanh) for m in clf.net_.module_.modules())
    with pytest.raises(TypeError, match="unexpected parameter.*lr_rate"):
        PALClassifier(lr_rate=0.1, max_epochs=1).fit(X[:50], y[:50])
    routed = small(optimizer__weight_decay=0.1).fit(X[:50], y[:50])  # the same penalty as lambda_W
    assert routed.net_.optimizer_.param_groups[0]["weight_decay"] == 0.1


def test_routed_parameters_in_a_grid_search(digits):
    X, y = digits
    search = GridSearchCV(small(max_epochs=3), {"module__activation": ["relu", "tanh"], "optimizer__dampening": [0.0]},
                          cv=KFold(2), error_score="raise").fit(X[:300], y[:300])
    assert set(search.cv_results_["param_module__activation"]) == {"relu", "tanh"}


class _CountEpochs(Callback):
    def __init__(self, step=1):
        self.step = step

    def initialize(self):
        self.count = 0
        return self

    def on_epoch_end(self, net, **kwargs):
        self.count += self.step


def test_callback_parameters_by_name(digits):
    X, y = digits
    counter = _CountEpochs()
    clf = small(callbacks=[("counter", counter)], callbacks__counter__step=3, max_epochs=4).fit(X[:200], y[:200])
    assert dict(clf.net_.callbacks_)["counter"].count == 12


def test_validation_split_early_stopping_and_checkpoint(digits, tmp_path):
    X, y = digits
    clf = small(max_epochs=60, validation_fraction=0.25, lr=0.2,
                callbacks=[EarlyStopping(patience=2, threshold=1e-3),
                           Checkpoint(monitor="valid_loss_best", dirname=str(tmp_path))])
    clf.fit(X[:600], y[:600])
    assert "valid_loss" in clf.history_ and clf.history_["valid_loss"].notna().all()
    assert len(clf.history_) < 60  # stopped early
    assert (tmp_path / "params.pt").exists()


def test_user_lr_scheduler_replaces_the_cosine_and_history_records_the_rate_used(digits):
    X, y = digits
    clf = small(max_epochs=6, lr=0.2,
                callbacks=[LRScheduler(policy=torch.optim.lr_scheduler.StepLR, step_size=2, gamma=0.5)])
    clf.fit(X[:200], y[:200])
    assert "lr_schedule" not in dict(clf.net_.callbacks_)
    assert clf.history_["lr"].tolist() == pytest.approx([0.2, 0.2, 0.1, 0.1, 0.05, 0.05])
    cosine = small(max_epochs=4, lr=0.2).fit(X[:200], y[:200])
    expected = [0.2e-3 + (0.2 - 0.2e-3) * (1 + np.cos(np.pi * e / 4)) / 2 for e in range(4)]
    assert cosine.history_["lr"].tolist() == pytest.approx(expected)


def test_epoch_scoring_accuracy_on_the_validation_split(digits, multilabel):
    X, y = digits
    clf = small(max_epochs=10, validation_fraction=0.2,
                callbacks=[EpochScoring("accuracy", name="valid_acc", lower_is_better=False)])
    clf.fit(X[:400], y[:400])
    acc = clf.history_["valid_acc"]
    assert acc.between(0, 1).all() and acc.iloc[-1] > 0.6 and acc.iloc[-1] > acc.iloc[0]
    Xm, Ym = multilabel
    ml = small(max_epochs=3, validation_fraction=0.2, callbacks=[EpochScoring("accuracy", name="valid_subset")])
    ml.fit(Xm, Ym)
    assert ml.history_["valid_subset"].between(0, 1).all()


def test_warm_start_partial_fit_and_reload(digits, tmp_path):
    X, y = digits
    clf = small(max_epochs=3, warm_start=True).fit(X[:300], y[:300])
    first = clf.coef_.copy()
    clf.fit(X[:300], y[:300])
    assert len(clf.history_) == 6 and not np.allclose(first, clf.coef_)
    inc = small(max_epochs=1)
    inc.partial_fit(X[:100], y[:100], classes=np.arange(10))
    inc.partial_fit(X[100:200], y[100:200])
    assert len(inc.history_) == 2
    with pytest.raises(ValueError, match="never declared"):
        small(max_epochs=1).partial_fit(X[:50], y[:50] % 5, classes=np.arange(5)).partial_fit(X[:50], np.full(50, 9))
    clf.save_params(f_params=tmp_path / "p.pt", f_history=tmp_path / "h.json")
    fresh = small(max_epochs=3).initialize(X[:300], y[:300])
    assert not np.allclose(fresh.decision_function(X[:20]), clf.decision_function(X[:20]))
    fresh.load_params(f_params=tmp_path / "p.pt", f_history=tmp_path / "h.json")
    assert np.allclose(fresh.decision_function(X[:20]), clf.decision_function(X[:20]))
    assert len(fresh.history_) == 6


def test_warm_start_applies_parameters_changed_by_set_params(digits):
    from skorch.callbacks import EarlyStopping

    X, y = digits
    clf = small(max_epochs=4, validation_fraction=0.25, lr_schedule=None,
                callbacks=[("early", EarlyStopping(patience=50))]).fit(X[:300], y[:300])
    assert "valid_loss" in clf.history_
    momentum = {id(p): clf.net_.optimizer_.state[p]["momentum_buffer"].clone()
                for p in clf.net_.module_.parameters() if p in clf.net_.optimizer_.state}
    assert momentum  # SGD state exists after the first call
    optimizer = clf.net_.optimizer_
    clf.set_params(warm_start=True, max_epochs=2, lr=0.01, validation_fraction=None, callbacks=None, lambda_W=1e-3)
    clf.fit(X[:300], y[:300])
    assert len(clf.history_) == 6  # 4 + 2: the new max_epochs, not the old one
    assert np.allclose(clf.history_["lr"].iloc[4:], 0.01)  # the new rate is the one used
    assert clf.history_["valid_loss"].iloc[4:].isna().all()  # the split was switched off
    group = clf.net_.optimizer_.param_groups[0]
    assert group["lr"] == 0.01 and group["weight_decay"] == 1e-3
    assert clf.net_.optimizer_ is optimizer  # the same optimizer, its momentum continued
    clf.set_params(max_epochs=1, label_smoothing=0.1)
    clf.fit(X[:300], y[:300])
    assert clf.net_.criterion_.label_smoothing == 0.1 and len(clf.history_) == 7
    inc = small(max_epochs=2, lr_schedule=None)
    inc.partial_fit(X[:100], y[:100], classes=np.arange(10))
    inc.set_params(max_epochs=1, lr=0.02)
    inc.partial_fit(X[100:200], y[100:200])
    assert len(inc.history_) == 3 and inc.history_["lr"].iloc[-1] == pytest.approx(0.02)


def test_reload_a_multilabel_model_needs_its_rule(multilabel, tmp_path):
    X, Y = multilabel
    clf = small(max_epochs=5, decision_rule="tagwise").fit(X, Y)
    clf.save_params(f_params=tmp_path / "p.pt")
    fresh = small(max_epochs=5, decision_rule="tagwise").initialize(X, Y).load_params(f_params=tmp_path / "p.pt")
    with pytest.raises(ValueError, match="fit_rule"):
        fresh.predict(X)
    assert np.array_equal(fresh.fit_rule(X, Y).predict(X), clf.predict(X))


# ---------------------------------------------------------------------------- backbones
def test_fixed_etf_head_stays_an_etf_and_feature_dim_k(digits):
    X, y = digits
    clf = small(fixed_etf=True, feature_dim=10, max_epochs=5)
    clf.fit(X[:600], y[:600])
    W = clf.coef_
    assert W.shape == (10, 10)
    assert np.allclose(W, np.sqrt(10 / 9) * (np.eye(10) - 0.1), atol=1e-6)  # unchanged by training
    learned = small(feature_dim=10, max_epochs=5).fit(X[:600], y[:600])
    assert learned.n_parameters_ - clf.n_parameters_ == 100  # the ETF weight is not trained


def test_feature_decay_shrinks_feature_norms(digits):
    X, y = digits
    norms = []
    for lam in (0.0, 1.0):
        clf = small(lambda_H=lam, max_epochs=10).fit(X[:800], y[:800])
        norms.append(np.linalg.norm(clf.transform(X[:800]), axis=1).mean())
    assert norms[1] < 0.7 * norms[0]


def test_user_module_cnn_and_resnet_widths(digits):
    X, y = digits

    class Tiny(torch.nn.Module):
        def __init__(self, width=12):
            super().__init__()
            self.fc = torch.nn.Linear(64, width)

        def forward(self, x):
            return torch.relu(self.fc(x))

    clf = PALClassifier(module=Tiny, module__width=7, max_epochs=2, device="cpu", random_state=0).fit(X[:200], y[:200])
    assert clf.transform(X[:2]).shape == (2, 7)
    clf = PALClassifier(module=Tiny(), max_epochs=2, device="cpu", random_state=0).fit(X[:200], y[:200])
    assert clf.coef_.shape == (10, 12)
    with pytest.raises(ValueError, match="feature_dim applies to the built-in"):
        PALClassifier(module=Tiny, feature_dim=5, max_epochs=1, device="cpu").fit(X[:50], y[:50])
    cnn = PALClassifier(module="cnn", input_shape=(1, 8, 8), module__width=8, max_epochs=1, device="cpu",
                        random_state=0).fit(X[:128], y[:128])
    assert cnn.transform(X[:3]).shape == (3, 64)
    assert cnn.net_.module_.backbone.body[0].out_channels == 8
    assert cnn.net_.module_.backbone.body[0].stride == (1, 1)  # 8x8 images keep their stem at full resolution
    resnet = sknc.nn.ResNet18(1)
    assert resnet.out_features == 512  # the papers' CIFAR ResNet-18 by default


def test_declared_width_that_lies_is_caught(digits):
    X, y = digits

    class Liar(torch.nn.Module):
        out_features = 10

        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(64, 6)

        def forward(self, x):
            return self.fc(x)

    with pytest.raises(ValueError, match="declares out_features=10 but returns 6"):
        PALClassifier(module=Liar, max_epochs=1, device="cpu").fit(X[:50], y[:50])


def test_cnn_trains_on_multilabel_images_with_the_default_feature_decay():
    """Issue acceptance (b), at CI size (the 28x28 case is in benchmarks/tune_defaults.py): after 5 epochs no
    feature row has died and the PAL loss is well below its trivial value."""
    from sknc import make_multilabel_images

    digits = load_digits()
    X, Y = make_multilabel_images(digits.images / 16.0, digits.target, n_per_class=100, n_per_set=4, random_state=0)
    X = X.reshape(len(X), -1).astype(np.float32)
    clf = PALClassifier(module="cnn", input_shape=(1, 16, 16), max_epochs=5, device="cpu", random_state=0).fit(X, Y)
    H = clf.transform(X)
    assert np.mean(np.all(H == 0, axis=1)) < 0.05
    logits = torch.as_tensor(clf.decision_function(X))
    pal = float(-(torch.as_tensor(Y) * torch.log_softmax(logits, 1)).sum(1).mean())
    trivial = np.log(Y.shape[1]) * Y.sum(1).mean()  # every logit equal
    assert pal < 0.9 * trivial
    assert clf.history_["train_loss"].is_monotonic_decreasing


# --------------------------------------------------------------------------- guarded training
def test_divergence_stops_training_with_the_cause(digits):
    X, y = digits
    with pytest.raises(sknc.TrainingDivergedError, match="epoch 1.*learning rate.*lr=1e\\+06"):
        small(lr=1e6, max_epochs=5).fit(X[:300], y[:300])
    with pytest.raises(FloatingPointError):  # also a FloatingPointError, and a ValueError
        small(max_epochs=3, input_scaling=None).fit(X[:300] * 1e30, y[:300])
    clf = small(max_epochs=2).fit(X[:300], y[:300])
    with torch.no_grad():
        clf.net_.module_.head.weight[0] = float("inf")  # a network whose logits are not finite
    with pytest.raises(ValueError, match="not finite for"):
        clf.predict(X[:5])


@pytest.mark.parametrize(
    "params,match",
    [
        ({"hidden_sizes": (0,)}, "positive widths"),
        ({"hidden_sizes": (-5,)}, "positive widths"),
        ({"hidden_sizes": (16.5,)}, "must hold integers"),
        ({"device": "nonsense"}, "not a valid torch device"),
        ({"device": "mps"}, "not available"),
        ({"module": "cnn"}, "input_shape"),
        ({"callbacks__nope__x": 1}, "nope"),
    ],
)
def test_bad_parameters_are_named(digits, params, match):
    X, y = digits
    with pytest.raises((ValueError, TypeError, AttributeError), match=match):
        small(**params).fit(X[:50], y[:50])


def test_cpu_torch_device_is_accepted(digits):
    X, y = digits
    clf = small(device=torch.device("cpu"), max_epochs=1).fit(X[:100], y[:100])
    assert clf.predict(X[:3]).shape == (3,)


def test_labels_known_before_training(multilabel):
    X, Y = multilabel
    together = np.array([[1, 1, 0], [1, 1, 1], [0, 0, 1]] * 20)
    with pytest.raises(ValueError, match=r"do not determine the mean of class\(es\) 0, 1 "):
        small(decision_rule="tagwise").fit(X[:60], together)
    small(max_epochs=1).fit(X[:60], together)  # the threshold rule does not need them
    auto = small(decision_rule="auto", max_epochs=1).fit(X[:60], together)
    assert "tagwise" not in auto.decision_scores_  # not a candidate on these labels
    with pytest.raises(ValueError, match="label lists of different lengths"):
        small().fit(X[:3], [[0, 1], [1], [2, 0]])
    with pytest.raises(ValueError, match="1 class"):
        small().fit(X[:10], np.zeros(10))


# ------------------------------------------------------------------------------ persistence
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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_training_and_cpu_unpickle(digits):  # pragma: no cover - run where CUDA is available
    X, y = digits
    gpu = small(device="cuda").fit(X[:500], y[:500])
    cpu_copy = pickle.loads(pickle.dumps(gpu))
    cpu_copy.net_.set_params(device="cpu")
    cpu_copy.net_.module_.cpu()
    assert np.allclose(cpu_copy.decision_function(X[:50]), gpu.decision_function(X[:50]), atol=1e-4)


@pytest.mark.slow
def test_acceptance_default_pal_on_multilabel_digits():
    """Multi-label NC on train, a better test score than sklearn's MLP, and the tag-wise scale of the UFM."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import jaccard_score
    from sklearn.neural_network import MLPClassifier

    from sknc import load_multilabel_digits, tagwise_average

    data = load_multilabel_digits(random_state=0)
    clf = PALClassifier(max_epochs=500, device="cpu", random_state=0).fit(data.X_train, data.Y_train)
    H = clf.transform(data.X_train)
    rep = nc_report(H, data.Y_train, clf.coef_, clf.intercept_)
    assert rep["nc1"] < 0.05 and rep["nc2_h"] < 0.15 and rep["tagwise_angle"] < 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp = MLPClassifier(hidden_layer_sizes=(256, 256), max_iter=300, random_state=0).fit(data.X_train, data.Y_train)
    pal_pred, mlp_pred = clf.predict(data.X_test), mlp.predict(data.X_test)
    assert accuracy_score(data.Y_test, pal_pred) > accuracy_score(data.Y_test, mlp_pred)
    assert jaccard_score(data.Y_test, pal_pred, average="samples") > jaccard_score(data.Y_test, mlp_pred, average="samples")
    lw, lh = theory.estimator_to_ufm_lambdas(clf.lambda_W, clf.lambda_H, n_samples=len(data.X_train))
    summary = tagwise_average(H, data.Y_train, regularization={"lambda_W": lw, "lambda_H": lh}).summary
    row = summary.set_index("multiplicity").loc[2]
    assert row["scale_mean"] == pytest.approx(row["scale_theory"], rel=0.05)  # theory and practice meet


def test_built_in_backbones_scale_raw_inputs_inside_the_network():
    # scikit-learn users fit on raw load_digits (pixels 0-16); the default SGD rate assumes standardised inputs
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    defaults = dict(max_epochs=10, device="cpu", random_state=0)
    raw = PALClassifier(**defaults).fit(X[:1200], y[:1200])
    assert raw.score(X[1200:], y[1200:]) > 0.9
    with pytest.raises(sknc.TrainingDivergedError):  # the same defaults without the scaling diverge
        PALClassifier(input_scaling=None, **defaults).fit(X[:1200], y[:1200])
    scaler = raw.net_.module_.input_scaler
    low, high = X[:1200].min(0), X[:1200].max(0)  # 'minmax' for the MLP: every column onto [0, 1]
    np.testing.assert_array_equal(scaler.mean.numpy(), low)
    np.testing.assert_array_equal(scaler.scale.numpy(), np.where(high > low, high - low, 1.0))
    standard = PALClassifier(input_scaling="standard", **defaults).fit(X[:1200], y[:1200])
    mean, std = X[:1200].astype(np.float64).mean(0), X[:1200].astype(np.float64).std(0)
    np.testing.assert_allclose(standard.net_.module_.input_scaler.mean.numpy(), mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(standard.net_.module_.input_scaler.scale.numpy(), np.where(std > 0, std, 1.0),
                               rtol=1e-6)
    assert standard.score(X[1200:], y[1200:]) > 0.9
    # the scaling is part of the network: features and predictions of raw data, and any input scale alike
    big = PALClassifier(**defaults).fit(X[:1200] * 1e6, y[:1200])
    assert np.mean(big.predict(X[1200:] * 1e6) == raw.predict(X[1200:])) > 0.95


def test_channel_scaling_of_images_uses_each_channels_pixels():
    rng = np.random.default_rng(0)
    images = np.concatenate([rng.uniform(0, 255, (40, 1, 6, 6)), rng.normal(5.0, 0.1, (40, 1, 6, 6))], axis=1)
    X = images.reshape(40, -1).astype(np.float32)
    y = np.arange(40) % 2
    clf = small(module="cnn", input_shape=(2, 6, 6), max_epochs=1, module__width=4).fit(X, y)
    scaler = clf.net_.module_.input_scaler
    per_channel = X.reshape(40, 2, 36).transpose(1, 0, 2).reshape(2, -1)
    low, high = per_channel.min(1), per_channel.max(1)
    np.testing.assert_array_equal(scaler.mean.numpy().reshape(2, 36), np.repeat(low[:, None], 36, 1))
    np.testing.assert_allclose(scaler.scale.numpy().reshape(2, 36), np.repeat((high - low)[:, None], 36, 1),
                               rtol=1e-7)
    scaled = clf.net_.module_.input_scaler(torch.as_tensor(X)).numpy()
    assert scaled.min() == 0.0 and scaled.max() == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match=r"input_scaling='channel' needs images .* or input_shape"):
        small(input_scaling="channel").fit(X, y)
    assert small(module=torch.nn.Linear, module__in_features=72, module__out_features=8,
                 max_epochs=1).fit(X, y).net_.module_.input_scaler is None  # a user module gets raw inputs


def test_divergence_message_rules_out_input_magnitude_when_the_network_scales_its_inputs(digits):
    X, y = digits
    with pytest.raises(sknc.TrainingDivergedError, match="input_scaling='minmax'.*not the cause"):
        small(lr=1e6, max_epochs=3).fit(X[:300], y[:300])
    with pytest.raises(sknc.TrainingDivergedError, match="extreme magnitude.*StandardScaler"):
        small(lr=1e6, max_epochs=3, input_scaling=None).fit(X[:300], y[:300])
    warm = small(max_epochs=1, warm_start=True).fit(X[:300], y[:300])
    warm.set_params(lr=1e6)
    with pytest.raises(sknc.TrainingDivergedError, match="input_scaling='minmax'"):  # a continued fit too
        warm.fit(X[:300], y[:300])


def test_warm_start_continues_with_the_new_learning_rate_under_the_cosine_schedule(digits):
    X, y = digits
    warm = small(max_epochs=2, warm_start=True, lr=0.1).fit(X[:300], y[:300])
    warm.set_params(lr=0.02, max_epochs=1)
    warm.fit(X[:300], y[:300])
    # epochs 1-2 under the first rate (cosine over 2 epochs), epoch 3 restarts the schedule at 0.02
    assert warm.history_["lr"].tolist() == pytest.approx([0.1, 0.1e-3 + (0.1 - 0.1e-3) / 2, 0.02])


# ------------------------------------------------------------------------ issue 23: skorch's optimizer habits
def _digits_small():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X[:400].astype(np.float32), y[:400]


def test_optimizer_weight_decay_is_lambda_w():
    # it was refused ("set the weight decay with lambda_W"); it is the same penalty
    X, y = _digits_small()
    common = dict(hidden_sizes=(16,), feature_dim=8, max_epochs=3, device="cpu", random_state=0,
                  optimizer=torch.optim.AdamW, lr=1e-3)
    routed = PALClassifier(optimizer__weight_decay=1e-2, **common).fit(X, y)
    direct = PALClassifier(lambda_W=1e-2, **common).fit(X, y)
    assert routed.net_.optimizer_.param_groups[0]["weight_decay"] == 1e-2
    assert routed.history_["train_loss"].tolist() == direct.history_["train_loss"].tolist()
    with pytest.raises(ValueError, match="name the same penalty with different values"):
        PALClassifier(optimizer__weight_decay=1e-2, lambda_W=1e-3, **common).fit(X, y)


def test_an_optimizer_without_lr_gets_its_own_default_rate():
    # optimizer='adam' kept SGD's lr=0.1 (first-epoch loss 86.9) without a word
    X, y = _digits_small()
    adam = PALClassifier(hidden_sizes=(16,), max_epochs=1, optimizer="adam", device="cpu", random_state=0).fit(X, y)
    assert adam.net_.optimizer_.param_groups[0]["initial_lr"] == 1e-3
    sgd = PALClassifier(hidden_sizes=(16,), max_epochs=1, device="cpu", random_state=0).fit(X, y)
    assert sgd.net_.optimizer_.param_groups[0]["initial_lr"] == 0.1
    adamw = PALClassifier(hidden_sizes=(16,), max_epochs=1, optimizer=torch.optim.AdamW, device="cpu",
                          random_state=0).fit(X, y)
    assert adamw.net_.optimizer_.param_groups[0]["initial_lr"] == 1e-3


def test_a_seeded_fit_with_a_valid_split_repeats_exactly():
    from skorch.dataset import ValidSplit

    X, y = _digits_small()

    def run():
        return PALClassifier(hidden_sizes=(16,), max_epochs=3, train_split=ValidSplit(0.2), device="cpu",
                             random_state=0).fit(X, y).history_

    a, b = run(), run()
    for column in ("train_loss", "valid_loss"):
        assert a[column].tolist() == b[column].tolist(), column
    other = PALClassifier(hidden_sizes=(16,), max_epochs=3, train_split=ValidSplit(0.2), device="cpu",
                          random_state=1).fit(X, y).history_
    assert other["valid_loss"].tolist() != a["valid_loss"].tolist()


# ------------------------------------------------------------------------ issue 23: image arrays
@pytest.mark.parametrize("module", ["cnn", "resnet18"])
def test_image_arrays_train_as_their_flat_rows_with_input_shape(module):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = X[:240].astype(np.float32)
    y = y[:240]
    common = dict(module=module, max_epochs=2, batch_size=64, device="cpu", random_state=0)
    if module == "cnn":
        common["module__width"] = 4
    else:
        common["module__width"] = 4
    images = PALClassifier(**common).fit(X.reshape(-1, 8, 8), y)  # (N, H, W): one channel
    flat = PALClassifier(input_shape=(1, 8, 8), **common).fit(X, y)
    assert images.image_shape_ == (1, 8, 8)
    np.testing.assert_array_equal(images.predict(X.reshape(-1, 1, 8, 8)), flat.predict(X))
    np.testing.assert_allclose(images.transform(torch.as_tensor(X.reshape(-1, 8, 8))), flat.transform(X), rtol=1e-6)
    with pytest.raises(ValueError, match=r"images of shape \(1, 4, 16\), but the network takes \(1, 8, 8\)"):
        images.predict(X.reshape(-1, 4, 16))


def test_the_mlp_says_how_to_flatten_images():
    X = np.zeros((10, 8, 8), dtype=np.float32)
    with pytest.raises(ValueError, match=r"module='mlp' takes flat rows .* X.reshape\(len\(X\), -1\)"):
        PALClassifier(max_epochs=1).fit(X, np.arange(10) % 2)


def test_threads_follow_the_policy_and_the_callers_setting_is_restored(multilabel):
    from skorch.callbacks import Callback

    class Threads(Callback):
        def initialize(self):
            self.seen = []
            return self

        def on_epoch_end(self, net, **kwargs):
            self.seen.append(torch.get_num_threads())

    X, Y = multilabel
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)  # the caller's own setting
        clf = small(decision_rule="threshold", callbacks=[("threads", Threads())]).fit(X, Y)
        # a small MLP: 20-64-64 plus the head, 64 rows per batch, far below the 50 M multiply-adds of the policy
        assert clf._macs_per_sample == 20 * 64 + 64 * 64 + 64 * 4
        assert dict(clf.net_.callbacks_)["threads"].seen == [1] * 8
        assert torch.get_num_threads() == 3
        clf.predict(X)
        assert torch.get_num_threads() == 3
        two = small(decision_rule="threshold", n_threads=2, callbacks=[("threads", Threads())]).fit(X, Y)
        assert dict(two.net_.callbacks_)["threads"].seen == [2] * 8 and torch.get_num_threads() == 3
        # a network above the threshold keeps the caller's setting
        big = small(decision_rule="threshold", hidden_sizes=(2048, 2048), batch_size=256, max_epochs=1,
                    callbacks=[("threads", Threads())]).fit(X, Y)
        assert big._threads() is None and dict(big.net_.callbacks_)["threads"].seen == [3]
        with pytest.raises(ValueError, match="n_threads"):
            small(n_threads=0).fit(X, Y)
    finally:
        torch.set_num_threads(before)
