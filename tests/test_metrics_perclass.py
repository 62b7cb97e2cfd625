"""Per-class NC (sknc.metrics._perclass) against direct loops and the report's averages."""

import numpy as np
import pytest

import sknc
from sknc.metrics import cdnv_matrix, class_variability


def _imbalanced(rng, k=4, d=7):
    sizes = np.array([10, 25, 40, 60])[:k]
    y = np.repeat(np.arange(k), sizes)
    M = 2 * rng.standard_normal((k, d))
    spread = np.linspace(0.05, 0.6, k)[y][:, None]
    return M[y] + spread * rng.standard_normal((len(y), d)) + 50.0, y


def test_class_variability_against_a_direct_computation(rng):
    H, y = _imbalanced(rng)
    k = 4
    table = class_variability(H, y)
    means = np.stack([H[y == c].mean(0) for c in range(k)])
    centred = means - means.mean(0)
    sigma_b_pinv = np.linalg.pinv(centred.T @ centred / k, rcond=1e-10)
    for c in range(k):
        R = H[y == c] - means[c]
        sigma_k = R.T @ R / len(R)
        assert table.loc[c, "n_samples"] == len(R)
        assert table.loc[c, "within_variance"] == pytest.approx(np.trace(sigma_k), rel=1e-10)
        assert table.loc[c, "nc1"] == pytest.approx(np.trace(sigma_k @ sigma_b_pinv) / k, rel=1e-8)
        assert table.loc[c, "relative_variability"] == pytest.approx(
            np.trace(sigma_k) / np.trace(centred.T @ centred / k), rel=1e-10)
    weights = table["n_samples"] / table["n_samples"].sum()
    assert (weights * table["nc1"]).sum() == pytest.approx(sknc.nc1(H, y), rel=1e-9)
    assert (weights * table["relative_variability"]).sum() == pytest.approx(sknc.nc1_trace_quotient(H, y), rel=1e-10)


def test_cdnv_matrix_against_a_pairwise_loop(rng):
    H, y = _imbalanced(rng)
    labels = np.array(["a", "b", "c", "d"])[y]
    matrix = cdnv_matrix(H, labels, power=1.5)
    assert list(matrix.index) == ["a", "b", "c", "d"] and np.isnan(np.diag(matrix.to_numpy())).all()
    means = {c: H[labels == c].mean(0) for c in "abcd"}
    var = {c: np.mean(np.sum((H[labels == c] - means[c]) ** 2, axis=1)) for c in "abcd"}
    for a in "abcd":
        for b in "abcd":
            if a != b:
                expected = (var[a] + var[b]) / (2 * np.sum((means[a] - means[b]) ** 2) ** 1.5)
                assert matrix.loc[a, b] == pytest.approx(expected, rel=1e-10), (a, b)
    assert np.nanmean(matrix.to_numpy()) == pytest.approx(sknc.cdnv(H, labels, power=1.5), rel=1e-12)


def test_multilabel_uses_single_label_samples_and_says_why_not_under_the_estimate(rng):
    k, d = 3, 6
    M = sknc.simplex_etf(k, d, random_state=0)
    Y = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]] * 10)
    H = Y @ M / Y.sum(1, keepdims=True) + 0.05 * rng.standard_normal((len(Y), d))
    table = class_variability(H, Y)
    single = Y.sum(1) == 1
    direct = class_variability(H[single], Y[single].argmax(1))
    assert np.allclose(table.to_numpy(dtype=float), direct.to_numpy(dtype=float), rtol=1e-10)
    pairs_only = np.array([[1, 1, 0], [0, 1, 1], [1, 0, 1]] * 10)
    with pytest.raises(sknc.UndefinedMetricError, match="class_means='singletons'"):
        class_variability(rng.standard_normal((30, d)), pairs_only)


def _brute_ncc_accuracy(H, y):
    classes = np.unique(y)
    means = np.stack([H[y == c].astype(np.float64).mean(0) for c in classes])
    nearest = classes[np.argmin(((H[:, None, :].astype(np.float64) - means[None]) ** 2).sum(-1), axis=1)]
    return float(np.mean(nearest == y))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ncc_accuracy_against_brute_force_nearest_mean_in_memory_and_streamed(rng, dtype):
    import pickle

    y = np.repeat(np.arange(5), 40)
    H = (rng.standard_normal((5, 8))[y] + 0.9 * rng.standard_normal((200, 8)) + 1e3).astype(dtype)
    expected = _brute_ncc_accuracy(H, y)
    assert 0.5 < expected < 1.0  # a case where the count matters
    assert sknc.nc_report(H, y, ncc_accuracy=True)["ncc_accuracy"] == pytest.approx(expected, abs=1e-12)
    assert "ncc_accuracy" not in sknc.nc_report(H, y).index  # opt-in: one more read
    parts = np.array_split(rng.permutation(200), 4)
    shards = []
    for half in (parts[:2], parts[2:]):
        acc = sknc.NCAccumulator(mode="two_pass", ncc_accuracy=True)
        for p in half:
            acc.update(H[p], y[p])
        shards.append(acc)
    merged = shards[0].merge_all(shards[1:])
    copies = [merged.copy(), pickle.loads(pickle.dumps(merged))]
    for copy, half in zip(copies, (parts[:2], parts[2:])):
        for p in half:
            copy.update_second_pass(H[p], y[p])
    report = copies[0].merge_all([copies[1]]).report()
    assert report["ncc_accuracy"] == pytest.approx(expected, abs=1e-12)
    with pytest.warns(sknc.NCWarning, match="needs the second pass"):
        assert np.isnan(merged.report()["ncc_accuracy"])


def test_ncc_accuracy_at_every_layer_of_a_model():
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 30)
    X = (rng.standard_normal((3, 6))[y] + rng.standard_normal((90, 6))).astype(np.float32)
    frame = sknc.model_nc_report(model, X, y, layers=["0", "1", "2"], ncc_accuracy=True)
    with torch.no_grad():
        outputs = {"0": model[0](torch.as_tensor(X))}
        outputs["1"] = model[1](outputs["0"])
        outputs["2"] = model[2](outputs["1"])
    for layer, out in outputs.items():
        assert frame.loc[layer, "ncc_accuracy"] == pytest.approx(_brute_ncc_accuracy(out.numpy(), y), abs=1e-12)


def test_cdnv_matrix_leaves_coinciding_means_nan_with_a_warning(rng):
    y = np.repeat(np.arange(3), 20)
    means = np.array([[0.0, 0, 0], [4.0, 0, 0], [4.0, 0, 0]])
    H = means[y] + 0.1 * rng.standard_normal((60, 3))
    H -= np.array([H[y == c].mean(0) for c in range(3)])[y] - means[y]  # sample means exactly as given
    with pytest.warns(sknc.NCWarning, match="coincide"):
        matrix = cdnv_matrix(H, y)
    assert np.isnan(matrix.loc[1, 2]) and np.isnan(matrix.loc[2, 1])
    assert np.isfinite(matrix.loc[0, 1]) and np.isfinite(matrix.loc[0, 2])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_accumulators_tables_equal_the_in_memory_ones_streamed_merged_and_pickled(rng, dtype):
    import pickle

    H, y = _imbalanced(rng)
    H = H.astype(dtype)
    labels = np.array(["a", "b", "c", "d"])[y]
    order = rng.permutation(len(y))
    parts = np.array_split(order, 3)
    shards = [sknc.NCAccumulator(mode="two_pass").update(H[p], labels[p]) for p in parts]
    merged = pickle.loads(pickle.dumps(shards[0].merge_all(shards[1:])))
    matrix, table = cdnv_matrix(H, labels), class_variability(H, labels)
    rel = 1e-6 if dtype == np.float32 else 1e-10  # the first pass's within-class sums of float32 rows
    for acc in (merged, shards[0].merge_all(shards[1:])):
        got = acc.cdnv_matrix()
        assert list(got.index) == ["a", "b", "c", "d"] and list(got.columns) == list(got.index)
        np.testing.assert_allclose(got.to_numpy(), matrix.to_numpy(), rtol=rel)
        small = acc.class_variability()
        assert list(small.columns) == ["n_samples", "within_variance", "relative_variability"]
        np.testing.assert_allclose(small.to_numpy(), table[small.columns].to_numpy(), rtol=rel)
    # after the second pass the within-class sums come from it: the same tables
    for p in parts:
        merged.update_second_pass(H[p], labels[p])
    np.testing.assert_allclose(merged.cdnv_matrix().to_numpy(), matrix.to_numpy(), rtol=rel)
    weights = table["n_samples"] / table["n_samples"].sum()
    assert (weights * merged.class_variability()["relative_variability"]).sum() == pytest.approx(
        sknc.nc1_trace_quotient(H, labels), rel=rel)
    assert merged.cdnv_matrix(power=2.0).loc["a", "b"] == pytest.approx(
        cdnv_matrix(H, labels, power=2.0).loc["a", "b"], rel=rel)


def test_the_accumulators_tables_refuse_clearly(rng):
    with pytest.raises(ValueError, match="accumulator is empty"):
        sknc.NCAccumulator().cdnv_matrix()
    with pytest.raises(ValueError, match="power"):
        sknc.NCAccumulator().update(*_imbalanced(rng)).cdnv_matrix(power=-1)
    Y = np.zeros((30, 3), dtype=int)
    Y[np.arange(30), np.arange(30) % 3] = 1
    Y[np.arange(30), (np.arange(30) + 1) % 3] = 1  # two labels per sample: the class means are estimated
    H = rng.standard_normal((30, 3)) + 3 * Y
    acc = sknc.NCAccumulator().update(H, Y)
    with pytest.raises(ValueError, match="several classes"):
        acc.class_variability()
    np.testing.assert_allclose(acc.cdnv_matrix().to_numpy(), cdnv_matrix(H, Y).to_numpy(), rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_per_class_nc1_from_the_accumulators_second_pass(rng, dtype):
    import pickle

    H, y = _imbalanced(rng)
    H = H.astype(dtype)
    table = class_variability(H, y)
    parts = np.array_split(rng.permutation(len(y)), 3)
    shards = [sknc.NCAccumulator(mode="two_pass", per_class=True).update(H[p], y[p]) for p in parts]
    first = shards[0].merge_all(shards[1:])
    with pytest.warns(sknc.NCWarning, match="nc1"):  # asked for, before the second pass: NaN with the reason
        early = first.class_variability()
    assert early["nc1"].isna().all() and np.isfinite(early["within_variance"]).all()
    # the sharded second pass: every shard from a copy of the merged first pass, then merged (and pickled)
    seconds = [pickle.loads(pickle.dumps(first)).update_second_pass(H[p], y[p]) for p in parts]
    done = pickle.loads(pickle.dumps(seconds[0].merge_all(seconds[1:])))
    got = done.class_variability()
    assert list(got.columns) == list(table.columns)
    rel = 1e-6 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(got.to_numpy(), table.to_numpy(), rtol=rel)
    weights = got["n_samples"] / got["n_samples"].sum()
    assert (weights * got["nc1"]).sum() == pytest.approx(done.report()["nc1"], rel=1e-10)
    # without per_class the state stays K x d: no nc1 column
    assert "nc1" not in sknc.NCAccumulator().update(H, y).update_second_pass(H, y).class_variability()


def test_per_class_nc1_follows_the_accumulators_conventions(rng):
    H, y = _imbalanced(rng)
    acc = sknc.NCAccumulator(mode="two_pass", per_class=True, global_mean="sample", between="sample")
    acc.update(H, y).update_second_pass(H, y)
    expected = class_variability(H, y, global_mean="sample", between="sample")
    np.testing.assert_allclose(acc.class_variability().to_numpy(), expected.to_numpy(), rtol=1e-9)
    assert not np.allclose(expected["nc1"], class_variability(H, y)["nc1"])  # the convention matters here


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_tiled_cdnv_matrix_equals_the_whole_one(rng, dtype):
    k, d = 23, 6
    y = np.repeat(np.arange(k), 6)
    H = (5.0 + rng.standard_normal((k, d))[y] + 0.3 * rng.standard_normal((len(y), d))).astype(dtype)
    whole = cdnv_matrix(H, y)
    tiled = cdnv_matrix(H, y, tile_bytes=8 * 5 * 5)  # 5-class tiles, ragged at the end
    np.testing.assert_allclose(tiled.to_numpy(), whole.to_numpy(), rtol=1e-10)
    assert np.isnan(np.diag(tiled.to_numpy())).all()
    acc = sknc.NCAccumulator().update(H, y)
    # the accumulator's first-pass variances against the in-memory second pass's: float32 rows are squared in
    # float32 there without the compiled loops (SKNC_NUMBA=0), to ~1e-8 relative
    np.testing.assert_allclose(acc.cdnv_matrix(tile_bytes=8 * 4 * 4).to_numpy(), whole.to_numpy(),
                               rtol=1e-6 if dtype == np.float32 else 1e-10)
    np.testing.assert_allclose(cdnv_matrix(H, y, power=2.0, tile_bytes=8 * 5 * 5).to_numpy(),
                               cdnv_matrix(H, y, power=2.0).to_numpy(), rtol=1e-10)


def test_coinciding_means_in_the_tiled_matrix_are_nan_and_named(rng):
    k, d = 12, 5
    y = np.repeat(np.arange(k), 8)
    M = 3 * rng.standard_normal((k, d))
    M[9] = M[4]  # classes 4 and 9 share a mean (different tiles of 5 classes)
    H = M[y] + 0.1 * rng.standard_normal((len(y), d))
    H[y == 9] = H[y == 4][rng.permutation(8)]  # the same points, so the same mean
    with pytest.warns(sknc.NCWarning, match=r"1 pair\(s\) whose class means coincide \(first: 4 and 9\)"):
        tiled = cdnv_matrix(H, y, tile_bytes=8 * 5 * 5)
    with pytest.warns(sknc.NCWarning, match="first: 4 and 9"):
        whole = cdnv_matrix(H, y)
    assert np.isnan(tiled.loc[4, 9]) and np.isnan(tiled.loc[9, 4])
    np.testing.assert_allclose(tiled.to_numpy(), whole.to_numpy(), rtol=1e-10)
