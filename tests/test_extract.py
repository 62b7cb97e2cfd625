"""Features by forward hooks: equal to a manual forward pass, streamed reports equal in-memory ones."""

import numpy as np
import pytest
import torch
from torch import nn

import sknc
from sknc.extract import classifier_parameters, default_layer, layer_features, layer_names, model_nc_report


class Convy(nn.Module):
    """A user's model: conv maps, a flattened MLP part, and a final Linear."""

    def __init__(self, k=3):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.mlp = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 8))
        self.fc = nn.Linear(8, k)

    def forward(self, x):
        h = self.conv(x).mean(dim=(2, 3))
        return self.fc(self.mlp(h))


@pytest.fixture
def model_and_data(rng):
    torch.manual_seed(0)
    model = Convy()
    y = np.repeat(np.arange(3), 40)
    X = torch.as_tensor(rng.standard_normal((120, 1, 6, 6)) + y[:, None, None, None], dtype=torch.float32)
    return model, X, y


def manual(model, X):
    with torch.no_grad():
        conv = model.conv(X)
        h0 = conv.mean(dim=(2, 3))
        h1 = model.mlp[1](model.mlp[0](h0))
        h2 = model.mlp(h0)
    return {"conv": conv.mean(dim=(2, 3)), "mlp.1": h1, "fc:input": h2, "conv:flat": conv.flatten(1)}


def test_hook_features_equal_a_manual_forward_pass(model_and_data):
    model, X, y = model_and_data
    expected = manual(model, X)
    feats, labels = layer_features(model, X, y, layers=["conv", "mlp.1", "fc:input"], batch_size=32)
    for layer in ("conv", "mlp.1", "fc:input"):
        assert np.allclose(feats[layer], expected[layer].numpy(), atol=1e-6), layer
    assert np.array_equal(labels, y)
    flat, _ = layer_features(model, X, y, layers="conv", reduce="flatten")
    assert np.allclose(flat["conv"], expected["conv:flat"].numpy(), atol=1e-6)


def test_streamed_layer_reports_equal_nc_report_on_stacked_features(model_and_data):
    model, X, y = model_and_data
    layers = ["conv", "mlp.1", "fc:input"]
    frame, feats = model_nc_report(model, X, y, layers=layers, batch_size=25, return_features=True)
    assert list(frame.index) == layers
    W, b = classifier_parameters(model)
    for layer in layers:
        expected = sknc.nc_report(feats[layer], y, *((W, b) if layer == "fc:input" else ()))
        for key in expected.index:
            assert frame.loc[layer, key] == pytest.approx(expected[key], rel=1e-6, abs=1e-9), (layer, key)
    assert np.isnan(frame.loc["conv", "nc4"])  # no classifier there: NC4 does not apply
    one = model_nc_report(model, X, y, passes=1)
    assert one.loc["fc:input", "nc1"] == pytest.approx(frame.loc["fc:input", "nc1"], rel=1e-6)


def test_every_layer_gets_ncc_accuracy_and_the_features_ranks(model_and_data):
    # the law of data separation and rank collapse through depth: opt-in keys at every layer, streamed
    model, X, y = model_and_data
    layers = ["conv", "mlp.1", "fc:input"]
    frame, feats = model_nc_report(model, X, y, layers=layers, batch_size=25, return_features=True,
                                   ncc_accuracy=True, feature_rank=True)
    for layer in layers:
        expected = sknc.nc_report(feats[layer], y, ncc_accuracy=True, feature_rank=True)
        for key in ("ncc_accuracy", "features_effective_rank", "features_stable_rank", "means_effective_rank"):
            assert frame.loc[layer, key] == pytest.approx(expected[key], rel=1e-6), (layer, key)
        s = np.linalg.svd(feats[layer].astype(np.float64) - feats[layer].astype(np.float64).mean(0),
                          compute_uv=False)
        assert frame.loc[layer, "features_stable_rank"] == pytest.approx(np.sum(s**2) / s[0] ** 2, rel=1e-6)


def test_the_layers_accumulators_give_the_per_class_tables(model_and_data):
    model, X, y = model_and_data
    layers = ["conv", "fc:input"]
    frame, feats, accs = model_nc_report(model, X, y, layers=layers, per_class=True, return_features=True,
                                         return_accumulators=True)
    assert list(accs) == layers and list(frame.index) == layers
    for layer in layers:
        np.testing.assert_allclose(accs[layer].class_variability().to_numpy(),
                                   sknc.metrics.class_variability(feats[layer], y).to_numpy(), rtol=1e-6)
        np.testing.assert_allclose(accs[layer].cdnv_matrix().to_numpy(),
                                   sknc.metrics.cdnv_matrix(feats[layer], y).to_numpy(), rtol=1e-6)
    only = model_nc_report(model, X, y, return_accumulators=True)
    assert isinstance(only, tuple) and len(only) == 2 and isinstance(only[1]["fc:input"], sknc.NCAccumulator)


def test_default_layer_and_classifier(model_and_data):
    model, X, y = model_and_data
    assert default_layer(model) == "fc:input"
    frame = model_nc_report(model, X, y)
    assert list(frame.index) == ["fc:input"] and np.isfinite(frame.loc["fc:input", "nc4"])
    net = sknc.nn.FeatureClassifier(sknc.nn.MLP(5, (8,)), sknc.nn.ETFHead(8, 3))
    assert default_layer(net) == "head:input"  # a fixed ETF head is found by its name


def test_data_as_dataset_and_dataloader_and_multilabel(model_and_data):
    model, X, y = model_and_data
    dataset = torch.utils.data.TensorDataset(X, torch.as_tensor(y))
    loader = torch.utils.data.DataLoader(dataset, batch_size=17)
    base = model_nc_report(model, X, y)
    for data in (dataset, loader):
        _close(model_nc_report(model, data), base)
    Y = np.eye(3, dtype=int)[y]
    Y[np.arange(0, len(y), 10), (y[::10] + 1) % 3] = 1  # some pairs
    frame = model_nc_report(model, X, Y)
    assert np.isfinite(frame.loc["fc:input", "tagwise_angle"]) and "tagwise_scale_m2" in frame


def _close(a, b):
    for key in b.columns:
        assert a.iloc[0][key] == pytest.approx(b.iloc[0][key], rel=1e-6, abs=1e-9), key


def test_unknown_layer_lists_the_valid_ones_and_hooks_are_removed(model_and_data):
    model, X, y = model_and_data
    with pytest.raises(ValueError, match="unknown layer 'mlp.9'; valid names are: conv, conv.0"):
        model_nc_report(model, X, y, layers=["conv", "mlp.9"])
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    with pytest.raises(ValueError, match="y is needed"):
        model_nc_report(model, X)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert "mlp.2:input" in layer_names(model)
    assert model.training  # eval mode was only borrowed


def test_model_without_a_linear_head_needs_named_layers(rng):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    X = torch.randn(10, 1, 5, 5)
    with pytest.raises(ValueError, match="no nn.Linear"):
        model_nc_report(model, X, np.arange(10) % 2)
    frame = model_nc_report(model, X, np.arange(10) % 2, layers="1")
    assert frame.loc["1", "n_dims"] == 2


def test_layerwise_collapse_of_a_deep_mlp_falls_with_depth(rng):
    # a small trained deep net: NC1 of later layers is lower (Rangamani et al. 2023; He & Su 2023)
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = torch.as_tensor(X / 16, dtype=torch.float32)
    torch.manual_seed(0)
    model = nn.Sequential(*[m for i in range(4) for m in (nn.Linear(64, 64), nn.ReLU())], nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    target = torch.as_tensor(y)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(X), target).backward()
        opt.step()
    frame = model_nc_report(model, X, y, layers=["1", "3", "5", "7"])
    nc1 = frame["nc1"].to_numpy()
    assert nc1[-1] < nc1[0] and np.all(np.isfinite(nc1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_extraction_stays_on_the_device(model_and_data):  # pragma: no cover - runs where CUDA is
    model, X, y = model_and_data
    cpu = model_nc_report(model, X, y)
    gpu = model_nc_report(model.cuda(), X, y)
    _close(gpu, cpu)


# ------------------------------------------------------------------------ issue 24: no silent numbers
def test_a_shuffling_loaders_own_labels_win(model_and_data):
    # the loader's rows were paired with y by position: nc1 13.7 where the true value is 0.89
    from torch.utils.data import DataLoader, TensorDataset

    model, X, y = model_and_data
    expected = model_nc_report(model, X, y)["nc1"].iloc[0]
    torch.manual_seed(1)
    loader = DataLoader(TensorDataset(X, torch.as_tensor(y)), batch_size=16, shuffle=True)
    assert model_nc_report(model, loader)["nc1"].iloc[0] == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="differ from y .* drop y"):
        model_nc_report(model, loader, y)
    # an unshuffled loader agrees with y row by row: both may be given
    plain = DataLoader(TensorDataset(X, torch.as_tensor(y)), batch_size=16)
    assert model_nc_report(model, plain, y)["nc1"].iloc[0] == pytest.approx(expected, rel=1e-9)


def test_every_submodule_mode_and_every_generator_is_left_as_found(model_and_data):
    import random

    _, X, y = model_and_data
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 16), nn.Dropout(0.2), nn.BatchNorm1d(16), nn.Linear(16, 3))
    model.train()
    model[3].eval()  # a frozen BatchNorm inside a training model
    modes = [m.training for m in model.modules()]
    states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    model_nc_report(model, X, y)
    layer_features(model, torch.utils.data.TensorDataset(X, torch.as_tensor(y)), layers=["2"])
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]


def test_reduce_per_layer_and_a_warning_when_too_few_dims_are_left(model_and_data):
    model, X, y = model_and_data
    with pytest.warns(sknc.NCWarning, match=r"layer 'conv:input': reduce='avg' leaves 1 feature dimension"):
        frame = model_nc_report(model, X, y, layers=["conv:input", "fc:input"])
    assert frame.loc["conv:input", "n_dims"] == 1
    frame = model_nc_report(model, X, y, layers=["conv:input", "fc:input"], reduce={"conv:input": "flatten"})
    assert frame.loc["conv:input", "n_dims"] == 36 and frame.loc["fc:input", "n_dims"] == 8
    H = X.flatten(1).numpy()
    assert frame.loc["conv:input", "nc1"] == pytest.approx(sknc.nc_report(H, y)["nc1"], rel=1e-6)
    with pytest.raises(ValueError, match="names layer.*not measured"):
        model_nc_report(model, X, y, layers=["fc:input"], reduce={"conv": "flatten"})


class TupleAndDict(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 6)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        h = self.body(x)
        return {"logits": self.fc(h), "features": h}


def test_layers_that_return_dicts_or_none_are_explained_and_a_callable_can_read_them(rng):
    model = TupleAndDict()
    X = torch.as_tensor(rng.standard_normal((30, 4)), dtype=torch.float32)
    y = np.arange(30) % 3
    with pytest.raises(ValueError, match=r"layer '' gives|unknown layer"):
        model_nc_report(model, X, y, layers=[""])

    class Wrapper(nn.Module):  # a submodule whose output is a dict
        def __init__(self):
            super().__init__()
            self.inner = TupleAndDict()

        def forward(self, x):
            return self.inner(x)["logits"]

    wrapped = Wrapper()
    with pytest.raises(ValueError, match=r"layer 'inner' gives dict .*not a tensor.*reduce="):
        model_nc_report(wrapped, X, y, layers=["inner"])
    frame = model_nc_report(wrapped, X, y, layers=["inner"], reduce={"inner": lambda out: out["features"]})
    with torch.no_grad():
        H = wrapped.inner.body(X).numpy()
    assert frame.loc["inner", "nc1"] == pytest.approx(sknc.nc_report(H, y)["nc1"], rel=1e-6)

    class NoneLayer(nn.Module):
        def forward(self, x):
            return None

    class WithNone(nn.Module):
        def __init__(self):
            super().__init__()
            self.side = NoneLayer()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            self.side(x)
            return self.fc(x)

    with pytest.raises(ValueError, match=r"layer 'side' gives NoneType, not a tensor"):
        model_nc_report(WithNone(), X, y, layers=["side"])


def test_inputs_in_the_models_dtype_token_ids_and_lists(rng):
    y = np.arange(40) % 4
    emb = nn.Sequential(nn.Embedding(50, 8), nn.Flatten(), nn.Linear(24, 4))
    ids = rng.integers(0, 50, (40, 3))  # int64 numpy ids
    frame = model_nc_report(emb, ids, y)
    with torch.no_grad():
        H = emb[1](emb[0](torch.as_tensor(ids))).numpy()
    assert frame["nc1"].iloc[0] == pytest.approx(sknc.nc_report(H, y)["nc1"], rel=1e-6)

    double = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 4)).double()
    X = rng.standard_normal((40, 5))
    frame = model_nc_report(double, X, y)  # float64 model, float64 data: no float32 round trip
    with torch.no_grad():
        H = double[1](double[0](torch.as_tensor(X))).numpy()
    assert frame["nc1"].iloc[0] == pytest.approx(sknc.nc_report(H, y)["nc1"], rel=1e-12)
    listed = model_nc_report(double, X.tolist(), y.tolist())
    assert listed["nc1"].iloc[0] == pytest.approx(frame["nc1"].iloc[0], rel=1e-12)


def test_refused_up_front_with_the_reason(model_and_data):
    model, X, y = model_and_data
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        model_nc_report(model, X, y, batch_size=0)
    with pytest.raises(ValueError, match="one-shot iterator .* passes=1"):
        model_nc_report(model, ((X[i : i + 10], y[i : i + 10]) for i in range(0, 120, 10)))
    one_pass = model_nc_report(model, ((X[i : i + 10], y[i : i + 10]) for i in range(0, 120, 10)), passes=1)
    assert one_pass["nc1"].iloc[0] == pytest.approx(model_nc_report(model, X, y)["nc1"].iloc[0], rel=1e-6)
    with torch.device("meta"):
        ghost = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 3))
    with pytest.raises(ValueError, match="'meta' device"):
        model_nc_report(ghost, np.zeros((6, 4), np.float32), np.arange(6) % 3)
    loader = [{"x": X[:60], "labels": torch.as_tensor(y[:60])}, {"x": X[60:], "labels": torch.as_tensor(y[60:])}]
    with pytest.raises(ValueError, match=r"dict batch needs forward="):
        model_nc_report(model, loader)
    frame = model_nc_report(model, loader, forward=lambda batch: model(batch["x"]))
    assert frame["nc1"].iloc[0] == pytest.approx(model_nc_report(model, X, y)["nc1"].iloc[0], rel=1e-6)


def test_data_missing_one_of_the_classifiers_classes_is_measured(model_and_data):
    model, X, y = model_and_data
    keep = y != 1
    with pytest.warns(sknc.NCWarning, match=r"no sample of class\(es\) 1 of the classifier"):
        frame = model_nc_report(model, X[keep], y[keep])
    H = manual(model, X[keep])["fc:input"].numpy()
    W, b = classifier_parameters(model)
    present = sknc.nc_report(H, y[keep])
    assert frame["nc1"].iloc[0] == pytest.approx(present["nc1"], rel=1e-6)
    assert frame["nc3"].iloc[0] == pytest.approx(sknc.nc_report(H, y[keep], W[[0, 2]])["nc3"], rel=1e-6)
    assert frame["nc2_w"].iloc[0] == pytest.approx(sknc.nc2_w(W)["gram"], rel=1e-9)
    assert np.isnan(frame["nc4"].iloc[0]) and np.isnan(frame["nc3_difference"].iloc[0])


def test_a_second_pass_over_other_rows_is_caught(model_and_data):
    # an augmenting dataset: every read gives other rows; nc1 was a mix of two data sets without a word
    model, X, y = model_and_data

    class Augmenting(torch.utils.data.Dataset):
        def __init__(self):
            self.gen = torch.Generator().manual_seed(0)

        def __len__(self):
            return len(y)

        def __getitem__(self, i):
            return X[i] + 0.3 * torch.randn(X[i].shape, generator=self.gen), int(y[i])

    with pytest.warns(sknc.NCWarning, match="second pass read other rows than the first"):
        frame = model_nc_report(model, Augmenting())
    assert np.isnan(frame["nc1"].iloc[0]) and np.isnan(frame["nc4"].iloc[0])
    assert np.isfinite(frame["nc2_h"].iloc[0]) and np.isfinite(frame["cdnv"].iloc[0])  # first-pass keys stand
