"""Closed forms against theory.md's independently verified tables and identities."""

import math

import numpy as np
import pytest

from sknc import theory


@pytest.mark.parametrize(
    "k,counts,lw,lh,loss,omega_sq,betas,scales",
    [
        (4, {1: 12, 2: 6}, 5e-3, 5e-3, "pal", 7.223560, {1: 0.469177, 2: 0.412080}, {2: 1.756609}),
        (4, {1: 12, 2: 6}, 5e-3, 5e-3, "pal_mean", 6.817286, {1: 0.491786, 2: 0.370432}, {2: 1.506478}),
        (5, {1: 20, 2: 10, 3: 20}, 1e-2, 2e-3, "pal", 4.789452, {1: 0.702707, 2: 0.613114, 3: 0.562299},
         {2: 1.745005, 3: 2.400570}),
        (4, {1: 8, 2: 12, 3: 4}, 2e-2, 2e-2, "pal", 4.871982, {1: 0.430301, 2: 0.362084, 3: 0.324444},
         {2: 1.682932, 3: 2.261981}),
    ],
)
def test_pal_matches_reference_table(k, counts, lw, lh, loss, omega_sq, betas, scales):
    opt = theory.pal_optimum(k, counts, lw, lh, loss=loss)
    assert not opt.collapsed
    assert opt.omega_sq == pytest.approx(omega_sq, abs=1e-6)
    for m, beta in betas.items():
        assert opt.betas[m] == pytest.approx(beta, abs=1e-6)
    for m, c in scales.items():
        assert opt.scales[m] == pytest.approx(c, abs=1e-6)


def test_pal_mlab_mnist_proportions():
    assert theory.pal_optimum(10, {1: 31000, 2: 9000}, 5e-4, 1e-5).scales[2] == pytest.approx(1.788, abs=1e-3)
    assert theory.pal_optimum(10, {1: 31000, 2: 9000}, 5e-4, 1e-5, "pal_mean").scales[2] == pytest.approx(1.569, abs=1e-3)


@pytest.mark.parametrize(
    "lw,lh,w2,f",
    [(5e-3, 5e-3, 7.478779, 0.1836920), (1e-2, 2e-3, 3.431033, 0.1677005), (2e-2, 2e-2, 4.969512, 0.5416208)],
)
def test_balanced_ce_matches_reference_table(lw, lh, w2, f):
    opt = theory.balanced_ce_optimum(4, 5, lw, lh)
    assert opt.w_norm_sq == pytest.approx(w2, abs=1e-6)
    assert opt.objective == pytest.approx(f, abs=1e-7)
    # Rescaling identity and self-duality scale.
    assert lw * opt.W_norm_sq == pytest.approx(lh * opt.H_norm_sq, rel=1e-12)
    assert opt.h_norm_sq == pytest.approx(opt.feature_scale**2 * opt.w_norm_sq, rel=1e-12)


def test_balanced_ce_zero_regime_and_pal_reduction():
    zero = theory.balanced_ce_optimum(4, 5, 0.12, 0.12)
    assert zero.collapsed and zero.objective == pytest.approx(math.log(4)) and zero.W_norm_sq == 0
    single = theory.pal_optimum(4, {1: 20}, 5e-3, 5e-3)
    zhu = theory.balanced_ce_optimum(4, 5, 5e-3, 5e-3)
    assert single.omega_sq == pytest.approx(zhu.w_norm_sq, rel=1e-10)
    assert single.objective == pytest.approx(zhu.objective, rel=1e-12)
    assert theory.pal_optimum(4, {1: 20}, 0.12, 0.12).collapsed


def test_margins_depend_only_on_the_product_of_lambdas():
    a = theory.pal_optimum(5, {1: 20, 2: 10}, 1e-2, 4e-3)
    b = theory.pal_optimum(5, {1: 20, 2: 10}, 2e-3, 2e-2)
    for m in (1, 2):
        assert a.margins[m] == pytest.approx(b.margins[m], rel=1e-10)
    c = theory.nonnegative_ce_optimum([3, 5, 9], 0.02, 0.01)
    d = theory.nonnegative_ce_optimum([3, 5, 9], 0.01, 0.02)
    assert np.allclose(c.margins, d.margins, rtol=1e-12)


def test_nonnegative_matches_reference_table():
    opt = theory.nonnegative_ce_optimum([2, 4, 8, 16], 0.05, 0.05)
    assert opt.threshold == pytest.approx(3.0)
    assert np.allclose(opt.margins, [0, 0.481686, 1.261857, 1.830596], atol=1e-6)
    assert np.allclose(opt.mean_norms_sq, [0, 0.208576, 0.386363, 0.396336], atol=1e-6)
    assert opt.minority_collapsed.tolist() == [True, False, False, False]
    full = theory.nonnegative_ce_optimum([2, 4, 8, 16], 0.2, 0.2)
    assert full.threshold == pytest.approx(48.0) and full.complete_collapse
    assert full.objective == pytest.approx(math.log(4))


def test_nonnegative_classifier_produces_the_stated_logits():
    opt = theory.nonnegative_ce_optimum([2, 4, 8, 16], 0.05, 0.05)
    k = 4
    means = np.diag(np.sqrt(opt.mean_norms_sq))  # orthogonal frame with the optimal lengths
    W = opt.classifier(means)
    logits = means @ W.T  # row c: logits of a class-c sample
    expected = opt.margins[:, None] * (np.eye(k) - 1.0 / k)
    assert np.allclose(logits, expected, atol=1e-12)
    assert np.sum(W**2) == pytest.approx(opt.W_norm_sq, rel=1e-12)


def test_strong_collapse_errors_zero_on_exact_configuration(rng):
    c, n, p = 3, 4, 7
    q = np.linalg.qr(rng.standard_normal((p, c)))[0]
    centring = np.eye(c) - 1.0 / c
    W = n**0.25 * centring @ q.T  # W W^T = sqrt(n) (I - J/C)
    y = np.repeat(np.arange(c), n)
    H = W[y] / math.sqrt(n)
    errs = theory.strong_collapse_errors(W, H, np.full(c, 1 / c), y)
    assert all(v < 1e-12 for v in errs.values())
    ref = theory.mse_strong_collapse(c, n)
    assert np.allclose(W @ W.T, ref.gram) and np.sum(W**2) == pytest.approx(ref.W_norm_sq)
    # the interpolation claim: W H^T + b = one-hot targets
    assert np.allclose(H @ W.T + 1 / c, np.eye(c)[y])


def test_network_lambda_mapping():
    assert theory.network_to_ufm_lambdas(5e-4, 1e-3, 128, 40000) == pytest.approx((5e-4, 2 * 1e-3 * 128 / 40000))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: theory.balanced_ce_optimum(1, 5, 1e-3, 1e-3), "at least 2"),
        (lambda: theory.balanced_ce_optimum(4, 5, -1e-3, 1e-3), "lambda_W must be finite and > 0"),
        (lambda: theory.pal_optimum(3, {2: 4}, 1e-3, 1e-3), "multiplicity 1 must be present"),
        (lambda: theory.pal_optimum(3, {1: 3, 4: 1}, 1e-3, 1e-3), "exceeds n_classes"),
        (lambda: theory.pal_optimum(3, {1: 3}, 1e-3, 1e-3, loss="bce"), "loss must be"),
        (lambda: theory.nonnegative_ce_optimum([3, 0, 2], 1e-3, 1e-3), "positive integers"),
        (lambda: theory.strong_collapse_errors(np.ones((2, 3)), np.ones((3, 3)), np.ones(2), [0, 0, 1]), "balanced"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
