"""Loss functions as torch modules."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PALLoss"]


class PALLoss(nn.Module):
    r"""Pick-all-labels cross-entropy, optionally label-smoothed or focal.

    For a sample with label set ``S`` and logits ``z`` (``p = softmax(z)``), each
    picked label ``k`` contributes one cross-entropy term and the terms add up:

    .. math::

        L(z, S) = \frac{1}{c_S} \sum_{k \in S} (1 - p_k)^{\gamma}
                  \Big[-(1 - \alpha) \log p_k - \frac{\alpha}{K} \sum_{j=1}^{K} \log p_j\Big],

    with :math:`c_S = 1` (``normalize=False``, the pick-all-labels loss of the
    SVHN experiments of Li et al.) or :math:`c_S = |S|` (``normalize=True``, what
    the official M-lab MNIST/CIFAR code trains through ``1/m`` soft targets).
    :math:`\alpha` is label smoothing (Szegedy et al. 2016: each picked term's
    one-hot target becomes :math:`(1-\alpha) e_k + \alpha \mathbf{1}/K`) and
    :math:`\gamma` the focal exponent (Lin et al. 2017: confident terms are
    down-weighted). With :math:`\alpha = \gamma = 0` it is the plain PAL loss;
    with 1-D integer targets it is ordinary (smoothed, focal) cross-entropy, and
    with ``focal_gamma=0`` it equals ``torch.nn.functional.cross_entropy(...,
    label_smoothing=alpha)``. Computed through ``log_softmax``, so it is stable
    for any logits. With ``check_targets=False`` a label-free row (all-zero
    indicator) contributes 0.

    Parameters
    ----------
    normalize : bool, default=False
        Divide each sample's loss by ``|S|``.
    label_smoothing : float in [0, 1), default=0.0
    focal_gamma : float >= 0, default=0.0
    reduction : {'mean', 'sum', 'none'}, default='mean'
    check_targets : bool, default=True
        Raise on indicator rows with no label (costs a device sync per call; the
        estimators validate targets once up front and switch it off).

    Examples
    --------
    >>> import torch
    >>> from sknc import PALLoss
    >>> logits = torch.tensor([[2.0, 0.5, -1.0]])
    >>> target = torch.tensor([[1.0, 1.0, 0.0]])
    >>> round(PALLoss()(logits, target).item(), 4)
    1.9826
    >>> round(PALLoss(label_smoothing=0.1, focal_gamma=2.0)(logits, target).item(), 4)
    1.2023
    """

    def __init__(self, normalize=False, label_smoothing=0.0, focal_gamma=0.0, reduction="mean", check_targets=True):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none'; got {reduction!r}.")
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1); got {label_smoothing!r}.")
        if not 0.0 <= float(focal_gamma) < float("inf"):
            raise ValueError(f"focal_gamma must be a finite number >= 0; got {focal_gamma!r}.")
        self.normalize = normalize
        self.label_smoothing = float(label_smoothing)
        self.focal_gamma = float(focal_gamma)
        self.reduction = reduction
        self.check_targets = check_targets

    def forward(self, logits, target):
        if logits.ndim != 2:
            raise ValueError(f"logits must be 2-D (batch, n_classes); got shape {tuple(logits.shape)}.")
        log_p = torch.log_softmax(logits, dim=1)
        if target.ndim == 1:
            target = torch.nn.functional.one_hot(target.long(), logits.shape[1]).to(log_p.dtype)
        elif target.shape != logits.shape:
            raise ValueError(f"indicator targets {tuple(target.shape)} do not match logits {tuple(logits.shape)}.")
        else:
            target = target.to(log_p.dtype)
        per_label = -log_p  # the cross-entropy term of picking label k
        if self.label_smoothing:
            alpha = self.label_smoothing
            per_label = (1 - alpha) * per_label + alpha * per_label.mean(dim=1, keepdim=True)
        if self.focal_gamma:
            per_label = (-torch.expm1(log_p)).clamp(min=0) ** self.focal_gamma * per_label  # (1 - p_k)^gamma
        per_sample = (target * per_label).sum(dim=1)
        if self.normalize or self.check_targets:
            size = target.sum(dim=1)
            if self.check_targets and bool((size <= 0).any()):
                raise ValueError("a target row has no label; every sample needs at least one.")
            if self.normalize:
                per_sample = per_sample / size.clamp(min=1)
        if self.reduction == "mean":
            return per_sample.mean()
        if self.reduction == "sum":
            return per_sample.sum()
        return per_sample
