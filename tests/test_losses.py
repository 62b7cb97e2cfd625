import numpy as np
import pytest
import torch

from sknc import PALLoss


def test_pal_sum_and_mean_against_manual():
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], dtype=torch.float64)
    target = torch.tensor([[1, 1, 0], [0, 0, 1]], dtype=torch.float64)
    logp = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    manual = torch.stack([-(logp[0, 0] + logp[0, 1]), -logp[1, 2]])
    assert torch.allclose(PALLoss(reduction="none")(logits, target), manual)
    assert torch.allclose(PALLoss(normalize=True, reduction="none")(logits, target), manual / torch.tensor([2.0, 1.0]))
    assert torch.allclose(PALLoss()(logits, target), manual.mean())
    assert torch.allclose(PALLoss(reduction="sum")(logits, target), manual.sum())


def test_one_d_targets_are_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(6, 4)
    y = torch.tensor([0, 3, 1, 1, 2, 0])
    assert torch.allclose(PALLoss()(logits, y), torch.nn.functional.cross_entropy(logits, y))
    assert torch.allclose(PALLoss()(logits, torch.eye(4)[y]), torch.nn.functional.cross_entropy(logits, y))


def test_stable_for_huge_logits_and_matches_closed_form_optimum_loss():
    logits = torch.tensor([[1e4, -1e4, 0.0]])
    out = PALLoss()(logits, torch.tensor([[1.0, 0.0, 0.0]]))
    assert torch.isfinite(out) and out.item() == pytest.approx(0.0, abs=1e-6)
    # At the M-lab ETF optimum the per-sample loss is gamma_m log(m + (K-m) e^{-x}).
    k, m, x = 5, 2, 3.0
    z = torch.tensor([[x * (k - m) / k] * m + [-x * m / k] * (k - m)], dtype=torch.float64)
    t = torch.tensor([[1.0] * m + [0.0] * (k - m)], dtype=torch.float64)
    expected = np.log(m + (k - m) * np.exp(-x))
    assert PALLoss()(z, t).item() == pytest.approx(m * expected)
    assert PALLoss(normalize=True)(z, t).item() == pytest.approx(expected)


def test_bad_targets():
    with pytest.raises(ValueError, match="no label"):
        PALLoss()(torch.zeros(2, 3), torch.tensor([[1.0, 0, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match="do not match"):
        PALLoss()(torch.zeros(2, 3), torch.ones(2, 4))
    with pytest.raises(ValueError, match="reduction"):
        PALLoss(reduction="avg")


def _numpy_pal(z, S, alpha=0.0, gamma=0.0, normalize=False):
    """The loss of one sample by hand: a sum over the picked labels of (smoothed, focal) cross-entropy terms."""
    z = np.asarray(z, dtype=np.float64)
    log_p = z - np.log(np.exp(z - z.max()).sum()) - z.max()
    p = np.exp(log_p)
    k = len(z)
    total = 0.0
    for label in S:
        target = np.full(k, alpha / k)
        target[label] += 1 - alpha
        total += (1 - p[label]) ** gamma * -(target * log_p).sum()
    return total / len(S) if normalize else total


@pytest.mark.parametrize("alpha,gamma,normalize", [(0.0, 0.0, False), (0.1, 0.0, False), (0.0, 2.0, False),
                                                   (0.2, 1.5, True), (0.05, 0.5, False)])
def test_smoothed_and_focal_pal_against_hand_computed_values(alpha, gamma, normalize):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((6, 5)) * 3
    sets = [[0], [1, 2], [4], [0, 3, 4], [2], [1, 3]]
    Y = np.zeros((6, 5))
    for i, S in enumerate(sets):
        Y[i, S] = 1
    loss = PALLoss(normalize=normalize, label_smoothing=alpha, focal_gamma=gamma, reduction="none")
    got = loss(torch.tensor(z), torch.tensor(Y)).numpy()
    expected = [_numpy_pal(z[i], S, alpha, gamma, normalize) for i, S in enumerate(sets)]
    assert np.allclose(got, expected, rtol=1e-12)


def test_smoothed_pal_on_class_labels_is_torch_label_smoothing():
    rng = np.random.default_rng(1)
    z = torch.tensor(rng.standard_normal((20, 7)))
    t = torch.tensor(rng.integers(0, 7, 20))
    ours = PALLoss(label_smoothing=0.15)(z, t)
    theirs = torch.nn.functional.cross_entropy(z, t, label_smoothing=0.15)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-12)


def test_focal_terms_vanish_for_confident_picks_and_options_are_checked():
    z = torch.tensor([[30.0, 0.0, 0.0]])
    assert PALLoss(focal_gamma=2.0)(z, torch.tensor([0])).item() < 1e-20  # (1 - p)^2 * (-log p), p ~ 1
    with pytest.raises(ValueError, match="label_smoothing"):
        PALLoss(label_smoothing=1.0)
    with pytest.raises(ValueError, match="focal_gamma"):
        PALLoss(focal_gamma=-1)
