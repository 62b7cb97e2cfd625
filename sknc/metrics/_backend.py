"""Array operations of the passes over features, on numpy or on torch (on the tensor's device).

The statistics code is written once against this small interface; torch is
imported only when a tensor that lives on an accelerator is passed in, so
``import sknc`` and numpy features never load it.
"""

from __future__ import annotations

import math
import threading

import numpy as np
from scipy import sparse

from .._validation import is_torch_tensor

__all__ = ["backend_for", "NumpyOps", "TorchOps"]

_DENSE_GROUPS = 32  # up to this many groups, sums of narrow rows are one dense product
_DENSE_WIDTH = 64  # wider rows are summed by a sparse product: O(n d), not O(n d groups)
_VECDOT = getattr(np, "vecdot", None)  # numpy >= 2.0


class Workspace:
    """Reusable scratch arrays of one thread's pass (numpy).

    Allocating fresh multi-megabyte temporaries per block costs page faults,
    and two threads faulting pages at once contend on the process's memory
    map; reusing them keeps the passes bandwidth-bound.
    """

    def __init__(self):
        self._buffers = {}

    def get(self, name, shape, dtype):
        need = math.prod(shape)
        buf = self._buffers.get((name, np.dtype(dtype)))
        if buf is None or buf.size < need:
            buf = np.empty(max(need, 1), dtype=dtype)
            self._buffers[(name, np.dtype(dtype))] = buf
        return buf[:need].reshape(shape)


_POOL = []
_POOL_LOCK = threading.Lock()
_POOL_MAX = 8


def acquire_workspace():
    """A workspace from a small process-wide pool (its buffers' pages are already mapped)."""
    with _POOL_LOCK:
        return _POOL.pop() if _POOL else Workspace()


def release_workspace(ws):
    with _POOL_LOCK:
        if len(_POOL) < _POOL_MAX:
            _POOL.append(ws)


def _as64(p, ws):
    """``p`` in float64 (a cast into a reusable buffer: the cast loop runs without the GIL)."""
    if p.dtype == np.float64:
        return p
    out = np.empty(p.shape) if ws is None else ws.get("as64", p.shape, np.float64)
    np.copyto(out, p)
    return out


class NumpyOps:
    """numpy implementation (host memory)."""

    name = "numpy"
    device = None

    @staticmethod
    def work_dtype_np(x):
        """numpy dtype of the projection product: float32 for float32 features, float64 otherwise."""
        return np.dtype(np.float32) if x.dtype == np.float32 else np.dtype(np.float64)

    # data access -------------------------------------------------------------
    @staticmethod
    def rows(x, start, stop):
        return x[start:stop]

    @staticmethod
    def take(x, idx):
        return np.take(x, idx, axis=0)

    @staticmethod
    def index(ids):
        return np.asarray(ids, dtype=np.intp)

    @staticmethod
    def asarray(a, dtype=np.float64):
        return np.asarray(a, dtype=dtype)

    @staticmethod
    def zeros(shape, dtype=np.float64):
        return np.zeros(shape, dtype=dtype)

    @staticmethod
    def to_numpy(a):
        return np.asarray(a)

    @staticmethod
    def to_float64(x):
        return np.asarray(x, dtype=np.float64)

    # arithmetic --------------------------------------------------------------
    @staticmethod
    def centre64(x, table64, ids):
        """``x - table64[ids]`` in float64 (x may be float32)."""
        out = np.take(table64, ids, axis=0)
        with np.errstate(invalid="ignore", over="ignore"):  # non-finite input is detected (and named) by the caller
            np.subtract(x, out, out=out)
        return out

    @staticmethod
    def centre(x, table, ids, dtype, ws=None):
        """``x - table[ids]`` in ``dtype`` (the table is already in that dtype)."""
        shape = (x.shape[0], table.shape[1])
        out = np.take(table, ids, axis=0, out=None if ws is None else ws.get("centre", shape, table.dtype), mode="clip")
        with np.errstate(invalid="ignore", over="ignore"):
            np.subtract(x, out, out=out, dtype=dtype, casting="same_kind")
        return out

    @staticmethod
    def sub_row(x, row, ws=None):
        """``x - row`` (one row broadcast) in the row's dtype."""
        out = None if ws is None else ws.get("centre", x.shape, row.dtype)
        with np.errstate(invalid="ignore", over="ignore"):
            return np.subtract(x, row, out=out, dtype=row.dtype, casting="same_kind")

    @staticmethod
    def take_rows(table, ids, ws=None, name="rows"):
        """``table[ids]`` into a reusable buffer."""
        shape = (len(ids), table.shape[1])
        return np.take(table, ids, axis=0, out=None if ws is None else ws.get(name, shape, table.dtype), mode="clip")

    @staticmethod
    def scale_(x, factor):
        if factor != 1.0:
            x *= factor
        return x

    @staticmethod
    def abs_max(x) -> float:
        return float(max(np.max(x), -np.min(x)))

    @staticmethod
    def max_value(x) -> float:
        return float(np.max(x)) if x.size else 0.0

    @staticmethod
    def row_sq(x, ws=None):
        out = None if ws is None else ws.get("row_sq", (x.shape[0],), x.dtype)
        with np.errstate(invalid="ignore", over="ignore"):
            if _VECDOT is not None:  # a BLAS dot per row: several times faster than einsum's loop
                return _VECDOT(x, x, out=out)
            return np.einsum("ij,ij->i", x, x, out=out)

    @staticmethod
    def segment_sum(values, ids, n_groups, ws=None):
        """Per-group sums of the rows of ``values``: ``(groups, sums)``, ``groups`` None for all of them.

        Few groups and narrow rows: a dense one-hot product; otherwise a one-hot
        CSC product, O(n d) whatever the number of groups.
        """
        n = values.shape[0]
        if n_groups <= _DENSE_GROUPS and values.shape[1] <= _DENSE_WIDTH:
            onehot = np.zeros((n_groups, n), dtype=values.dtype) if ws is None else ws.get(
                "onehot", (n_groups, n), values.dtype)
            onehot.fill(0)
            onehot[ids, np.arange(n)] = 1
            return None, onehot @ values
        if 4 * n_groups <= n:  # a CSC product into every group's row (most groups are in the block)
            onehot = sparse.csc_matrix((np.ones(n, dtype=values.dtype), ids, np.arange(n + 1)), shape=(n_groups, n))
            return None, np.asarray(onehot @ values)
        # many groups for the block: only the groups present in it (no mostly-zero groups x d result)
        present, local = np.unique(ids, return_inverse=True)
        onehot = sparse.csc_matrix((np.ones(n, dtype=values.dtype), local.ravel(), np.arange(n + 1)),
                                   shape=(present.size, n))
        return present, np.asarray(onehot @ values)

    @staticmethod
    def bincount(ids, weights, n):
        return np.bincount(ids, weights=np.asarray(weights, dtype=np.float64), minlength=n)

    @staticmethod
    def matmul(a, b, ws=None, name="matmul"):
        if ws is None:
            return a @ b
        return np.matmul(a, b, out=ws.get(name, (a.shape[0], b.shape[1]), np.result_type(a, b)))

    @staticmethod
    def as_float64(p, ws=None):
        return _as64(p, ws)

    @staticmethod
    def gram(p64):
        """``p^T p`` (float64 input)."""
        return p64.T @ p64

    @staticmethod
    def col_sq(p64):
        """Column sums of squares (float64 input)."""
        return np.einsum("ij,ij->j", p64, p64)

    @staticmethod
    def count_agree(ncc_scores, clf_scores) -> int:
        return int(np.count_nonzero(np.argmin(ncc_scores, axis=1) == np.argmax(clf_scores, axis=1)))

    @staticmethod
    def all_finite(x) -> bool:
        return bool(np.isfinite(x).all())

    @staticmethod
    def bad_rows(x) -> int:
        return int((~np.isfinite(x)).any(axis=1).sum())


class TorchOps:
    """torch implementation: every reduction stays on the tensor's device until ``to_numpy``."""

    name = "torch"

    def __init__(self, device):
        self.device = device

    @property
    def torch(self):
        import torch

        return torch

    def __getstate__(self):  # the module is re-imported, never pickled
        return {"device": str(self.device)}

    def __setstate__(self, state):
        self.device = state["device"]

    def work_dtype_np(self, x):
        t = self.torch
        return np.dtype(np.float32) if x.dtype in (t.float32, t.float16, t.bfloat16) else np.dtype(np.float64)

    def rows(self, x, start, stop):
        return x[start:stop]

    def take(self, x, idx):
        return x.index_select(0, idx)

    def index(self, ids):
        return self.torch.as_tensor(np.asarray(ids, dtype=np.int64), device=self.device)

    def asarray(self, a, dtype=None):
        t = self.torch
        dtype = t.float64 if dtype is None or dtype is np.float64 else dtype
        if dtype is np.float32:
            dtype = t.float32
        if is_torch_tensor(a):
            return a.to(device=self.device, dtype=dtype)
        return t.as_tensor(np.asarray(a), dtype=dtype, device=self.device)

    def zeros(self, shape, dtype=None):
        t = self.torch
        return t.zeros(shape, dtype=t.float64 if dtype in (None, np.float64) else dtype, device=self.device)

    def to_numpy(self, a):
        if is_torch_tensor(a):
            return a.detach().cpu().numpy()
        return np.asarray(a)

    def to_float64(self, x):
        return x.to(self.torch.float64)

    def centre64(self, x, table64, ids):
        return x.to(self.torch.float64) - table64.index_select(0, ids)

    def centre(self, x, table, ids, dtype, ws=None):
        return x.to(dtype) - table.index_select(0, ids)

    @staticmethod
    def take_rows(table, ids, ws=None, name="rows"):
        return table.index_select(0, ids)

    @staticmethod
    def sub_row(x, row, ws=None):
        return x.to(row.dtype) - row

    @staticmethod
    def scale_(x, factor):
        if factor != 1.0:
            x.mul_(factor)
        return x

    def abs_max(self, x) -> float:
        return float(x.abs().max())

    @staticmethod
    def max_value(x) -> float:
        return float(x.max()) if x.numel() else 0.0

    @staticmethod
    def row_sq(x, ws=None):
        return (x * x).sum(dim=1)

    def segment_sum(self, values, ids, n_groups, ws=None):
        out = self.torch.zeros((n_groups, values.shape[1]), dtype=self.torch.float64, device=values.device)
        out.index_add_(0, ids, values.to(self.torch.float64))
        return None, out

    def bincount(self, ids, weights, n):
        out = self.torch.zeros(n, dtype=self.torch.float64, device=weights.device)
        out.index_add_(0, ids, weights.to(self.torch.float64))
        return out

    @staticmethod
    def matmul(a, b, ws=None, name=None):
        return a @ b

    def as_float64(self, p, ws=None):
        return p.to(self.torch.float64)

    @staticmethod
    def gram(p64):
        return p64.T @ p64

    @staticmethod
    def col_sq(p64):
        return (p64 * p64).sum(dim=0)

    def count_agree(self, ncc_scores, clf_scores):
        # stays a device tensor: summed over batches, copied once at report time
        return (ncc_scores.argmin(dim=1) == clf_scores.argmax(dim=1)).sum()

    def all_finite(self, x) -> bool:
        return bool(self.torch.isfinite(x).all())

    def bad_rows(self, x) -> int:
        return int((~self.torch.isfinite(x)).any(dim=1).sum())


_NUMPY = NumpyOps()


def backend_for(x):
    """numpy operations for host arrays, torch operations (on ``x.device``) for tensors."""
    if is_torch_tensor(x):
        return TorchOps(x.device)
    return _NUMPY
