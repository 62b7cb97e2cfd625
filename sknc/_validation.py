"""Input conversion and validation shared by every layer of sknc.

One set of rules for the metrics, the accumulator, the estimators, the scorers
and the command line: features, labels, classifiers and devices are checked
here, before any expensive work, and every error names the argument and the
problem.

Nothing here imports torch at module level: tensors are recognised by duck
typing so that the metrics and theory layers stay free of deep-learning
dependencies. Device checks import torch lazily (only the torch-backed
estimators call them).
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

import numpy as np
from scipy import sparse

__all__ = [
    "is_torch_tensor",
    "as_float64_matrix",
    "as_feature_array",
    "untensor",
    "LabelGroups",
    "group_labels",
    "label_kind",
    "check_device",
    "check_layer_sizes",
    "check_fit_inputs",
]


def is_torch_tensor(x) -> bool:
    """Return True for a ``torch.Tensor`` without importing torch."""
    return type(x).__module__.startswith("torch") and hasattr(x, "detach") and hasattr(x, "device")


def untensor(x):
    """A torch tensor as a host numpy array (detached, so ``requires_grad`` is fine); anything else unchanged."""
    if is_torch_tensor(x):
        t = x.detach()
        if t.is_complex():
            raise TypeError("complex-valued tensors are not supported.")
        if t.dtype.is_floating_point and t.element_size() < 4:  # float16/bfloat16: no faithful numpy twin
            t = t.float()
        return t.cpu().numpy()
    return x


def _dense(x):
    """``x`` as a numpy array; pandas' nullable columns (``Float64``, ``Int64`` with ``pd.NA``) give NaN for NA.

    ``np.asarray`` of such a frame is an object array of numbers and ``pd.NA``,
    which no numeric conversion accepts; the missing values are then reported
    as what they are (NaN rows) by the checks downstream.
    """
    to_numpy = getattr(x, "to_numpy", None)
    if to_numpy is not None and type(x).__module__.startswith("pandas"):
        dtypes = getattr(x, "dtypes", None)
        kinds = list(dtypes) if dtypes is not None and hasattr(dtypes, "__iter__") else [getattr(x, "dtype", None)]
        if any(getattr(dt, "na_value", None) is not None and not isinstance(dt, np.dtype) for dt in kinds):
            try:
                return to_numpy(dtype=np.float64, na_value=np.nan)
            except (TypeError, ValueError):
                pass  # not numeric after all: the caller says so
    return np.asarray(x)


def _check_numeric(arr, name):
    if arr.dtype == object:
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be numeric; got an object array that is not.") from exc
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real-valued; got complex dtype {arr.dtype}.")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be numeric; got dtype {arr.dtype}.")
    return arr


def as_float64_matrix(x, name: str = "features", *, allow_empty: bool = False, check_finite: bool = True) -> np.ndarray:
    """Convert ``x`` (numpy, list, torch tensor on any device) to a finite float64 2-D array.

    For small arrays (classifier weights, class means, vectors). Large feature
    matrices go through :func:`as_feature_array`, which avoids a float64 copy.

    Raises
    ------
    TypeError
        If ``x`` is sparse, complex, or not numeric.
    ValueError
        If ``x`` is not 2-D, is empty, or holds NaN or infinity.
    """
    if sparse.issparse(x):
        raise TypeError(f"{name} must be a dense array; sparse input is not supported.")
    arr = _check_numeric(_dense(untensor(x)), name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array; got shape {arr.shape}.")
    if not allow_empty and (arr.shape[0] == 0 or arr.shape[1] == 0):
        raise ValueError(f"{name} is empty (shape {arr.shape}).")
    arr = np.asarray(arr, dtype=np.float64)
    if check_finite and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise ValueError(f"{name} contains NaN or infinity in {bad} row(s).")
    return arr


def _stored_eps(dtype) -> float:
    """Machine epsilon of the precision the caller stored values in (float64 for integers)."""
    try:
        return float(np.finfo(dtype).eps)
    except (TypeError, ValueError):
        return float(np.finfo(np.float64).eps)


def as_feature_array(x, name: str = "features"):
    """A 2-D feature matrix in the precision it was stored in, without a float64 copy.

    Returns
    -------
    array : ndarray or torch.Tensor
        numpy float32/float64 arrays are returned as they are; other numeric
        numpy dtypes are converted (integers and booleans to float64, float16
        to float32). Tensors are detached: CPU tensors become numpy arrays that
        share their memory, CUDA (and other accelerator) tensors stay tensors on
        their device, float16/bfloat16 are widened to float32.
    eps : float
        Machine epsilon of the stored dtype (what the data can resolve).

    Raises
    ------
    TypeError
        Sparse, complex, non-numeric input.
    ValueError
        Not 2-D, or empty. (NaN and infinity are detected by the passes over
        the data, which read every value anyway.)
    """
    if sparse.issparse(x):
        raise TypeError(f"{name} must be a dense array; sparse input is not supported.")
    if is_torch_tensor(x):
        t = x.detach()
        if t.is_complex():
            raise TypeError(f"{name} must be real-valued; got a complex tensor.")
        if not t.dtype.is_floating_point:
            eps = _stored_eps(np.float64)
            t = t.double()
        else:
            import torch

            eps = float(torch.finfo(t.dtype).eps)
            if t.element_size() < 4:
                t = t.float()
        if t.ndim != 2:
            raise ValueError(f"{name} must be a 2-D array of shape (n_samples, n_dims); got shape {tuple(t.shape)}.")
        if t.shape[0] == 0 or t.shape[1] == 0:
            raise ValueError(f"{name} is empty (shape {tuple(t.shape)}); at least one sample and one dimension are needed.")
        if t.device.type == "cpu":
            return t.numpy(), eps
        return t, eps
    arr = _check_numeric(_dense(x), name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (n_samples, n_dims); got shape {arr.shape}.")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); at least one sample and one dimension are needed.")
    if arr.dtype in (np.float32, np.float64):
        return arr, _stored_eps(arr.dtype)
    if arr.dtype == np.float16:
        return arr.astype(np.float32), _stored_eps(np.float16)
    return arr.astype(np.float64), _stored_eps(np.float64)


# ------------------------------------------------------------------------ labels
@dataclass(frozen=True)
class LabelGroups:
    """Samples grouped by label set.

    Attributes
    ----------
    classes : ndarray of shape (n_classes,)
        Class labels (for an indicator matrix, its column names or ``0..K-1``).
    multilabel : bool
        True when ``y`` was an indicator matrix.
    sets : ndarray of bool, shape (n_groups, n_classes)
        The distinct label sets present, one row each (an all-False row is the
        empty set of label-free samples). For 1-D labels the identity, built
        only when asked for (at 32 768 classes it is 1 GB).
    group : ndarray of int, shape (n_samples,)
        Index into ``sets`` of each sample's label set.
    multiplicity : ndarray of int, shape (n_groups,)
        ``|S|`` of each label set.
    class_group : ndarray of int, shape (n_classes,)
        Row of ``sets`` holding the singleton ``{k}`` for each class, -1 when
        class ``k`` never occurs alone.
    """

    classes: np.ndarray
    multilabel: bool
    set_matrix: np.ndarray | None  # None: 1-D labels, whose label sets are the classes alone
    group: np.ndarray
    multiplicity: np.ndarray
    class_group: np.ndarray

    @property
    def sets(self) -> np.ndarray:
        if self.set_matrix is not None:
            return self.set_matrix
        return np.eye(len(self.classes), dtype=bool)

    def present(self) -> np.ndarray:
        """Which classes occur in some label set."""
        if self.set_matrix is None:
            return np.ones(len(self.classes), dtype=bool)
        return self.set_matrix.any(axis=0)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def n_groups(self) -> int:
        return len(self.multiplicity)

    def counts(self) -> np.ndarray:
        return np.bincount(self.group, minlength=self.n_groups)

    def sample_class(self) -> np.ndarray:
        """Class index of each multiplicity-1 sample, -1 for the others."""
        lookup = np.full(self.n_groups, -1, dtype=np.intp)
        have = self.class_group >= 0
        lookup[self.class_group[have]] = np.flatnonzero(have)
        return lookup[self.group]

    def missing_singletons(self) -> np.ndarray:
        """Classes (indices) that never occur alone, so their class mean is undefined."""
        return np.flatnonzero(self.class_group < 0)


def label_kind(values: np.ndarray) -> str:
    """``'number'``, ``'string'`` or ``'other'``: labels of different kinds never name the same class."""
    if values.dtype.kind in "biuf":
        return "number"
    if values.dtype.kind in "US":
        return "string"
    return "other"


def _label_array(y, name="y"):
    """``y`` as a numpy array, with clear errors for ragged and mixed-type label lists."""
    if sparse.issparse(y):
        y = y.toarray()
    columns = None
    if hasattr(y, "columns") and hasattr(y, "to_numpy"):  # pandas DataFrame: keep the label names
        columns = np.asarray(y.columns)
        y = y.to_numpy()
    elif hasattr(y, "to_numpy"):  # pandas Series
        y = y.to_numpy()
    y = untensor(y)
    if isinstance(y, (list, tuple)):
        flat = [v for v in y if not isinstance(v, (list, tuple, np.ndarray, set, frozenset))]
        if len(flat) != len(y):
            sizes = {len(v) for v in y if hasattr(v, "__len__") and not isinstance(v, str)}
            if flat or len(sizes) > 1 or any(isinstance(v, (set, frozenset)) for v in y):
                raise ValueError(
                    f"{name} looks like a list of label lists of different lengths; pass a 0/1 indicator "
                    "matrix of shape (n_samples, n_classes), e.g. sklearn.preprocessing.MultiLabelBinarizer()"
                    ".fit_transform(y)."
                )
        else:
            kinds = {"string" if isinstance(v, str) else "number" for v in flat if v is not None}
            if len(kinds) > 1:
                raise TypeError(
                    f"{name} mixes string and numeric labels (e.g. 0 and '0'); use one type for every label."
                )
    try:
        arr = np.asarray(y)
    except ValueError as exc:
        raise ValueError(
            f"{name} could not be read as an array ({exc}); pass 1-D class labels or a 0/1 indicator matrix."
        ) from exc
    if arr.dtype == object:
        values = arr.ravel().tolist()
        kinds = {"string" if isinstance(v, str) else "number" for v in values if v is not None}
        if len(kinds) > 1:
            raise TypeError(f"{name} mixes string and numeric labels; use one type for every label.")
        if any(isinstance(v, (list, tuple, np.ndarray, set, frozenset)) for v in values):
            raise ValueError(
                f"{name} holds sequences of labels; pass a 0/1 indicator matrix of shape (n_samples, n_classes)."
            )
    return arr, columns


def _indicator(arr):
    """``arr`` as a boolean indicator matrix if it is 2-D with several columns, else None."""
    if arr.ndim != 2 or arr.shape[1] == 1:
        return None  # a column vector is treated as 1-D class labels
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"A 2-D y must be a numeric 0/1 indicator matrix; got dtype {arr.dtype}.")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise ValueError("The label indicator matrix contains NaN or infinity.")
    values = np.unique(arr)
    bad = values[~np.isin(values, (0, 1))]
    if bad.size:
        raise ValueError(
            "A 2-D y must be a 0/1 indicator matrix (n_samples, n_classes); "
            f"found values {bad[:5].tolist()}."
        )
    return arr.astype(bool)


def _integer_codes(arr):
    """Sorted classes and codes of small non-negative integer labels by counting (O(n), no sort).

    Returns ``(None, None)`` for other labels (``np.unique`` handles those).
    """
    if arr.dtype.kind not in "iu" or arr.size == 0:
        return None, None
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi > 4 * arr.size + 1024:  # a sparse range: counting would cost more than sorting
        return None, None
    present = np.bincount(arr.ravel(), minlength=hi + 1) > 0
    classes = np.flatnonzero(present).astype(arr.dtype)
    lookup = np.cumsum(present, dtype=np.intp) - 1
    return classes, lookup[arr.ravel()]


def group_labels(y, n_samples: int | None = None, *, min_classes: int = 2) -> LabelGroups:
    """Group samples by label set.

    Parameters
    ----------
    y : array-like of shape (n_samples,) or (n_samples, n_classes)
        Class labels, or a 0/1 indicator matrix for multi-label data (a pandas
        DataFrame's column names become the classes). All-zero indicator rows
        (label-free samples) form the empty label set.
    n_samples : int, optional
        Expected number of samples; a mismatch raises ``ValueError``.
    min_classes : int, default=2
        Fewest distinct classes accepted.

    Raises
    ------
    ValueError
        Length mismatch, fewer than ``min_classes`` classes, NaN labels, ragged
        label lists, indicator values other than 0/1.
    TypeError
        Mixed string and numeric labels, a non-numeric indicator.
    """
    arr, columns = _label_array(y)
    ind = _indicator(arr)
    if ind is None:
        if arr.ndim == 2:
            arr = arr.ravel()
        if arr.ndim != 1:
            raise ValueError(f"y must be 1-D class labels or a 2-D indicator matrix; got shape {arr.shape}.")
        if n_samples is not None and arr.shape[0] != n_samples:
            raise ValueError(f"y has {arr.shape[0]} labels but features have {n_samples} rows.")
        if arr.shape[0] == 0:
            raise ValueError("y is empty.")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ValueError("y contains NaN or infinity.")
        classes, codes = _integer_codes(arr)
        if classes is None:
            try:
                classes, codes = np.unique(arr, return_inverse=True)
            except TypeError as exc:
                raise TypeError(f"y holds labels that cannot be ordered ({exc}); use one label type.") from exc
        k = len(classes)
        if k < min_classes:
            what = "only one class" if k == 1 else f"{k} distinct classes"
            raise ValueError(f"y has {what}; at least {min_classes} are needed.")
        return LabelGroups(
            classes=classes,
            multilabel=False,
            set_matrix=None,
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
        classes=np.arange(k) if columns is None else columns,
        multilabel=True,
        set_matrix=sets,
        group=group.astype(np.intp).ravel(),
        multiplicity=multiplicity,
        class_group=class_group,
    )


def missing_singletons_message(groups: LabelGroups) -> str:
    missing = groups.missing_singletons()
    present = groups.present()

    def named(idx):
        return ", ".join(str(groups.classes[i]) for i in idx[:10]) + (
            f" (and {idx.size - 10} more)" if idx.size > 10 else "")

    never, alone = missing[~present[missing]], missing[present[missing]]
    parts = []
    if never.size:
        parts.append(f"class(es) {named(never)} never occur in y (all-zero label columns)")
    if alone.size:
        parts.append(f"class(es) {named(alone)} have no multiplicity-1 sample")
    return (" and ".join(parts) + ", so their class mean is undefined; NC metrics of multi-label data need at "
            "least one single-label sample per class")


# ----------------------------------------------------------------------- devices
def check_device(device, *, allow_auto: bool = True) -> str:
    """Validate a torch device (a string or a ``torch.device``) and return it as a string.

    ``'auto'`` resolves to ``'cuda'`` when CUDA is available and ``'cpu'``
    otherwise. An unknown name, or an accelerator that is not available,
    raises ``ValueError`` naming the devices that are.
    """
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda', or a torch.device; got {device!r}.")
    available = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        available.append("mps")
    if device == "auto":
        if not allow_auto:
            raise ValueError("device='auto' is not accepted here; name a device such as 'cpu' or 'cuda'.")
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"device={device!r} is not a valid torch device; available here: {available}.") from exc
    kind = parsed.type
    if kind == "cpu":
        return device
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} requested but CUDA is not available; use 'cpu' or 'auto'.")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) are visible.")
        return device
    if kind not in available:
        raise ValueError(f"device={device!r} is not available on this machine; available here: {available}.")
    return device


def check_layer_sizes(sizes, name="hidden_sizes", *, allow_empty=False) -> tuple:
    """A tuple of positive integer layer widths (rejects 0, negatives, floats and booleans)."""
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
        raise TypeError(f"{name} must be a tuple of positive integers; got {sizes!r}.")
    out = []
    for s in sizes:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, (Integral, np.integer)):
            raise TypeError(f"{name} must hold integers; got {s!r} in {tuple(sizes)!r}.")
        if s < 1:
            raise ValueError(f"{name} must hold positive widths; got {s} in {tuple(sizes)!r}.")
        out.append(int(s))
    if not out and not allow_empty:
        raise ValueError(f"{name} must name at least one layer.")
    return tuple(out)


def check_fit_inputs(X, y):
    """The checks every estimator runs on ``X`` and ``y`` before scikit-learn's ``validate_data``.

    scikit-learn would silently parse numeric strings in ``X`` and report
    mixed-type, ragged or non-0/1 labels by a consequence ("y has 1 class",
    "y should be a 1d array"); these rules name the cause, the same way the
    metrics do. The number of classes is left to the estimator (``partial_fit``
    batches may hold one).
    """
    dtype = getattr(X, "dtype", None)
    if getattr(dtype, "kind", None) in ("U", "S"):
        raise TypeError(f"X must be numeric; got dtype {dtype}.")
    if y is not None:
        group_labels(untensor(y), min_classes=1)
