"""Imbalance geometry from statistics: class-mean norms, orthogonality, minority collapse."""

from __future__ import annotations

import numpy as np

from ._collapse import scaled

__all__ = ["MARGIN_ATOL", "mean_norms", "minority_table"]

MARGIN_ATOL = 1e-6


def mean_norms(vectors):
    """Row norms computed without overflow or underflow."""
    v, exp = scaled(vectors)
    return np.ldexp(np.linalg.norm(v, axis=1), exp)


def minority_table(centred, means, W, b, counts):
    """Per-class minority-collapse quantities from class means and a classifier (see ``minority_collapse``).

    ``centred`` are the centred class means (any common scale), ``means`` the
    uncentred ones (original units, for the logits), ``W``/``b`` the
    classifier or None. Returns a dict of (K,) arrays.
    """
    k = centred.shape[0]
    norms = mean_norms(centred)
    out = {"n_samples": np.asarray(counts, dtype=np.int64),
           "mean_norm_ratio": norms / norms.max() if norms.max() > 0 else np.full(k, np.nan)}
    if W is None:
        out["collapse_score"] = 1.0 - out["mean_norm_ratio"]
        return out
    w, _ = scaled(W)
    wn = np.linalg.norm(w, axis=1)
    out["classifier_norm_ratio"] = wn / wn.max() if wn.max() > 0 else np.full(k, np.nan)
    unit = np.divide(w, wn[:, None], out=np.zeros_like(w), where=wn[:, None] > 0)
    cos = unit @ unit.T
    np.fill_diagonal(cos, -np.inf)
    partner = np.argmax(cos, axis=1)
    out["max_classifier_cosine"] = np.clip(cos[np.arange(k), partner], -1.0, 1.0)
    out["closest_classifier"] = partner
    # margin of each class mean: its own logit minus the largest other logit (differences of logits,
    # so b matters only through b_k - b_l); the collapse criterion of the UFM theories is a zero margin
    logits = means @ W.T + (0.0 if b is None else b)
    own = logits[np.arange(k), np.arange(k)]
    others = logits.copy()
    others[np.arange(k), np.arange(k)] = -np.inf
    margin = own - others.max(axis=1)
    best = margin.max()
    out["margin"] = margin
    # margins are log-odds (nats): below 1e-6 no class is separated at all (complete collapse, W = H = 0)
    out["margin_ratio"] = margin / best if best > MARGIN_ATOL else np.full(k, np.nan)
    out["collapse_score"] = 1.0 - np.clip(out["margin_ratio"], 0.0, 1.0)
    return out
