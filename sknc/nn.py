"""Torch modules: feature backbones, classification heads, and their composition.

A backbone maps inputs to features ``h``; a head maps features to logits. The
composed :class:`FeatureClassifier` returns ``(logits, features)`` so that the
training loss can regularise the features and NC metrics can read them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ._validation import check_layer_sizes
from .geometry import simplex_etf

__all__ = ["MLP", "SmallCNN", "ResNet18", "LinearHead", "ETFHead", "FeatureClassifier", "InputScaler", "etf_weight"]

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU}


def _activation(name):
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}; got {name!r}.")
    return _ACTIVATIONS[name]()


class MLP(nn.Module):
    """Fully connected backbone: ``Linear -> [BatchNorm] -> activation`` per layer.

    The output of the last layer (width ``hidden_sizes[-1]``) is the feature.
    With ``feature_activation=False`` the last layer is linear (no batch norm or
    activation): sign-unconstrained features, which the centred M-lab ETF needs
    (a pair mean ``c_2/2 (h_i + h_j)`` with ``c_2 > 1`` leaves the positive orthant).

    Examples
    --------
    >>> import torch
    >>> from sknc.nn import MLP
    >>> MLP(64, hidden_sizes=(32, 16))(torch.zeros(5, 64)).shape
    torch.Size([5, 16])
    """

    def __init__(self, in_features, hidden_sizes=(256, 256), activation="relu", batch_norm=False,
                 feature_activation=True):
        super().__init__()
        hidden_sizes = check_layer_sizes(hidden_sizes, "hidden_sizes")
        layers, width = [], int(in_features)
        for i, size in enumerate(hidden_sizes):
            last = i == len(hidden_sizes) - 1
            if last and not feature_activation:
                layers.append(nn.Linear(width, int(size)))
                width = int(size)
                break
            layers.append(nn.Linear(width, int(size), bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(int(size)))
            layers.append(_activation(activation))
            width = int(size)
        self.layers = nn.Sequential(*layers)
        self.out_features = width

    def forward(self, x):
        return self.layers(x.flatten(1))


class SmallCNN(nn.Module):
    """A CNN sized for a CPU: its compute goes where it pays, not into full-resolution channels.

    A stride-2 3x3 stem (``width`` channels) halves the image at once
    (``stem_stride=1`` keeps small images, below 24 pixels, whole); a 3x3
    conv to ``2 width`` channels, a 2x2 max-pool, a 3x3 conv to ``4 width``, a
    second max-pool and a last 3x3 conv (``4 width``) follow, each with
    batch norm and ReLU; then global average pooling and a linear layer to
    ``feature_dim`` features: sign-unconstrained, as the centred multi-label
    ETF needs, and they cannot die under feature decay
    (``feature_activation=True`` adds a ReLU: non-negative features, the
    setting of Dang et al.). The papers' structure (conv features, a
    penultimate layer, a linear or ETF head) at 2.4 M multiply-adds per 28x28
    image with the default width (7.1 M per 28x84 strip), an eighth of sknc
    0.2's two blocks of width 32 at full resolution (18 M and 55 M). Pools
    round up, so small images pass.

    Examples
    --------
    >>> import torch
    >>> from sknc.nn import SmallCNN
    >>> SmallCNN(in_channels=1, feature_dim=32, width=8)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 32])
    """

    def __init__(self, in_channels=1, feature_dim=64, width=16, feature_activation=False, stem_stride=2):
        super().__init__()

        def conv(cin, cout, stride=1):
            return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.body = nn.Sequential(
            *conv(in_channels, width, stride=stem_stride),
            *conv(width, 2 * width),
            nn.MaxPool2d(2, ceil_mode=True),
            *conv(2 * width, 4 * width),
            nn.MaxPool2d(2, ceil_mode=True),
            *conv(4 * width, 4 * width),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        layers = [nn.Linear(4 * width, feature_dim)] + ([nn.ReLU()] if feature_activation else [])
        self.fc = nn.Sequential(*layers)
        self.out_features = feature_dim

    def forward(self, x):
        return self.fc(self.pool(self.body(x)).flatten(1))


class _BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:  # 1x1 projection, also used to shrink to feature_dim
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR-style ResNet-18: 3x3 stem, stride 1, no max-pool, four stages of two blocks.

    ``feature_dim`` sets the output channels of the last block (512 by default;
    ``K`` for the parameter-efficient ``fix_dim`` setting), reached through a
    1x1-conv shortcut.

    Examples
    --------
    >>> import torch
    >>> from sknc.nn import ResNet18, count_parameters
    >>> net = ResNet18(in_channels=3)
    >>> net(torch.zeros(2, 3, 32, 32)).shape, round(count_parameters(net) / 1e6, 1)
    (torch.Size([2, 512]), 11.2)
    """

    def __init__(self, in_channels=3, feature_dim=512, width=64):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        widths = [width, 2 * width, 4 * width, 8 * width]
        blocks, cin = [], width
        for stage, cout in enumerate(widths):
            stride = 1 if stage == 0 else 2
            last = stage == 3
            blocks.append(_BasicBlock(cin, cout, stride))
            blocks.append(_BasicBlock(cout, feature_dim if last else cout, 1))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_features = feature_dim

    def forward(self, x):
        return self.pool(self.blocks(self.stem(x))).flatten(1)


def etf_weight(n_classes, feature_dim):
    """The fixed simplex-ETF classifier: unit-norm rows ``sqrt(K/(K-1))(I - 11^T/K)``.

    Embedded in the first ``K`` coordinates when ``feature_dim >= K`` (as in the
    published parameter-efficient code); for ``feature_dim = K-1`` a fixed
    orthonormal embedding (``random_state=0``) is used.

    Examples
    --------
    >>> from sknc.nn import etf_weight
    >>> W = etf_weight(3, 5)
    >>> tuple(W.shape), round(float((W @ W.T)[0, 1]), 4)
    ((3, 5), -0.5)
    """
    if feature_dim < n_classes - 1:
        raise ValueError(f"a simplex-ETF head needs feature_dim >= K-1 = {n_classes - 1}; got {feature_dim}.")
    if feature_dim >= n_classes:
        weight = np.zeros((n_classes, feature_dim))
        weight[:, :n_classes] = simplex_etf(n_classes)
    else:
        weight = simplex_etf(n_classes, feature_dim, random_state=0)
    return torch.as_tensor(weight, dtype=torch.float32)


class LinearHead(nn.Linear):
    """Learned linear classifier ``W h + b``.

    Examples
    --------
    >>> import torch
    >>> from sknc.nn import LinearHead
    >>> LinearHead(8, 3)(torch.zeros(4, 8)).shape
    torch.Size([4, 3])
    """


class ETFHead(nn.Module):
    """Fixed simplex-ETF classifier: the weight is a buffer (never trained), the bias is learned.

    Examples
    --------
    >>> import torch
    >>> from sknc.nn import ETFHead, count_parameters
    >>> head = ETFHead(4, 4)
    >>> torch.allclose(head.weight @ head.weight.T, torch.eye(4) * 4 / 3 - 1 / 3, atol=1e-6), count_parameters(head)
    (True, 4)
    """

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.register_buffer("weight", etf_weight(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.in_features, self.out_features = in_features, out_features

    def forward(self, h):
        return nn.functional.linear(h, self.weight, self.bias)


class InputScaler(nn.Module):
    """Fixed affine scaling of flat inputs, ``(x - mean) / scale``, as part of a network.

    The statistics are buffers (saved with the network's parameters, never
    trained), so a model fitted on raw data predicts from raw data.

    Examples
    --------
    >>> import torch
    >>> from sknc.nn import InputScaler
    >>> scaler = InputScaler(torch.tensor([8.0, 0.0]), torch.tensor([4.0, 1.0]))
    >>> scaler(torch.tensor([[16.0, 2.0]]))
    tensor([[2., 2.]])
    """

    def __init__(self, mean, scale, kind=None):
        super().__init__()
        self.kind = kind  # how the statistics were made (e.g. 'minmax'), for messages
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        scale = torch.as_tensor(scale, dtype=torch.float32).reshape(-1)
        if mean.shape != scale.shape:
            raise ValueError(f"mean and scale must have the same length; got {mean.numel()} and {scale.numel()}.")
        if not (torch.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError("scale must be finite and positive.")
        self.register_buffer("mean", mean)
        self.register_buffer("scale", scale)

    def forward(self, x):
        return (x - self.mean) / self.scale


class FeatureClassifier(nn.Module):
    """``[input scaling ->] backbone -> head``; ``forward`` returns ``(logits, features)``.

    Examples
    --------
    >>> import torch
    >>> from sknc.nn import MLP, FeatureClassifier, LinearHead
    >>> model = FeatureClassifier(MLP(10, (16,)), LinearHead(16, 3))
    >>> logits, features = model(torch.zeros(5, 10))
    >>> logits.shape, features.shape
    (torch.Size([5, 3]), torch.Size([5, 16]))
    """

    def __init__(self, backbone, head, input_shape=None, input_scaler=None):
        super().__init__()
        self.input_scaler = input_scaler
        self.backbone = backbone
        self.head = head
        self.input_shape = None if input_shape is None else tuple(int(s) for s in input_shape)

    def forward(self, x):
        if self.input_scaler is not None:  # on the flat inputs, before they are shaped into images
            x = self.input_scaler(x.reshape(x.shape[0], -1))
        if self.input_shape is not None:
            x = x.reshape(x.shape[0], *self.input_shape)
        features = self.backbone(x)
        if features.ndim != 2:
            raise ValueError(f"the backbone must return (batch, feature_dim) features; got shape {tuple(features.shape)}.")
        return self.head(features), features


def forward_macs(module, example):
    """Multiply-adds of one sample's forward pass through the convolutions and linear layers of ``module``.

    Counted with forward hooks on ``example[:1]`` (modes of every submodule
    restored); other layers (norms, activations, pools) add little and are
    not counted. What the thread policy of training reads.

    Examples
    --------
    >>> import torch
    >>> from sknc.nn import forward_macs
    >>> forward_macs(torch.nn.Sequential(torch.nn.Linear(4, 7), torch.nn.ReLU(), torch.nn.Linear(7, 2)),
    ...              torch.zeros(3, 4))
    42
    """
    total = 0

    def count(layer, inputs, output):
        nonlocal total
        if isinstance(layer, nn.Linear):
            total += layer.in_features * layer.out_features * (output.numel() // max(output.shape[-1], 1))
        else:  # a convolution: every output element reads in_channels / groups x kernel values
            kernel = int(np.prod(layer.kernel_size))
            total += output.numel() * kernel * layer.in_channels // layer.groups

    modes = {m: m.training for m in module.modules()}
    hooks = [m.register_forward_hook(count) for m in module.modules()
             if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    module.eval()
    try:
        with torch.no_grad():
            module(example[:1])
    finally:
        for h in hooks:
            h.remove()
        for m, training in modes.items():
            m.training = training
    return int(total)


def infer_out_features(backbone, example):
    """Feature width of a backbone, from one forward pass on ``example``.

    A declared ``out_features`` attribute that disagrees with the output is an
    error (it would otherwise surface as a shape mismatch deep in training).

    Examples
    --------
    >>> import torch
    >>> from sknc.nn import infer_out_features
    >>> infer_out_features(torch.nn.Sequential(torch.nn.Linear(4, 7), torch.nn.ReLU()), torch.zeros(2, 4))
    7
    """
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            out = backbone(example[:2])
    except Exception as exc:
        raise ValueError(
            f"the backbone failed on a batch of the training data of shape {tuple(example[:2].shape)}: {exc}"
        ) from exc
    finally:
        backbone.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the backbone must return (batch, width) features; got {shape}.")
    width = int(out.shape[1])
    declared = getattr(backbone, "out_features", None)
    if isinstance(declared, int) and declared != width:
        raise ValueError(f"the backbone declares out_features={declared} but returns {width} features per sample.")
    return width


def count_parameters(module, trainable_only=True):
    """Number of (trainable) parameters of a module.

    Examples
    --------
    >>> import torch
    >>> from sknc.nn import count_parameters
    >>> count_parameters(torch.nn.Linear(4, 3))
    15
    """
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only))


__all__ += ["infer_out_features", "count_parameters", "forward_macs"]
