"""NCAccumulator: streamed, merged and two-pass reports equal the in-memory one; bad streams are refused."""

import pickle
import warnings

import numpy as np
import pytest
import torch

import sknc
from sknc.metrics import _accumulator

from .conftest import etf_rows


def _assert_reports_equal(a, b, skip=(), rel=1e-9):
    assert set(a.index) - set(skip) == set(b.index) - set(skip)
    for key in a.index:
        if key in skip:
            continue
        assert a[key] == pytest.approx(b[key], rel=rel, abs=1e-12), key


def _data(rng, k=6, d=10, n=900, offset=50.0):
    y = rng.integers(0, k, n)
    H = offset + 3 * rng.standard_normal((k, d))[y] + 1e-2 * rng.standard_normal((n, d))
    W = rng.standard_normal((k, d))
    b = rng.standard_normal(k)
    return H, y, W, b


@pytest.mark.parametrize("mode", ["one_pass", "two_pass"])
def test_streamed_merged_and_second_pass_equal_in_memory(rng, mode):
    H, y, W, b = _data(rng)
    full = sknc.nc_report(H, y, W, b)
    parts = np.array_split(rng.permutation(len(y)), 9)
    shards = [sknc.NCAccumulator(mode=mode) for _ in range(3)]
    for i, p in enumerate(parts):
        shards[i % 3].update(H[p], y[p])
    acc = shards[0].merge(shards[1]).merge(shards[2])
    for p in parts:
        acc.update_second_pass(H[p], y[p], W, b)
    _assert_reports_equal(full, acc.report(W, b))


def test_one_pass_mode_gives_nc1_without_the_second_pass(rng):
    H, y, W, b = _data(rng)
    full = sknc.nc_report(H, y, W, b)
    acc = sknc.NCAccumulator(mode="one_pass")
    for p in np.array_split(np.arange(len(y)), 5):
        acc.update(H[p], y[p])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rep = acc.report(W, b)
    _assert_reports_equal(full, rep, skip=("nc4", "ncc_agreement"))
    assert np.isnan(rep["nc4"])
    assert any("second pass" in str(w.message) for w in caught if issubclass(w.category, sknc.NCWarning))


def test_two_pass_mode_waits_for_the_second_pass_with_a_warning(rng):
    H, y, W, b = _data(rng, d=64)  # d > 2K: 'auto' picks two passes
    acc = sknc.NCAccumulator()
    acc.update(H, y)
    assert acc.mode_ == "two_pass"
    with pytest.warns(sknc.NCWarning, match="nc1.*second pass"):
        rep = acc.report(W, b)
    assert np.isnan(rep["nc1"]) and np.isfinite(rep["nc2_h"]) and np.isfinite(rep["cdnv"])
    acc.update_second_pass(H, y, W, b)
    _assert_reports_equal(sknc.nc_report(H, y, W, b), acc.report(W, b))


def test_sharded_two_pass_workflow(rng):
    # merge the first passes, give every shard a copy, second pass per shard, merge the second passes
    H, y, W, b = _data(rng, d=32)
    halves = np.array_split(np.arange(len(y)), 2)
    first = [sknc.NCAccumulator(mode="two_pass").update(H[p], y[p]) for p in halves]
    merged = first[0].merge(first[1])
    copies = [pickle.loads(pickle.dumps(merged)) for _ in halves]
    for acc, p in zip(copies, halves):
        acc.update_second_pass(H[p], y[p], W, b)
    total = copies[0].merge(copies[1])
    _assert_reports_equal(sknc.nc_report(H, y, W, b), total.report(W, b))


def test_multilabel_stream_with_label_free_rows(rng):
    k, d = 4, 8
    M = etf_rows(k, d, 2.0, rng)
    Y = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [1, 1, 0, 0], [0, 0, 1, 1],
                  [0, 0, 0, 0]] * 20)
    H = 1.6 * (Y @ M) / np.maximum(Y.sum(1, keepdims=True), 1) + 0.05 * rng.standard_normal((len(Y), d))
    full = sknc.nc_report(H, Y, M)
    acc = sknc.NCAccumulator(mode="one_pass")
    for p in np.array_split(rng.permutation(len(Y)), 4):
        acc.update(torch.as_tensor(H[p]), torch.as_tensor(Y[p]))
    for p in np.array_split(np.arange(len(Y)), 3):
        acc.update_second_pass(H[p], Y[p], M)
    _assert_reports_equal(full, acc.report(M))


def test_float32_stream_matches_float64(rng):
    H, y, W, b = _data(rng, d=40)
    H32 = H.astype(np.float32)
    full = sknc.nc_report(H32.astype(np.float64), y, W, b)
    acc = sknc.NCAccumulator()
    for p in np.array_split(np.arange(len(y)), 4):
        acc.update(H32[p], y[p])
    for p in np.array_split(np.arange(len(y)), 4):
        acc.update_second_pass(H32[p], y[p], W, b)
    _assert_reports_equal(full, acc.report(W, b), rel=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_plans_decomposition_serves_the_report_only_while_the_means_stay(rng, dtype):
    H, y, W, b = _data(rng, d=40)
    H = H.astype(dtype)
    half = len(y) // 2
    acc = sknc.NCAccumulator(mode="one_pass").update(H[:half], y[:half])
    _assert_reports_equal(sknc.nc_report(H[:half], y[:half]), acc.report(), rel=1e-9)  # fills the cache
    acc.update(H[half:], y[half:])  # new rows move the means: the cached decomposition must not be read
    _assert_reports_equal(sknc.nc_report(H, y), acc.report(), rel=1e-9)
    two = sknc.NCAccumulator(mode="two_pass").update(H, y)
    two.update_second_pass(H, y, W, b)  # the plan decomposes the first pass's means
    assert two._first.decompositions  # kept for the report
    _assert_reports_equal(sknc.nc_report(H, y, W, b), two.report(W, b), rel=1e-6 if dtype == np.float32 else 1e-9)
    two.merge(sknc.NCAccumulator(mode="two_pass").update(H[:0], y[:0]))  # an empty merge changes nothing
    _assert_reports_equal(sknc.nc_report(H, y, W, b), two.report(W, b), rel=1e-6 if dtype == np.float32 else 1e-9)


def test_report_conventions_against_the_accumulators_own(rng):
    # few classes: the second pass keeps the whole projected scatter, so any convention works at report time
    H, y, W, b = _data(rng, d=40)
    acc = sknc.NCAccumulator(mode="two_pass", between="sample")
    acc.update(H, y).update_second_pass(H, y)
    for between in ("sample", "class"):
        assert acc.report(between=between)["nc1"] == pytest.approx(sknc.nc1(H, y, between=between), rel=1e-9)
    # many classes: only its own conventions' diagonal is kept
    k = 140
    y2 = np.repeat(np.arange(k), rng.integers(2, 6, k))  # unbalanced: the conventions differ
    H2 = rng.standard_normal((k, 150))[y2] + 0.1 * rng.standard_normal((len(y2), 150))
    acc = sknc.NCAccumulator(mode="two_pass", global_mean="sample")
    acc.update(H2, y2).update_second_pass(H2, y2)
    assert acc.report(global_mean="sample")["nc1"] == pytest.approx(sknc.nc1(H2, y2, global_mean="sample"),
                                                                    rel=1e-7)
    with pytest.warns(sknc.NCWarning, match="own conventions"):
        other = acc.report(between="sample")
    assert np.isnan(other["nc1"]) and np.isfinite(other["nc2_h"])


def test_scale_of_the_stream_does_not_matter(rng):
    H, y, W, b = _data(rng, d=12)
    base = sknc.NCAccumulator(mode="one_pass").update(H, y).report(W, b)
    for scale in (1e-250, 1e250):
        acc = sknc.NCAccumulator(mode="one_pass")
        for p in np.array_split(np.arange(len(y)), 3):
            acc.update(H[p] * scale, y[p])
        rep = acc.report(W, b * scale)
        for key in ("nc1", "nc1_trace_quotient", "cdnv", "nc2_h", "nc3"):
            assert rep[key] == pytest.approx(base[key], rel=1e-9), key


def test_pickled_accumulator_keeps_going(rng):
    H, y, W, b = _data(rng)
    acc = sknc.NCAccumulator(mode="one_pass").update(H[:400], y[:400])
    clone = pickle.loads(pickle.dumps(acc))
    clone.update(H[400:], y[400:])
    _assert_reports_equal(sknc.nc_report(H, y), clone.report(), skip=())


def test_torch_backend_on_the_host_equals_numpy(rng, monkeypatch):
    """The device code path (TorchOps), run on the CPU: statistics stay tensors, results equal numpy's."""
    H, y, W, b = _data(rng, d=40)
    options = dict(mode="two_pass", feature_rank=True, per_class=True)  # the d x d and K x r sums as tensors too
    reference = sknc.NCAccumulator(**options)
    reference.update(H, y).update_second_pass(H, y, W, b)
    expected = reference.report(W, b)

    def keep_tensor(x, name="features"):
        t = x.detach()
        return t, float(torch.finfo(t.dtype).eps)

    monkeypatch.setattr(_accumulator, "as_feature_array", keep_tensor)
    acc = sknc.NCAccumulator(**options)
    T = torch.as_tensor(H)
    for p in np.array_split(np.arange(len(y)), 3):
        acc.update(T[p], y[p])
    assert isinstance(acc._first.sums, torch.Tensor) and isinstance(acc._first.total, torch.Tensor)
    for p in np.array_split(np.arange(len(y)), 3):
        acc.update_second_pass(T[p], y[p], W, b)
    assert isinstance(acc._second.Qk, torch.Tensor)
    clone = pickle.loads(pickle.dumps(acc))  # a device-backed accumulator pickles
    _assert_reports_equal(expected, clone.report(W, b))
    assert "features_effective_rank" in expected.index
    np.testing.assert_allclose(acc.class_variability().to_numpy(), reference.class_variability().to_numpy(),
                               rtol=1e-9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batches_are_reduced_on_the_device(rng):  # pragma: no cover - runs where CUDA is available
    H, y, W, b = _data(rng, d=40)
    acc = sknc.NCAccumulator(mode="two_pass")
    T = torch.as_tensor(H, device="cuda", dtype=torch.float32)
    acc.update(T, y)
    assert acc._first.sums.device.type == "cuda"
    acc.update_second_pass(T, y, W, b)
    _assert_reports_equal(sknc.nc_report(H.astype(np.float32), y, W, b), acc.report(W, b), rel=1e-5)


# ------------------------------------------------------------------------------ bad streams
def test_bad_streams_are_refused_with_the_reason(rng):
    acc = sknc.NCAccumulator()
    with pytest.raises(ValueError, match="empty"):
        acc.report()
    acc.update(np.ones((2, 3)), [0, 1])
    with pytest.raises(ValueError, match="earlier batches had 3"):
        acc.update(np.ones((2, 4)), [0, 1])
    with pytest.raises(ValueError, match="NaN"):
        acc.update(np.full((2, 3), np.nan), [0, 1])
    with pytest.raises(TypeError, match="string labels but earlier batches had number labels"):
        acc.update(np.ones((2, 3)), ["0", "1"])
    with pytest.raises(TypeError, match="merge an NCAccumulator"):
        acc.merge(object())
    with pytest.raises(ValueError, match="indicator"):
        acc.update(np.ones((2, 3)), np.array([[1, 0], [0, 2]]))
    with pytest.raises(ValueError, match="mode must be one of"):
        sknc.NCAccumulator(mode="fast").update(np.ones((2, 3)), [0, 1])


def test_a_failed_batch_leaves_the_accumulator_unchanged(rng):
    H, y, *_ = _data(rng)
    acc = sknc.NCAccumulator(mode="one_pass").update(H[:300], y[:300])
    before = acc.report()
    bad = H[300:400].copy()
    bad[-1, 0] = np.nan  # in the last row, after the earlier rows' groups were seen
    labels = y[300:400].copy()
    labels[-1] = 99  # and a new class
    with pytest.raises(ValueError, match="NaN"):
        acc.update(bad, labels)
    _assert_reports_equal(before, acc.report())


def test_second_pass_misuse_is_explained(rng):
    H, y, W, b = _data(rng)
    acc = sknc.NCAccumulator(mode="two_pass").update(H, y)
    acc.update_second_pass(H[:100], y[:100], W, b)
    with pytest.raises(ValueError, match="same W and b"):
        acc.update_second_pass(H[100:200], y[100:200], 2 * W, b)
    with pytest.raises(ValueError, match="first pass only"):
        acc.update(H, y)
    with pytest.raises(ValueError, match="feed the same data to both passes"):
        acc.report(W, b)
    with pytest.raises(ValueError, match="never seen in the first pass"):
        acc.update_second_pass(H[:2], [77, 78], W, b)


# ------------------------------------------------------------------------ issue 24: no silent numbers
def _two_sources(rng, dtype, offset=0.0):
    y = np.repeat(np.arange(3), 200)
    M = etf_rows(3, 16, 3.0, rng)
    first = (offset + M[y] + rng.standard_normal((600, 16))).astype(dtype)
    other = (offset + M[y] + rng.standard_normal((600, 16))).astype(dtype)  # same distribution, other draws
    return first, other, y, M


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_w", [True, False])
def test_a_second_pass_over_other_rows_is_named_not_mixed_in(rng, dtype, with_w):
    # nc1 read 1.62 where either data set alone gives 0.057 or 13.4
    first, other, y, M = _two_sources(rng, dtype)
    W = M if with_w else None
    parts = np.array_split(np.arange(600), 5)

    def run(second, strict=False):
        acc = sknc.NCAccumulator(mode="two_pass", strict=strict)
        for p in parts:
            acc.update(first[p], y[p])
        for p in parts:
            acc.update_second_pass(second[p], y[p], W)
        return acc

    same = run(first)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same rows: no warning
        ok = same.report(W)
    _assert_reports_equal(ok, sknc.nc_report(first, y, W), rel=1e-6 if dtype == np.float32 else 1e-9)
    with pytest.warns(sknc.NCWarning, match=r"second pass read other rows .* class\(es\) 0, 1, 2 moved"):
        mixed = run(other).report(W)
    assert np.isnan(mixed["nc1"])
    if with_w:
        assert np.isnan(mixed["nc4"]) and np.isnan(mixed["ncc_agreement"])
    alone = sknc.nc_report(first, y, W)  # the keys of the first pass alone are those of the first rows
    for key in ("nc2_h", "cdnv", "nc1_trace_quotient"):
        assert mixed[key] == pytest.approx(alone[key], rel=1e-6), key
    with pytest.raises(ValueError, match="The second pass read other rows"):
        run(other, strict=True).report(W)


@pytest.mark.parametrize("offset", [0.0, 1e4, 1e5])
@pytest.mark.parametrize("spread", [1.0, 1e-3])
def test_the_same_rows_in_another_order_never_raise_the_alarm(rng, offset, spread):
    # float32 rows far from the origin with a tiny spread: rounding must stay below the check's bound
    y = np.repeat(np.arange(5), 800)
    M = etf_rows(5, 64, 3.0, rng)
    H = (offset + M[y] + spread * rng.standard_normal((4000, 64))).astype(np.float32)
    acc = sknc.NCAccumulator(mode="two_pass", strict=True)
    for p in np.array_split(rng.permutation(4000), 7):
        acc.update(H[p], y[p])
    for p in np.array_split(rng.permutation(4000), 3):
        acc.update_second_pass(H[p], y[p], M)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sknc.NCWarning)  # a collapsed spread may leave keys undefined
        acc.report(M)  # strict: raises on a mismatch


def test_warnings_come_once_per_site_and_cause(rng):
    # a 13-fit search printed the same NC warning 76 times
    H, y = np.ones((30, 4)), np.repeat(np.arange(3), 10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(5):
            with warnings.catch_warnings():  # what scikit-learn and skorch do around every fit: resets Python's
                pass
            sknc.nc_report(H, y)
    assert len([w for w in caught if issubclass(w.category, sknc.NCWarning)]) == 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # asked for every one: every one
        for _ in range(3):
            sknc.nc_report(H, y)
    assert len(caught) == 3


# ------------------------------------------------------------------------ issue 21: the state
def _additive(state):
    first = state["first"]
    total = sum(np.asarray(first[k]).nbytes for k in ("counts", "shift", "sums", "sq"))
    second = state.get("second")
    if second is not None:
        total += sum(np.asarray(second[k]).nbytes for k in ("within", "resid", "Q", "counts", "probe_sums"))
    return total


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_round_trips_and_pickles_hold_the_state_only(rng, dtype):
    k, d = 300, 64
    y = np.resize(np.arange(k), 6000)
    H = (rng.standard_normal((k, d))[y] + rng.standard_normal((6000, d))).astype(dtype)
    W = rng.standard_normal((k, d)).astype(dtype)
    acc = sknc.NCAccumulator(mode="two_pass")
    for part in np.array_split(np.arange(6000), 4):
        acc.update(H[part], y[part])
    first = pickle.dumps(acc)
    assert len(first) <= 1.5 * _additive(acc.state_dict()) + 8192
    for part in np.array_split(np.arange(6000), 4)[:2]:
        acc.update_second_pass(H[part], y[part], W)
    state = acc.state_dict()
    # no K x K table and no K x d classifier travels: the additive sums, and the basis every shard shares
    assert len(pickle.dumps(acc)) <= 1.5 * _additive(state) + state["basis"].nbytes + 8192
    twin = pickle.loads(pickle.dumps(acc))
    for part in np.array_split(np.arange(6000), 4)[2:]:  # the restored pass goes on with W given again
        acc.update_second_pass(H[part], y[part], W)
        twin.update_second_pass(H[part], y[part], W)
    _assert_reports_equal(acc.report(W), twin.report(W), rel=1e-12)
    _assert_reports_equal(acc.report(W), sknc.nc_report(H, y, W), rel=1e-6 if dtype == np.float32 else 1e-9)
    with pytest.raises(ValueError, match="same W and b"):
        twin.update_second_pass(H[:10], y[:10], W + 1)
