"""skorch callbacks: NC tracking of any net, a stateless cosine schedule, the learning rate used, a divergence guard."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from skorch.callbacks import Callback

from .exceptions import NCWarning, warn_once
from .extract import classifier_parameters, model_nc_report
from .metrics import report_options

__all__ = ["NCTracker", "CosineLR", "LearningRateRecorder", "DivergenceGuard", "head_parameters"]


def head_parameters(module):
    """Classifier ``(W, b)`` of a module as float64 numpy arrays (see :func:`sknc.extract.classifier_parameters`).

    Examples
    --------
    >>> import torch
    >>> from sknc.callbacks import head_parameters
    >>> from sknc.nn import MLP, FeatureClassifier, LinearHead
    >>> W, b = head_parameters(FeatureClassifier(MLP(10, (16,)), LinearHead(16, 3)))
    >>> W.shape, b.shape
    ((3, 16), (3,))
    """
    return classifier_parameters(module)


_COUNT_KEYS = {"n_samples", "n_classes", "n_dims", "n_singletons", "nc1_rank", "class_means_estimated"}
_DEFAULT_KEYS = ("nc1", "nc1_trace_quotient", "cdnv", "nc2_h", "nc2_w", "nc3", "nc4")


class NCTracker(Callback):
    """Record NC metrics of a layer of any skorch net in its history, every ``every`` epochs.

    The layer's activations are read by forward hooks
    (:func:`sknc.extract.model_nc_report`, the one extraction sknc has), on
    the training data and/or the validation split (any skorch ``Dataset``,
    ``Subset`` included), with the net's own iterator and ``infer``. It works
    with a plain ``NeuralNetClassifier`` whose module returns logits only.
    Training never stops because of it: an undefined metric is NaN in the
    history (with an :class:`sknc.NCWarning`), and a failed measurement
    records NaN with the reason.

    Parameters
    ----------
    every : int, default=1
        Epoch period; the last epoch of training is always recorded.
    layer : str, optional
        A name from ``net.module_.named_modules()`` (its output) or
        ``'name:input'``; default the input of the classifier (the
        penultimate features), whose ``W, b`` then give NC2(W), NC3 and NC4.
    on : {'train', 'valid', 'both'}, default='train'
        Which data to measure. History keys are the metric names for the
        training data and ``valid_<metric>`` for the validation split.
    metrics : sequence of str, optional
        Report keys to record (default: every key of the report except counts).
        Opt-in keys named here are measured with the option they need
        (``ncc_accuracy``, ``features_effective_rank``, ...; see
        :func:`sknc.metrics.report_options`).
    passes : {2, 1}, default=2
        Forward passes per measurement (see :func:`sknc.extract.model_nc_report`).
    reduce : str or callable, default='avg'
        How activations with more than two axes become features.
    X, y : array-like, optional
        Data to measure on instead of the training split. Kept out of
        ``get_params`` so that cloning in a grid search does not copy it.
    prefix : str, default=''
        Extra prefix of the history keys.
    class_means : {'auto', 'singletons', 'tagwise'}, default='auto'
        Multi-label data: single-label class means, or their estimate from
        every label set (see :func:`sknc.nc_report`); ``'auto'`` estimates
        them when some class has fewer than two single-label samples.
    per_class : bool, default=False
        Also record, per measurement, each class's share of NC1 and its
        within-class variance as ``{class: value}`` dicts (history keys
        ``class_nc1`` and ``class_within_variance``; see
        :func:`sknc.metrics.class_variability`): which classes collapse last.
        Needs ``passes=2``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skorch import NeuralNetClassifier
    >>> from sknc import NCTracker
    >>> X = np.random.default_rng(0).standard_normal((90, 5)).astype(np.float32)
    >>> y = np.arange(90) % 3
    >>> module = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    >>> net = NeuralNetClassifier(module, max_epochs=2, train_split=None, verbose=0,
    ...                           callbacks=[NCTracker()]).fit(X, y)
    >>> len(net.history[:, "nc1"])
    2
    """

    def __init__(self, every=1, layer=None, on="train", metrics=None, passes=2, reduce="avg", X=None, y=None,
                 prefix="", class_means="auto", per_class=False):
        self.every = every
        self.layer = layer
        self.on = on
        self.metrics = metrics
        self.passes = passes
        self.reduce = reduce
        self.prefix = prefix
        self.class_means = class_means
        self.per_class = per_class
        self._X, self._y = X, y

    def get_params(self, deep=True):  # keep the data out of the params that grid searches copy
        params = super().get_params(deep=deep)
        params.pop("_X", None)
        params.pop("_y", None)
        return params

    def initialize(self):
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"every must be a positive integer; got {self.every!r}.")
        if self.on not in ("train", "valid", "both"):
            raise ValueError(f"on must be 'train', 'valid' or 'both'; got {self.on!r}.")
        if self.passes not in (1, 2):
            raise ValueError(f"passes must be 1 or 2; got {self.passes!r}.")
        if self.per_class and self.passes != 2:
            raise ValueError("per_class=True needs passes=2 (each class's share of NC1 comes from the second pass).")
        from .metrics._tagwise_means import check_class_means

        check_class_means(self.class_means)
        self._keys = None
        return self

    def on_epoch_end(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        epoch = len(net.history)
        if epoch % self.every and epoch < net.max_epochs:
            return
        targets = []
        if self.on in ("train", "both"):
            targets.append(("", dataset_train))
        if self.on in ("valid", "both"):
            targets.append(("valid_", dataset_valid))
        for tag, dataset in targets:
            self._record(net, tag, dataset)

    def _record(self, net, tag, dataset):
        prefix = self.prefix + tag
        try:
            if tag == "" and self._X is not None:
                data, labels = self._X, self._y
            else:
                if dataset is None:
                    raise ValueError("there is no validation split (set train_split)" if tag else "no training data")
                data, labels = net.get_iterator(dataset, training=False), None
            options = report_options(self.metrics or ())
            if self.per_class:
                options["per_class"] = True
            frame, accumulators = model_nc_report(net.module_, data, labels, layers=self.layer, passes=self.passes,
                                                  reduce=self.reduce, forward=net.infer, class_means=self.class_means,
                                                  return_accumulators=True, **options)
            report = frame.iloc[0]
            if self.per_class:
                self._record_per_class(net, prefix, next(iter(accumulators.values())))
        except (ValueError, RuntimeError, TypeError) as exc:  # a measurement never stops training
            warn_once(f"NCTracker: no NC metrics at epoch {len(net.history)} ({exc}); recording NaN.",
                      NCWarning, stacklevel=2)
            report = pd.Series(dtype=float)
        keys = self.metrics
        if keys is None:
            if self._keys is None and len(report):
                self._keys = [k for k in report.index if k not in _COUNT_KEYS]
            keys = self._keys or list(_DEFAULT_KEYS)
        for key in keys:
            value = report.get(key, np.nan)
            net.history.record(prefix + key, float(value) if value is not None else np.nan)

    def _record_per_class(self, net, prefix, acc):
        """``class_nc1`` and ``class_within_variance`` as ``{class: value}``; NaN values with one warning when
        the data leave them undefined (the accumulator says why)."""
        try:
            table = acc.class_variability()
        except ValueError as exc:  # e.g. every sample has several labels: no class has samples of its own
            warn_once(f"NCTracker: no per-class values ({exc}).", NCWarning, stacklevel=3)  # once, not per epoch
            return
        labels = [c.item() if hasattr(c, "item") else c for c in table.index]
        for column, key in (("nc1", "class_nc1"), ("within_variance", "class_within_variance")):
            net.history.record(prefix + key, dict(zip(labels, table[column].astype(float).tolist())))


class CosineLR(Callback):
    """Cosine annealing of every parameter group's learning rate over each call to ``fit``.

    ``lr_e = eta_min + (lr_0 - eta_min)(1 + cos(pi e / T)) / 2`` for the
    ``e``-th epoch of the current ``fit``/``partial_fit`` call (a warm restart
    per call). It holds no reference to the optimizer between calls, so a
    pickled net carries no scheduler state tied to a device.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skorch import NeuralNetClassifier
    >>> from sknc.callbacks import CosineLR, LearningRateRecorder
    >>> net = NeuralNetClassifier(torch.nn.Linear(4, 2), max_epochs=3, lr=0.1, train_split=None, verbose=0,
    ...                           callbacks=[CosineLR(T_max=3), LearningRateRecorder()])
    >>> _ = net.fit(np.zeros((8, 4), dtype=np.float32), np.arange(8) % 2)
    >>> [round(v, 4) for v in net.history[:, "lr"]]
    [0.1, 0.075, 0.0251]
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

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skorch import NeuralNetClassifier
    >>> from sknc.callbacks import LearningRateRecorder
    >>> net = NeuralNetClassifier(torch.nn.Linear(4, 2), max_epochs=2, lr=0.05, train_split=None, verbose=0,
    ...                           callbacks=[LearningRateRecorder()])
    >>> net.fit(np.zeros((8, 4), dtype=np.float32), np.arange(8) % 2).history[:, "lr"]
    [0.05, 0.05]
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
    input_scaling : str, optional
        The scaling the network applies to its inputs itself (e.g.
        ``PALClassifier``'s ``'minmax'``): the message then rules out the
        inputs' magnitude as the cause instead of suggesting to scale them.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skorch import NeuralNetClassifier
    >>> from sknc import TrainingDivergedError
    >>> from sknc.callbacks import DivergenceGuard
    >>> _ = torch.manual_seed(0)
    >>> net = NeuralNetClassifier(torch.nn.Linear(4, 2), max_epochs=5, lr=1e30, train_split=None, verbose=0,
    ...                           callbacks=[DivergenceGuard()])
    >>> X = np.full((8, 4), 1e10, dtype=np.float32)
    >>> try:
    ...     net.fit(X, np.arange(8) % 2)
    ... except TrainingDivergedError as error:
    ...     print("stopped:", str(error).split(":")[0])
    stopped: training diverged in epoch 1, batch 1
    """

    def __init__(self, input_scale=None, input_scaling=None):
        self.input_scale = input_scale
        self.input_scaling = input_scaling

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
        if self.input_scaling is None:
            inputs = (f", or inputs of extreme magnitude{scale}: scale them, e.g. with "
                      "sklearn.preprocessing.StandardScaler.")
        else:
            inputs = (f"; the network scales its inputs itself (input_scaling={self.input_scaling!r}), so their "
                      "magnitude is not the cause.")
        raise TrainingDivergedError(
            f"training diverged in epoch {epoch}, batch {batch_idx}: {what}; the last epoch's train_loss was "
            f"{last}. Likely cause: a learning rate too large for this network (lr={lr:.3g}: lower it){inputs}"
        )
