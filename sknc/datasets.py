"""Offline datasets: multi-label image combiners, bundled multi-label digits, imbalance profiles,
and readers for locally stored MNIST and CIFAR-10. Nothing is downloaded."""

from __future__ import annotations

import gzip
import pickle
import struct
from itertools import combinations
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch, check_random_state

__all__ = [
    "make_multilabel_images",
    "make_multilabel_strips",
    "load_multilabel_digits",
    "imbalance_counts",
    "make_imbalanced",
    "label_set_counts",
    "load_mnist",
    "load_cifar10",
]


# ------------------------------------------------------------------ combiner
def _grid_size(max_m):
    g = 1
    while g * g < max_m:
        g += 1
    return max(g, 2)


def label_set_counts(n_classes, n_per_set, multiplicities):
    """Resolve a count specification into ``{label_set_tuple: count}``.

    ``n_per_set`` is an int (every set of every multiplicity), a dict
    ``{m: count}`` (per multiplicity), or a dict ``{(i, j, ...): count}`` for an
    explicit (possibly imbalanced) choice of label sets.

    Examples
    --------
    >>> from sknc.datasets import label_set_counts
    >>> counts = label_set_counts(3, {2: 5}, (2,))
    >>> counts
    {(0, 1): 5, (0, 2): 5, (1, 2): 5}
    """
    out = {}
    if isinstance(n_per_set, dict) and n_per_set and all(isinstance(k, tuple) for k in n_per_set):
        for s, c in n_per_set.items():
            s = tuple(sorted(int(i) for i in s))
            if len(set(s)) != len(s) or not s or min(s) < 0 or max(s) >= n_classes:
                raise ValueError(f"label set {s} is not a set of distinct classes in 0..{n_classes - 1}.")
            out[s] = int(c)
        return out
    for m in multiplicities:
        if m < 2 or m > n_classes:
            raise ValueError(f"multiplicity {m} must be between 2 and n_classes={n_classes}.")
        count = n_per_set.get(m, 0) if isinstance(n_per_set, dict) else n_per_set
        for s in combinations(range(n_classes), m):
            out[s] = int(count)
    return out


def _check_sources(images, labels):
    """Source images (n, H, W) or (n, C, H, W) and their non-negative integer classes, checked."""
    images = np.asarray(images)
    labels = np.asarray(labels).ravel()
    if images.ndim not in (3, 4):
        raise ValueError(f"images must have shape (n, H, W) or (n, C, H, W); got {images.shape}.")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels for {images.shape[0]} images.")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ValueError("labels must be non-negative integers.")
    return images, labels


def _source_draws(labels, n_classes, rng):
    """``draw(c)``: the index of a source image of class ``c``, cycling through a shuffled pool per class (no
    reuse until the class is exhausted)."""
    pools = {}
    for c in range(n_classes):
        idx = np.flatnonzero(labels == c)
        if idx.size == 0:
            raise ValueError(f"class {c} has no source image.")
        pools[c] = [rng.permutation(idx), 0]

    def draw(c):
        pool = pools[c]
        if pool[1] == len(pool[0]):
            pool[0], pool[1] = rng.permutation(pool[0]), 0
        pool[1] += 1
        return pool[0][pool[1] - 1]

    return draw


def make_multilabel_images(
    images,
    labels,
    *,
    n_per_class=100,
    n_per_set=10,
    multiplicities=(1, 2),
    max_shift=None,
    random_state=None,
):
    """Combine single-label images into multi-label ones (the M-lab MNIST/CIFAR recipe).

    Each source image is placed in its own cell of a larger canvas (a 2 x 2 grid
    of source-sized cells for up to four labels), circularly shifted by a small
    random offset in each axis, and the images of one sample are merged by a
    pixel-wise maximum. Multiplicity-1 samples are placed the same way.

    Parameters
    ----------
    images : ndarray of shape (n, H, W) or (n, C, H, W)
    labels : array-like of shape (n,)
        Integer class of each source image.
    n_per_class : int, default=100
        Multiplicity-1 samples per class (0 to omit).
    n_per_set : int or dict, default=10
        Samples per label set of multiplicity >= 2: an int for every set, a dict
        ``{m: count}`` per multiplicity, or ``{(i, j): count}`` for explicit,
        possibly imbalanced sets (then ``multiplicities`` only governs m=1).
    multiplicities : iterable of int, default=(1, 2)
    max_shift : int, optional
        Largest shift in pixels (default ``H // 4``, 0..7 px for 28-32 px images as in
        the published recipe).
    random_state : int, RandomState or None

    Returns
    -------
    X : ndarray of shape (n_samples, [C,] G*H, G*W)
        Combined images, same dtype as ``images``.
    Y : ndarray of int of shape (n_samples, K)
        Label indicator, classes ``0..K-1``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from sknc import make_multilabel_images
    >>> digits = load_digits()
    >>> X, Y = make_multilabel_images(digits.images, digits.target, n_per_class=5, n_per_set=1, random_state=0)
    >>> X.shape, Y.shape, sorted(set(Y.sum(1).tolist()))
    ((95, 16, 16), (95, 10), [1, 2])
    """
    images, labels = _check_sources(images, labels)
    rng = check_random_state(random_state)
    n_classes = int(labels.max()) + 1
    mults = sorted(set(int(m) for m in multiplicities))
    sets = label_set_counts(n_classes, n_per_set, [m for m in mults if m > 1])
    if 1 in mults and n_per_class:
        sets = {**{(c,): int(n_per_class) for c in range(n_classes)}, **sets}
    sets = {s: c for s, c in sets.items() if c > 0}
    if not sets:
        raise ValueError("nothing to generate: every count is zero.")
    max_m = max(len(s) for s in sets)
    g = _grid_size(max_m)
    h, w = images.shape[-2:]
    shift = max(1, h // 4) if max_shift is None else int(max_shift)
    channels = images.shape[1:-2]
    draw = _source_draws(labels, n_classes, rng)

    total = sum(sets.values())
    X = np.zeros((total, *channels, g * h, g * w), dtype=images.dtype)
    Y = np.zeros((total, n_classes), dtype=np.int64)
    row = 0
    for s, count in sets.items():
        for _ in range(count):
            cells = rng.choice(g * g, size=len(s), replace=False)
            canvas = np.zeros((*channels, g * h, g * w), dtype=images.dtype)
            for c, cell in zip(rng.permutation(s), cells):
                tile = np.zeros_like(canvas)
                r0, c0 = (cell // g) * h, (cell % g) * w
                tile[..., r0 : r0 + h, c0 : c0 + w] = images[draw(c)]
                dy, dx = rng.randint(0, shift + 1, size=2)
                canvas = np.maximum(canvas, np.roll(tile, (dy, dx), axis=(-2, -1)))
            X[row] = canvas
            Y[row, list(s)] = 1
            row += 1
    order = rng.permutation(total)
    return X[order], Y[order]


def make_multilabel_strips(images, labels, n_samples, *, multiplicities=(2, 3), n_slots=3, random_state=None):
    """Multi-label strips: ``m`` images of distinct classes side by side in ``n_slots`` cells of a row.

    Each sample draws its multiplicity ``m`` uniformly from ``multiplicities``,
    ``m`` distinct classes uniformly, one source image per class (a shuffled
    pool per class, no reuse until it is exhausted) and ``m`` of the
    ``n_slots`` cells; the other cells stay blank. With MNIST and the
    defaults: 28x84 strips of two or three digits and no single-label sample.

    Parameters
    ----------
    images : ndarray of shape (n, H, W) or (n, C, H, W)
    labels : array-like of shape (n,)
        Integer class of each source image.
    n_samples : int
    multiplicities : iterable of int, default=(2, 3)
        Each at most ``n_slots`` and at most the number of classes.
    n_slots : int, default=3
    random_state : int, RandomState or None

    Returns
    -------
    X : ndarray of shape (n_samples, [C,] H, n_slots * W)
        Same dtype as ``images``.
    Y : ndarray of int of shape (n_samples, K)

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sknc import make_multilabel_strips
    >>> digits = load_digits()
    >>> X, Y = make_multilabel_strips(digits.images, digits.target, 50, random_state=0)
    >>> X.shape, sorted(set(Y.sum(1).tolist()))
    ((50, 8, 24), [2, 3])
    """
    images, labels = _check_sources(images, labels)
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer; got {n_samples!r}.")
    n_classes = int(labels.max()) + 1
    mults = sorted(set(int(m) for m in multiplicities))
    if not mults or mults[0] < 1 or mults[-1] > min(n_slots, n_classes):
        raise ValueError(f"multiplicities must lie in 1..{min(n_slots, n_classes)} (slots and classes); got "
                         f"{list(multiplicities)}.")
    rng = check_random_state(random_state)
    draw = _source_draws(labels, n_classes, rng)

    h, w = images.shape[-2:]
    X = np.zeros((n_samples, *images.shape[1:-2], h, n_slots * w), dtype=images.dtype)
    Y = np.zeros((n_samples, n_classes), dtype=np.int64)
    for i in range(n_samples):
        m = mults[rng.randint(len(mults))]
        classes = rng.choice(n_classes, size=m, replace=False)
        for c, slot in zip(classes, np.sort(rng.choice(n_slots, size=m, replace=False))):
            X[i, ..., slot * w : (slot + 1) * w] = images[draw(c)]
        Y[i, classes] = 1
    return X, Y


def load_multilabel_digits(
    *, n_per_class=(150, 40), n_per_set=(12, 4), multiplicities=(1, 2), test_fraction=0.35, random_state=0
):
    """Multi-label digits built from scikit-learn's bundled 8x8 digits (no download).

    Source images are split per class into disjoint train and test pools, then
    combined with :func:`make_multilabel_images` on a 16x16 canvas (pixels scaled
    to [0, 1]).

    Parameters
    ----------
    n_per_class : (int, int), default=(150, 40)
        Multiplicity-1 samples per class in train and test.
    n_per_set : (int or dict, int or dict), default=(12, 4)
        Samples per label set of multiplicity >= 2 in train and test.
    multiplicities : iterable of int, default=(1, 2)
    test_fraction : float, default=0.35
        Fraction of each class's source images reserved for the test split.
    random_state : int, default=0

    Returns
    -------
    Bunch
        ``X_train``, ``Y_train``, ``X_test``, ``Y_test`` (flat float32 images and
        int64 indicators), ``image_shape`` ``(1, 16, 16)``, ``n_classes``.

    Examples
    --------
    >>> from sknc import load_multilabel_digits
    >>> data = load_multilabel_digits()
    >>> data.X_train.shape, data.Y_train.shape, data.image_shape
    ((2040, 256), (2040, 10), (1, 16, 16))
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    rng = check_random_state(random_state)
    train_idx, test_idx = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        cut = int(round(len(idx) * test_fraction))
        test_idx.append(idx[:cut])
        train_idx.append(idx[cut:])
    train_idx, test_idx = np.concatenate(train_idx), np.concatenate(test_idx)
    splits = {}
    for name, idx, n1, ns in (
        ("train", train_idx, n_per_class[0], n_per_set[0]),
        ("test", test_idx, n_per_class[1], n_per_set[1]),
    ):
        X, Y = make_multilabel_images(
            images[idx][:, None],
            labels[idx],
            n_per_class=n1,
            n_per_set=ns,
            multiplicities=multiplicities,
            max_shift=2,
            random_state=rng,
        )
        splits[name] = (X.reshape(len(X), -1), Y)
    return Bunch(
        X_train=splits["train"][0],
        Y_train=splits["train"][1],
        X_test=splits["test"][0],
        Y_test=splits["test"][1],
        image_shape=(1, 16, 16),
        n_classes=10,
        train_source_indices=train_idx,
        test_source_indices=test_idx,
        DESCR="Multi-label digits: pairs of scikit-learn 8x8 digits on a 16x16 canvas, merged by pixel-wise max.",
    )


# ---------------------------------------------------------------- imbalance
def imbalance_counts(n_classes, n_max, ratio, profile="step", n_minority=None):
    """Per-class sample counts of a standard imbalance profile.

    Parameters
    ----------
    n_classes : int
    n_max : int
        Count of the largest class.
    ratio : float >= 1
        Imbalance ratio ``n_max / n_min``.
    profile : {'step', 'exponential'}, default='step'
        'step': the first ``n_classes - n_minority`` classes have ``n_max``, the
        rest ``n_max / ratio``. 'exponential': ``n_max * ratio^(-k/(K-1))``.
    n_minority : int, optional
        Number of minority classes of the step profile (default ``K // 2``).

    Returns
    -------
    ndarray of int (n_classes,)

    Examples
    --------
    >>> from sknc.datasets import imbalance_counts
    >>> imbalance_counts(4, 100, 10).tolist()
    [100, 100, 10, 10]
    >>> imbalance_counts(4, 100, 10, profile="exponential").tolist()
    [100, 46, 21, 10]
    """
    if ratio < 1:
        raise ValueError(f"ratio must be >= 1; got {ratio}.")
    if n_classes < 2 or n_max < 1:
        raise ValueError("n_classes must be >= 2 and n_max >= 1.")
    if profile == "step":
        n_min = n_classes // 2 if n_minority is None else int(n_minority)
        if not 0 <= n_min <= n_classes:
            raise ValueError(f"n_minority must be between 0 and {n_classes}.")
        counts = np.full(n_classes, float(n_max))
        counts[n_classes - n_min :] = n_max / ratio
    elif profile == "exponential":
        counts = n_max * ratio ** (-np.arange(n_classes) / (n_classes - 1))
    else:
        raise ValueError(f"profile must be 'step' or 'exponential'; got {profile!r}.")
    return np.maximum(1, np.floor(counts + 1e-9)).astype(int)


def make_imbalanced(X, y, counts, random_state=None):
    """Subsample ``(X, y)`` to the given per-class counts (classes in sorted order).

    ``counts`` is an array (one per sorted class) or a dict ``{class: count}``.

    Examples
    --------
    >>> import numpy as np
    >>> from sknc.datasets import make_imbalanced
    >>> X, y = np.arange(40).reshape(20, 2), np.repeat([0, 1], 10)
    >>> Xi, yi = make_imbalanced(X, y, [10, 2], random_state=0)
    >>> np.bincount(yi).tolist()
    [10, 2]
    """
    X = np.asarray(X)
    y = np.asarray(y)
    classes = np.unique(y)
    if isinstance(counts, dict):
        counts = [counts.get(c, 0) for c in classes]
    counts = np.asarray(counts, dtype=int)
    if counts.shape != classes.shape:
        raise ValueError(f"counts has {counts.size} entries for {classes.size} classes.")
    rng = check_random_state(random_state)
    keep = []
    for c, n in zip(classes, counts):
        idx = np.flatnonzero(y == c)
        if n > idx.size:
            raise ValueError(f"class {c!r} has {idx.size} samples; {n} requested.")
        keep.append(rng.choice(idx, size=n, replace=False))
    keep = np.sort(np.concatenate(keep))
    return X[keep], y[keep]


# --------------------------------------------------------- local file readers
def _missing(name, folder, files):
    listing = "\n  ".join(files)
    return FileNotFoundError(
        f"{name} files not found in {folder}. sknc never downloads data: place these files "
        f"(gzipped or not) in that folder:\n  {listing}"
    )


def _open_maybe_gz(folder, stem):
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.exists():
            return gzip.open(candidate, "rb") if candidate.suffix == ".gz" else open(candidate, "rb")
    return None


def _read_idx(handle, expected_magic):
    with handle:
        magic, = struct.unpack(">I", handle.read(4))
        if magic != expected_magic:
            raise ValueError(f"not an IDX file of the expected kind (magic {magic}, expected {expected_magic}).")
        ndim = magic & 0xFF
        shape = struct.unpack(">" + "I" * ndim, handle.read(4 * ndim))
        data = np.frombuffer(handle.read(), dtype=np.uint8)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"IDX file is truncated: {data.size} values for shape {shape}.")
    return data.reshape(shape)


def load_mnist(path):
    """Read MNIST from the four standard IDX files in folder ``path``.

    Returns a Bunch with ``X_train`` (60000, 28, 28) uint8, ``y_train``,
    ``X_test``, ``y_test``.

    Examples
    --------
    Read a local copy (nothing is downloaded):

    >>> data = load_mnist("~/data/mnist")  # doctest: +SKIP
    >>> data.X_train.shape, data.y_test.shape  # doctest: +SKIP
    ((60000, 28, 28), (10000,))

    A folder without the files says which ones it needs:

    >>> load_mnist("/no/such/folder")
    Traceback (most recent call last):
    ...
    FileNotFoundError: MNIST files not found in /no/such/folder. sknc never downloads data: ...
    """
    folder = Path(path)
    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    handles = [_open_maybe_gz(folder, s) for s in stems]
    if any(h is None for h in handles):
        for h in handles:
            if h is not None:
                h.close()
        raise _missing("MNIST", folder, stems)
    Xtr, ytr, Xte, yte = (_read_idx(h, m) for h, m in zip(handles, (2051, 2049, 2051, 2049)))
    if len(Xtr) != len(ytr) or len(Xte) != len(yte):
        raise ValueError("MNIST image and label files disagree in length.")
    return Bunch(X_train=Xtr, y_train=ytr.astype(np.int64), X_test=Xte, y_test=yte.astype(np.int64))


def load_cifar10(path):
    """Read CIFAR-10 from the python-pickle batches in ``path`` (or ``path/cifar-10-batches-py``).

    Returns a Bunch with ``X_train`` (50000, 3, 32, 32) uint8, ``y_train``,
    ``X_test``, ``y_test``.

    Examples
    --------
    Read a local copy (nothing is downloaded):

    >>> data = load_cifar10("~/data/cifar-10-batches-py")  # doctest: +SKIP
    >>> data.X_train.shape  # doctest: +SKIP
    (50000, 3, 32, 32)
    >>> load_cifar10("/no/such/folder")
    Traceback (most recent call last):
    ...
    FileNotFoundError: CIFAR-10 files not found in /no/such/folder. sknc never downloads data: ...
    """
    folder = Path(path)
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    if not all((folder / n).exists() for n in names):
        raise _missing("CIFAR-10", folder, names)

    def read(name):
        with open(folder / name, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        return data, np.asarray(batch[b"labels"], dtype=np.int64)

    train = [read(n) for n in names[:5]]
    Xte, yte = read("test_batch")
    return Bunch(
        X_train=np.concatenate([t[0] for t in train]),
        y_train=np.concatenate([t[1] for t in train]),
        X_test=Xte,
        y_test=yte,
    )


