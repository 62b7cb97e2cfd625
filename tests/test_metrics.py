"""NC metrics against closed forms and independent (loop-based) computations."""

import tracemalloc
import warnings
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
    W = np.zeros((4, d))
    W[[1, 2, 3], [1, 2, 3]] = 1.0  # w_k = e_k for k = 1, 2, 3
    W[0, 1:4] = -1 / 3  # the row of a collapsed class in the non-negative UFM: minus the others' mean
    table = sknc.minority_collapse(H, y, W)
    # by hand: class means 0, e_1, 2 e_2, 4 e_3 have margins 0, 1, 2, 4
    assert np.allclose(table["margin"], [0, 1, 2, 4])
    assert np.allclose(table["margin_ratio"], [0, 0.25, 0.5, 1])
    assert np.allclose(table["collapse_score"], [1, 0.75, 0.5, 0])
    assert table["collapsed"].tolist() == [True, True, True, False]
    assert sknc.minority_collapse(H, y, W, threshold=0.9)["collapsed"].tolist() == [True, False, False, False]
    unit = W / np.linalg.norm(W, axis=1, keepdims=True)
    cos = unit @ unit.T
    np.fill_diagonal(cos, -np.inf)
    assert np.allclose(table["max_classifier_cosine"], cos.max(axis=1))
    centred = means - means.mean(0)
    ratio = np.linalg.norm(centred, axis=1) / np.linalg.norm(centred, axis=1).max()
    assert np.allclose(table["mean_norm_ratio"], ratio)
    no_w = sknc.minority_collapse(H, y)
    assert np.allclose(no_w["collapse_score"], 1 - ratio) and "margin" not in no_w
    merged = W.copy()
    merged[3] = merged[0]  # Fang et al.: minority rows that coincide
    fang = sknc.minority_collapse(H, y, merged)
    assert fang.loc[0, "closest_classifier"] == 3 and fang.loc[0, "max_classifier_cosine"] == pytest.approx(1.0)


@pytest.mark.parametrize("sizes", [[2, 8, 16, 32], [3, 6, 12, 24, 48, 96]])
def test_minority_collapse_score_on_ufm_optima_matches_theory(sizes):
    sizes = np.array(sizes)
    y = np.repeat(np.arange(len(sizes)), sizes)
    checked = 0
    for lam in np.geomspace(5e-3, 0.06, 4):
        opt = sknc.theory.nonnegative_ce_optimum(sizes, lam, lam)
        if opt.complete_collapse:
            continue
        ufm = sknc.UFMSolver(lambda_W=lam, lambda_H=lam, nonnegative=True, bias=False, random_state=0).fit(y)
        table = sknc.minority_collapse(ufm.H_, y, ufm.W_)
        score = table["collapse_score"].to_numpy()
        collapsed = opt.minority_collapsed
        assert np.all(score[collapsed] >= 1 - 1e-6)  # zero margin, exactly as the closed form says
        assert np.all(table["collapsed"].to_numpy()[collapsed])
        far = sizes >= 4 * opt.threshold  # well above the critical size
        assert not np.any(table["collapsed"].to_numpy()[far])
        expected = 1 - np.clip(opt.margins / opt.margins.max(), 0, 1)  # the score follows the closed form
        assert np.allclose(score, expected, atol=1e-5)
        checked += collapsed.sum()
    assert checked > 0


@pytest.mark.slow
def test_minority_collapse_detected_on_a_trained_network():
    from sklearn.datasets import load_digits

    from sknc import PALClassifier
    from sknc.datasets import imbalance_counts, make_imbalanced

    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    test = np.arange(len(y)) % 3 == 0
    counts = imbalance_counts(10, 110, 55, profile="step", n_minority=5)
    Xi, yi = make_imbalanced(X[~test], y[~test], counts, random_state=0)
    clf = PALClassifier(hidden_sizes=(128, 128), max_epochs=60, lambda_W=5e-3, device="cpu", random_state=0)
    clf.fit(Xi, yi)
    table = sknc.minority_collapse(clf.transform(Xi), yi, clf.coef_, clf.intercept_)
    pred = clf.predict(X[test])
    accuracy = np.array([(pred[y[test] == k] == k).mean() for k in range(10)])
    minority = counts < counts.max()
    assert np.all(accuracy[minority] < 0.2)  # a real minority collapse
    assert table["collapsed"].to_numpy()[minority].all()
    assert not table["collapsed"].to_numpy()[~minority].any()
    assert table["collapse_score"].to_numpy()[~minority].max() < 0.2
    # the fixed-threshold indicator it replaces (norm <= 1% of the largest) would have flagged nothing
    assert table["mean_norm_ratio"].to_numpy()[minority].min() > 0.01


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
        sknc.nc1(np.random.default_rng(0).standard_normal((4, 3)), Y, class_means="singletons")


def test_far_from_origin_and_tightly_collapsed(rng):
    # Far from the origin and tightly collapsed: sum||h||^2 dwarfs the within scatter by 1e18.
    k, d = 4, 6
    M = etf_rows(k, d, 1.0, rng)
    H, y = cross_design(M + 1e4, 1e-5)
    expected = (1e-5) ** 2 * (k - 1) ** 2 / (d * 1.0 * k)
    assert sknc.nc1(H, y) == pytest.approx(expected, rel=1e-6)
    assert sknc.nc1_trace_quotient(H, y) == pytest.approx(1e-10, rel=1e-6)


# ----------------------------------------------------------------- numerics (scale, offset, cancellation)
def test_float32_features_far_from_the_origin_keep_their_rank(rng):
    # the reliability issue's case: a float32 ETF 1e5 from the origin, small noise
    k, d = 10, 256
    M = sknc.simplex_etf(k, d, norm=1, random_state=0)
    u = rng.standard_normal(d)
    u /= np.linalg.norm(u)
    y = np.repeat(np.arange(k), 100)
    H = (M[y] + 1e5 * u + 1e-3 * rng.standard_normal((len(y), d))).astype(np.float32)
    truth = sknc.nc1(H.astype(np.float64), y)
    rep = sknc.nc_report(H, y)
    assert rep["nc1_rank"] == k - 1
    assert rep["nc1"] == pytest.approx(truth, rel=1e-6)
    assert truth > 1e-6  # a real, non-zero value (the old tolerance returned 0 with rank 0)


@pytest.mark.parametrize("scale", [1e-300, 1e-170, 1e-30, 1e30, 1e160, 1e300])
def test_every_key_is_invariant_to_a_common_scale(rng, scale):
    k, d = 5, 12
    M = etf_rows(k, d, 2.0, rng)
    y = np.repeat(np.arange(k), 30)
    H = M[y] + 0.2 * rng.standard_normal((len(y), d))
    W = M + 0.3 * rng.standard_normal((k, d))
    b = rng.standard_normal(k)
    base = sknc.nc_report(H, y, W, b)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # no overflow or NaN anywhere inside
        scaled = sknc.nc_report(H * scale, y, W, b * scale)
    for key in base.index:
        if key == "bias_collapse":  # ||W mu_G + b|| scales with the features
            assert scaled[key] == pytest.approx(base[key] * scale, rel=1e-12), key
        else:
            assert scaled[key] == pytest.approx(base[key], rel=1e-12, abs=1e-15), key


def test_cdnv_of_close_but_distinct_means_is_computed_from_differences(rng):
    # means 1e-6 apart at 1e4 from the origin: ||a||^2 + ||b||^2 - 2 a.b cancels to noise
    d, n = 3, 50
    y = np.repeat([0, 1, 2], n)
    centres = 1e4 + np.array([[0.0, 0, 0], [1e-6, 0, 0], [5.0, 1.0, 0]])
    H = centres[y] + 1e-8 * rng.standard_normal((3 * n, d))
    L = H.astype(np.longdouble)  # reference in extended precision
    mu = np.stack([L[y == c].mean(0) for c in range(3)])
    var = np.array([np.mean(np.sum((L[y == c] - mu[c]) ** 2, axis=1)) for c in range(3)])
    pairs = [(0, 1), (0, 2), (1, 2)]
    expected = float(np.mean([(var[i] + var[j]) / (2 * np.sum((mu[i] - mu[j]) ** 2)) for i, j in pairs]))
    assert sknc.cdnv(H, y) == pytest.approx(expected, rel=1e-8)


def test_float32_and_float64_agree_within_the_documented_bound(rng):
    k, d = 8, 40
    M = etf_rows(k, d, 5.0, rng)
    y = rng.integers(0, k, 3000)
    H32 = (M[y] + 0.05 * rng.standard_normal((len(y), d))).astype(np.float32)
    W = M + 0.1 * rng.standard_normal((k, d))
    r32, r64 = sknc.nc_report(H32, y, W), sknc.nc_report(H32.astype(np.float64), y, W)
    for key in r64.index:
        assert r32[key] == pytest.approx(r64[key], rel=1e-6, abs=1e-12), key


# ------------------------------------------------------------------ per-key degradation
def _warned_report(*args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rep = sknc.nc_report(*args, **kwargs)
    nc = [w for w in caught if issubclass(w.category, sknc.NCWarning)]
    return rep, nc


def test_two_coinciding_means_make_only_cdnv_nan(rng):
    k, d = 4, 6
    M = etf_rows(k, d, 1.0, rng)
    M[3] = M[2]  # classes 2 and 3 share a mean
    y = np.repeat(np.arange(k), 20)
    H = M[y] + 0.05 * rng.standard_normal((len(y), d))
    H[y == 3] = H[y == 2]  # exactly
    rep, nc = _warned_report(H, y, M + 0.1)
    assert np.isnan(rep["cdnv"])
    assert len(nc) == 1 and "cdnv" in str(nc[0].message) and "coincide" in str(nc[0].message)
    for key in ("nc1", "nc1_trace_quotient", "nc2_h", "nc3", "nc4"):
        assert np.isfinite(rep[key]), key
    with pytest.raises(sknc.UndefinedMetricError, match="classes 2 and 3 coincide|classes '?2'? and '?3'? coincide"):
        sknc.cdnv(H, y)


def test_all_means_coinciding_is_nan_never_zero(rng):
    # every class is +-a along each axis around the same point: all class means are exactly equal
    H, y = cross_design(np.full((3, 4), 7.0), 0.25)
    rep, nc = _warned_report(H, y, np.eye(3, 4))
    assert rep["nc1_rank"] == 0
    for key in ("nc1", "nc1_trace_quotient", "cdnv", "nc2_h", "nc3"):
        assert np.isnan(rep[key]), key
    assert np.isfinite(rep["nc2_w"]) and np.isfinite(rep["nc4"])
    assert len(nc) == 1 and "rank 0" in str(nc[0].message)
    with pytest.raises(sknc.UndefinedMetricError, match="all class means coincide"):
        sknc.nc1(H, y)


def test_zero_classifier_and_zero_mean_degrade_their_own_keys(rng):
    k, d = 4, 6
    M = etf_rows(k, d, 1.0, rng)
    y = np.repeat(np.arange(k), 10)
    H = M[y] + 0.05 * rng.standard_normal((len(y), d))
    rep, nc = _warned_report(H, y, np.zeros((k, d)))
    for key in ("nc2_w", "nc2_w_equinorm", "nc3", "nc3_difference"):
        assert np.isnan(rep[key]), key
    assert np.isfinite(rep["nc1"]) and np.isfinite(rep["ncc_agreement"])
    assert len(nc) == 1


def test_partly_dead_relu_features_in_multilabel_data(rng):
    # class 3 never occurs alone: everything built on class means is NaN, counts survive, one warning
    Y = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [1, 1, 0, 0], [0, 0, 1, 1]] * 5)
    H = np.abs(rng.standard_normal((len(Y), 6)))
    rep, nc = _warned_report(H, Y, rng.standard_normal((4, 6)), class_means="singletons")
    assert rep["n_samples"] == len(Y) and rep["n_singletons"] == 15
    assert np.isnan(rep["nc1"]) and np.isnan(rep["tagwise_angle"])
    assert np.isfinite(rep["nc2_w"])
    assert len(nc) == 1 and "3 have no multiplicity-1 sample" in str(nc[0].message)
    # by default class 3's mean is estimated from {2, 3} (the scale of pairs is fixed by {0, 1})
    rep, nc = _warned_report(H, Y, rng.standard_normal((4, 6)))
    assert rep["class_means_estimated"] and np.isfinite(rep["nc1"]) and not nc


def test_label_free_rows_are_counted_and_ignored(rng):
    H, Y, M, *_ = _multilabel_fixture(rng, noise=0.1)
    extra = rng.standard_normal((7, H.shape[1]))
    with_empty = sknc.nc_report(np.vstack([H, extra]), np.vstack([Y, np.zeros((7, Y.shape[1]), dtype=int)]), M)
    plain = sknc.nc_report(H, Y, M)
    assert with_empty["n_samples"] == plain["n_samples"] + 7
    for key in plain.index.drop("n_samples"):
        assert with_empty[key] == pytest.approx(plain[key], rel=1e-12, abs=1e-15), key


def test_report_memory_is_a_fraction_of_the_features(rng):
    # anything of size n x K (6x the features) or a float64 copy of the data (2x) would exceed the bound
    n, d, k = 100_000, 64, 200
    y = rng.integers(0, k, n)
    H = (3 * rng.standard_normal((k, d))[y] + rng.standard_normal((n, d))).astype(np.float32)
    W = rng.standard_normal((k, d))
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    sknc.nc_report(H, y, W)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    assert peak < 0.5 * H.nbytes, peak / H.nbytes


def test_minority_collapse_is_nan_with_a_warning_under_complete_collapse():
    y = np.repeat(np.arange(3), 4)
    ufm = sknc.UFMSolver(lambda_W=0.5, lambda_H=0.5, random_state=0).fit(y)  # sqrt(n lw lh) >= 1/K: W = H = 0
    assert sknc.theory.balanced_ce_optimum(3, 4, 0.5, 0.5).collapsed
    with pytest.warns(sknc.NCWarning, match="complete collapse"):
        table = sknc.minority_collapse(ufm.H_ + np.eye(3)[y] * 1e-12, y, ufm.W_, ufm.b_)
    assert table["collapse_score"].isna().all() and not table["collapsed"].any()


# --------------------------------------------------------------- row-block passes
@pytest.mark.parametrize("n,width,n_groups", [(300, 5, 4), (300, 200, 4), (400, 30, 60), (64, 30, 500)])
def test_block_group_sums_match_add_at(rng, n, width, n_groups):
    # dense one-hot, full sparse product, and only-the-groups-present paths
    from sknc.metrics._backend import NumpyOps

    values = rng.standard_normal((n, width))
    ids = rng.integers(0, n_groups, n)
    expected = np.zeros((n_groups, width))
    np.add.at(expected, ids, values)
    present, sums = NumpyOps.segment_sum(values, ids, n_groups)
    got = np.zeros((n_groups, width))
    if present is None:
        got += sums
    else:
        got[present] = sums
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k", [10, 100])
def test_report_is_the_same_on_one_thread_and_several(rng, monkeypatch, k):
    from sknc.metrics import _stats
    from sknc.metrics._report import report_from, statistics_and_geometry

    n, d = 6000, 512  # above the size where the passes split their row blocks over threads
    means = 4 * rng.standard_normal((k, d))
    y = rng.integers(0, k, n)
    H = (means[y] + rng.standard_normal((n, d))).astype(np.float32)
    W = means + 0.3 * rng.standard_normal((k, d))
    monkeypatch.setattr(_stats, "_CONTROLLER", None)  # as in a fresh process: no report has run yet
    reports = {t: report_from(*statistics_and_geometry(H, y, W, n_threads=t), warn=False) for t in (2, 1)}
    # float64 answer for the stored values, by the float64 path (float64 centring, whole projected scatter)
    truth = sknc.nc_report(H.astype(np.float64), y, W)
    within = {"nc1", "nc1_trace_quotient", "cdnv"}  # read the float32 products of the second pass
    for t, report in reports.items():
        for key in truth.index:
            rel = 1e-8 if key in within else 1e-12
            assert report[key] == pytest.approx(truth[key], rel=rel, abs=1e-14, nan_ok=True), (t, key)


def _report_in_child(H, y, W):
    return dict(sknc.nc_report(H, y, W))


def test_report_runs_in_a_forked_child(rng):
    # the passes keep a pool of worker threads; a forked child (multiprocessing, Dask's process workers)
    # inherits the pool object without its threads and must start its own
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    n, d, k = 6000, 512, 5
    means = 4 * rng.standard_normal((k, d))
    y = rng.integers(0, k, n)
    H = (means[y] + rng.standard_normal((n, d))).astype(np.float32)
    W = means
    parent = dict(sknc.nc_report(H, y, W))  # creates the pool in this process
    with multiprocessing.get_context("fork").Pool(1) as pool:
        child = pool.apply_async(_report_in_child, (H, y, W)).get(timeout=120)  # a lost pool hangs
    assert child.keys() == parent.keys()
    for key in parent:
        assert child[key] == pytest.approx(parent[key], rel=1e-12, nan_ok=True), key


@pytest.mark.parametrize(
    "labels",
    [
        np.array([5, 3, 3, 9, 5, 0], dtype=np.int8),
        np.array([7, 7, 2, 40_000, 2], dtype=np.uint16),
        np.array([-1, 4, 4, -1, 2]),  # negative: sorted by np.unique
        np.array([10**12, 3, 3, 10**12]),  # a sparse range: sorted by np.unique
        np.arange(50)[::-1] % 7,
    ],
)
def test_integer_labels_are_grouped_as_np_unique_groups_them(labels):
    from sknc._validation import group_labels

    groups = group_labels(labels)
    classes, codes = np.unique(labels, return_inverse=True)
    np.testing.assert_array_equal(groups.classes, classes)
    assert groups.classes.dtype == classes.dtype
    np.testing.assert_array_equal(groups.group, codes.ravel())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [5, 40])
def test_device_code_path_on_the_host_equals_numpy(rng, monkeypatch, dtype, k):
    # the in-memory passes as they run on an accelerator (TorchOps), here on the CPU, against numpy's
    from sknc.metrics import _report

    n, d = 1500, 48
    means = 3 * rng.standard_normal((k, d))
    y = rng.integers(0, k, n)
    H = means[y] + rng.standard_normal((n, d))
    W = means + 0.5 * rng.standard_normal((k, d))
    b = 0.1 * rng.standard_normal(k)
    T = torch.as_tensor(H, dtype=dtype)
    expected = sknc.nc_report(T.numpy(), y, W, b)

    def keep_tensor(x, name="features"):
        t = x.detach()
        return t, float(torch.finfo(t.dtype).eps)

    monkeypatch.setattr(_report, "as_feature_array", keep_tensor)
    from sknc.metrics._backend import TorchOps, backend_for

    assert isinstance(backend_for(T), TorchOps)
    got = sknc.nc_report(T, y, W, b)
    rel = 1e-6 if dtype == torch.float32 else 1e-10  # float32 products differ in rounding between the backends
    for key in expected.index:
        assert got[key] == pytest.approx(expected[key], rel=rel, abs=1e-12, nan_ok=True), key


def test_overlapping_reports_give_back_the_users_blas_threads():
    # reports running in several threads (Dask's threaded scheduler, parallel scorers) hold BLAS to one
    # thread while their passes run; whichever finishes last must restore the user's setting, not a 1
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from sknc.metrics._stats import _single_blas_thread

    def blas_threads():
        return [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]

    original = blas_threads()
    if max(original, default=1) <= 1:
        pytest.skip("BLAS runs on one thread here: nothing to restore")
    first, second = _single_blas_thread(), _single_blas_thread()
    first.__enter__()
    second.__enter__()  # a second report starts while the first holds the limit
    assert max(blas_threads()) == 1
    first.__exit__(None, None, None)  # the first finishes before the second
    assert max(blas_threads()) == 1  # the second is still running its passes
    second.__exit__(None, None, None)
    assert blas_threads() == original


@pytest.mark.parametrize("global_mean", ["class", "sample"])
def test_nearest_mean_table_from_the_known_gram_equals_the_direct_one(rng, monkeypatch, global_mean):
    # the report's decomposition keeps the Gram of its centred means; the second pass's NCC distances are read
    # from it (distances do not depend on the centring), and must equal those computed from the means alone
    from dataclasses import replace

    from sknc.metrics import _stats
    from sknc.metrics._backend import NumpyOps
    from sknc.metrics._report import statistics_and_geometry

    k, n, d = 40, 4000, 64
    means = 1e3 + rng.standard_normal((k, d))  # far from the origin: distances from a Gram would cancel
    means[1] = means[0] + 1e-6  # a close pair: recomputed from differences
    y = np.concatenate([np.arange(k), rng.integers(0, k, n - k)])
    H = (means[y] + 0.1 * rng.standard_normal((n, d))).astype(np.float32)
    plans = []
    original = _stats.make_plan

    def keep(*args, **kwargs):
        plans.append(original(*args, **kwargs))
        return plans[-1]

    monkeypatch.setattr(_stats, "make_plan", keep)  # a spy: the real plan, kept for inspection
    statistics_and_geometry(H, y, means, global_mean=global_mean)
    plan = plans[-1]
    assert plan.centred_gram is not None
    with_gram = plan.on(NumpyOps)["dist"]
    direct = replace(plan, centred_gram=None).on(NumpyOps)["dist"]
    np.testing.assert_allclose(with_gram, direct, rtol=1e-6, atol=1e-12 * np.abs(direct).max())


# ------------------------------------------------------------------------ issue 24: no silent numbers
def test_coincident_class_means_give_the_documented_nan_everywhere(rng):
    # three classes with the same mean: rounding left ~1e-17 of between-class spread, and the trace quotient
    # read 1e33, nc2_h 1.39, the CDNV ~1e32
    y = np.repeat(np.arange(3), 20)
    H = rng.standard_normal((60, 4))
    H -= np.array([H[y == k].mean(0) for k in range(3)])[y]
    W = rng.standard_normal((3, 4))
    with pytest.warns(sknc.NCWarning, match="all class means coincide"):
        report = sknc.nc_report(H, y, W)
    for key in ("nc1", "nc1_trace_quotient", "cdnv", "nc2_h", "nc2_h_equinorm", "nc2_h_equiangular", "nc3",
                "nc3_difference"):
        assert np.isnan(report[key]), key
    assert np.isfinite(report["nc2_w"]) and report["nc1_rank"] == 0


def _two_means_at_one_point(rng, k, pair, per_class=25, d=6):
    """Features of ``k`` classes whose sample means are exactly ``5 N(0, 1)`` draws, two of them equal."""
    y = np.repeat(np.arange(k), per_class)
    means = 5 * rng.standard_normal((k, d))
    means[pair[1]] = means[pair[0]]
    H = rng.standard_normal((len(y), d))
    H -= np.array([H[y == c].mean(0) for c in range(k)])[y]
    return H + means[y], y


def test_two_coincident_means_among_distinct_ones_leave_only_the_cdnv_undefined(rng):
    H, y = _two_means_at_one_point(rng, 4, (2, 3))
    with pytest.warns(sknc.NCWarning, match=r"the means of classes 2 and 3 coincide"):
        report = sknc.nc_report(H, y)
    assert np.isnan(report["cdnv"]) and np.isfinite(report["nc1"]) and report["nc1_rank"] == 2


@pytest.mark.parametrize("compiled", [True, False])
def test_float32_rows_near_the_largest_float32_keep_their_float64_answer(rng, compiled):
    from sknc.metrics._kernels import forced

    y = np.repeat(np.arange(3), 50)
    H = np.clip(rng.uniform(-1, 1, (150, 8)) * 3.3e38, -3.4e38, 3.4e38)
    H[:, 0] += np.where(y == 0, 0.5, -0.5) * 1e37
    H32 = H.astype(np.float32)
    with forced(compiled), warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning, no NCWarning
        r32 = sknc.nc_report(H32, y)
        acc = sknc.NCAccumulator(mode="two_pass").update(H32, y).update_second_pass(H32, y).report()
    r64 = sknc.nc_report(H32.astype(np.float64), y)
    for key in ("nc1", "nc2_h", "cdnv", "nc1_trace_quotient"):
        assert r32[key] == pytest.approx(r64[key], rel=1e-6), key
        assert acc[key] == pytest.approx(r64[key], rel=1e-6), key


def test_classes_of_the_classifier_missing_from_the_data(rng):
    k, d = 5, 8
    W, b = rng.standard_normal((k, d)), rng.standard_normal(k)
    y = rng.integers(0, k, 300)
    keep = (y != 1) & (y != 4)
    H = 3 * rng.standard_normal((k, d))[y] + rng.standard_normal((300, d))
    with pytest.warns(sknc.NCWarning, match=r"no sample of class\(es\) 1, 4 of the classifier"):
        report = sknc.nc_report(H[keep], y[keep], W, b)  # integer labels inside range(K_W): inferred
    present = [0, 2, 3]
    alone = sknc.nc_report(H[keep], y[keep])
    for key in ("nc1", "nc2_h", "cdnv", "n_samples"):
        assert report[key] == pytest.approx(alone[key], rel=1e-12), key
    assert report["nc3"] == pytest.approx(sknc.nc_report(H[keep], y[keep], W[present], b[present])["nc3"],
                                          rel=1e-12)
    assert report["nc2_w"] == pytest.approx(sknc.nc2_w(W)["gram"], rel=1e-12)
    for key in ("nc4", "ncc_agreement", "nc3_difference", "bias_collapse"):
        assert np.isnan(report[key]), key
    # named classes: W's rows in the order of `classes`, string labels too
    names = np.array(["a", "b", "c", "d", "e"])
    order = [4, 0, 3, 2, 1]
    with pytest.warns(sknc.NCWarning):
        named = sknc.nc_report(H[keep], names[y[keep]], W[order], b[order], classes=names[order])
    assert named["nc3"] == pytest.approx(report["nc3"], rel=1e-12)
    with pytest.raises(ValueError, match=r"y holds label\(s\) z that are not in classes"):
        sknc.nc_report(H[:3], ["a", "b", "z"], W, classes=names)
    with pytest.raises(ValueError, match="W has 5 rows but the data have 3 classes .* give classes="):
        sknc.nc_report(H[keep], names[y[keep]], W)


def test_missing_values_of_nullable_pandas_columns_are_named():
    import pandas as pd

    frame = pd.DataFrame(np.random.default_rng(0).standard_normal((30, 3))).astype("Float64")
    frame.iloc[3, 1] = pd.NA
    with pytest.raises(ValueError, match=r"NaN or infinity in 1 row"):
        sknc.nc_report(frame, np.arange(30) % 3)
    assert np.isfinite(sknc.nc_report(frame.dropna(), np.arange(30)[frame.notna().all(axis=1)] % 3)["nc1"])


# ------------------------------------------------------------------------ issue 21: many classes
def _many(rng, k, d, n_per=3, spread=0.5, offset=3.0):
    y = np.repeat(np.arange(k), n_per)
    M = rng.standard_normal((k, d))
    H = offset + M[y] + spread * rng.standard_normal((len(y), d))
    W = M + 0.3 * rng.standard_normal((k, d))
    return H, y, W, rng.standard_normal(k)


def test_tiles_give_the_full_answer_beyond_one_tile(rng):
    # K = 3000 classes: more than one default 64 MiB tile (2896 classes), so the report runs tile by tile; the
    # whole K x K arrays (72 MB at this K) are the independent reference
    H, y, W, b = _many(rng, 3000, 12)
    tiled = sknc.nc_report(H, y, W, b)
    whole = sknc.nc_report(H, y, W, b, tile_bytes=8 * 3000 * 3000)
    for key in whole.index:
        assert tiled[key] == pytest.approx(whole[key], rel=1e-10, nan_ok=True), key


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tiny_tiles_and_the_tiled_nc4_agree_with_the_tables(rng, dtype, monkeypatch):
    from sknc.metrics import _pairwise

    H, y, W, b = _many(rng, 60, 9, n_per=20)
    H = H.astype(dtype)
    whole = sknc.nc_report(H, y, W, b)
    monkeypatch.setattr(_pairwise, "PAIRWISE_TILE_BYTES", 8 * 7 * 7)  # 7-class tiles, the second pass tiled too
    acc = sknc.NCAccumulator(mode="two_pass")
    for part in np.array_split(np.arange(len(y)), 3):
        acc.update(H[part], y[part])
    for part in np.array_split(np.arange(len(y)), 3):
        acc.update_second_pass(H[part], y[part], W, b)
    assert acc._second.plan.direct
    streamed = acc.report(W, b)
    for key in whole.index:
        assert streamed[key] == pytest.approx(whole[key], rel=1e-6 if dtype == np.float32 else 1e-10,
                                              nan_ok=True), key


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tiled_second_pass_with_a_classifier_of_absent_classes(rng, dtype, monkeypatch):
    # regression: W has rows for classes the data lack; at many classes (tiled NC4) the second pass used to
    # crash with a KeyError. NC4 is NaN with the reason, as without tiles, and the rest equals the whole report.
    from sknc.metrics import _pairwise

    H, y, W, b = _many(rng, 60, 9, n_per=20)
    keep = y < 55  # classes 55..59 of W have no sample
    H, y = H[keep].astype(dtype), y[keep]
    with pytest.warns(sknc.NCWarning, match="no sample of class"):
        whole = sknc.nc_report(H, y, W, b)
    monkeypatch.setattr(_pairwise, "PAIRWISE_TILE_BYTES", 8 * 7 * 7)
    acc = sknc.NCAccumulator(mode="two_pass")
    acc.update(H, y)
    acc.update_second_pass(H, y, W, b)
    assert acc._second.plan.direct
    with pytest.warns(sknc.NCWarning, match="no sample of class"):
        streamed = acc.report(W, b)
    assert np.isnan(streamed["nc4"]) and np.isnan(whole["nc4"])
    for key in whole.index:
        assert streamed[key] == pytest.approx(whole[key], rel=1e-6 if dtype == np.float32 else 1e-10,
                                              nan_ok=True), key


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("regime", ["collapsed", "noisy", "far"])
def test_tiled_nc4_from_the_classifiers_bounds_decides_as_both_products(rng, compiled, dtype, regime, monkeypatch):
    # many classes: when W is close to a multiple of the centred means, only the classes the classifier's scores
    # cannot rule out get an NCC score; row by row the decisions must be those of both full products, and NC4
    # that of the untiled tables
    from sknc.metrics import _pairwise
    from sknc.metrics._kernels import forced

    k, d, n_per = 60, 12, 12
    y = np.repeat(np.arange(k), n_per)
    M = rng.standard_normal((k, d))
    noise, spread = {"collapsed": (0.4, 0.2), "noisy": (0.8, 1.0), "far": (0.4, 0.2)}[regime]
    H = (20.0 + M[y] + noise * rng.standard_normal((len(y), d))).astype(dtype)
    # near collapse the classifier is about a multiple of the centred means, with the bias that centres the data
    W = (3.0 * (M - M.mean(0)) if regime != "far" else rng.standard_normal((k, d))) + spread * rng.standard_normal((k, d))
    b = -W @ np.full(d, 20.0) + 0.1 * rng.standard_normal(k)
    whole = sknc.nc_report(H, y, W, b)  # untiled: both decisions from the K x K tables
    monkeypatch.setattr(_pairwise, "PAIRWISE_TILE_BYTES", 8 * 7 * 7)
    with forced(compiled):
        acc = sknc.NCAccumulator(mode="two_pass").update(H, y)
        for part in np.array_split(np.arange(len(y)), 3):
            acc.update_second_pass(H[part], y[part], W, b)
        sp = acc._second
        assert sp.plan.direct
        bounds = sp.t.get("bounds")
        assert (bounds is None) == (regime == "far")  # far from the means: both products
        if bounds is not None:
            centred = (H - sp.plan._means_as(sp.plan.dtype)[y]).astype(sp.plan.dtype)
            full_ncc, full_clf = sp._decide_full(centred, y)
            decided = sp._decide_bounded(centred, y, bounds)
            assert decided is not None
            np.testing.assert_array_equal(decided[0], full_ncc)
            np.testing.assert_array_equal(decided[1], full_clf)
            if regime == "noisy":  # many rows nearest another class's mean: the open classes decide them
                assert np.mean(full_ncc != y) > 0.05
        streamed = acc.report(W, b)
    for key in ("nc4", "ncc_agreement"):
        assert streamed[key] == pytest.approx(whole[key], abs=1e-12), key


def test_sampled_pairs_estimate_the_pairwise_keys(rng):
    H, y, W, b = _many(rng, 400, 16)
    exact = sknc.nc_report(H, y, W, b)
    sampled = sknc.nc_report(H, y, W, b, pair_sample=40_000, random_state=1)
    assert sampled["pairs_sampled"] == 40_000
    for key in ("cdnv", "nc2_h_equiangular", "nc2_w_equiangular"):
        assert sampled[key] == pytest.approx(exact[key], rel=0.05), key
    assert sampled["mean_max_abs_cos"] <= exact["mean_max_abs_cos"] + 1e-12  # a max over a sample: a lower bound
    for key in ("nc1", "nc2_h", "nc2_w", "nc3", "nc4"):  # everything else stays exact
        assert sampled[key] == pytest.approx(exact[key], rel=1e-10), key
    again = sknc.nc_report(H, y, W, b, pair_sample=40_000, random_state=1)
    assert again.equals(sampled)
    with pytest.raises(ValueError, match="pair_sample must be None or an integer"):
        sknc.nc_report(H, y, pair_sample=0)


def test_gram_error_near_zero_keeps_its_digits(rng):
    # the closed form 2 - 2<G,E>/||G|| cancels near an exact ETF; the tiles give the error term by term
    from sknc.metrics._pairwise import gram_error

    k, d = 300, 310
    M = sknc.simplex_etf(k, d, random_state=0)
    assert gram_error(M, tile_bytes=8 * 50 * 50) < 1e-12
    P = M + 1e-7 * rng.standard_normal((k, d))
    G = P @ P.T
    expected = np.linalg.norm(G / np.linalg.norm(G) - sknc.etf_gram(k))
    assert gram_error(P, tile_bytes=8 * 50 * 50) == pytest.approx(expected, rel=1e-6)
    A, B = P, M + 1e-7 * rng.standard_normal((k, d))
    cross = A @ B.T
    assert gram_error(A, B, tile_bytes=8 * 50 * 50) == pytest.approx(
        np.linalg.norm(cross / np.linalg.norm(cross) - sknc.etf_gram(k)), rel=1e-6)


@pytest.mark.parametrize("compiled", [True, False])
def test_coinciding_means_are_named_from_the_tiles_too(rng, compiled, monkeypatch):
    from sknc.metrics import _pairwise
    from sknc.metrics._kernels import forced

    H, y = _two_means_at_one_point(rng, 12, (4, 9))
    monkeypatch.setattr(_pairwise, "PAIRWISE_TILE_BYTES", 8 * 5 * 5)  # 5-class tiles: classes 4 and 9 apart
    with forced(compiled), pytest.warns(sknc.NCWarning, match=r"the means of classes 4 and 9 coincide"):
        report = sknc.nc_report(H, y)
    assert np.isnan(report["cdnv"]) and np.isfinite(report["nc2_h_equiangular"])


def _ranks_by_svd(H):
    s = np.linalg.svd(np.asarray(H, dtype=np.float64) - np.asarray(H, dtype=np.float64).mean(0), compute_uv=False)
    p = s[s > 0] / s.sum()
    return np.exp(-np.sum(p * np.log(p))), np.sum(s**2) / s[0] ** 2


def _spread_features(rng, n=400, k=4, d=10, rank=None):
    y = rng.integers(0, k, n)
    if rank is not None:  # features in a rank-r affine subspace far from the origin
        return 50.0 + rng.standard_normal((n, rank)) @ rng.standard_normal((rank, d)), y
    L = rng.standard_normal((d, d)) * np.linspace(2.0, 0.01, d)
    return 50.0 + 3 * rng.standard_normal((k, d))[y] + rng.standard_normal((n, d)) @ L.T, y


@pytest.mark.parametrize("rank", [None, 3])
def test_feature_ranks_against_numpys_svd_in_memory_and_streamed(rng, rank):
    import pickle

    H, y = _spread_features(rng, rank=rank)
    effective, stable = _ranks_by_svd(H)
    report = sknc.nc_report(H, y, feature_rank=True)
    assert report["features_effective_rank"] == pytest.approx(effective, rel=1e-10)
    assert report["features_stable_rank"] == pytest.approx(stable, rel=1e-10)
    if rank is not None:
        assert report["features_effective_rank"] < rank + 1e-9  # the rounding of the scatter adds no direction
    plain = sknc.nc_report(H, y)
    assert "features_effective_rank" not in plain and plain["nc1"] == report["nc1"]  # opt-in, nothing else moves
    parts = np.array_split(rng.permutation(len(y)), 3)
    shards = [sknc.NCAccumulator(mode="two_pass", feature_rank=True).update(H[p], y[p]) for p in parts]
    merged = pickle.loads(pickle.dumps(shards[0].merge_all(shards[1:])))
    streamed = sknc.NCAccumulator(feature_rank=True)
    for p in parts:
        streamed.update(H[p], y[p])
    for acc in (merged, streamed, sknc.NCAccumulator().load_state_dict(streamed.state_dict())):
        with pytest.warns(sknc.NCWarning, match="second pass"):  # (nc1 waits for the second pass)
            got = acc.report()
        assert got["features_effective_rank"] == pytest.approx(effective, rel=1e-10)
        assert got["features_stable_rank"] == pytest.approx(stable, rel=1e-10)


def test_feature_ranks_of_float32_tensors_huge_values_and_label_sets(rng):
    torch = pytest.importorskip("torch")
    H, y = _spread_features(rng)
    H32 = H.astype(np.float32)
    effective, stable = _ranks_by_svd(H32)
    got = sknc.nc_report(torch.from_numpy(H32), y, feature_rank=True)
    assert got["features_effective_rank"] == pytest.approx(effective, rel=1e-10)
    huge = sknc.nc_report(H * 1e200, y, feature_rank=True)  # squares scaled by a power of two: no overflow
    assert huge["features_stable_rank"] == pytest.approx(_ranks_by_svd(H)[1], rel=1e-10)
    # multi-label data without single-label samples: every row counts, whatever its label set
    Y = np.zeros((len(y), 4), dtype=int)
    Y[np.arange(len(y)), y] = 1
    Y[np.arange(len(y)), (y + 1 + np.arange(len(y)) % 2) % 4] = 1
    sets = sknc.nc_report(H, Y, feature_rank=True)
    assert sets["class_means_estimated"]
    assert sets["features_effective_rank"] == pytest.approx(_ranks_by_svd(H)[0], rel=1e-10)
    acc = sknc.NCAccumulator(feature_rank=True).update(H[:150], Y[:150]).update(H[150:], Y[150:])
    with pytest.warns(sknc.NCWarning):
        assert acc.report()["features_stable_rank"] == pytest.approx(_ranks_by_svd(H)[1], rel=1e-10)


def test_feature_ranks_undefined_and_mismatched_merges_are_named(rng):
    with pytest.warns(sknc.NCWarning, match="all features coincide"):
        same = sknc.nc_report(np.ones((10, 3)), np.arange(10) % 2, feature_rank=True)
    assert np.isnan(same["features_effective_rank"]) and np.isnan(same["features_stable_rank"])
    H, y = _spread_features(rng)
    with pytest.raises(ValueError, match="feature_rank"):
        sknc.NCAccumulator(feature_rank=True).update(H, y).merge(sknc.NCAccumulator().update(H, y))
    with pytest.raises(ValueError, match="feature_rank is fixed"):
        sknc.NCAccumulator().update(H, y).report(feature_rank=True)


def test_effective_and_stable_rank_of_the_class_means_against_numpy(rng):
    k, d = 6, 9
    y = np.repeat(np.arange(k), 15)
    M = rng.standard_normal((k, d)) * np.array([5.0, 3.0, 2.0, 1.0, 0.5, 0.2, 0.1, 0.1, 0.1])
    H = M[y] + 0.05 * rng.standard_normal((len(y), d))
    report = sknc.nc_report(H, y)
    means = np.stack([H[y == c].mean(0) for c in range(k)])
    s = np.linalg.svd(means - means.mean(0), compute_uv=False)[: k - 1]
    p = s / s.sum()
    assert report["means_effective_rank"] == pytest.approx(np.exp(-np.sum(p * np.log(p))), rel=1e-10)
    assert report["means_stable_rank"] == pytest.approx(np.sum(s**2) / s[0] ** 2, rel=1e-10)
    # a simplex ETF has K - 1 equal directions; means on one line have stable and effective rank 1
    etf = sknc.nc_report(sknc.simplex_etf(k, d, random_state=0)[y], y)
    assert etf["means_effective_rank"] == pytest.approx(k - 1) and etf["means_stable_rank"] == pytest.approx(k - 1)
    line = sknc.nc_report(np.outer(np.arange(k), np.ones(d))[y], y)
    assert line["means_effective_rank"] == pytest.approx(1.0) and line["means_stable_rank"] == pytest.approx(1.0)
    with pytest.warns(sknc.NCWarning, match="coincide"):
        same = sknc.nc_report(np.ones((len(y), d)), y)
    assert np.isnan(same["means_effective_rank"]) and np.isnan(same["means_stable_rank"])
