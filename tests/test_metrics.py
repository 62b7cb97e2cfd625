"""NC metrics against closed forms and independent (loop-based) computations."""

from itertools import combinations

import numpy as np
import pytest
import scipy.linalg
import torch

import sknc
from sknc import metrics

from .conftest import cross_design, etf_rows


# ----------------------------------------------------------------- closed forms
@pytest.mark.parametrize("k,d,r,a", [(4, 6, 3.0, 0.1), (10, 12, 1.5, 0.02), (3, 2, 2.0, 0.5)])
def test_nc1_cdnv_quotient_closed_form_isotropic(rng, k, d, r, a):
    means = etf_rows(k, d, r, rng)
    H, y = cross_design(means, a)
    # Sigma_W = (a^2/d) I, Sigma_B = r^2/(K-1) P on the (K-1)-dim span.
    expected_nc1 = a**2 * (k - 1) ** 2 / (d * r**2 * k)
    assert sknc.nc1(H, y) == pytest.approx(expected_nc1, rel=1e-10)
    assert sknc.cdnv(H, y) == pytest.approx(a**2 * (k - 1) / (2 * r**2 * k), rel=1e-10)
    assert sknc.nc1_trace_quotient(H, y) == pytest.approx(a**2 / r**2, rel=1e-10)
    # The unnormalised convention (Papyan et al. notebook) is K times larger.
    assert sknc.nc1(H, y, normalize=False) == pytest.approx(k * expected_nc1, rel=1e-10)


def test_nc1_closed_form_anisotropic_noise(rng):
    k, d, r = 5, 9, 2.0
    means = etf_rows(k, d, r, rng)
    basis, _ = np.linalg.qr(rng.standard_normal((d, d)))
    scales = rng.uniform(0.01, 0.3, d)
    H, y = cross_design(means, None, basis, scales)
    sigma_w = (basis.T * scales**2) @ basis / d
    centred = means - means.mean(0)
    proj = centred.T @ np.linalg.pinv(centred.T)  # projector on the span of the means
    expected = (k - 1) / r**2 * np.trace(proj @ sigma_w) / k
    assert sknc.nc1(H, y) == pytest.approx(expected, rel=1e-10)


def test_exact_collapse_gives_zero_everywhere(rng):
    k, d = 6, 8
    M = etf_rows(k, d, 2.5, rng)
    y = np.repeat(np.arange(k), 7)
    H = M[y]
    rep = sknc.nc_report(H, y, 0.3 * M, np.zeros(k))
    for key in ("nc1", "nc1_trace_quotient", "cdnv", "nc2_h", "nc2_h_equinorm", "nc2_h_equiangular",
                "nc2_w", "nc2_w_equinorm", "nc2_w_equiangular", "nc3", "nc3_difference", "nc4", "bias_collapse"):
        assert abs(rep[key]) < 1e-12, key
    assert rep["nc1_rank"] == k - 1
    assert rep["ncc_agreement"] == 1.0


def test_float32_storage_exact_values_and_never_negative(rng):
    # Means 8*(e_k - 1/4) and offsets 2^-12 are exactly representable in float32.
    k, d, a = 4, 6, 2.0**-12
    means = np.zeros((k, d))
    means[:, :k] = 8.0 * (np.eye(k) - 0.25)
    H, y = cross_design(means, a)
    H32 = H.astype(np.float32)
    assert np.array_equal(H32.astype(np.float64), H)
    r2 = 64.0 * (1 - 1 / k)
    expected = a**2 * (k - 1) ** 2 / (d * r2 * k)
    assert sknc.nc1(H32, y) == pytest.approx(expected, rel=1e-9)
    assert sknc.nc1(torch.from_numpy(H32), y) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_float32_rounded_near_collapse_matches_float64(seed):
    rng = np.random.default_rng(seed)
    k, d = 10, 64
    M = etf_rows(k, d, 10.0, rng)
    y = np.repeat(np.arange(k), 100)
    H = M[y] + 1e-2 * rng.standard_normal((len(y), d))
    H32 = H.astype(np.float32)
    v32 = sknc.nc1(H32, y)
    v64 = sknc.nc1(H32.astype(np.float64), y)
    assert v32 >= 0
    assert v32 == pytest.approx(v64, rel=1e-6)
    # Rounding to float32 moves the true value by far less than the noise level.
    assert v32 == pytest.approx(sknc.nc1(H, y), rel=1e-4)
    # The peers' recipe (float32 scatter, dense pinv) returns a negative number here,
    # which is the failure this test guards against.
    mu = np.stack([H32[y == c].mean(0) for c in range(k)])
    sb = ((mu - H32.mean(0)).T @ (mu - H32.mean(0)) / k).astype(np.float32)
    d32 = H32 - mu[y]
    sw = (d32.T @ d32 / len(y)).astype(np.float32)
    naive = float(np.trace(sw @ np.linalg.pinv(sb, rcond=1e-15))) / k
    assert abs(naive - v64) / v64 > 1.0


def test_nc1_matches_dense_pinv_in_float64(rng):
    k, d, n = 7, 15, 400
    y = rng.integers(0, k, n)
    H = rng.standard_normal((k, d))[y] * 2 + rng.standard_normal((n, d))
    mu = np.stack([H[y == c].mean(0) for c in range(k)])
    for global_mean, between in [("class", "class"), ("sample", "class"), ("sample", "sample")]:
        counts = np.bincount(y)
        mg = mu.mean(0) if global_mean == "class" else H.mean(0)
        wts = np.full(k, 1 / k) if between == "class" else counts / n
        sb = (mu - mg).T @ ((mu - mg) * wts[:, None])
        sw = (H - mu[y]).T @ (H - mu[y]) / n
        ref = np.trace(sw @ scipy.linalg.pinv(sb, rtol=1e-10)) / k
        got = sknc.nc1(H, y, global_mean=global_mean, between=between)
        assert got == pytest.approx(ref, rel=1e-8)


# ---------------------------------------------------------------------- NC2-NC4
def test_nc2_of_orthonormal_frame_closed_form():
    k = 5
    frame = np.eye(k)
    diag = 1 / np.sqrt(k) - (1 - 1 / k) / np.sqrt(k - 1)
    off = (1 / k) / np.sqrt(k - 1)
    expected = np.sqrt(k * diag**2 + k * (k - 1) * off**2)
    out = sknc.nc2_w(frame)
    assert out["gram"] == pytest.approx(expected, rel=1e-12)
    assert out["equiangular"] == pytest.approx(1 / (k - 1), rel=1e-12)
    assert out["equinorm"] == pytest.approx(0.0, abs=1e-15)


def test_equinorm_is_the_coefficient_of_variation():
    v = np.diag([1.0, 2.0, 3.0, 6.0])
    norms = np.array([1.0, 2.0, 3.0, 6.0])
    assert sknc.equinorm(v) == pytest.approx(norms.std(ddof=1) / norms.mean())
    assert sknc.equinorm(v, ddof=0) == pytest.approx(norms.std() / norms.mean())


def test_nc3_forms(rng):
    k, d = 4, 5
    M = etf_rows(k, d, 1.0, rng)
    y = np.repeat(np.arange(k), 3)
    H = M[y]
    assert sknc.nc3(H, y, -M, form="difference") == pytest.approx(2.0)
    assert sknc.nc3(H, y, -M, form="difference", squared=True) == pytest.approx(4.0)
    # Gram form of -M: -E_K/||E_K|| against E_K gives 2.
    assert sknc.nc3(H, y, -M) == pytest.approx(2.0)
    assert sknc.nc3(H, y, 5 * M) == pytest.approx(0.0, abs=1e-12)


def test_nc4_agreement_counts_by_hand(rng):
    y = np.repeat([0, 1], 50)
    H = np.column_stack([np.where(y == 0, 1.0, -1.0) + 0.8 * rng.standard_normal(100), rng.standard_normal(100)])
    W = np.array([[1.0, 0.0], [-1.0, 0.0]])
    b = np.array([0.3, 0.0])
    mu = np.stack([H[y == c].mean(0) for c in (0, 1)])
    ncc = np.array([np.argmin([np.linalg.norm(h - m) for m in mu]) for h in H])
    clf = np.array([np.argmax(W @ h + b) for h in H])
    expected = np.mean(ncc == clf)
    assert 0 < expected < 1  # the fixture exercises disagreement
    assert sknc.ncc_agreement(H, y, W, b) == pytest.approx(expected)
    assert sknc.nc4(H, y, W, b) == pytest.approx(1 - expected)


def test_bias_collapse_uses_global_mean_and_bias(rng):
    k, d = 3, 4
    M = etf_rows(k, d, 1.0, rng)
    y = np.repeat(np.arange(k), [2, 3, 5])
    t = rng.standard_normal(d)
    H = M[y] + t
    W = rng.standard_normal((k, d))
    b = rng.standard_normal(k)
    assert sknc.bias_collapse(H, y, W, b) == pytest.approx(np.linalg.norm(W @ H.mean(0) + b))
    assert sknc.bias_collapse(H, y, W, b, global_mean="class") == pytest.approx(np.linalg.norm(W @ (M.mean(0) + t) + b))


# ------------------------------------------------------------------- invariances
def test_invariances_rotation_relabel_translation(rng):
    k, d, n = 5, 7, 300
    y = rng.integers(0, k, n)
    H = 3 * rng.standard_normal((k, d))[y] + rng.standard_normal((n, d))
    W = rng.standard_normal((k, d))
    b = rng.standard_normal(k)
    base = sknc.nc_report(H, y, W, b)
    keys = ["nc1", "nc1_trace_quotient", "cdnv", "nc2_h", "nc2_h_equinorm", "nc2_h_equiangular",
            "nc2_w", "nc3", "nc3_difference", "nc4"]
    # rotation of feature space (W rotates with it)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    rot = sknc.nc_report(H @ Q, y, W @ Q, b)
    # relabelling: class c -> name perm[c]; W rows follow the sorted new names
    perm = rng.permutation(k)
    names = np.array(["a", "b", "c", "d", "e"])[perm]
    order = np.argsort(names)
    rel = sknc.nc_report(H, names[y], W[order], b[order])
    # translation: logits preserved by b' = b - W t
    t = 10 * rng.standard_normal(d)
    tra = sknc.nc_report(H + t, y, W, b - W @ t)
    for key in keys:
        assert rot[key] == pytest.approx(base[key], rel=1e-9, abs=1e-12), key
        assert rel[key] == pytest.approx(base[key], rel=1e-9, abs=1e-12), key
        assert tra[key] == pytest.approx(base[key], rel=1e-7, abs=1e-10), key


# ---------------------------------------------------------------------- multi-label
def _multilabel_fixture(rng, k=5, d=8, scales=None, per_set=3, noise=0.0):
    M = etf_rows(k, d, 2.0, rng)
    scales = scales or {1: 1.0, 2: 1.7, 3: 2.4}
    sets = [(c,) for c in range(k)] + list(combinations(range(k), 2)) + [(0, 1, 2), (1, 3, 4), (0, 2, 4)]
    Y, H = [], []
    for s in sets:
        proto = scales[len(s)] * M[list(s)].mean(0)
        for _ in range(per_set):
            row = np.zeros(k, dtype=int)
            row[list(s)] = 1
            Y.append(row)
            H.append(proto + noise * rng.standard_normal(d))
    return np.array(H), np.array(Y), M, sets, scales


def test_tagwise_exact_multilabel_etf(rng):
    H, Y, M, sets, scales = _multilabel_fixture(rng)
    H = H + 4.0  # translation: the metric is centred
    res = sknc.tagwise_average(H, Y)
    assert len(res.sets) == len(sets) - 5
    assert np.all(res.sets["angle"] < 1e-6)
    assert np.all(res.sets["residual"] < 1e-12)
    for m in (2, 3):
        assert np.allclose(res.sets.loc[res.sets.multiplicity == m, "scale"], scales[m], rtol=1e-12)
    summary = res.summary.set_index("multiplicity")
    assert summary.loc[2, "n_sets"] == 10 and summary.loc[3, "n_sets"] == 3
    rep = sknc.nc_report(H, Y, M)
    assert rep["tagwise_scale_m2"] == pytest.approx(1.7) and rep["tagwise_scale_m3"] == pytest.approx(2.4)
    assert rep["nc1"] == pytest.approx(0.0, abs=1e-20) and rep["nc2_h"] < 1e-12


def test_tagwise_scale_and_angle_against_loops(rng):
    H, Y, M, sets, _ = _multilabel_fixture(rng, noise=0.3)
    res = sknc.tagwise_average(H, Y).sets.set_index("labels")
    single = {c: H[(Y.sum(1) == 1) & (Y[:, c] == 1)].mean(0) for c in range(Y.shape[1])}
    centre = np.mean(list(single.values()), axis=0)
    for s in sets:
        if len(s) == 1:
            continue
        rows = np.all(Y == np.isin(np.arange(Y.shape[1]), s), axis=1)
        mean_s = H[rows].mean(0) - centre
        tag_sum = sum(single[c] - centre for c in s)
        avg = tag_sum / len(s)
        angle = np.degrees(np.arccos(mean_s @ tag_sum / np.linalg.norm(mean_s) / np.linalg.norm(tag_sum)))
        scale = mean_s @ avg / (avg @ avg)
        assert res.loc[[s], "angle"].iloc[0] == pytest.approx(angle, rel=1e-8)
        assert res.loc[[s], "scale"].iloc[0] == pytest.approx(scale, rel=1e-10)


def test_angle_ratio_matches_reference_loops(rng):
    H, Y, *_ = _multilabel_fixture(rng, noise=0.4)
    k = Y.shape[1]
    mult = Y.sum(1)
    mu = [H[(mult == 1) & (Y[:, c] == 1)].mean(0) for c in range(k)]
    pair_sets = {tuple(np.flatnonzero(r)) for r in Y[mult == 2]}
    set_mean = {s: H[np.all(Y == np.isin(np.arange(k), s), axis=1)].mean(0) for s in pair_sets}

    def ang(u, v):
        return np.degrees(np.arccos(np.clip(u @ v / np.linalg.norm(u) / np.linalg.norm(v), -1, 1)))

    num = np.mean([ang(mu[i] + mu[j], set_mean[(i, j)]) for (i, j) in pair_sets])
    den = np.mean([ang(mu[i] + mu[j], set_mean[s]) for i, j in combinations(range(k), 2) for s in pair_sets])
    assert sknc.tagwise_angle_ratio(H, Y) == pytest.approx(num / den, rel=1e-9)


def test_multilabel_uses_multiplicity_one_samples_for_nc1(rng):
    H, Y, M, *_ = _multilabel_fixture(rng, noise=0.2)
    single = Y.sum(1) == 1
    labels = Y[single].argmax(1)
    assert sknc.nc1(H, Y) == pytest.approx(sknc.nc1(H[single], labels), rel=1e-12)


# -------------------------------------------------------------------- imbalance
def test_orthogonal_imbalanced_frame_and_minority_collapse(rng):
    lengths = np.array([0.0, 1.0, 2.0, 4.0])
    d = 6
    y = np.repeat(np.arange(4), [3, 5, 8, 16])
    means = np.zeros((4, d))
    means[np.arange(4), np.arange(4)] = lengths
    H = means[y]
    assert np.allclose(sknc.class_mean_norms(H, y), lengths)
    assert sknc.mean_orthogonality(H, y) == pytest.approx(0.0, abs=1e-15)
    W = np.vstack([[-1.0, -1, -1, 0, 0, 0], [3, -1, -1, 0, 0, 0], [-1, 3, -1, 0, 0, 0], [-1.0, -1, -1, 0, 0, 0]])
    out = sknc.minority_collapse(H, y, W)
    assert out["collapsed_classes"].tolist() == [0]
    assert [g.tolist() for g in out["indistinguishable"]] == [[0, 3]]


# ----------------------------------------------------------------- accumulator
def _assert_reports_equal(a, b, skip=()):
    assert set(a.index) - set(skip) == set(b.index) - set(skip)
    for key in a.index:
        if key in skip:
            continue
        assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-12), key


def test_accumulator_equals_in_memory_with_merge_and_second_pass(rng):
    k, d, n = 6, 10, 900
    y = rng.integers(0, k, n)
    H = 50 + 3 * rng.standard_normal((k, d))[y] + 1e-3 * rng.standard_normal((n, d))
    W = rng.standard_normal((k, d))
    b = rng.standard_normal(k)
    full = sknc.nc_report(H, y, W, b)
    parts = np.array_split(rng.permutation(n), 9)
    shards = [sknc.NCAccumulator() for _ in range(3)]
    for i, p in enumerate(parts):
        shards[i % 3].update(H[p], y[p])
    acc = shards[0].merge(shards[1]).merge(shards[2])
    _assert_reports_equal(full, acc.report(W, b), skip=("nc4", "ncc_agreement"))
    for p in parts:
        acc.update_agreement(H[p], y[p], W, b)
    _assert_reports_equal(full, acc.report(W, b))


def test_accumulator_torch_and_multilabel(rng):
    H, Y, M, *_ = _multilabel_fixture(rng, noise=0.1)
    full = sknc.nc_report(H, Y, M)
    acc = sknc.NCAccumulator()
    for p in np.array_split(rng.permutation(len(H)), 4):
        acc.update(torch.as_tensor(H[p], dtype=torch.float64), torch.as_tensor(Y[p]))
    _assert_reports_equal(full, acc.report(M), skip=("nc4", "ncc_agreement"))


# -------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "features,y,match",
    [
        (np.array([[np.nan, 1.0], [0.0, 1.0]]), [0, 1], "NaN or infinity"),
        (np.array([[np.inf, 1.0], [0.0, 1.0]]), [0, 1], "NaN or infinity"),
        (np.zeros((0, 3)), [], "empty"),
        (np.ones((4, 2)), [1, 1, 1, 1], "only one class; at least 2"),
        (np.ones((3, 2)), [0, 1], "3 rows"),
        (np.ones(5), [0, 1, 0, 1, 0], "2-D"),
        (np.ones((3, 2)), np.array([[1, 0], [0, 2], [0, 1]]), "0/1 indicator"),
    ],
)
def test_bad_input_raises_clearly(features, y, match):
    with pytest.raises(ValueError, match=match):
        sknc.nc_report(features, y)


def test_bad_classifier_and_types(rng):
    H = rng.standard_normal((20, 4))
    y = np.repeat([0, 1], 10)
    with pytest.raises(ValueError, match=r"W must have shape \(n_classes, n_dims\) = \(2, 4\)"):
        sknc.nc_report(H, y, np.ones((2, 5)))
    with pytest.raises(ValueError, match=r"b must have shape \(2,\)"):
        sknc.nc_report(H, y, np.ones((2, 4)), np.ones(3))
    with pytest.raises(TypeError, match="complex"):
        sknc.nc1(H.astype(complex), y)
    with pytest.raises(ValueError, match="all class means coincide"):
        sknc.nc1(np.ones((4, 3)), [0, 0, 1, 1])


def test_multilabel_class_without_singletons_is_named():
    Y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 1, 1]])
    with pytest.raises(ValueError, match="class\\(es\\) 2 have no multiplicity-1 sample"):
        sknc.nc1(np.random.default_rng(0).standard_normal((4, 3)), Y)


def test_accumulator_bad_input():
    acc = sknc.NCAccumulator()
    with pytest.raises(ValueError, match="empty"):
        acc.report()
    acc.update(np.ones((2, 3)), [0, 1])
    with pytest.raises(ValueError, match="earlier batches had 3"):
        acc.update(np.ones((2, 4)), [0, 1])
    with pytest.raises(ValueError, match="NaN"):
        acc.update(np.full((2, 3), np.nan), [0, 1])
    with pytest.raises(TypeError, match="merge an NCAccumulator"):
        acc.merge(object())


def test_far_from_origin_and_tightly_collapsed(rng):
    # Far from the origin and tightly collapsed: sum||h||^2 dwarfs the within scatter by 1e18.
    k, d = 4, 6
    M = etf_rows(k, d, 1.0, rng)
    H, y = cross_design(M + 1e4, 1e-5)
    expected = (1e-5) ** 2 * (k - 1) ** 2 / (d * 1.0 * k)
    assert sknc.nc1(H, y) == pytest.approx(expected, rel=1e-6)
    assert sknc.nc1_trace_quotient(H, y) == pytest.approx(1e-10, rel=1e-6)
