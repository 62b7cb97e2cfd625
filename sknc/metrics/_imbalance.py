"""Imbalance geometry from statistics: class-mean norms, orthogonality, minority collapse."""

from __future__ import annotations

import numpy as np

from ._collapse import scaled

__all__ = ["mean_norms", "minority_groups"]


def mean_norms(vectors):
    """Row norms computed without overflow or underflow."""
    v, exp = scaled(vectors)
    return np.ldexp(np.linalg.norm(v, axis=1), exp)


def minority_groups(means, W, norm_rtol, cos_atol):
    """Classes whose mean norm is at most ``norm_rtol`` of the largest, and groups of coinciding classifier rows."""
    norms = mean_norms(means)
    collapsed = np.flatnonzero(norms <= norm_rtol * norms.max()) if norms.max() > 0 else np.arange(len(norms))
    groups = []
    if W is not None:
        w, _ = scaled(W)
        wn = np.linalg.norm(w, axis=1)
        unit = np.divide(w, wn[:, None], out=np.zeros_like(w), where=wn[:, None] > 0)
        same = (unit @ unit.T >= 1.0 - cos_atol) & (
            np.abs(wn[:, None] - wn[None, :]) <= cos_atol * np.maximum(wn[:, None], wn[None, :])
        )
        seen = np.zeros(len(w), dtype=bool)
        for i in range(len(w)):  # K is small; grouping is a union of identical rows
            if seen[i]:
                continue
            members = np.flatnonzero(same[i] & ~seen)
            seen[members] = True
            if members.size > 1:
                groups.append(members)
    return collapsed, groups
