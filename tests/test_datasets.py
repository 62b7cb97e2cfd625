import gzip
import pickle
import struct

import numpy as np
import pytest

from sknc import datasets


def _class_images(k, h=4, w=4, channels=None):
    shape = (k, h, w) if channels is None else (k, channels, h, w)
    return np.stack([np.full(shape[1:], c + 1.0, dtype=np.float32) for c in range(k)]), np.arange(k)


def test_multilabel_images_exact_placement_without_shift():
    images, labels = _class_images(4)
    X, Y = datasets.make_multilabel_images(images, labels, n_per_class=2, n_per_set=1, multiplicities=(1, 2),
                                           max_shift=0, random_state=0)
    assert X.shape == (8 + 6, 8, 8) and Y.shape == (14, 4)
    assert sorted(map(tuple, np.unique(Y, axis=0).tolist())) == sorted(
        [tuple(r) for r in np.eye(4, dtype=int).tolist()] + [tuple(np.isin(range(4), s).astype(int)) for s in
                                                             [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]])
    for img, row in zip(X, Y):
        present = np.flatnonzero(row)
        for c in present:
            assert np.count_nonzero(img == c + 1) == 16  # a full 4x4 tile of class c
        assert np.count_nonzero(img) == 16 * len(present)  # nothing else on the canvas


def test_multilabel_images_shift_max_and_channels():
    images, labels = _class_images(3, channels=2)
    X, Y = datasets.make_multilabel_images(images, labels, n_per_class=1, n_per_set={2: 2, 3: 1},
                                           multiplicities=(1, 2, 3), max_shift=2, random_state=1)
    assert X.shape[1:] == (2, 8, 8)
    assert Y.sum(1).tolist().count(3) == 1 and Y.sum(1).tolist().count(2) == 6
    for img, row in zip(X, Y):
        assert set(np.unique(img)) - {0.0} <= {c + 1.0 for c in np.flatnonzero(row)}  # pixel-wise max of tiles
        assert img.max() == np.flatnonzero(row).max() + 1
    X2, Y2 = datasets.make_multilabel_images(images, labels, n_per_class=1, n_per_set={2: 2, 3: 1},
                                             multiplicities=(1, 2, 3), max_shift=2, random_state=1)
    assert np.array_equal(X, X2) and np.array_equal(Y, Y2)


def test_imbalanced_label_sets():
    images, labels = _class_images(3)
    X, Y = datasets.make_multilabel_images(images, labels, n_per_class=4, n_per_set={(0, 1): 5, (1, 2): 1},
                                           random_state=0)
    keys = [tuple(np.flatnonzero(r)) for r in Y]
    assert keys.count((0, 1)) == 5 and keys.count((1, 2)) == 1 and keys.count((0, 2)) == 0


def test_load_multilabel_digits_disjoint_sources():
    data = datasets.load_multilabel_digits(random_state=0)
    assert not set(data.train_source_indices) & set(data.test_source_indices)
    assert data.X_train.shape[1] == 256 and data.image_shape == (1, 16, 16)
    for Y in (data.Y_train, data.Y_test):
        assert Y.sum(1).min() >= 1
        singles = Y[Y.sum(1) == 1]
        assert np.all(singles.sum(0) > 0)  # every class has multiplicity-1 samples
    assert 0.0 <= data.X_train.min() and data.X_train.max() <= 1.0


def test_imbalance_profiles():
    assert datasets.imbalance_counts(4, 100, 10).tolist() == [100, 100, 10, 10]
    assert datasets.imbalance_counts(3, 100, 100, profile="exponential").tolist() == [100, 10, 1]
    with pytest.raises(ValueError, match="ratio"):
        datasets.imbalance_counts(3, 10, 0.5)
    X = np.arange(30).reshape(15, 2)
    y = np.repeat([0, 1, 2], 5)
    Xs, ys = datasets.make_imbalanced(X, y, [5, 2, 1], random_state=0)
    assert np.bincount(ys).tolist() == [5, 2, 1]
    with pytest.raises(ValueError, match="6 requested"):
        datasets.make_imbalanced(X, y, [6, 1, 1])


def _write_idx(path, array, magic, gz):
    header = struct.pack(">I", magic) + struct.pack(">" + "I" * array.ndim, *array.shape)
    opener = gzip.open if gz else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_from_local_files(tmp_path, gz):
    rng = np.random.default_rng(0)
    train, test = rng.integers(0, 256, (5, 28, 28)), rng.integers(0, 256, (3, 28, 28))
    suffix = ".gz" if gz else ""
    _write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", train, 2051, gz)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", np.array([0, 1, 2, 3, 4]), 2049, gz)
    _write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", test, 2051, gz)
    _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", np.array([7, 8, 9]), 2049, gz)
    data = datasets.load_mnist(tmp_path)
    assert np.array_equal(data.X_train, train) and data.y_test.tolist() == [7, 8, 9]


def test_load_cifar10_from_local_files(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [1, 2]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    data = datasets.load_cifar10(tmp_path)
    assert data.X_train.shape == (10, 3, 32, 32) and data.y_test.tolist() == [1, 2]


def test_missing_files_say_where_to_put_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte") as err:
        datasets.load_mnist(tmp_path)
    assert str(tmp_path) in str(err.value) and "never downloads" in str(err.value)
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        datasets.load_cifar10(tmp_path)


def test_multilabel_strips_place_distinct_classes_in_distinct_slots():
    images, labels = _class_images(5)  # image of class c is filled with c + 1
    X, Y = datasets.make_multilabel_strips(images, labels, 200, multiplicities=(2, 3), random_state=0)
    assert X.shape == (200, 4, 12) and X.dtype == images.dtype and Y.shape == (200, 5)
    assert set(Y.sum(1).tolist()) == {2, 3}
    for x, y in zip(X, Y):
        cells = [x[:, 4 * s : 4 * s + 4] for s in range(3)]
        seen = sorted(int(c[0, 0]) - 1 for c in cells if c.any())
        assert all(c.min() == c.max() for c in cells)  # a cell is one source image or blank
        assert seen == sorted(np.flatnonzero(y).tolist())  # the cells hold exactly the labelled classes
    # channels stay in front; one source per class is reused only when its pool is exhausted
    images3, labels3 = _class_images(4, channels=3)
    X3, _ = datasets.make_multilabel_strips(images3, labels3, 10, multiplicities=(1,), n_slots=2, random_state=1)
    assert X3.shape == (10, 3, 4, 8)
    again, _ = datasets.make_multilabel_strips(images, labels, 200, multiplicities=(2, 3), random_state=0)
    assert np.array_equal(again, X)


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(multiplicities=(4,)), "multiplicities must lie in 1..3"),
    (dict(n_samples=0), "n_samples must be a positive integer"),
])
def test_multilabel_strips_refuse_what_cannot_be_built(kwargs, pattern):
    images, labels = _class_images(5)
    params = {"n_samples": 10, **kwargs}
    with pytest.raises(ValueError, match=pattern):
        datasets.make_multilabel_strips(images, labels, params.pop("n_samples"), **params)
