"""skorch callbacks: NC tracking during training and a stateless cosine schedule."""

from __future__ import annotations

import math

import numpy as np
import torch
from skorch.callbacks import Callback

from .metrics import nc_report

__all__ = ["NCTracker", "CosineLR", "LearningRateRecorder", "DivergenceGuard", "head_parameters"]


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
    """Cosine annealing of every parameter group's learning rate over each call to ``fit``.

    ``lr_e = eta_min + (lr_0 - eta_min)(1 + cos(pi e / T)) / 2`` for the
    ``e``-th epoch of the current ``fit``/``partial_fit`` call (a warm restart
    per call). It holds no reference to the optimizer between calls, so a
    pickled net carries no scheduler state tied to a device.
    """

    def __init__(self, T_max, eta_min_ratio=1e-3):
        self.T_max = T_max
        self.eta_min_ratio = eta_min_ratio

    def on_train_begin(self, net, **kwargs):
        self._start = len(net.history)
        for group in net.optimizer_.param_groups:
            group.setdefault("initial_lr", group["lr"])

    def on_epoch_begin(self, net, **kwargs):
        epoch = len(net.history) - 1 - getattr(self, "_start", 0)  # history already holds this epoch's row
        t_max = max(1, self.T_max)
        for group in net.optimizer_.param_groups:
            base = group["initial_lr"]
            low = base * self.eta_min_ratio
            group["lr"] = low + (base - low) * (1 + math.cos(math.pi * min(epoch, t_max) / t_max)) / 2


class LearningRateRecorder(Callback):
    """Record in ``history['lr']`` the learning rate the optimizer actually used in each epoch.

    The mean over the epoch's training batches of the first parameter group's
    rate, read when each batch starts: right whatever schedules ran (sknc's
    cosine, a skorch ``LRScheduler`` stepping per epoch or per batch).
    """

    def on_epoch_begin(self, net, **kwargs):
        self._rates = []

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        if training:
            self._rates.append(float(net.optimizer_.param_groups[0]["lr"]))

    def on_epoch_end(self, net, **kwargs):
        rates = getattr(self, "_rates", [])
        if rates:
            net.history.record("lr", float(np.mean(rates)))


class DivergenceGuard(Callback):
    """Stop training as soon as a training batch's loss or network output is not finite.

    Raises :class:`sknc.TrainingDivergedError` naming the epoch, the batch,
    the last finite epoch loss and the likely causes (a learning rate too
    large for the network, inputs of extreme magnitude).

    Parameters
    ----------
    input_scale : float, optional
        Largest ``|X|`` of the training data, quoted in the message.
    """

    def __init__(self, input_scale=None):
        self.input_scale = input_scale

    def on_batch_end(self, net, batch=None, training=False, loss=None, y_pred=None, **kwargs):
        if not training:
            return
        value = float(loss.detach()) if isinstance(loss, torch.Tensor) else (float("nan") if loss is None else float(loss))
        bad_output = False
        if math.isfinite(value) and y_pred is not None:
            outputs = y_pred if isinstance(y_pred, (tuple, list)) else (y_pred,)
            bad_output = not all(bool(torch.isfinite(t).all()) for t in outputs if isinstance(t, torch.Tensor))
        if math.isfinite(value) and not bad_output:
            return
        from .exceptions import TrainingDivergedError

        epoch = len(net.history)
        batch_idx = len(net.history[-1]["batches"])
        finite = [row.get("train_loss") for row in net.history[:-1] if row.get("train_loss") is not None]
        last = f"{finite[-1]:.4g}" if finite else "none (it diverged in the first epoch)"
        what = f"the loss is {value}" if not math.isfinite(value) else "the network output is not finite"
        lr = net.optimizer_.param_groups[0]["lr"]
        scale = "" if self.input_scale is None else f" (the largest |X| is {self.input_scale:.3g})"
        raise TrainingDivergedError(
            f"training diverged in epoch {epoch}, batch {batch_idx}: {what}; the last epoch's train_loss was "
            f"{last}. Likely causes: a learning rate too large for this network (lr={lr:.3g}: lower it), or "
            f"inputs of extreme magnitude{scale}: scale them, e.g. with sklearn.preprocessing.StandardScaler."
        )
