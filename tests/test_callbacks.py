"""NCTracker on any skorch net: the layer's metrics per epoch, never an aborted run."""

import warnings

import numpy as np
import pytest
import torch
from skorch import NeuralNetClassifier

import sknc
from sknc import NCTracker, PALClassifier, nc_report

from .conftest import multilabel_blobs


def _plain_module():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))


def test_tracker_on_a_plain_net_with_a_validation_split():
    X, Y = multilabel_blobs(seed=3)
    y = Y.argmax(1)
    module = _plain_module()
    net = NeuralNetClassifier(module, max_epochs=3, lr=0.1, verbose=0, callbacks=[NCTracker(on="both")])
    net.fit(X, y)  # skorch's default validation split: Subsets
    assert len(net.history[:, "nc1"]) == 3 and len(net.history[:, "valid_nc1"]) == 3
    # the last row equals the metrics computed by hand on the training split's penultimate features
    train_idx = net.train_split(net.get_dataset(X, y), y)[0].indices
    with torch.no_grad():
        H = module[1](module[0](torch.as_tensor(X[train_idx]))).numpy()
    expected = nc_report(H, y[train_idx], module[2].weight.detach().numpy(), module[2].bias.detach().numpy())
    assert net.history[-1, "nc1"] == pytest.approx(expected["nc1"], rel=1e-6)
    assert net.history[-1, "nc4"] == pytest.approx(expected["nc4"], abs=1e-12)


def test_tracker_on_a_named_layer_every_k_epochs():
    X, Y = multilabel_blobs(seed=3)
    y = Y.argmax(1)
    net = NeuralNetClassifier(_plain_module(), max_epochs=5, lr=0.1, train_split=None, verbose=0,
                              callbacks=[NCTracker(every=2, layer="0", metrics=["nc1", "nc2_h"])])
    net.fit(X, y)
    nc1 = [row.get("nc1") for row in net.history]
    assert [v is not None for v in nc1] == [False, True, False, True, True]  # epochs 2, 4 and the last
    assert "nc3" not in net.history[-1]


def test_tracker_measures_the_opt_in_keys_it_is_asked_for():
    # ncc_accuracy and the features' ranks need options of the report: naming them in metrics turns them on
    X, Y = multilabel_blobs(seed=3)
    y = Y.argmax(1)
    module = _plain_module()
    keys = ["nc1", "ncc_accuracy", "features_effective_rank", "features_stable_rank"]
    net = NeuralNetClassifier(module, max_epochs=3, lr=0.1, train_split=None, verbose=0,
                              callbacks=[NCTracker(metrics=keys)]).fit(X, y)
    with torch.no_grad():
        H = module[1](module[0](torch.as_tensor(X))).numpy()
    expected = nc_report(H, y, ncc_accuracy=True, feature_rank=True)
    for key in keys:
        assert net.history[-1, key] == pytest.approx(expected[key], rel=1e-6), key


def test_tracker_records_each_classs_share_of_nc1():
    X, Y = multilabel_blobs(seed=4)
    y = Y.argmax(1)
    module = _plain_module()
    net = NeuralNetClassifier(module, max_epochs=3, lr=0.1, train_split=None, verbose=0,
                              callbacks=[NCTracker(per_class=True, every=2)]).fit(X, y)
    with torch.no_grad():
        H = module[1](module[0](torch.as_tensor(X))).numpy()
    table = sknc.metrics.class_variability(H, y)
    recorded = net.history[-1, "class_nc1"]
    assert sorted(recorded) == sorted(table.index.tolist())
    for label, value in recorded.items():
        assert value == pytest.approx(table.loc[label, "nc1"], rel=1e-6)
        assert net.history[-1, "class_within_variance"][label] == pytest.approx(table.loc[label, "within_variance"],
                                                                               rel=1e-6)
    assert "class_nc1" not in net.history[0]  # measured every 2 epochs (and at the last)
    # label sets without single-label samples: no class has samples of its own; one warning, training goes on
    rows = np.arange(120)
    Y2 = np.zeros((120, 3), dtype=int)
    Y2[rows, rows % 3] = 1
    Y2[rows, (rows + 1) % 3] = 1
    X2 = np.random.default_rng(0).standard_normal((120, 5)).astype(np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # as a user sees them (not "always", which repeats every warning)
        clf = PALClassifier(hidden_sizes=(16,), max_epochs=3, device="cpu", random_state=0, decision_rule="threshold",
                            callbacks=[("nc", NCTracker(per_class=True))]).fit(X2, Y2)
    said = [w for w in caught if "no per-class values" in str(w.message)]
    assert len(said) == 1 and "several classes" in str(said[0].message)
    assert np.isfinite(clf.history_["nc1"]).all() and "class_nc1" not in clf.history_
    with pytest.raises(ValueError, match="per_class=True needs passes=2"):
        NCTracker(per_class=True, passes=1).initialize()


def test_tracked_nc_columns_of_palclassifier():
    X, Y = multilabel_blobs(seed=1)
    clf = PALClassifier(hidden_sizes=(32,), feature_dim=8, max_epochs=6, track_nc=2, device="cpu",
                        random_state=0).fit(X, Y)
    hist = clf.history_
    for col in ("nc1", "nc2_h", "nc2_w", "nc3", "nc4", "tagwise_angle"):
        values = hist[col].dropna()
        assert len(values) == 3 and np.isfinite(values).all(), col
    rep = nc_report(clf.transform(X), Y, clf.coef_, clf.intercept_)
    assert hist["nc1"].iloc[-1] == pytest.approx(rep["nc1"], rel=1e-4)


def test_partly_degenerate_features_never_abort_training():
    # class 3 only ever occurs beside class 2, and no other pair fixes the scale of pairs: its mean is not
    # determined (single-label means or the tag-wise estimate), every class-mean metric is undefined, training
    # goes on
    rng = np.random.default_rng(0)
    Y = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1], [0, 0, 1, 1]] * 20)
    X = (Y @ rng.standard_normal((4, 10)) + 0.1 * rng.standard_normal((100, 10))).astype(np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = PALClassifier(hidden_sizes=(16,), feature_dim=6, max_epochs=4, track_nc=1, decision_rule="threshold",
                            device="cpu", random_state=0).fit(X, Y)
    hist = clf.history_
    assert len(hist) == 4
    assert hist["nc1"].isna().all() and hist["nc2_w"].notna().all()
    messages = [str(w.message) for w in caught if issubclass(w.category, sknc.NCWarning)]
    assert messages and all("do not determine the mean of class(es) 3 " in m for m in messages)
    assert len(messages) == 4  # one per report, i.e. per tracked epoch


def test_a_failed_measurement_records_nan_with_the_reason():
    X, Y = multilabel_blobs(seed=3)
    y = Y.argmax(1)
    net = NeuralNetClassifier(_plain_module(), max_epochs=2, lr=0.1, train_split=None, verbose=0,
                              callbacks=[NCTracker(on="valid")])  # no validation split to measure
    with pytest.warns(sknc.NCWarning, match="no validation split"):
        net.fit(X, y)
    assert np.isnan(net.history[-1, "valid_nc1"])


def test_tracker_parameters_are_checked():
    with pytest.raises(ValueError, match="every must be a positive integer"):
        NCTracker(every=0).initialize()
    with pytest.raises(ValueError, match="on must be"):
        NCTracker(on="test").initialize()


def test_measuring_does_not_change_the_training_run():
    # issue 24: reading the training data through a DataLoader drew from torch's global generator, so the
    # shuffled batches (and the losses) of a run with NCTracker differed from the same run without it
    import random

    from skorch import NeuralNetClassifier

    X = np.random.default_rng(0).standard_normal((90, 5)).astype(np.float32)
    y = np.arange(90) % 3

    def run(callbacks):
        torch.manual_seed(0)
        np.random.seed(0)
        random.seed(0)
        module = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Dropout(0.3),
                                     torch.nn.Linear(16, 3))
        net = NeuralNetClassifier(module, max_epochs=4, batch_size=16, criterion=torch.nn.CrossEntropyLoss,
                                  train_split=None, verbose=0, callbacks=callbacks,
                                  iterator_train__shuffle=True).fit(X, y)
        return net.history[:, "train_loss"], (torch.get_rng_state(), np.random.rand(), random.random())

    plain, state_plain = run([])
    tracked, state_tracked = run([NCTracker(every=1)])
    assert plain == tracked  # bit for bit
    assert torch.equal(state_plain[0], state_tracked[0]) and state_plain[1:] == state_tracked[1:]


def test_tracker_measures_a_split_that_misses_a_class():
    # issue 24: data without one of W's classes left every column NaN, NC1 included
    from skorch import NeuralNetClassifier

    X = np.random.default_rng(1).standard_normal((120, 6)).astype(np.float32)
    y = np.arange(120) % 4
    module = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    keep = y != 3
    tracker = NCTracker(X=X[keep], y=y[keep])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = NeuralNetClassifier(module, max_epochs=2, criterion=torch.nn.CrossEntropyLoss, train_split=None,
                                  verbose=0, callbacks=[tracker]).fit(X, y)
    row = net.history[-1]
    with torch.no_grad():  # the features by hand, of the final network, on the classes present
        H = module[:2](torch.as_tensor(X[keep])).numpy()
    W = module[2].weight.detach().numpy()
    assert row["nc1"] == pytest.approx(nc_report(H, y[keep])["nc1"], rel=1e-6)
    assert row["nc3"] == pytest.approx(nc_report(H, y[keep], W[:3])["nc3"], rel=1e-6)
    assert row["nc2_w"] == pytest.approx(sknc.nc2_w(W)["gram"], rel=1e-6)
    assert np.isnan(row["nc4"]) and np.isnan(row["bias_collapse"])
    assert any("no sample of class(es) 3" in str(w.message) for w in caught)


def test_tracked_nc_on_images_without_single_label_samples():
    # bundled digits two and three to an image, no single-label sample: the class means are estimated from the
    # label sets, so NC is finite at every tracked epoch and falls as the network trains
    from sklearn.datasets import load_digits

    from sknc import make_multilabel_images

    digits = load_digits()
    X, Y = make_multilabel_images(digits.images, digits.target, n_per_class=0, n_per_set={2: 15, 3: 3},
                                  multiplicities=(2, 3), random_state=0)
    assert Y.sum(1).min() == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", sknc.NCWarning)  # nothing undefined
        clf = PALClassifier(max_epochs=30, track_nc=5, random_state=0, device="cpu").fit(
            X.reshape(len(X), -1) / 16, Y)
    hist = clf.history_[["nc1", "nc2_h", "nc3", "nc4", "tagwise_angle"]].dropna()
    assert len(hist) == 6 and np.isfinite(hist.to_numpy()).all()
    assert hist["nc1"].iloc[-1] < 0.3 * hist["nc1"].iloc[0]
    assert hist["tagwise_angle"].iloc[-1] < 0.5 * hist["tagwise_angle"].iloc[0]
    assert hist["nc2_h"].iloc[-1] < hist["nc2_h"].iloc[0]
