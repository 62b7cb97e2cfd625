"""Features out of any torch model, by forward hooks, streamed into NC accumulators.

This is the one way sknc reads a model's activations: :class:`~sknc.NCTracker`,
the scorers, the command line and the layer-wise plots all go through
:func:`model_nc_report` (or :func:`layer_features` when the features
themselves are wanted).

Layer names are those of ``model.named_modules()``: ``'layer3'`` is the
output of that module, ``'fc:input'`` the input of module ``fc``. The default
layer is the input of the classifier: the module named ``head`` when there is
one (sknc networks), else the last ``nn.Linear``; that layer's ``W`` and ``b``
come with it, so NC2(W), NC3 and NC4 are measured too.
"""

from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager

import numpy as np
import pandas as pd

from ._validation import untensor
from .exceptions import NCWarning
from .metrics import NCAccumulator

__all__ = ["model_nc_report", "layer_features", "default_layer", "classifier_parameters", "layer_names"]

_REDUCTIONS = ("avg", "flatten", "token_mean", "first_token")


def _torch():
    import torch

    return torch


# ----------------------------------------------------------------------------- the model
def layer_names(model):
    """Every name :func:`model_nc_report` accepts: module names, and ``'name:input'`` for their inputs.

    Examples
    --------
    >>> import torch
    >>> from sknc.extract import layer_names
    >>> layer_names(torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU()))
    ['0', '1', '0:input', '1:input']
    """
    names = [name for name, _ in model.named_modules() if name]
    return names + [f"{name}:input" for name in names]


def _classifier_module(model):
    """``(name, module)`` of the classifier: a module named ``head`` with a weight, else the last ``nn.Linear``."""
    torch = _torch()
    modules = dict(model.named_modules())
    head = modules.get("head")
    if head is not None and getattr(head, "weight", None) is not None:
        return "head", head
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear layer (nor a module named 'head'), so its classifier and "
            "penultimate layer cannot be found; name the layers to measure, e.g. layers=['layer4'], "
            "and pass W, b if you want NC3/NC4."
        )
    return linears[-1]


def default_layer(model):
    """The penultimate features: the input of the classifier (``'head:input'`` or ``'<last Linear>:input'``).

    Examples
    --------
    >>> import torch
    >>> from sknc.extract import default_layer
    >>> default_layer(torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)))
    '2:input'
    """
    return f"{_classifier_module(model)[0]}:input"


def classifier_parameters(model):
    """``(W, b)`` of the model's classifier as float64 numpy arrays (``b`` None without a bias).

    Examples
    --------
    >>> import torch
    >>> from sknc.extract import classifier_parameters
    >>> W, b = classifier_parameters(torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)))
    >>> W.shape, b.shape
    ((3, 8), (3,))
    """
    _, head = _classifier_module(model)
    W = head.weight.detach().double().cpu().numpy()
    bias = getattr(head, "bias", None)
    return W, (None if bias is None else bias.detach().double().cpu().numpy())


def _model_device(model):
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return _torch().device("cpu")


# ------------------------------------------------------------------------------ the hooks
def _reduce(t, reduce):
    """A layer's output as (batch, width) features."""
    if callable(reduce):
        out = reduce(t)
    elif t.ndim == 2:
        out = t
    elif reduce == "avg":  # channels first (Conv1d/2d/3d maps): average over every axis after the channels
        out = t.mean(dim=tuple(range(2, t.ndim)))
    elif reduce == "flatten":
        out = t.flatten(1)
    elif reduce == "token_mean":  # (batch, tokens, width): the mean token
        out = t.mean(dim=1) if t.ndim == 3 else t.flatten(2).mean(dim=1)
    else:  # 'first_token': e.g. a transformer's class token
        out = t[:, 0] if t.ndim == 3 else t[:, 0].flatten(1)
    if out.ndim != 2:
        raise ValueError(f"reduce must give (batch, width) features; got shape {tuple(out.shape)}.")
    return out


@contextmanager
def _taps(model, layers, reduce):
    """Forward (pre-)hooks that store each requested layer's reduced activations; always removed."""
    modules = dict(model.named_modules())
    store, handles = {}, []
    try:
        for layer in layers:
            name, _, part = layer.partition(":")
            if name not in modules or part not in ("", "input"):
                valid = layer_names(model)
                shown = ", ".join(valid[:40]) + (f", ... ({len(valid)} in all)" if len(valid) > 40 else "")
                raise ValueError(f"unknown layer {layer!r}; valid names are: {shown}.")
            if part == "input":
                def pre(_, inputs, key=layer):
                    store[key] = _reduce(inputs[0].detach(), reduce)
                handles.append(modules[name].register_forward_pre_hook(pre))
            else:
                def post(_, inputs, output, key=layer):
                    out = output[0] if isinstance(output, (tuple, list)) else output
                    store[key] = _reduce(out.detach(), reduce)
                handles.append(modules[name].register_forward_hook(post))
        yield store
    finally:
        for handle in handles:
            handle.remove()


# ------------------------------------------------------------------------------- the data
def _batches(data, y, batch_size, device):
    """Yield ``(x_on_device, y_numpy)`` from arrays, tensors, a Dataset or a DataLoader (yielding (x, y) or x)."""
    torch = _torch()
    if isinstance(data, torch.utils.data.DataLoader) or (
            not isinstance(data, (np.ndarray, torch.Tensor)) and hasattr(data, "__iter__") and
            not hasattr(data, "__getitem__")):
        loader, given = data, None
    elif isinstance(data, torch.utils.data.Dataset):
        loader, given = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False), None
    else:
        X = untensor(data) if not isinstance(data, torch.Tensor) else data.detach()
        if y is None:
            raise ValueError("y is needed with array or tensor data (a Dataset or DataLoader may carry it).")
        labels = np.asarray(untensor(y))
        if len(labels) != len(X):
            raise ValueError(f"y has {len(labels)} rows but the data have {len(X)}.")
        for start in range(0, len(X), batch_size):
            xb = X[start : start + batch_size]
            xb = torch.as_tensor(np.asarray(xb, dtype=np.float32)) if isinstance(xb, np.ndarray) else xb
            yield _to(xb, device), labels[start : start + batch_size]
        return
    offset = 0
    labels = None if y is None else np.asarray(untensor(y))
    for batch in loader:
        if isinstance(batch, (tuple, list)) and len(batch) >= 2 and labels is None:
            xb, yb = batch[0], np.asarray(untensor(batch[1]))
        else:
            xb = batch[0] if isinstance(batch, (tuple, list)) else batch
            if labels is None:
                raise ValueError("the data yield no labels: pass y, or batches of (x, y).")
            n = len(xb) if not isinstance(xb, dict) else len(next(iter(xb.values())))
            yb = labels[offset : offset + n]
            offset += n
        yield _to(xb, device), yb


def _to(x, device):
    torch = _torch()
    if isinstance(x, dict):
        return {k: _to(v, device) for k, v in x.items()}
    if isinstance(x, torch.Tensor):
        return x.to(device)
    return torch.as_tensor(np.asarray(x)).to(device)


def _progress(iterable, total, enabled, desc):
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is common but optional
        return _print_progress(iterable, total, desc)
    return tqdm(iterable, total=total, desc=desc, leave=False)


def _print_progress(iterable, total, desc):  # pragma: no cover - used only without tqdm
    for i, item in enumerate(iterable, 1):
        if total and (i == total or i % max(1, total // 10) == 0):
            sys.stderr.write(f"{desc}: {i}/{total} batches\n")
        yield item


def _n_batches(data, batch_size):
    try:
        return len(data) if hasattr(data, "batch_size") else -(-len(data) // batch_size)
    except TypeError:
        return None


def _run(model, data, y, layers, reduce, batch_size, progress, desc, forward, on_batch):
    torch = _torch()
    device = _model_device(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _taps(model, layers, reduce) as store:
            batches = _batches(data, y, batch_size, device)
            for xb, yb in _progress(batches, _n_batches(data, batch_size), progress, desc):
                store.clear()
                try:
                    (forward or model)(xb)
                except (RuntimeError, TypeError) as exc:
                    if "out of memory" in str(exc):
                        raise
                    raise ValueError(f"the model failed on an input batch of shape {tuple(xb.shape)} "
                                     f"({' '.join(str(exc).split())}); check the data's shape and dtype against "
                                     "the model.") from exc
                missing = [layer for layer in layers if layer not in store]
                if missing:
                    raise ValueError(f"layer(s) {missing} did not run in the forward pass.")
                on_batch(store, yb)
    finally:
        model.train(was_training)


# ----------------------------------------------------------------------------- public API
def layer_features(model, X, y=None, *, layers=None, reduce="avg", batch_size=256, forward=None, progress=False):
    """The features of ``layers`` for all of ``X``, held in memory (numpy, float32 as the model computes them).

    Same arguments as :func:`model_nc_report`. Returns ``(features, labels)``:
    a dict ``{layer: ndarray (n, width)}`` and the labels in the order of the data.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sknc import layer_features
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> X, y = np.random.default_rng(0).standard_normal((20, 4)).astype(np.float32), np.arange(20) % 3
    >>> features, labels = layer_features(model, X, y, layers=["1", "2:input"])
    >>> features["1"].shape, bool(np.array_equal(features["1"], features["2:input"]))
    ((20, 8), True)
    """
    layers = _check_layers(model, layers, reduce)
    chunks = {layer: [] for layer in layers}
    labels = []

    def keep(store, yb):
        for layer in layers:
            chunks[layer].append(store[layer].cpu().numpy())
        labels.append(yb)

    _run(model, X, y, layers, reduce, batch_size, progress, "features", forward, keep)
    return {layer: np.concatenate(parts) for layer, parts in chunks.items()}, np.concatenate(labels)


def _check_layers(model, layers, reduce):
    torch = _torch()
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}.")
    if not (callable(reduce) or reduce in _REDUCTIONS):
        raise ValueError(f"reduce must be one of {_REDUCTIONS} or a callable; got {reduce!r}.")
    if layers is None:
        return [default_layer(model)]
    layers = [layers] if isinstance(layers, str) else list(layers)
    if not layers:
        raise ValueError("layers is empty; name at least one layer (or pass None for the penultimate one).")
    return layers


def model_nc_report(model, X, y=None, *, layers=None, W=None, b=None, reduce="avg", batch_size=256, passes=2,
                    forward=None, progress=False, return_features=False, **conventions):
    """NC of a torch model's layers: one row per layer, one column per metric.

    The model runs in eval mode under ``no_grad`` on its own device (CUDA
    when it is there); each requested layer's activations are reduced to
    ``(batch, width)`` and streamed into its own :class:`~sknc.NCAccumulator`,
    so nothing of size ``n x width`` is kept (statistics of CUDA activations
    stay on the device). Hooks are always removed, also on error.

    Parameters
    ----------
    model : torch.nn.Module
    X : array-like, torch.Tensor, torch Dataset or DataLoader
        Inputs; a Dataset or DataLoader yielding ``(x, y)`` carries the labels.
    y : array-like of shape (n,) or (n, K), optional
        Class labels or a 0/1 indicator (multi-label: tag-wise metrics too).
    layers : str or list of str, optional
        Names from ``model.named_modules()`` (their outputs) or ``'name:input'``
        (their inputs). Default: the input of the classifier, the penultimate
        features (see :func:`default_layer`).
    W, b : array-like or dict, optional
        Classifier of the measured layer (or ``{layer: (W, b)}``). Found
        automatically for the default layer.
    reduce : {'avg', 'flatten', 'token_mean', 'first_token'} or callable, default='avg'
        How activations of more than two axes become features: ``'avg'``
        averages every axis after the channels (global average pooling of conv
        maps), ``'flatten'`` keeps them all, ``'token_mean'``/``'first_token'``
        take the mean or first token of a ``(batch, tokens, width)`` output.
    batch_size : int, default=256
        For array and tensor data.
    passes : {2, 1}, default=2
        Two forward passes give every metric exactly (NC1 and NC4 from the
        final class means). One pass keeps a ``width x width`` scatter per
        layer instead and leaves NC4 out.
    forward : callable, optional
        How to run the model on a batch (default ``model(x)``; e.g. a skorch
        net's ``net.infer``).
    progress : bool, default=False
        Show progress (tqdm when installed).
    return_features : bool, default=False
        Also return ``{layer: features}`` (then they are held in memory).
    **conventions
        NC conventions of :func:`sknc.nc_report`.

    Returns
    -------
    pandas.DataFrame
        Index: the layers in the order given; columns: ``n_dims`` and the
        report keys. With ``return_features``, ``(frame, features)``.

    Examples
    --------
    >>> import torch
    >>> from sknc.extract import model_nc_report
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> X, y = torch.randn(60, 4), torch.arange(60) % 3
    >>> frame = model_nc_report(model, X, y, layers=["0", "2:input"])
    >>> list(frame.index), int(frame.loc["2:input", "n_dims"])
    (['0', '2:input'], 8)
    """
    if passes not in (1, 2):
        raise ValueError(f"passes must be 1 or 2; got {passes!r}.")
    layers = _check_layers(model, layers, reduce)
    classifiers = _classifiers(model, layers, W, b)
    mode = "two_pass" if passes == 2 else "one_pass"
    own = {key: conventions[key] for key in ("global_mean", "between") if key in conventions}
    accumulators = {layer: NCAccumulator(mode=mode, **own) for layer in layers}
    features = {layer: [] for layer in layers} if return_features else None

    def first(store, yb):
        for layer in layers:
            accumulators[layer].update(store[layer], yb)
            if features is not None:
                features[layer].append(store[layer].cpu().numpy())

    _run(model, X, y, layers, reduce, batch_size, progress, "NC pass 1", forward, first)
    second_layers = [layer for layer in layers if accumulators[layer].second_pass_possible]
    if passes == 2 and second_layers:  # without class means (a class never alone) the report says why, per key
        def second(store, yb):
            for layer in second_layers:
                w, bias = classifiers.get(layer, (None, None))
                accumulators[layer].update_second_pass(store[layer], yb, w, bias)

        _run(model, X, y, layers, reduce, batch_size, progress, "NC pass 2", forward, second)
    rows = {}
    for layer in layers:
        w, bias = classifiers.get(layer, (None, None))
        with warnings.catch_warnings():
            if passes == 1:  # NC4 is left out by design with one pass
                warnings.filterwarnings("ignore", message=".*NCC agreement needs", category=NCWarning)
            rows[layer] = accumulators[layer].report(w, bias, **conventions)
    frame = pd.DataFrame(rows).T
    frame.index.name = "layer"
    if return_features:
        return frame, {layer: np.concatenate(parts) for layer, parts in features.items()}
    return frame


def _classifiers(model, layers, W, b):
    """``{layer: (W, b)}``: given ones, else the model's own classifier for its input layer."""
    if isinstance(W, dict):
        return {layer: (np.asarray(untensor(wb[0])), None if wb[1] is None else np.asarray(untensor(wb[1])))
                for layer, wb in W.items()}
    if W is not None:
        if len(layers) != 1:
            raise ValueError("with several layers, give W as {layer: (W, b)}.")
        return {layers[0]: (np.asarray(untensor(W)), None if b is None else np.asarray(untensor(b)))}
    try:
        target = default_layer(model)
    except ValueError:
        return {}
    if target in layers:
        return {target: classifier_parameters(model)}
    return {}
