"""Input conversion and validation shared by every layer of sknc.

Nothing here imports torch: tensors are recognised by duck typing so that the
metrics and theory layers stay free of deep-learning dependencies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

__all__ = ["as_float64_matrix", "is_torch_tensor", "LabelGroups", "group_labels"]


def is_torch_tensor(x) -> bool:
    """Return True for a ``torch.Tensor`` without importing torch."""
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def _tensor_to_numpy(x) -> np.ndarray:
    x = x.detach()
    if x.is_complex():
        raise TypeError("Complex-valued tensors are not supported.")
    # bfloat16/float16 have no numpy counterpart worth keeping: go to float64 on
    # the tensor's own device first, then copy once to the host.
    if x.is_floating_point():
        x = x.to(dtype=_torch_float64(x))
    return x.cpu().numpy()


def _torch_float64(x):
    import torch  # only reached when the caller already passed a tensor

    return torch.float64


def as_float64_matrix(x, name: str = "features", *, allow_empty: bool = False, check_finite: bool = True) -> np.ndarray:
    """Convert ``x`` (numpy, list, torch tensor on any device) to a finite float64 2-D array.

    ``check_finite=False`` skips the scan for NaN/inf (for callers that detect
    them more cheaply on a reduction of the data).

    Raises
    ------
    TypeError
        If ``x`` is sparse, complex, or not numeric.
    ValueError
        If ``x`` is not 2-D, is empty, or holds NaN or infinity.
    """
    if sparse.issparse(x):
        raise TypeError(f"{name} must be a dense array; sparse input is not supported.")
    if is_torch_tensor(x):
        arr = _tensor_to_numpy(x)
    else:
        arr = np.asarray(x)
    if arr.dtype == object:
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be numeric; got an object array that is not.") from exc
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real-valued; got complex dtype {arr.dtype}.")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be numeric; got dtype {arr.dtype}.")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (n_samples, n_dims); got shape {arr.shape}.")
    if not allow_empty and (arr.shape[0] == 0 or arr.shape[1] == 0):
        raise ValueError(f"{name} is empty (shape {arr.shape}); at least one sample and one dimension are needed.")
    arr = np.asarray(arr, dtype=np.float64)
    if check_finite and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise ValueError(f"{name} contains NaN or infinity in {bad} row(s).")
    return arr


@dataclass(frozen=True)
class LabelGroups:
    """Samples grouped by label set.

    Attributes
    ----------
    classes : ndarray of shape (n_classes,)
        Class labels (for an indicator matrix, the column indices ``0..K-1``).
    multilabel : bool
        True when ``y`` was an indicator matrix.
    sets : ndarray of bool, shape (n_groups, n_classes)
        The distinct label sets present, one row each.
    group : ndarray of int, shape (n_samples,)
        Index into ``sets`` of each sample's label set.
    multiplicity : ndarray of int, shape (n_groups,)
        ``|S|`` of each label set.
    class_group : ndarray of int, shape (n_classes,)
        Row of ``sets`` holding the singleton ``{k}`` for each class.
    """

    classes: np.ndarray
    multilabel: bool
    sets: np.ndarray
    group: np.ndarray
    multiplicity: np.ndarray
    class_group: np.ndarray

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def n_groups(self) -> int:
        return self.sets.shape[0]

    def counts(self) -> np.ndarray:
        return np.bincount(self.group, minlength=self.n_groups)

    def singleton_mask(self) -> np.ndarray:
        """Per-sample mask of multiplicity-1 samples."""
        return self.multiplicity[self.group] == 1

    def sample_class(self) -> np.ndarray:
        """Class index of each multiplicity-1 sample, -1 for the others."""
        lookup = np.full(self.n_groups, -1, dtype=np.intp)
        lookup[self.class_group] = np.arange(self.n_classes)
        return lookup[self.group]


def _indicator(y) -> np.ndarray | None:
    """Return y as a boolean indicator matrix if it is one, else None."""
    if sparse.issparse(y):
        y = y.toarray()
    if is_torch_tensor(y):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.ndim != 2:
        return None
    if y.shape[1] == 1:
        return None  # a column vector is treated as 1-D class labels
    if y.dtype == object or not np.issubdtype(y.dtype, np.number) and y.dtype != bool:
        raise TypeError(f"A 2-D y must be a numeric 0/1 indicator matrix; got dtype {y.dtype}.")
    if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        raise ValueError("The label indicator matrix contains NaN or infinity.")
    values = np.unique(y)
    if not np.isin(values, (0, 1)).all():
        raise ValueError(
            "A 2-D y must be a 0/1 indicator matrix (n_samples, n_classes); "
            f"found values {values[~np.isin(values, (0, 1))][:5].tolist()}."
        )
    return y.astype(bool)


def group_labels(y, n_samples: int | None = None, *, min_classes: int = 2) -> LabelGroups:
    """Group samples by label set.

    Parameters
    ----------
    y : array-like of shape (n_samples,) or (n_samples, n_classes)
        Class labels, or a 0/1 indicator matrix for multi-label data.
    n_samples : int, optional
        Expected number of samples; a mismatch raises ``ValueError``.
    min_classes : int, default=2
        Fewest distinct classes accepted.

    Raises
    ------
    ValueError
        Length mismatch, fewer than ``min_classes`` classes, NaN labels, or an
        all-zero row of an indicator matrix.
    """
    ind = _indicator(y)
    if ind is None:
        if is_torch_tensor(y):
            y = y.detach().cpu().numpy()
        y = np.asarray(y)
        if y.ndim == 2:
            y = y.ravel()
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D class labels or a 2-D indicator matrix; got shape {y.shape}.")
        if n_samples is not None and y.shape[0] != n_samples:
            raise ValueError(f"y has {y.shape[0]} labels but features have {n_samples} rows.")
        if y.shape[0] == 0:
            raise ValueError("y is empty.")
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise ValueError("y contains NaN or infinity.")
        classes, codes = np.unique(y, return_inverse=True)
        k = len(classes)
        if k < min_classes:
            what = "only one class" if k == 1 else f"{k} distinct classes"
            raise ValueError(f"y has {what}; at least {min_classes} are needed.")
        return LabelGroups(
            classes=classes,
            multilabel=False,
            sets=np.eye(k, dtype=bool),
            group=codes.astype(np.intp).ravel(),
            multiplicity=np.ones(k, dtype=np.intp),
            class_group=np.arange(k),
        )

    n, k = ind.shape
    if n_samples is not None and n != n_samples:
        raise ValueError(f"y has {n} rows but features have {n_samples} rows.")
    if n == 0:
        raise ValueError("y is empty.")
    if k < min_classes:
        raise ValueError(f"y has {k} label column(s); at least {min_classes} are needed.")
    empty = ~ind.any(axis=1)
    if empty.any():
        rows = np.flatnonzero(empty)
        raise ValueError(
            f"y has {len(rows)} all-zero label row(s) (first at index {rows[0]}); "
            "every sample needs at least one label."
        )
    # Group identical rows: pack bits so that np.unique compares short byte strings.
    packed = np.packbits(ind, axis=1)
    keys = np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1]))).ravel()
    _, first, group = np.unique(keys, return_index=True, return_inverse=True)
    sets = ind[first]
    multiplicity = sets.sum(axis=1).astype(np.intp)
    class_group = np.full(k, -1, dtype=np.intp)
    singles = np.flatnonzero(multiplicity == 1)
    class_group[sets[singles].argmax(axis=1)] = singles
    return LabelGroups(
        classes=np.arange(k),
        multilabel=True,
        sets=sets,
        group=group.astype(np.intp).ravel(),
        multiplicity=multiplicity,
        class_group=class_group,
    )


def require_singletons(groups: LabelGroups) -> None:
    """Raise if some class has no multiplicity-1 sample (its mean is undefined)."""
    missing = np.flatnonzero(groups.class_group < 0)
    if missing.size:
        names = ", ".join(str(groups.classes[i]) for i in missing[:10])
        raise ValueError(
            f"class(es) {names} have no multiplicity-1 sample, so their class mean is undefined; "
            "NC metrics of multi-label data need at least one single-label sample per class."
        )
