"""Class means of multi-label data estimated from label sets (sknc.metrics._tagwise_means), against truth
and against independent computations (scipy's least squares, numpy's pseudo-inverse, brute-force loops)."""

import pickle
import warnings
from itertools import combinations

import numpy as np
import pytest
from scipy.optimize import least_squares

import sknc
from sknc.metrics._tagwise_means import estimate_class_means


def _set_data(rng, k=6, d=12, mults=(2, 3), per_set=12, scales=None, noise=0.05, offset=3.0, radius=2.0,
              singletons=0):
    """Features of every label set of the given sizes: g + c_|S| * mean of its classes' (ETF) means + noise."""
    M = radius * sknc.simplex_etf(k, d, random_state=int(rng.integers(1000)))
    g = offset * rng.standard_normal(d)
    scales = scales or {1: 1.0, 2: 1.0, 3: 1.5, 4: 1.8}
    sets = [s for m in mults for s in combinations(range(k), m)]
    sets += [(c,) for c in range(k)] * (1 if singletons else 0)
    Y, H = [], []
    for s in sets:
        n = singletons if len(s) == 1 else per_set
        row = np.zeros(k, dtype=int)
        row[list(s)] = 1
        Y += [row] * n
        H += [g + scales[len(s)] * M[list(s)].mean(0)] * n
    H = np.array(H) + noise * rng.standard_normal((len(H), d))
    return H, np.array(Y), M, g


def _set_means(H, Y):
    keys, inverse = np.unique(Y, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    counts = np.bincount(inverse)
    means = np.zeros((len(keys), H.shape[1]))
    np.add.at(means, inverse, H)
    return keys.astype(bool), means / counts[:, None], counts, inverse


def _independent_fit(H, Y):
    """The tag-wise-average model fitted by scipy: free (g, M, c_m), sum_k M_k = 0 as a stiff residual."""
    sets, means, counts, _ = _set_means(H, Y)
    mult = sets.sum(1)
    k, d = Y.shape[1], H.shape[1]
    sizes = sorted(set(mult.tolist()))
    free = sizes[1:]

    def unpack(p):
        g, M = p[:d], p[d : d + k * d].reshape(k, d)
        c = {sizes[0]: 1.0, **{m: p[d + k * d + i] for i, m in enumerate(free)}}
        return g, M, c

    def residuals(p):
        g, M, c = unpack(p)
        avg = (sets / mult[:, None]) @ M
        fit = g + np.array([c[m] for m in mult])[:, None] * avg
        return np.concatenate([(np.sqrt(counts)[:, None] * (means - fit)).ravel(), 1e3 * M.sum(0)])

    start = np.concatenate([means.mean(0), np.zeros(k * d), np.ones(len(free))])
    sol = least_squares(residuals, start, method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=20000)
    return unpack(sol.x)


def test_estimate_recovers_the_class_means_without_any_singleton(rng):
    H, Y, M, g = _set_data(rng, noise=0.05)
    sets, means, counts, _ = _set_means(H, Y)
    est = estimate_class_means(sets, sets.sum(1), means, counts)
    assert est.undetermined.size == 0
    # within the noise of the truth: each mean averages ~60 rows of noise 0.05 per coordinate
    assert np.abs(est.centred - M).max() < 0.05 and np.abs(est.centre_rel - g).max() < 0.05
    assert est.scales[2] == 1.0 and est.scales[3] == pytest.approx(1.5, rel=0.02)
    # and equal to an independent least-squares fit of the same model
    g_ind, M_ind, c_ind = _independent_fit(H, Y)
    assert np.abs(est.centred - M_ind).max() < 1e-7
    assert np.abs(est.centre_rel - g_ind).max() < 1e-7
    assert est.scales[3] == pytest.approx(c_ind[3], rel=1e-7)


def test_exact_etf_gives_zero_nc2_and_nc1(rng):
    H, Y, M, g = _set_data(rng, noise=0.0, mults=(2, 3))
    report = sknc.nc_report(H, Y, M, -M @ g)
    assert report["class_means_estimated"]
    assert report["nc2_h"] < 1e-10 and report["nc1"] < 1e-20
    assert report["nc3"] < 1e-10 and report["nc4"] == 0.0
    assert report["tagwise_angle"] < 1e-6


def test_report_keys_against_independent_computations(rng):
    H, Y, M, g = _set_data(rng, noise=0.3, mults=(2, 3), k=5, d=9)
    W = M + 0.2 * rng.standard_normal(M.shape)
    b = -W @ g + 0.1 * rng.standard_normal(5)
    report = sknc.nc_report(H, Y, W, b)
    g_ind, M_ind, _ = _independent_fit(H, Y)
    k = Y.shape[1]
    sets, means, counts, inverse = _set_means(H, Y)
    resid = H - means[inverse]
    sigma_w = resid.T @ resid / len(H)
    sigma_b = M_ind.T @ M_ind / k
    assert report["nc1"] == pytest.approx(np.trace(sigma_w @ np.linalg.pinv(sigma_b, rcond=1e-10)) / k, rel=1e-6)
    assert report["nc1_trace_quotient"] == pytest.approx(np.trace(sigma_w) / np.trace(sigma_b), rel=1e-6)
    # CDNV: each class's variance from the samples that carry it, about their own set's mean
    sq = np.einsum("ij,ij->i", resid, resid)
    var = np.array([sq[Y[:, c] == 1].mean() for c in range(k)])
    terms = [(var[a] + var[c]) / (2 * np.sum((M_ind[a] - M_ind[c]) ** 2)) for a, c in combinations(range(k), 2)]
    assert report["cdnv"] == pytest.approx(np.mean(terms), rel=1e-6)
    # NC4: the |S| nearest estimated class means against the |S| largest logits, row by row
    uncentred = M_ind + g_ind
    agree = 0
    for h, y in zip(H, Y):
        m = int(y.sum())
        near = set(np.argsort(np.sum((uncentred - h) ** 2, axis=1))[:m])
        top = set(np.argsort(-(W @ h + b))[:m])
        agree += near == top
    assert report["ncc_agreement"] == pytest.approx(agree / len(H), abs=1e-12)
    assert 0 < report["nc4"] < 1


def test_with_singletons_auto_is_unchanged_and_the_estimate_agrees_within_noise(rng):
    H, Y, M, g = _set_data(rng, noise=0.05, mults=(2,), singletons=40)
    auto = sknc.nc_report(H, Y, M)
    single = sknc.nc_report(H, Y, M, class_means="singletons")
    assert not auto["class_means_estimated"]
    for key in single.index:
        assert auto[key] == single[key] or (np.isnan(auto[key]) and np.isnan(single[key])), key
    estimated = sknc.class_means(H, Y, class_means="tagwise")
    singles = sknc.class_means(H, Y, class_means="singletons")
    assert np.abs(estimated - singles).max() < 0.05  # both near the truth g + M
    assert np.abs(singles - (M + g)).max() < 0.05


def test_auto_estimates_when_a_class_has_fewer_than_two_singletons(rng):
    H, Y, M, g = _set_data(rng, noise=0.05, mults=(2,), singletons=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the estimate is defined: no warning
        report = sknc.nc_report(H, Y, M, -M @ g)
    assert report["class_means_estimated"] and np.isfinite(report["nc1"])


def test_undetermined_classes_are_named_and_their_keys_nan(rng):
    # class 3 only ever appears beside class 2 and nothing fixes the scale of pairs: its mean is free
    Y = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]] * 6)
    H = rng.standard_normal((len(Y), 5))
    with pytest.warns(sknc.NCWarning, match=r"do not determine the mean of class\(es\) 3 ") as caught:
        report = sknc.nc_report(H, Y, rng.standard_normal((4, 5)))
    assert len([w for w in caught if issubclass(w.category, sknc.NCWarning)]) == 1
    assert np.isnan(report["nc1"]) and np.isnan(report["nc4"]) and np.isfinite(report["nc2_w"])
    with pytest.raises(sknc.UndefinedMetricError, match=r"class\(es\) 3 "):
        sknc.nc1(H, Y)
    # two classes that always come together
    Y = np.array([[1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 1, 1], [1, 1, 1, 0]] * 4)
    with pytest.raises(sknc.UndefinedMetricError, match=r"class\(es\) 0, 1 "):
        sknc.nc1(rng.standard_normal((len(Y), 5)), Y, class_means="tagwise")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_streamed_tagwise_report_equals_in_memory(rng, dtype):
    H, Y, M, g = _set_data(rng, noise=0.2, mults=(2, 3), k=5, d=7)
    H = (H + 1e3).astype(dtype)  # far from the origin
    W, b = M, -M @ (g + 1e3)
    ref = sknc.nc_report(H, Y, W, b)
    parts = np.array_split(rng.permutation(len(H)), 4)
    shards = []
    for part in np.array_split(np.arange(4), 2):  # two shards, merged after the first pass
        acc = sknc.NCAccumulator(mode="two_pass")
        for p in part:
            acc.update(H[parts[p]], Y[parts[p]])
        shards.append(acc)
    merged = shards[0].merge_all(shards[1:])
    copies = [merged.copy(), pickle.loads(pickle.dumps(merged))]
    for copy, part in zip(copies, np.array_split(np.arange(4), 2)):
        for p in part:
            copy.update_second_pass(H[parts[p]], Y[parts[p]], W, b)
    done = copies[0].merge_all([pickle.loads(pickle.dumps(copies[1]))])
    report = done.report(W, b)
    assert report["class_means_estimated"]
    for key in ref.index:
        assert report[key] == pytest.approx(ref[key], rel=1e-10, abs=1e-300), key


def test_accumulator_one_pass_and_first_pass_only_say_why_nc1_waits(rng):
    H, Y, M, g = _set_data(rng, noise=0.1, mults=(2,), k=4, d=6)
    acc = sknc.NCAccumulator(mode="one_pass").update(H, Y)
    with pytest.warns(sknc.NCWarning, match="NC1 needs the second pass"):
        report = acc.report()
    ref = sknc.nc_report(H, Y)
    assert np.isnan(report["nc1"])
    for key in ("nc2_h", "cdnv", "nc1_trace_quotient", "tagwise_angle"):  # first-pass sums suffice for these
        assert report[key] == pytest.approx(ref[key], rel=1e-10), key
    with pytest.raises(ValueError, match="class_means is fixed"):
        acc.report(class_means="singletons")


def test_class_means_option_is_checked():
    with pytest.raises(ValueError, match="class_means must be one of"):
        sknc.nc_report(np.zeros((4, 2)), [0, 0, 1, 1], class_means="sets")
    with pytest.raises(ValueError, match="class_means must be one of"):
        sknc.NCAccumulator(class_means="x").update(np.zeros((4, 2)), [0, 1, 0, 1])


def test_one_dimensional_labels_ignore_the_option(rng):
    H = rng.standard_normal((40, 3))
    y = np.arange(40) % 4
    a, b = sknc.nc_report(H, y), sknc.nc_report(H, y, class_means="tagwise")
    assert "class_means_estimated" not in a.index
    assert a.equals(b)


def test_rows_with_every_label_leave_the_fit_alone(rng):
    # the set of all classes averages to the centre whatever its scale: it adds nothing to the means
    H, Y, M, g = _set_data(rng, noise=0.0, mults=(2,), k=4, d=5)
    full = np.ones((5, 4), dtype=int)
    sets, means, counts, _ = _set_means(np.vstack([H, np.tile(g, (5, 1))]), np.vstack([Y, full]))
    est = estimate_class_means(sets, sets.sum(1), means, counts)
    assert est.undetermined.size == 0 and set(est.scales) == {2}
    assert np.abs(est.centred - M).max() < 1e-12


def test_scorers_take_the_option(rng):
    from sklearn.linear_model import RidgeClassifier

    H, Y, M, g = _set_data(rng, noise=0.2, mults=(2,), k=4, d=6)
    model = RidgeClassifier().fit(H, Y)
    estimated = sknc.nc_scorer("nc1")(model, H, Y)
    assert np.isfinite(estimated) and estimated == pytest.approx(-sknc.nc1(H, Y))
    with pytest.warns(sknc.NCWarning):
        assert np.isnan(sknc.nc_scorer("nc1", class_means="singletons")(model, H, Y))
    with pytest.raises(ValueError, match="class_means must be one of"):
        sknc.nc_scorers(class_means="pairs")


def test_a_class_in_no_label_set_is_undetermined_not_minus_the_others(rng):
    # the sum-zero convention alone would set its mean to minus the others' sum: that is no estimate
    H, Y, M, g = _set_data(rng, noise=0.1, mults=(2,), k=4, d=6)
    Y5 = np.hstack([Y, np.zeros((len(Y), 1), dtype=int)])
    with pytest.warns(sknc.NCWarning, match=r"class\(es\) 4 "):
        report = sknc.nc_report(H, Y5)
    assert report["class_means_estimated"] and np.isnan(report["nc1"]) and np.isnan(report["cdnv"])
