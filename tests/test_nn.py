import numpy as np
import pytest
import torch

from sknc.nn import ETFHead, FeatureClassifier, MLP, ResNet18, SmallCNN, etf_weight


def test_resnet18_cifar_style_shapes_and_feature_dim():
    net = ResNet18(in_channels=1, feature_dim=10, width=8)
    out = net(torch.randn(2, 1, 16, 16))
    assert out.shape == (2, 10)
    assert isinstance(net.stem[0], torch.nn.Conv2d) and net.stem[0].kernel_size == (3, 3) and net.stem[0].stride == (1, 1)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in net.modules())
    assert ResNet18(in_channels=3, width=8)(torch.randn(2, 3, 32, 32)).shape == (2, 512)


def test_cnn_and_mlp():
    assert SmallCNN(in_channels=3, feature_dim=7, width=4)(torch.randn(3, 3, 8, 8)).shape == (3, 7)
    mlp = MLP(12, (16, 5), batch_norm=True)
    assert mlp(torch.randn(4, 12)).shape == (4, 5) and mlp.out_features == 5
    with pytest.raises(ValueError, match="activation"):
        MLP(3, (4,), activation="swish")


@pytest.mark.parametrize("k,d", [(4, 4), (4, 9), (5, 4)])
def test_etf_head_is_a_frozen_simplex_etf(k, d):
    head = ETFHead(d, k)
    W = head.weight.double().numpy()
    G = W @ W.T
    assert np.allclose(np.diag(G), 1.0, atol=1e-6)
    assert np.allclose(G[~np.eye(k, dtype=bool)], -1 / (k - 1), atol=1e-6)
    assert [n for n, _ in head.named_parameters()] == ["bias"]
    with pytest.raises(ValueError, match="feature_dim >= K-1"):
        etf_weight(5, 3)


def test_feature_classifier_reshapes_and_returns_tuple():
    model = FeatureClassifier(SmallCNN(1, 6, 4), ETFHead(6, 3), input_shape=(1, 8, 8))
    logits, feats = model(torch.randn(5, 64))
    assert logits.shape == (5, 3) and feats.shape == (5, 6)


def test_forward_macs_counts_linear_and_convolution_work():
    from sknc.nn import forward_macs

    conv = torch.nn.Sequential(torch.nn.Conv2d(2, 5, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(5, 4, 3, stride=2, padding=1, groups=1), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 4 * 4, 3))
    # 8x8 output x 5 channels x (2 x 3 x 3) reads; 4x4 x 4 x (5 x 3 x 3); 64 x 3
    assert forward_macs(conv, torch.zeros(6, 2, 8, 8)) == 8 * 8 * 5 * 18 + 4 * 4 * 4 * 45 + 64 * 3
    conv.train()
    forward_macs(conv, torch.zeros(6, 2, 8, 8))
    assert all(m.training for m in conv.modules())  # modes left as they were
    small = SmallCNN(1, 64)
    assert small.body[0].stride == (2, 2)
    assert forward_macs(small, torch.zeros(2, 1, 28, 28)) < 3e6  # the CPU-sized default (sknc 0.2's: 18 M)
