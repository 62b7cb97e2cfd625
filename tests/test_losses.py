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
