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
