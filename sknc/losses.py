"""Loss functions as torch modules."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PALLoss"]


class PALLoss(nn.Module):
    """Pick-all-labels cross-entropy.

    For a sample with label set ``S`` and logits ``z``::

        L(z, S) = sum_{k in S} -log softmax(z)_k          (normalize=False)
        L(z, S) = (1/|S|) sum_{k in S} -log softmax(z)_k  (normalize=True)

    The normalised form is what the official M-lab MNIST/CIFAR code trains
    through ``1/m`` soft targets; the summed form is the pick-all-labels loss of
    the SVHN experiments. Computed through ``log_softmax``, so it is stable for
    any logits. With 1-D integer targets it is ordinary cross-entropy.

    Parameters
    ----------
    normalize : bool, default=False
        Divide each sample's loss by ``|S|``.
    reduction : {'mean', 'sum', 'none'}, default='mean'
    check_targets : bool, default=True
        Raise on indicator rows with no label (costs a device sync per call; the
        estimators validate targets once up front and switch it off).
    """

    def __init__(self, normalize=False, reduction="mean", check_targets=True):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none'; got {reduction!r}.")
        self.normalize = normalize
        self.reduction = reduction
        self.check_targets = check_targets

    def forward(self, logits, target):
        if logits.ndim != 2:
            raise ValueError(f"logits must be 2-D (batch, n_classes); got shape {tuple(logits.shape)}.")
        log_p = torch.log_softmax(logits, dim=1)
        if target.ndim == 1:
            per_sample = -log_p.gather(1, target.long().unsqueeze(1)).squeeze(1)
        else:
            if target.shape != logits.shape:
                raise ValueError(f"indicator targets {tuple(target.shape)} do not match logits {tuple(logits.shape)}.")
            target = target.to(log_p.dtype)
            per_sample = -(target * log_p).sum(dim=1)
            if self.normalize or self.check_targets:
                size = target.sum(dim=1)
                if self.check_targets and bool((size <= 0).any()):
                    raise ValueError("a target row has no label; every sample needs at least one.")
                if self.normalize:
                    per_sample = per_sample / size
        if self.reduction == "mean":
            return per_sample.mean()
        if self.reduction == "sum":
            return per_sample.sum()
        return per_sample
