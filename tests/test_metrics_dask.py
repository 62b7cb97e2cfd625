"""NC of dask arrays: map-reduced on a real dask.distributed LocalCluster, equal to the in-memory report."""

import gc

import numpy as np
import pytest

import sknc

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")


def _close(a, b, rel):
    assert set(a.index) == set(b.index)
    for key in a.index:
        x, y = float(a[key]), float(b[key])
        assert (np.isnan(x) and np.isnan(y)) or x == pytest.approx(y, rel=rel, abs=1e-300), key


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as c:
        yield c


def _data(rng, n=3000, d=24, k=6, dtype=np.float64):
    y = rng.integers(0, k, n)
    H = (20.0 + 3 * rng.standard_normal((k, d))[y] + rng.standard_normal((n, d))).astype(dtype)
    return H, y, rng.standard_normal((k, d)), rng.standard_normal(k)


def test_local_scheduler_report_equals_the_in_memory_one(rng):
    H, y, W, b = _data(rng)
    X = da.from_array(H, chunks=(400, 10))  # chunks split the columns too: rows are re-joined
    _close(sknc.nc_report(X, da.from_array(y, chunks=700), W, b), sknc.nc_report(H, y, W, b), rel=1e-12)
    _close(sknc.nc_report(X, y, W, b, global_mean="sample"), sknc.nc_report(H, y, W, b, global_mean="sample"),
           rel=1e-12)


@pytest.mark.slow
def test_cluster_report_equals_in_memory_float64_float32_and_multilabel(client, rng):
    H, y, W, b = _data(rng)
    _close(sknc.nc_report(da.from_array(H, chunks=(350, 24)), y, W, b), sknc.nc_report(H, y, W, b), rel=1e-12)
    # the features' own ranks: each chunk's d x d scatter, merged about the shifts in the tree
    ranked = sknc.nc_report(da.from_array(H, chunks=(350, 24)), y, W, b, feature_rank=True, ncc_accuracy=True)
    assert "features_effective_rank" in ranked.index and "ncc_accuracy" in ranked.index
    _close(ranked, sknc.nc_report(H, y, W, b, feature_rank=True, ncc_accuracy=True), rel=1e-12)
    H32 = H.astype(np.float32)
    _close(sknc.nc_report(da.from_array(H32, chunks=(500, 24)), y, W, b), sknc.nc_report(H32, y, W, b), rel=1e-9)
    Y = np.zeros((len(y), 4), dtype=int)
    Y[np.arange(len(y)), y % 4] = 1
    Y[:600, (y[:600] + 1) % 4] = 1  # pairs
    _close(sknc.nc_report(da.from_array(H, chunks=(450, 24)), da.from_array(Y, chunks=(450, 4))),
           sknc.nc_report(H, Y), rel=1e-12)
    # no single-label sample: class means estimated from the label sets, W with the top-|S| agreement
    rows = np.arange(len(y))
    Y = np.zeros((len(y), 4), dtype=int)
    Y[rows, y % 4] = 1
    Y[rows, (y + 1 + rows % 2) % 4] = 1  # every pair of the four classes, no class alone
    W4 = rng.standard_normal((4, H.shape[1]))
    ref = sknc.nc_report(H, Y, W4)
    assert ref["class_means_estimated"] and np.isfinite(ref["nc1"]) and np.isfinite(ref["nc4"])
    _close(sknc.nc_report(da.from_array(H, chunks=(450, 24)), da.from_array(Y, chunks=(450, 4)), W4), ref,
           rel=1e-12)


@pytest.mark.slow
def test_cluster_accumulator_passes_and_the_client_keeps_only_the_state(client, rng):
    psutil = pytest.importorskip("psutil")
    H, y, W, b = _data(rng)
    acc = sknc.NCAccumulator(mode="two_pass", per_class=True).update(da.from_array(H, chunks=(600, 24)), y)
    acc.update_second_pass(da.from_array(H, chunks=(900, 24)), da.from_array(y, chunks=900), W, b)
    _close(acc.report(W, b), sknc.nc_report(H, y, W, b), rel=1e-12)
    # the per-class tables of the map-reduced state are those of the in-memory data
    np.testing.assert_allclose(acc.cdnv_matrix().to_numpy(), sknc.metrics.cdnv_matrix(H, y).to_numpy(), rtol=1e-12)
    table = acc.class_variability()
    assert "nc1" in table.columns  # per_class: each class's share of NC1, from the map-reduced second pass
    np.testing.assert_allclose(table.to_numpy(), sknc.metrics.class_variability(H, y).to_numpy(), rtol=1e-10)
    # a 160 MB array generated on the workers: the client holds the K x d state, never a chunk
    n, d, k = 80_000, 512, 20
    X = da.random.RandomState(0).standard_normal((n, d), chunks=(10_000, d)).astype(np.float32)
    labels = da.random.RandomState(1).randint(0, k, n, chunks=10_000)
    Wk = np.random.default_rng(0).standard_normal((k, d))
    sknc.nc_report(X[:2000], labels[:2000], Wk)  # the first compute's one-time imports
    gc.collect()
    before = psutil.Process().memory_info().rss
    report = sknc.nc_report(X, labels, Wk)
    grown = psutil.Process().memory_info().rss - before
    assert np.isfinite(report["nc1"]) and int(report["n_samples"]) == n
    assert grown < 0.25 * X.nbytes  # < one chunk (20 MB) of the 164 MB plus the client's own noise


def test_merges_leave_their_inputs_alone_and_an_empty_accumulator_is_the_identity(rng):
    H, y, W, b = _data(rng, n=900)
    parts = np.array_split(np.arange(900), 3)
    shards = [sknc.NCAccumulator(mode="two_pass").update(H[p], y[p]) for p in parts]
    before = [s.state_dict()["first"]["sums"].copy() for s in shards]
    merged = shards[0].merge_all(shards[1:])
    for s, sums in zip(shards, before):
        assert np.array_equal(s.state_dict()["first"]["sums"], sums)  # untouched
    seconds = [merged.copy().update_second_pass(H[p], y[p], W, b) for p in parts]
    total = sknc.NCAccumulator().merge(seconds[0])  # an empty accumulator takes a second-pass state
    total = total.merge_all(seconds[1:])
    _close(total.report(W, b), sknc.nc_report(H, y, W, b), rel=1e-12)
    assert sknc.NCAccumulator().merge_all([]).state_dict()["started"] is False


def test_bad_dask_input_is_named(rng):
    H, y, W, b = _data(rng, n=600)
    bad = H.copy()
    bad[450, 3] = np.nan
    with pytest.raises(ValueError, match=r"rows 400 to 599 \(one chunk\): features contain NaN or infinity in 1 row"):
        sknc.nc_report(da.from_array(bad, chunks=(200, 24)), y)
    with pytest.raises(ValueError, match=r"features is empty"):
        sknc.nc_report(da.from_array(H[:0], chunks=(10, 24)), y[:0])
    with pytest.raises(ValueError, match=r"y has 10 rows but the features have 600"):
        sknc.nc_report(da.from_array(H, chunks=(200, 24)), y[:10])
    with pytest.raises(ValueError, match=r"at least 2 are needed"):
        sknc.nc_report(da.from_array(H, chunks=(200, 24)), np.zeros(600, int))
