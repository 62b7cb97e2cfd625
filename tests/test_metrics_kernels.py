"""The compiled loops of the passes (numba) against numpy, and reports with and without them."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import sknc

pytest.importorskip("numba")

from sknc.metrics import _kernels  # noqa: E402


DECISIONS = {"nc4", "ncc_agreement"}  # counts of decisions, not smooth functions of the data


@pytest.fixture
def kern():
    with _kernels.forced(True):
        loops = _kernels.kernels()
    assert loops is not None
    return loops


def test_group_sums_are_float64_sums_of_the_float32_rows(rng, kern):
    x = (1e4 + rng.standard_normal((700, 33))).astype(np.float32)  # far from the origin: float32 sums would drift
    ids = rng.integers(0, 6, 700)
    out = np.zeros((6, 33))
    kern.group_sums(x, ids, out)
    expected = np.zeros((6, 33))
    for i, g in enumerate(ids):  # row by row, in order, in float64
        expected[g] += x[i].astype(np.float64)
    np.testing.assert_array_equal(out, expected)
    # a strided view (a column slice) is summed the same way
    out2 = np.zeros((6, 20))
    kern.group_sums(x[:, 5:25], ids, out2)
    np.testing.assert_array_equal(out2, expected[:, 5:25])


def test_stream_first_pass_loops_centre_sum_and_square_in_float64(rng, kern):
    x = (50 + rng.standard_normal((500, 40))).astype(np.float32)
    ids = rng.integers(0, 5, 500)
    shift = x[[np.flatnonzero(ids == g)[0] for g in range(5)]].astype(np.float64)  # a sample of each group
    centred = x.astype(np.float64) - shift[ids]
    assert kern.centred_abs_max(x, shift, ids) == np.abs(centred).max()
    sums, sq = np.zeros((5, 40)), np.zeros(5)
    kern.centre_sum_square(x, shift, ids, 0.5, sums, sq)
    expected = np.zeros((5, 40))
    np.add.at(expected, ids, centred)
    np.testing.assert_allclose(sums, expected, rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(sq, np.bincount(ids, weights=((0.5 * centred) ** 2).sum(axis=1)), rtol=1e-13)
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[123, 7] = bad
        assert np.isnan(kern.centred_abs_max(y, shift, ids))


def test_centre_square_writes_the_scaled_centred_rows_and_float64_squares(rng, kern):
    x = rng.standard_normal((300, 70)).astype(np.float32)
    table = rng.standard_normal((4, 70)).astype(np.float32)
    cls = rng.integers(0, 4, 300)
    out = np.empty_like(x)
    within = np.zeros(4)
    top = kern.centre_square(x, table * np.float32(0.25), cls, np.float32(0.25), out, within)
    # the table comes scaled; scaling by a power of two is exact, so this is the scaled float32 difference
    expected = (x - table[cls]) * np.float32(0.25)
    np.testing.assert_array_equal(out, expected)
    sq = (expected.astype(np.float64) ** 2).sum(axis=1)
    np.testing.assert_allclose(within, np.bincount(cls, weights=sq, minlength=4), rtol=1e-13)
    assert top == pytest.approx(sq.max(), rel=1e-13)
    x[17, 3] = np.nan  # a NaN row makes the largest square NaN, wherever it sits
    assert np.isnan(kern.centre_square(x, table, cls, np.float32(1.0), out, np.zeros(4)))


def test_agreement_counts_like_numpy_argmin_and_argmax_with_ties(rng, kern):
    n, r, k = 500, 6, 7
    both = rng.integers(-3, 4, (n, r + k)).astype(np.float32)  # small integers: many exact ties
    ncc = rng.integers(-3, 4, (n, k)).astype(np.float32)
    dist = rng.integers(0, 3, (k, k)).astype(np.float32)
    logits = rng.integers(-2, 3, (k, k)).astype(np.float32)
    cls = rng.integers(0, k, n)
    colsq = np.zeros(r)
    got = kern.agreement(both, r, ncc, dist, logits, cls, colsq)
    expected = np.count_nonzero(np.argmin(ncc + dist[cls], axis=1) == np.argmax(both[:, r:] + logits[cls], axis=1))
    assert got == expected
    np.testing.assert_allclose(colsq, (both[:, :r].astype(np.float64) ** 2).sum(axis=0), rtol=1e-14)
    colsq2 = np.zeros(r)
    kern.column_squares(both, r, colsq2)
    np.testing.assert_array_equal(colsq2, colsq)


@pytest.mark.parametrize("k", [10, 40])
def test_reports_with_and_without_the_compiled_loops_agree(rng, k):
    # K=40: the second pass also runs on several threads with the loops (not without them)
    n, d = 6000, 512  # above the size where the passes split their row blocks over threads
    means = 4 * rng.standard_normal((k, d))
    y = rng.integers(0, k, n)
    H = (means[y] + rng.standard_normal((n, d))).astype(np.float32)
    W = means + 0.3 * rng.standard_normal((k, d))
    b = 0.2 * rng.standard_normal(k)
    with _kernels.forced(True):
        compiled = sknc.nc_report(H, y, W, b)
    with _kernels.forced(False):
        plain = sknc.nc_report(H, y, W, b)
    truth = sknc.nc_report(H.astype(np.float64), y, W, b)  # the float64 path, for the stored values
    within = {"nc1", "nc1_trace_quotient", "cdnv"}  # read float32 products of the second pass
    for key in truth.index:
        if key in DECISIONS:  # float32 scores: a near-tie may decide otherwise than float64 arithmetic
            assert compiled[key] == pytest.approx(truth[key], abs=3 / n), key
            continue
        rel = 1e-8 if key in within else 1e-12
        assert compiled[key] == pytest.approx(truth[key], rel=rel, abs=1e-14, nan_ok=True), key
        assert plain[key] == pytest.approx(truth[key], rel=rel, abs=1e-14, nan_ok=True), key
    assert compiled["ncc_agreement"] == plain["ncc_agreement"]  # the same float32 scores and tie rule


def test_near_collapse_far_from_the_origin_with_the_compiled_loops(rng):
    # the reliability cases: tiny within-class spread, features far from the origin, float32
    n, d, k = 8000, 300, 8
    means = rng.standard_normal((k, d))
    y = rng.integers(0, k, n)
    H64 = 1e3 + means[y] + 1e-3 * rng.standard_normal((n, d))
    H = H64.astype(np.float32)
    with _kernels.forced(True):
        got = sknc.nc1(H, y)
    truth = sknc.nc1(H.astype(np.float64), y)
    assert got == pytest.approx(truth, rel=1e-6)


def test_nonfinite_rows_are_named_with_the_compiled_loops(rng):
    H = rng.standard_normal((5000, 500)).astype(np.float32)
    y = rng.integers(0, 5, 5000)
    H[[3, 4000], 7] = np.inf
    with _kernels.forced(True), pytest.raises(ValueError, match="2 row"):
        sknc.nc_report(H, y)
    acc = sknc.NCAccumulator(mode="two_pass")
    good = rng.standard_normal((400, 20)).astype(np.float32)
    yy = rng.integers(0, 4, 400)
    acc.update(good, yy)
    bad = good.copy()
    bad[9, 0] = np.nan
    with _kernels.forced(True), pytest.raises(ValueError, match="1 row"):
        acc.update_second_pass(bad, yy)


def test_numba_is_loaded_only_by_a_float32_pass():
    code = (
        "import sys, numpy as np, sknc; H = np.random.default_rng(0).standard_normal((60, 4)); y = np.arange(60) % 3; "
        "sknc.nc1(H, y); print('numba' in sys.modules); "
        "sknc.nc1(H.astype(np.float32), y); print('numba' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k != "SKNC_NUMBA"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["False", "True"]  # float64 features: numpy only; float32: the loops


def test_a_numba_that_cannot_compile_leaves_the_numpy_path_with_one_warning(rng, monkeypatch):
    def broken(cache=True):
        raise RuntimeError("no LLVM target here")

    monkeypatch.setattr(_kernels, "_build", broken)
    monkeypatch.setattr(_kernels, "_BUILT", None)
    with pytest.warns(RuntimeWarning, match="no LLVM target here"), _kernels.forced(True):  # also under SKNC_NUMBA=0
        assert _kernels.kernels() is None
    H = rng.standard_normal((300, 8)).astype(np.float32)
    y = rng.integers(0, 3, 300)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once, not per report
        got = sknc.nc_report(H, y)
    with _kernels.forced(False):
        expected = sknc.nc_report(H, y)
    for key in expected.index:
        assert got[key] == pytest.approx(expected[key], rel=1e-12, nan_ok=True), key


def test_environment_switch_turns_the_loops_off(monkeypatch):
    monkeypatch.setenv("SKNC_NUMBA", "0")
    assert _kernels.kernels() is None
    monkeypatch.setenv("SKNC_NUMBA", "1")
    assert _kernels.kernels() is not None


@pytest.mark.parametrize("layout", ["fortran", "column_slice", "read_only_memmap"])
def test_strided_or_read_only_float32_features_give_the_contiguous_report(rng, tmp_path, layout):
    n, d, k = 5000, 450, 6
    means = 3 * rng.standard_normal((k, d))
    y = rng.integers(0, k, n)
    H = (means[y] + rng.standard_normal((n, d))).astype(np.float32)
    W = means + 0.2 * rng.standard_normal((k, d))
    if layout == "fortran":
        other = np.asfortranarray(H)
    elif layout == "column_slice":
        wide = np.zeros((n, d + 7), dtype=np.float32)
        wide[:, 3 : 3 + d] = H
        other = wide[:, 3 : 3 + d]
    else:  # features saved by an earlier run, mapped read-only
        np.save(tmp_path / "features.npy", H)
        other = np.load(tmp_path / "features.npy", mmap_mode="r")
    assert not other.flags.c_contiguous or not other.flags.writeable
    expected = sknc.nc_report(H, y, W)
    got = sknc.nc_report(other, y, W)
    for key in expected.index:
        assert got[key] == pytest.approx(expected[key], rel=1e-12, nan_ok=True), key


def test_multilabel_float32_report_with_and_without_the_compiled_loops(rng):
    n, d, k = 6000, 400, 5
    Y = np.zeros((n, k), dtype=int)
    Y[np.arange(n), rng.integers(0, k, n)] = 1
    pairs = rng.random(n) < 0.3  # multiplicity-2 rows: left out of NC1, in the tag-wise metrics
    Y[pairs, (np.argmax(Y[pairs], axis=1) + 1) % k] = 1
    means = 3 * rng.standard_normal((k, d))
    H = ((Y @ means) / Y.sum(axis=1, keepdims=True) + rng.standard_normal((n, d))).astype(np.float32)
    with _kernels.forced(True):
        compiled = sknc.nc_report(H, Y)
    with _kernels.forced(False):
        plain = sknc.nc_report(H, Y)
    truth = sknc.nc_report(H.astype(np.float64), Y)
    for key in truth.index:
        rel = 1e-8 if key in {"nc1", "nc1_trace_quotient", "cdnv"} else 1e-12
        assert compiled[key] == pytest.approx(truth[key], rel=rel, abs=1e-14, nan_ok=True), key
        assert plain[key] == pytest.approx(truth[key], rel=rel, abs=1e-14, nan_ok=True), key


@pytest.mark.parametrize("k", [4, 60])
def test_streams_with_and_without_the_compiled_loops_match_the_in_memory_report(rng, k):
    n, d = 6000, 300
    means = 30 + 3 * rng.standard_normal((k, d))  # away from the origin: the shifts matter
    y = rng.integers(0, k, n)
    H = (means[y] + rng.standard_normal((n, d))).astype(np.float32)
    W = means + 0.2 * rng.standard_normal((k, d))
    truth = sknc.nc_report(H.astype(np.float64), y, W)
    in_memory = sknc.nc_report(H, y, W)
    for flag in (True, False):
        with _kernels.forced(flag):
            acc = sknc.NCAccumulator()
            for s in range(0, n, 1000):
                acc.update(H[s : s + 1000], y[s : s + 1000])
            for s in range(0, n, 1000):
                acc.update_second_pass(H[s : s + 1000], y[s : s + 1000], W)
            got = acc.report(W)
        for key in truth.index:
            if key in DECISIONS:  # float32 products decide as the in-memory float32 report does
                assert got[key] == in_memory[key], (flag, key)
                assert got[key] == pytest.approx(truth[key], abs=3 / n), (flag, key)  # a near-tie may differ
                continue
            rel = 1e-8 if key in {"nc1", "nc1_trace_quotient", "cdnv"} else 1e-10
            assert got[key] == pytest.approx(truth[key], rel=rel, abs=1e-14, nan_ok=True), (flag, key)


def test_a_bad_batch_leaves_the_stream_unchanged_with_the_compiled_loops(rng):
    H = rng.standard_normal((900, 30)).astype(np.float32)
    y = rng.integers(0, 3, 900)
    with _kernels.forced(True):
        acc = sknc.NCAccumulator()
        acc.update(H[:600], y[:600])
        bad = H[600:].copy()
        bad[250, 4] = np.inf  # in the last row block of the batch
        with pytest.raises(ValueError, match="1 row"):
            acc.update(bad, y[600:])
        acc.update(H[600:], y[600:])
        with pytest.warns(sknc.NCWarning, match="nc1"):  # one pass: NC1 needs the second
            got = acc.report()
    expected = sknc.nc_report(H.astype(np.float64), y)
    for key in ("nc1_trace_quotient", "cdnv", "nc2_h"):
        assert got[key] == pytest.approx(expected[key], rel=1e-9), key
