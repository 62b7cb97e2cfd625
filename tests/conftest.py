import os

import numpy as np
import pytest

# Keep torch single-threaded and deterministic in tests; the machines have 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def etf_rows(k, d, r, rng):
    """An exact simplex ETF with row norm r, built independently of sknc.geometry."""
    centred = np.eye(k) - 1.0 / k
    centred *= r / np.linalg.norm(centred[0])
    # Coordinates in an orthonormal basis of the sum-zero subspace, then a random embedding.
    basis = np.linalg.qr(centred)[0][:, : k - 1]
    coords = centred @ basis
    q, _ = np.linalg.qr(rng.standard_normal((d, k - 1)))
    return coords @ q.T  # orthonormal columns keep norms and angles


def cross_design(means, a, basis=None, scales=None):
    """For every class: mean +- a_j q_j for each direction q_j of an orthonormal basis.

    Class means are exact and Sigma_W = (1/d) sum_j a_j^2 q_j q_j^T exactly.
    """
    k, d = means.shape
    basis = np.eye(d) if basis is None else basis
    scales = np.full(d, a) if scales is None else np.asarray(scales)
    offsets = np.concatenate([basis * scales[:, None], -basis * scales[:, None]])  # (2d, d)
    H = (means[:, None, :] + offsets[None, :, :]).reshape(-1, d)
    y = np.repeat(np.arange(k), 2 * d)
    return H, y


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def multilabel_blobs(k=4, d=12, per_single=30, per_pair=8, noise=0.5, seed=0):
    """Multi-label data with every class alone and every pair: X = sum of the set's prototypes + noise."""
    from itertools import combinations

    rng = np.random.default_rng(seed)
    protos = rng.standard_normal((k, d)) * 2
    sets = [((c,), per_single) for c in range(k)] + [(s, per_pair) for s in combinations(range(k), 2)]
    X, Y = [], []
    for s, count in sets:
        for _ in range(count):
            X.append(protos[list(s)].sum(0) + noise * rng.standard_normal(d))
            row = np.zeros(k, dtype=np.int64)
            row[list(s)] = 1
            Y.append(row)
    order = rng.permutation(len(X))
    return np.asarray(X, dtype=np.float32)[order], np.asarray(Y)[order]


@pytest.fixture(autouse=True)
def _fresh_warning_memory():
    """Every test sees sknc's one-per-site warnings afresh (sknc.exceptions.warn_once)."""
    from sknc.exceptions import _forget_warnings

    _forget_warnings()
    yield


@pytest.fixture(autouse=True)
def _close_figures():
    """Figures a test drew are closed after it (pyplot keeps every figure open until told otherwise)."""
    yield
    import sys

    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")
