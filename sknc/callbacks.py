"""skorch callbacks: NC tracking during training and a stateless cosine schedule."""

from __future__ import annotations

import math

import numpy as np
import torch
from skorch.callbacks import Callback

from .metrics import nc_report

__all__ = ["NCTracker", "CosineLR", "head_parameters"]


def head_parameters(module):
    """Classifier ``(W, b)`` of a module as float64 numpy arrays.

    Uses ``module.head`` when present (sknc networks), else the last
    ``nn.Linear`` of the module. ``b`` is ``None`` when the head has no bias.
    """
    head = getattr(module, "head", None)
    if head is None or not hasattr(head, "weight"):
        linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
        if not linears:
            raise ValueError("cannot find the classifier: the module has no `head` and no nn.Linear layer.")
        head = linears[-1]
    W = head.weight.detach().double().cpu().numpy()
    b = None if getattr(head, "bias", None) is None else head.bias.detach().double().cpu().numpy()
    return W, b


class NCTracker(Callback):
    """Record NC metrics into a skorch net's history every ``every`` epochs.

    Works with any skorch net whose module returns ``(logits, features)``
    (sknc networks do). Metrics come from :func:`sknc.nc_report` on the
    features of the training data (or of ``X``/``y`` when given), computed in
    eval mode with the head's ``W`` and ``b``; multi-label ``y`` (indicator) adds
    the tag-wise metrics.

    Parameters
    ----------
    every : int, default=1
        Epoch period; the last epoch of training is always recorded.
    metrics : sequence of str, optional
        Report keys to record (default: every key of the report except counts).
    X, y : array-like, optional
        Data to measure on instead of the training set. Kept out of ``get_params``
        so that cloning in a grid search does not copy it.
    prefix : str, default=''
        Prefix of the history keys (e.g. ``'valid_'``).
    """

    def __init__(self, every=1, metrics=None, X=None, y=None, prefix=""):
        self.every = every
        self.metrics = metrics
        self.prefix = prefix
        self._X, self._y = X, y

    def get_params(self, deep=True):  # keep the data out of the params that grid searches copy
        params = super().get_params(deep=deep)
        params.pop("_X", None)
        params.pop("_y", None)
        return params

    def initialize(self):
        if not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"every must be a positive integer; got {self.every!r}.")
        return self

    def on_epoch_end(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        epoch = len(net.history)
        last = epoch >= net.max_epochs
        if epoch % self.every and not last:
            return
        X, y = (self._X, self._y) if self._X is not None else (dataset_train.X, dataset_train.y)
        out = net.forward(X, training=False)
        if not isinstance(out, (tuple, list)) or len(out) < 2:
            raise ValueError("NCTracker needs a module whose forward returns (logits, features).")
        features = out[1]
        y_np = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        W, b = head_parameters(net.module_)
        report = nc_report(features, y_np, W, b)
        skip = {"n_samples", "n_classes", "n_dims", "n_singletons", "nc1_rank"}
        keys = self.metrics if self.metrics is not None else [k for k in report.index if k not in skip]
        for key in keys:
            net.history.record(self.prefix + key, float(report[key]))


class CosineLR(Callback):
    """Cosine annealing of every parameter group's learning rate, once per epoch.

    ``lr_e = eta_min + (lr_0 - eta_min)(1 + cos(pi e / T)) / 2``. It holds no
    reference to the optimizer between calls, so a pickled net carries no
    scheduler state tied to a device.
    """

    def __init__(self, T_max, eta_min_ratio=1e-3):
        self.T_max = T_max
        self.eta_min_ratio = eta_min_ratio

    def on_train_begin(self, net, **kwargs):
        for group in net.optimizer_.param_groups:
            group.setdefault("initial_lr", group["lr"])

    def on_epoch_begin(self, net, **kwargs):
        epoch = len(net.history) - 1  # history already holds the current epoch's row
        for group in net.optimizer_.param_groups:
            base = group["initial_lr"]
            low = base * self.eta_min_ratio
            group["lr"] = low + (base - low) * (1 + math.cos(math.pi * min(epoch, self.T_max) / self.T_max)) / 2
        net.history.record("lr", float(net.optimizer_.param_groups[0]["lr"]))
