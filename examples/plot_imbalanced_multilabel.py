"""
Imbalanced multiplicity-1 classes under pick-all-labels
=======================================================

Li et al. (2024, *Neural collapse in multi-label learning with pick-all-label
loss*) prove the multi-label ETF ("M-lab ETF") when every label set of a
given size holds the same number of samples, and leave open what happens when
the **multiplicity-1 classes are imbalanced**. :class:`sknc.UFMSolver` solves
the PAL unconstrained-feature model for any counts (one variable per label
set, exact), so the question can be answered numerically: here 6 classes,
3 majority classes with 100 single-label samples and 3 minority classes with
``100 / rho``, and 10 samples of every pair, for imbalance ratios ``rho`` from
1 to 100. For each optimum we measure

* how the multiplicity-1 class means leave the simplex ETF: the norm of the
  minority means relative to the majority means, and the angles between two
  majority, two minority and a majority and a minority mean (the ETF has
  :math:`\\arccos(-1/5) = 101.5^\\circ` for all);
* how the tag-wise-average property deforms: the angle between each pair
  mean and the sum of its two tags' means, and its scale :math:`c_S`, by pair
  type (majority-majority, mixed, minority-minority);
* where minority collapse sets in: :func:`sknc.minority_collapse`'s score of
  the minority classes, at two strengths of regularisation.

Then a :class:`sknc.PALClassifier` trained on the bundled multi-label digits
with the same kind of imbalance is measured the same way. Fast path: the UFM
sweep takes seconds; the network trains for 150 epochs (the page: about 9 s on
two CPU cores).
"""

# %%
from itertools import combinations

import matplotlib.pyplot as plt
import numpy as np

from sknc import PALClassifier, UFMSolver, load_multilabel_digits, minority_collapse, tagwise_average
from sknc.theory import estimator_to_ufm_lambdas

K, MAJOR = 6, [0, 1, 2]


def labels(n_major, rho, n_pair):
    counts = [n_major] * 3 + [max(1, round(n_major / rho))] * 3
    rows = [np.eye(K, dtype=int)[c] for c in range(K) for _ in range(counts[c])]
    for pair in combinations(range(K), 2):
        row = np.zeros(K, dtype=int)
        row[list(pair)] = 1
        rows += [row] * n_pair
    return np.array(rows)


def pair_type(label_set, major):
    n_major = sum(1 for c in label_set if c in major)
    return {2: "majority-majority", 1: "mixed", 0: "minority-minority"}[n_major]


def measure(H, Y, W, b, major):
    """Geometry of the multiplicity-1 means, tag-wise property by pair type, minority collapse score."""
    k = Y.shape[1]
    minor = [c for c in range(k) if c not in major]
    single = Y.sum(1) == 1
    means = np.stack([H[single & (Y[:, c] == 1)].mean(0) for c in range(k)])
    centred = means - means.mean(0)
    norms = np.linalg.norm(centred, axis=1)
    unit = centred / norms[:, None]
    angle = np.degrees(np.arccos(np.clip(unit @ unit.T, -1, 1)))
    out = {
        "norm_ratio": norms[minor].mean() / norms[major].mean(),
        "angle_major": np.mean([angle[i, j] for i, j in combinations(major, 2)]),
        "angle_minor": np.mean([angle[i, j] for i, j in combinations(minor, 2)]),
        "angle_mixed": np.mean([angle[i, j] for i in major for j in minor]),
    }
    sets = tagwise_average(H, Y).sets
    sets["type"] = [pair_type(s, major) for s in sets["labels"]]
    for kind, rows in sets.groupby("type"):
        out[f"c_{kind}"] = rows["scale"].mean()
        out[f"tagwise_angle_{kind}"] = rows["angle"].mean()
    score = minority_collapse(H, Y, W, b)["collapse_score"].to_numpy()
    out["score_minor"] = score[minor].mean()
    out["score_major"] = score[major].mean()
    return out


# %%
# The UFM sweep
# -------------
rhos = np.geomspace(1, 100, 9)
sweeps = {}
for lam in (5e-3, 1e-2, 1.5e-2):
    rows = []
    for rho in rhos:
        Y = labels(100, rho, 10)
        ufm = UFMSolver(loss="pal", lambda_W=lam, lambda_H=lam, feature_dim=K + 2, random_state=0).fit(Y)
        assert ufm.grad_norm_ <= 1e-8  # a stationary point to 1e-8
        rows.append(measure(ufm.H_, Y, ufm.W_, ufm.b_, MAJOR))
    sweeps[lam] = {key: np.array([r.get(key, np.nan) for r in rows]) for key in rows[0]}
low = sweeps[5e-3]
print("rho:                     ", np.round(rhos, 1).tolist())
print("minority/majority norm:  ", np.round(low["norm_ratio"], 3).tolist())
print("angle minority-minority: ", np.round(low["angle_minor"], 1).tolist())
print("c_S mixed pairs:         ", np.round(low["c_mixed"], 3).tolist())
print("tag-wise angle, mixed:   ", np.round(low["tagwise_angle_mixed"], 2).tolist())
for lam in sweeps:
    print(f"minority collapse score at lambda={lam:g}:", np.round(sweeps[lam]["score_minor"], 2).tolist())

# %%
# How the multiplicity-1 means leave the ETF
# ------------------------------------------
fig, (ax_norm, ax_angle) = plt.subplots(1, 2, figsize=(10, 3.8))
ax_norm.semilogx(rhos, low["norm_ratio"], marker="o")
ax_norm.axhline(1, color="k", lw=0.8, ls=":")
ax_norm.set_xlabel("imbalance ratio rho of the multiplicity-1 classes")
ax_norm.set_ylabel("mean norm: minority / majority")
ax_norm.set_title("Class-mean norms (centred), lambda = 5e-3")
for key, name in (("angle_major", "majority-majority"), ("angle_mixed", "majority-minority"),
                  ("angle_minor", "minority-minority")):
    ax_angle.semilogx(rhos, low[key], marker="o", label=name)
ax_angle.axhline(np.degrees(np.arccos(-1 / (K - 1))), color="k", lw=0.8, ls=":", label="simplex ETF")
ax_angle.set_xlabel("imbalance ratio rho")
ax_angle.set_ylabel("angle between class means (degrees)")
ax_angle.legend(fontsize=8)
ax_angle.set_title("Angles between multiplicity-1 means")
fig.tight_layout()

# %%
# How the tag-wise-average property deforms
# -----------------------------------------
fig, (ax_c, ax_t) = plt.subplots(1, 2, figsize=(10, 3.8))
for kind in ("majority-majority", "mixed", "minority-minority"):
    ax_c.semilogx(rhos, low[f"c_{kind}"], marker="o", label=kind)
    ax_t.semilogx(rhos, low[f"tagwise_angle_{kind}"], marker="o", label=kind)
ax_c.set_xlabel("imbalance ratio rho")
ax_c.set_ylabel("tag-wise scale c_S")
ax_c.set_title("Scale of pair means along their tags' average")
ax_c.legend(fontsize=8)
ax_t.set_xlabel("imbalance ratio rho")
ax_t.set_ylabel("angle to the tags' sum (degrees)")
ax_t.set_title("Tag-wise angle (0 under the M-lab ETF)")
ax_t.legend(fontsize=8)
fig.tight_layout()

# %%
# Where minority collapse sets in
# -------------------------------
fig, ax = plt.subplots(figsize=(6, 3.8))
for lam, style in ((5e-3, "-"), (1e-2, "--"), (1.5e-2, ":")):
    ax.semilogx(rhos, sweeps[lam]["score_minor"], marker="o", ls=style, label=f"minority, lambda={lam:g}")
    ax.semilogx(rhos, sweeps[lam]["score_major"], marker="s", ls=style, color="0.5", label=f"majority, lambda={lam:g}")
ax.axhline(0.5, color="k", lw=0.8, ls=":", label="default threshold")
ax.set_xlabel("imbalance ratio rho")
ax.set_ylabel("minority_collapse score")
ax.set_title("Minority collapse under PAL (UFM)")
ax.legend(fontsize=7)
fig.tight_layout()

# %%
# A trained network with the same kind of imbalance
# -------------------------------------------------
# The bundled multi-label digits hold 150 single-label samples per digit and
# 540 two-digit images. Keeping every single-label sample of digits 0-4 and a
# tenth of digits 5-9 (every pair kept) gives rho = 10 on the multiplicity-1
# classes.
data = load_multilabel_digits(random_state=0)
X, Y = data.X_train, data.Y_train
rng = np.random.default_rng(0)
single = Y.sum(1) == 1
minority_rows = single & (Y[:, 5:].sum(1) == 1)
keep = ~minority_rows | (rng.random(len(Y)) < 0.1)
X, Y = X[keep], Y[keep]
clf = PALClassifier(max_epochs=150, device="cpu", random_state=0).fit(X, Y)
trained = measure(clf.transform(X), Y, clf.coef_, clf.intercept_, major=[0, 1, 2, 3, 4])
lam_w, lam_h = estimator_to_ufm_lambdas(clf.lambda_W, clf.lambda_H, len(X))
print(f"trained net (rho = 10, UFM-normalised lambda_W={lam_w:.1e}, lambda_H={lam_h:.1e}):")
for key in ("norm_ratio", "angle_major", "angle_mixed", "angle_minor", "c_mixed", "tagwise_angle_mixed",
            "score_minor", "score_major"):
    print(f"  {key:24s} {trained[key]:.3f}")

# %%
# Findings
# --------
# * **The M-lab ETF does not survive imbalance.** At the UFM optimum the
#   minority means do not shrink as in single-label minority collapse: at this
#   weak regularisation they grow *longer* than the majority means (norm ratio
#   1.19 at rho = 10, saturating near 1.23), and the angles split three ways
#   from the ETF's 101.5 degrees: majority pairs close (93.7 at rho = 100),
#   mixed pairs open (103.7), minority pairs stay near 102.
# * **The tag-wise-average property bends, mixed pairs most.** Pair means
#   leave the direction of their tags' sum by up to 9.6 degrees for mixed
#   pairs, 5.1 for majority pairs and 1.9 for minority pairs at rho = 100, and
#   the scales :math:`c_S` separate by pair type (majority pairs 1.55, mixed
#   1.71, minority 1.69, from a common 1.685 at rho = 1). The closed form of
#   Li et al. (one :math:`c_m` per multiplicity) no longer applies; the
#   solver's optimum is stationary to :math:`10^{-8}` at every rho.
# * **Minority collapse sets in under PAL too, and regularisation decides
#   where.** At :math:`\lambda = 5 \times 10^{-3}` the minority score stays
#   below 0.3 up to rho = 100; at :math:`10^{-2}` it rises continuously and
#   crosses the default threshold 0.5 near rho = 7; at
#   :math:`1.5 \times 10^{-2}` the minority classes collapse outright (score 1:
#   zero margin) from rho of about 2. The majority classes keep a score of 0.
# * **The trained network agrees with the UFM where it is measurable.** At
#   rho = 10 its minority means are longer than the majority means (ratio 1.17
#   against the UFM's 1.19), its mixed pairs tilt off their tags' sum by
#   6.7 degrees (UFM: 8.0), and with its weak UFM-normalised regularisation
#   its minority score stays low (0.12), as the weakly regularised UFM
#   predicts.
