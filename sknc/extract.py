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
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd

from ._validation import untensor
from .exceptions import NCWarning, warn_once
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


def _model_float_dtype(model):
    """The dtype floating inputs are given to the model in: that of its first floating parameter (else float32)."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.dtype.is_floating_point:
            return tensor.dtype
    return _torch().float32


def _check_materialised(model):
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if tensor.device.type == "meta":
            raise ValueError(
                f"the model's {name!r} is on the 'meta' device (a shape without values): materialise and load its "
                "weights first, e.g. model.to_empty(device='cpu') then model.load_state_dict(...)."
            )


@contextmanager
def _preserved_rng():
    """Leave torch's (CPU and CUDA), numpy's and Python's global random states as they were.

    Iterating a DataLoader draws its base seed from torch's global generator, so
    measuring during training would otherwise change the training run.
    """
    import random

    torch = _torch()
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    np_state = np.random.get_state()
    py_state = random.getstate()
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        np.random.set_state(np_state)
        random.setstate(py_state)


@contextmanager
def _measuring(model):
    """Eval mode and no gradients for the measurement; afterwards every submodule's own mode and every RNG as found.

    ``model.train(flag)`` would set one flag on every submodule: a BatchNorm frozen
    in eval mode inside a training model would come back training.
    """
    torch = _torch()
    modes = [(module, module.training) for module in model.modules()]
    with _preserved_rng():
        model.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            for module, flag in modes:
                module.training = flag


# ------------------------------------------------------------------------------ the hooks
def _reduce(t, reduce):
    """A layer's output tensor as (batch, width) features."""
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
    torch = _torch()
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else f"a {type(out).__name__}"
        raise ValueError(f"reduce must give (batch, width) features; got {got}.")
    return out


def _describe(value):
    """A short description of a batch or a layer output, for messages (tensors by shape, containers by content)."""
    torch = _torch()
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return f"{type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}"
    if isinstance(value, dict):
        inner = ", ".join(f"{k!r}: {_describe(v)}" for k, v in list(value.items())[:4])
        return f"dict {{{inner}{', ...' if len(value) > 4 else ''}}}"
    if isinstance(value, (tuple, list)):
        inner = ", ".join(_describe(v) for v in value[:3])
        return f"{type(value).__name__} [{inner}{', ...' if len(value) > 3 else ''}]"
    return type(value).__name__


def _layer_tensor(layer, value, reduce):
    """The tensor a hook reads from a layer's input or output (a callable ``reduce`` sees the raw value)."""
    torch = _torch()
    if callable(reduce):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        value = value[0]  # e.g. an LSTM's (output, state), a module returning (features, extras)
    if isinstance(value, torch.Tensor):
        if not (value.dtype.is_floating_point or value.dtype in (torch.int8, torch.uint8, torch.int16, torch.int32,
                                                                 torch.int64, torch.bool)):
            raise ValueError(f"layer {layer!r} gives a {value.dtype} tensor; NC needs real-valued features.")
        return value.detach()
    raise ValueError(
        f"layer {layer!r} gives {_describe(value)}, not a tensor; give a callable that picks the features for "
        f"this layer, e.g. reduce={{{layer!r}: lambda out: out['last_hidden_state'].mean(1)}}, or measure "
        "another layer."
    )


class _Taps:
    """Forward (pre-)hooks that store each requested layer's reduced activations; removed on exit, also on error.

    ``raw_width[layer]`` is the per-sample size of the activation before its
    reduction (to warn when a reduction leaves too few dimensions).
    """

    def __init__(self, model, layers, reductions):
        self.model, self.layers, self.reductions = model, layers, reductions
        self.store, self.raw_width, self._handles = {}, {}, []

    def _keep(self, layer, value):
        reduce = self.reductions[layer]
        t = _layer_tensor(layer, value, reduce)
        if isinstance(t, _torch().Tensor) and t.ndim >= 1:
            self.raw_width.setdefault(layer, int(np.prod(t.shape[1:])) if t.ndim > 1 else 1)
        out = _reduce(t, reduce)
        if out.requires_grad:  # a callable reduce on a raw value may not have detached it
            out = out.detach()
        if not out.dtype.is_floating_point:
            out = out.float()
        self.store[layer] = out

    def __enter__(self):
        modules = dict(self.model.named_modules())
        try:
            for layer in self.layers:
                name, _, part = layer.partition(":")
                if part == "input":
                    def pre(_, inputs, key=layer):
                        self._keep(key, inputs[0] if len(inputs) == 1 else inputs)
                    self._handles.append(modules[name].register_forward_pre_hook(pre))
                else:
                    def post(_, inputs, output, key=layer):
                        self._keep(key, output)
                    self._handles.append(modules[name].register_forward_hook(post))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles = []
        return False


# ------------------------------------------------------------------------------- the data
_LABEL_KEYS = ("labels", "label", "y", "target", "targets")


def _is_loader_like(data):
    """A source of batches: a DataLoader, any iterable that is not an array, or a list of dict batches."""
    torch = _torch()
    if isinstance(data, (list, tuple)):
        return bool(data) and isinstance(data[0], dict)
    return isinstance(data, torch.utils.data.DataLoader) or (
        not isinstance(data, (np.ndarray, torch.Tensor)) and hasattr(data, "__iter__")
        and not hasattr(data, "__getitem__"))


def _is_one_shot(data):
    """True for an iterator (a generator, ``iter(loader)``): it can be read once only.

    Asked of the type: calling ``iter`` on a DataLoader would start one, which
    draws from torch's global generator.
    """
    return isinstance(data, Iterator)


def _as_input(x, float_dtype):
    """A batch's inputs as tensors: floating data in the model's dtype, integer ids as they are (e.g. embeddings)."""
    torch = _torch()
    if isinstance(x, dict):
        return {k: _as_input(v, float_dtype) for k, v in x.items()}
    if isinstance(x, torch.Tensor):
        return x.to(float_dtype) if x.dtype.is_floating_point and x.dtype != float_dtype else x
    arr = np.asarray(untensor(x))
    if arr.dtype == object:
        raise ValueError(f"the inputs are not a numeric array ({_describe(x)}); give arrays, tensors or a DataLoader.")
    if arr.dtype.kind == "c":
        raise TypeError("the inputs are complex; give real-valued data.")
    if arr.dtype.kind == "f":
        return torch.as_tensor(np.ascontiguousarray(arr)).to(float_dtype)
    if arr.dtype.kind in "iub":
        return torch.as_tensor(np.ascontiguousarray(arr))
    raise ValueError(f"the inputs have dtype {arr.dtype}; give numbers (floats, or integer ids).")


def _batch_labels(batch):
    """``(inputs, labels or None)`` of one batch from a loader: (x, y, ...) tuples, dicts with a label key, or x."""
    if isinstance(batch, (tuple, list)):
        if len(batch) >= 2:
            return batch[0], batch[1]
        return batch[0], None
    if isinstance(batch, dict):
        for key in _LABEL_KEYS:
            if key in batch:
                return batch, batch[key]
    return batch, None


def _n_rows(x):
    if isinstance(x, dict):
        return len(next(iter(x.values())))
    return len(x)


def _batches(data, y, batch_size, device, float_dtype):
    """Yield ``(x_on_device, y_numpy)`` from arrays, tensors, a Dataset or a DataLoader.

    A loader's own labels win: given ``y`` as well, they must agree row by row
    (a shuffling loader would pair its rows with the wrong entries of ``y``).
    """
    torch = _torch()
    labels = None if y is None else np.asarray(untensor(y))
    if _is_loader_like(data):
        loader = data
    elif isinstance(data, torch.utils.data.Dataset):
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    else:
        X = data.detach() if isinstance(data, torch.Tensor) else np.asarray(data)
        if X.ndim == 0:
            raise ValueError(f"the inputs must hold one row per sample; got {_describe(data)}.")
        if labels is None:
            raise ValueError("y is needed with array or tensor data (a Dataset or DataLoader may carry it).")
        if len(labels) != len(X):
            raise ValueError(f"y has {len(labels)} rows but the data have {len(X)}.")
        for start in range(0, len(X), batch_size):
            yield _to(_as_input(X[start : start + batch_size], float_dtype), device), labels[start : start + batch_size]
        return
    offset, positional = 0, False
    for batch in loader:
        xb, own = _batch_labels(batch)
        n = _n_rows(xb)
        if own is not None:
            yb = np.asarray(untensor(own))
            if labels is not None:
                given = labels[offset : offset + n]
                if given.shape != yb.shape or not np.array_equal(given, yb):
                    raise ValueError(
                        f"the data yield their own labels, and they differ from y in the batch starting at row "
                        f"{offset} (a shuffling loader?); the loader's labels are the right ones for its rows: drop y."
                    )
        else:
            if labels is None:
                raise ValueError("the data yield no labels: pass y, or batches of (x, y).")
            yb = labels[offset : offset + n]
            positional = True
            if len(yb) != n:
                raise ValueError(f"y has {len(labels)} rows but the data yield more ({offset + n} so far).")
        offset += n
        yield _to(_as_input(xb, float_dtype), device), yb
    if positional and offset != len(labels):
        raise ValueError(f"y has {len(labels)} rows but the data yield {offset}.")


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


def _slice_rows(x, n):
    if isinstance(x, dict):
        return {k: _slice_rows(v, n) for k, v in x.items()}
    return x[:n]


def _run(model, data, y, taps, batch_size, progress, desc, forward, on_batch, limit=None):
    """One pass of the data through the model, the hooks storing the layers' features for ``on_batch``.

    ``limit``: read no more than this many rows (the rest are a distributed sampler's padding).
    """
    device = _model_device(model)
    float_dtype = _model_float_dtype(model)
    layers = taps.layers
    seen = 0
    with _measuring(model), taps:
        batches = _batches(data, y, batch_size, device, float_dtype)
        for xb, yb in _progress(batches, _n_batches(data, batch_size), progress, desc):
            if limit is not None:
                room = limit - seen
                if room <= 0:
                    continue  # the loader still yields its padding; nothing of it is read
                if len(yb) > room:
                    xb, yb = _slice_rows(xb, room), yb[:room]
                seen += len(yb)
            taps.store.clear()
            try:
                (forward or model)(xb)
            except (RuntimeError, TypeError, AttributeError, KeyError, IndexError) as exc:
                if "out of memory" in str(exc):
                    raise
                hint = (" A dict batch needs forward=, e.g. forward=lambda batch: model(**batch)."
                        if isinstance(xb, dict) and forward is None else "")
                raise ValueError(f"the model failed on an input batch ({_describe(xb)}): "
                                 f"{type(exc).__name__}: {' '.join(str(exc).split())}. Check the data's shape and "
                                 f"dtype against the model.{hint}") from exc
            missing = [layer for layer in layers if layer not in taps.store]
            if missing:
                raise ValueError(f"layer(s) {missing} did not run in the forward pass.")
            on_batch(taps.store, yb)


# ------------------------------------------------------------------------------ distributed
def _sampler_rows(data):
    """Rows of this rank that are real samples, when ``data`` is a DataLoader over a ``DistributedSampler``.

    The sampler pads its index list with repeats until every rank gets as many
    rows; the padding sits at the end of each rank's list (local row ``i`` is
    global position ``i * num_replicas + rank``, padding from position ``N``
    on), so this rank's first ``ceil((N - rank) / num_replicas)`` rows are the
    real ones. None for any other data (every row counts).
    """
    sampler = getattr(data, "sampler", None)
    if sampler is None or not all(hasattr(sampler, a) for a in ("num_replicas", "rank", "dataset", "drop_last")):
        return None
    n, world, rank = len(sampler.dataset), int(sampler.num_replicas), int(sampler.rank)
    if sampler.drop_last:
        left = n % world
        if left:
            warn_once(f"model_nc_report: the DistributedSampler drops the last {left} of {n} samples "
                      "(drop_last=True); the report covers the others.", NCWarning, stacklevel=4)
        return None
    return max(0, -(-(n - rank) // world))


def _synchronised(step, group):
    """Run ``step`` on every rank; if it fails on any rank, every rank raises (none waits in a collective)."""
    from .metrics._distributed import PeerFailure, reduce_failures

    try:
        result = step()
    except PeerFailure:
        raise  # learnt in a collective every rank took part in: nothing more to exchange
    except Exception as exc:  # noqa: BLE001 - reported to the other ranks, then raised here as it was
        reduce_failures(f"{type(exc).__name__}: {exc}", group)
        raise
    failed = reduce_failures(None, group)
    if failed is not None:
        raise ValueError(f"rank {failed[0]} failed, so this rank stops too: {failed[1]}")
    return result


# ----------------------------------------------------------------------------- public API
def layer_features(model, X, y=None, *, layers=None, reduce="avg", batch_size=256, forward=None, progress=False):
    """The features of ``layers`` for all of ``X``, held in memory (numpy, float32 as the model computes them).

    Same arguments as :func:`model_nc_report`. Returns ``(features, labels)``:
    a dict ``{layer: ndarray (n, width)}`` and the labels in the order of the
    data (a loader's own labels when it yields them). The model's and every
    submodule's mode, and every random generator, are left as they were.

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
    layers, reductions = _check_call(model, X, layers, reduce, batch_size, passes=1)
    chunks = {layer: [] for layer in layers}
    labels = []

    def keep(store, yb):
        for layer in layers:
            chunks[layer].append(store[layer].cpu().numpy())
        labels.append(yb)

    _run(model, X, y, _Taps(model, layers, reductions), batch_size, progress, "features", forward, keep)
    if not labels:
        raise ValueError("the data hold no samples.")
    return {layer: np.concatenate(parts) for layer, parts in chunks.items()}, np.concatenate(labels)


def _check_call(model, data, layers, reduce, batch_size, passes):
    """Everything about the arguments that can be checked before the first batch: ``(layers, {layer: reduce})``."""
    torch = _torch()
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
    _check_materialised(model)
    if passes == 2 and _is_one_shot(data):
        raise ValueError(
            f"the data are a one-shot iterator ({type(data).__name__}), and the two-pass report reads them twice; "
            "give a DataLoader, a Dataset or arrays (which can be read again), or pass passes=1."
        )
    if layers is None:
        layers = [default_layer(model)]
    else:
        layers = [layers] if isinstance(layers, str) else list(layers)
        if not layers:
            raise ValueError("layers is empty; name at least one layer (or pass None for the penultimate one).")
    modules = dict(model.named_modules())
    for layer in layers:
        if not isinstance(layer, str):
            raise TypeError(f"layer names are strings; got {layer!r}.")
        name, _, part = layer.partition(":")
        if name not in modules or not name or part not in ("", "input"):
            valid = layer_names(model)
            shown = ", ".join(valid[:40]) + (f", ... ({len(valid)} in all)" if len(valid) > 40 else "")
            raise ValueError(f"unknown layer {layer!r}; valid names are: {shown}.")
    if isinstance(reduce, dict):
        unknown = sorted(set(reduce) - set(layers), key=str)
        if unknown:
            raise ValueError(f"reduce names layer(s) {unknown} that are not measured; measured: {layers}.")
        reductions = {layer: reduce.get(layer, "avg") for layer in layers}
    else:
        reductions = {layer: reduce for layer in layers}
    for layer, r in reductions.items():
        if not (callable(r) or (isinstance(r, str) and r in _REDUCTIONS)):
            raise ValueError(f"reduce for layer {layer!r} must be one of {_REDUCTIONS} or a callable; got {r!r}.")
    return layers, reductions


def _warn_few_dims(taps, layer, reductions, report):
    """One warning when a reduction left a layer fewer feature dimensions than the K - 1 a simplex needs."""
    n_dims, k = report.get("n_dims"), report.get("n_classes")
    raw = taps.raw_width.get(layer)
    if n_dims is None or k is None or raw is None or not raw > n_dims or not n_dims < k - 1:
        return
    r = reductions[layer]
    how = f"reduce={r!r}" if isinstance(r, str) else "the reduce callable"
    warn_once(
        f"layer {layer!r}: {how} leaves {int(n_dims)} feature dimension(s) of its {raw} per sample, fewer than "
        f"K - 1 = {int(k) - 1} for {int(k)} classes, so its class means cannot form a simplex and NC1, NC2 and NC4 "
        f"describe the reduction more than the layer; measure it with reduce={{{layer!r}: 'flatten'}} "
        "(or another reduction) instead.",
        NCWarning, stacklevel=3,
    )


def model_nc_report(model, X, y=None, *, layers=None, W=None, b=None, classes=None, reduce="avg", batch_size=256,
                    passes=2, forward=None, progress=False, return_features=False, distributed=False,
                    return_accumulators=False, **conventions):
    """NC of a torch model's layers: one row per layer, one column per metric.

    The model runs in eval mode under ``no_grad`` on its own device (CUDA
    when it is there); each requested layer's activations are reduced to
    ``(batch, width)`` and streamed into its own :class:`~sknc.NCAccumulator`,
    so nothing of size ``n x width`` is kept (statistics of CUDA activations
    stay on the device). Hooks are always removed, also on error; every
    submodule's mode (a frozen BatchNorm inside a training model) and the
    random generators of torch, numpy and Python are left as they were, so
    measuring during training does not change the training run.

    Parameters
    ----------
    model : torch.nn.Module
        Its parameters must hold values (not the ``'meta'`` device).
    X : array-like, torch.Tensor, torch Dataset, DataLoader or an iterable of batches
        Inputs (a list of dict batches counts as batches): floating data are given to the model in its own
        dtype, integer
        arrays (token ids for an ``nn.Embedding``) as they are. A Dataset or
        DataLoader yielding ``(x, y, ...)``, or dicts with a ``'labels'``
        (``'label'``, ``'y'``, ``'target'``) entry, carries the labels; they
        win over ``y``, which must then agree with them row by row. Two passes
        read the data twice: a one-shot iterator needs ``passes=1``.
    y : array-like of shape (n,) or (n, K), optional
        Class labels or a 0/1 indicator (multi-label: tag-wise metrics too).
    layers : str or list of str, optional
        Names from ``model.named_modules()`` (their outputs) or ``'name:input'``
        (their inputs). Default: the input of the classifier, the penultimate
        features (see :func:`default_layer`).
    W, b : array-like or dict, optional
        Classifier of the measured layer (or ``{layer: (W, b)}``). Found
        automatically for the default layer.
    classes : array-like, optional
        The class of each row of ``W``. Default: the sorted labels of the data,
        or ``0 .. K_W - 1`` when integer labels are fewer than the rows of
        ``W`` (a split missing some classes). Classes of ``W`` without samples
        leave the keys that compare the classifier with every class mean
        (``nc3_difference``, ``nc4``, ``ncc_agreement``, ``bias_collapse``)
        NaN with a warning; the others are measured on the classes present
        (``nc2_w`` on all of ``W``).
    reduce : {'avg', 'flatten', 'token_mean', 'first_token'}, callable or dict, default='avg'
        How activations of more than two axes become features: ``'avg'``
        averages every axis after the channels (global average pooling of conv
        maps), ``'flatten'`` keeps them all, ``'token_mean'``/``'first_token'``
        take the mean or first token of a ``(batch, tokens, width)`` output. A
        callable receives the layer's raw output (a tuple or dict too) and
        returns ``(batch, width)``. A dict ``{layer: reduce}`` chooses per layer
        (``'avg'`` for the layers it leaves out). A reduction that leaves fewer
        than ``K - 1`` dimensions gives an :class:`sknc.NCWarning`.
    batch_size : int, default=256
        For array and tensor data.
    passes : {2, 1}, default=2
        Two forward passes give every metric exactly (NC1 and NC4 from the
        final class means); the second pass checks that it sees the data of the
        first (see :meth:`sknc.NCAccumulator.update_second_pass`). One pass keeps
        a ``width x width`` scatter per layer instead and leaves NC4 out.
    forward : callable, optional
        How to run the model on a batch (default ``model(x)``; e.g. a skorch
        net's ``net.infer``, or ``lambda batch: model(**batch)`` for dicts).
    progress : bool, default=False
        Show progress (tqdm when installed).
    return_features : bool, default=False
        Also return ``{layer: features}`` (then they are held in memory).
    return_accumulators : bool, default=False
        Also return ``{layer: NCAccumulator}`` after both passes: each
        layer's per-class tables (``acc.cdnv_matrix()``,
        ``acc.class_variability()``, with ``per_class=True`` each class's
        share of NC1), its state, or a report under other conventions.
    distributed : bool or torch.distributed.ProcessGroup, default=False
        Each rank of an initialised ``torch.distributed`` group (the world, or
        the group given) streams its own shard (e.g. a DataLoader over a
        ``DistributedSampler``), and the layers' statistics are summed over the
        ranks after each pass (:meth:`sknc.NCAccumulator.all_reduce`): every
        rank returns the report of the whole data. The samples a
        ``DistributedSampler`` repeats to even out the shards are read once
        only (from the sampler's own bookkeeping); with its ``drop_last=True``
        the dropped samples are left out with a warning. A failure on one
        rank stops every rank with its message.
    **conventions
        NC conventions of :func:`sknc.nc_report`.

    Returns
    -------
    pandas.DataFrame
        Index: the layers in the order given; columns: ``n_dims`` and the
        report keys. With ``return_features``, ``(frame, features)``; with
        ``return_accumulators``, ``(frame, accumulators)``; with both,
        ``(frame, features, accumulators)``.

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
    group = None if distributed is True or distributed is False else distributed
    if distributed is not False:
        from .metrics._distributed import _dist

        _dist()  # initialised, or a clear error before any work
        limit = _sampler_rows(X)
    else:
        limit = None
    layers, reductions = _check_call(model, X, layers, reduce, batch_size, passes)
    classifiers = _classifiers(model, layers, W, b)
    mode = "two_pass" if passes == 2 else "one_pass"
    own = {key: conventions[key] for key in ("global_mean", "between", "class_means", "ncc_accuracy", "feature_rank",
                                             "per_class") if key in conventions}
    accumulators = {layer: NCAccumulator(mode=mode, classes=classes, **own) for layer in layers}
    features = {layer: [] for layer in layers} if return_features else None
    taps = _Taps(model, layers, reductions)

    def first(store, yb):
        for layer in layers:
            accumulators[layer].update(store[layer], yb)
            if features is not None:
                features[layer].append(store[layer].cpu().numpy())

    def pass_one():
        _run(model, X, y, taps, batch_size, progress, "NC pass 1", forward, first, limit)
        if distributed is not False:
            for layer in layers:  # one layer after the other, in the same order on every rank
                accumulators[layer].all_reduce(group)
        if not any(acc._started for acc in accumulators.values()):
            raise ValueError("the data hold no samples.")

    _synchronised(pass_one, group) if distributed is not False else pass_one()
    second_layers = [layer for layer in layers if accumulators[layer].second_pass_possible]
    if passes == 2 and second_layers:  # without class means (a class never alone) the report says why, per key
        def second(store, yb):
            for layer in second_layers:
                w, bias = classifiers.get(layer, (None, None))
                accumulators[layer].update_second_pass(store[layer], yb, w, bias)

        def pass_two():
            _run(model, X, y, taps, batch_size, progress, "NC pass 2", forward, second, limit)
            if distributed is not False:
                for layer in second_layers:
                    acc = accumulators[layer]
                    if acc._second is None:  # no rows here: join with the plan every rank shares
                        w, bias = classifiers.get(layer, (None, None))
                        acc.update_second_pass(np.zeros((0, acc._d), dtype=acc._data_dtype()), np.zeros(0), w,
                                               bias)
                    acc.all_reduce(group)

        _synchronised(pass_two, group) if distributed is not False else pass_two()
    rows = {}
    for layer in layers:
        w, bias = classifiers.get(layer, (None, None))
        with warnings.catch_warnings():
            if passes == 1:  # NC4 is left out by design with one pass
                warnings.filterwarnings("ignore", message=".*NCC agreement needs", category=NCWarning)
            rows[layer] = accumulators[layer].report(w, bias, **conventions)
        _warn_few_dims(taps, layer, reductions, rows[layer])
    frame = pd.DataFrame(rows).T.infer_objects()
    frame.index.name = "layer"
    extra = []
    if return_features:
        extra.append({layer: np.concatenate(parts) for layer, parts in features.items()})
    if return_accumulators:
        extra.append(accumulators)
    return (frame, *extra) if extra else frame


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
