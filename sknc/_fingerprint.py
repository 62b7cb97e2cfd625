"""Content fingerprints of fitted estimators and data: what a result cache may safely key on.

A cache keyed on object identity serves stale results after ``set_params(...).fit``,
``partial_fit`` or an in-place change of the data: the objects are the same,
their contents are not. The fingerprint here digests the contents that decide
an estimator's features and classifier: its parameters, its fitted attributes
(names ending in ``_``), the arrays and tensors they hold and, for torch
modules, every parameter and buffer and the training flags. It costs one read
of those bytes (a network's weights, the data), far less than the forward pass
a cached report saves.
"""

from __future__ import annotations

import hashlib
import numbers
import sys
import zlib

import numpy as np

__all__ = ["fingerprint", "checksum"]

# attributes that never change an estimator's features or classifier (and can be large or unhashable)
_SKIP = frozenset({"history_", "callbacks_", "optimizer_", "criterion_", "virtual_params_", "prefixes_",
                   "cuda_dependent_attributes_", "init_context_"})
# parameters that never change the features or the classifier (skorch's callbacks keep run-time state)
_SKIP_PARAMS = frozenset({"callbacks", "verbose", "warm_start"})
_MAX_DEPTH = 8


def fingerprint(*objects) -> bytes:
    """A 16-byte digest of the contents of ``objects`` (estimators, arrays, tensors, containers, scalars)."""
    h = hashlib.blake2b(digest_size=16)
    seen = set()
    for obj in objects:
        _feed(h, obj, seen, 0)
    return h.digest()


def _feed(h, obj, seen, depth):
    if obj is None or isinstance(obj, (bool, numbers.Number, str, bytes)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
        return
    if isinstance(obj, np.ndarray):
        _feed_array(h, obj)
        return
    torch = sys.modules.get("torch")
    if torch is not None:
        if isinstance(obj, torch.Tensor):
            _feed_tensor(h, obj)
            return
        if isinstance(obj, torch.nn.Module):
            if id(obj) in seen:
                return
            seen.add(id(obj))
            h.update(f"module:{type(obj).__qualname__};".encode())
            for name, sub in obj.named_modules():
                h.update(f"{name}:{sub.training};".encode())
            for name, tensor in obj.state_dict(keep_vars=True).items():
                h.update(name.encode())
                _feed_tensor(h, tensor)
            return
    if depth > _MAX_DEPTH or id(obj) in seen:
        h.update(f"ref:{type(obj).__qualname__};".encode())
        return
    if isinstance(obj, (list, tuple)):
        seen.add(id(obj))
        h.update(f"seq{len(obj)}[".encode())
        for item in obj:
            _feed(h, item, seen, depth + 1)
        h.update(b"]")
        return
    if isinstance(obj, dict):
        seen.add(id(obj))
        h.update(f"map{len(obj)}{{".encode())
        for key in sorted(obj, key=repr):
            h.update(repr(key).encode())
            _feed(h, obj[key], seen, depth + 1)
        h.update(b"}")
        return
    array = _as_array(obj) if hasattr(obj, "__array__") and not hasattr(obj, "get_params") else None
    if array is not None:  # pandas objects, array-likes
        _feed_array(h, array)
        return
    if hasattr(obj, "get_params") or hasattr(obj, "__dict__"):
        seen.add(id(obj))
        h.update(f"obj:{type(obj).__module__}.{type(obj).__qualname__}(".encode())
        if hasattr(obj, "get_params"):
            try:
                params = {k: v for k, v in obj.get_params(deep=False).items() if k not in _SKIP_PARAMS}
            except Exception:  # noqa: BLE001 - a broken get_params: its attributes still say enough
                params = {}
            _feed(h, params, seen, depth + 1)
        state = getattr(obj, "__dict__", {})
        for name in sorted(state):
            if name in _SKIP or not name.endswith("_") or name.startswith("__"):
                continue
            h.update(name.encode())
            _feed(h, state[name], seen, depth + 1)
        h.update(b")")
        return
    # functions, classes and other opaque objects: their identity and name
    h.update(f"id:{type(obj).__qualname__}:{getattr(obj, '__qualname__', '')}:{id(obj)};".encode())


def _as_array(obj):
    """``np.asarray(obj)``, or None for an object that only claims to be array-like."""
    try:
        return np.asarray(obj)
    except (TypeError, ValueError):
        return None


def checksum(a):
    """``(shape, dtype, crc32)`` of an array's bytes (a torch tensor's too, on the host; no float64 copy).

    A cheap test of whether an array changed (crc32 reads 3 GB/s, several times
    a cryptographic digest): what a second pass checks its classifier with on
    every batch.
    """
    from ._validation import untensor

    arr = np.asarray(untensor(a))
    if arr.dtype.kind not in "fiub":
        arr = arr.astype(np.float64)
    arr = np.ascontiguousarray(arr)
    return arr.shape, arr.dtype.str, zlib.crc32(arr.view(np.uint8).ravel().data if arr.size else b"")


def _feed_array(h, a):
    h.update(f"nd{a.dtype.str}{a.shape};".encode())
    if a.dtype.hasobject:
        for item in a.ravel():
            h.update(repr(item).encode())
        return
    h.update(np.ascontiguousarray(a).view(np.uint8).data if a.size else b"")


def _feed_tensor(h, t):
    t = t.detach()
    h.update(f"t{t.dtype}{tuple(t.shape)}{t.device.type};".encode())
    if t.device.type == "meta" or t.numel() == 0:
        return
    if t.layout != _strided():
        t = t.to_dense()
    # the bit pattern, whatever the dtype (bfloat16 and others numpy lacks)
    bits = t.cpu().contiguous().reshape(-1).view(sys.modules["torch"].uint8)
    h.update(bits.numpy().data)


def _strided():
    return sys.modules["torch"].strided
