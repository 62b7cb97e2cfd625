"""
Minority collapse of non-negative features: solver against closed form
======================================================================

Dang et al. (2024, *Neural collapse for cross-entropy class-imbalanced
learning with unconstrained ReLU features*) solve the non-negative (ReLU)
cross-entropy UFM without bias in closed form: class means are orthogonal,
with lengths that depend on the class sizes, and class :math:`k` collapses to
zero once :math:`n_k \\le N^2 K \\lambda_W \\lambda_H / (K - 1)` (Fang et al.'s
*minority collapse*). This page sweeps :math:`\\lambda = \\lambda_W =
\\lambda_H` for class sizes 4, 8, 16, 32, solves each UFM with
:class:`sknc.UFMSolver` (``nonnegative=True, bias=False``), and draws the
measured :math:`\\lVert h_k\\rVert^2` on the closed form of
:func:`sknc.theory.nonnegative_ce_optimum`, with each class's critical
:math:`\\lambda`; then it reads the same optima with
:func:`sknc.minority_collapse`, whose score is 1 exactly where the theory says
a class collapsed. Under a second.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np

from sknc import UFMSolver, minority_collapse, theory

sizes = np.array([4, 8, 16, 32])
y = np.repeat(np.arange(len(sizes)), sizes)
k, n = len(sizes), sizes.sum()
lambdas = np.geomspace(2e-3, 0.12, 18)
measured = np.zeros((len(lambdas), k))
predicted = np.zeros((len(lambdas), k))
score = np.full((len(lambdas), k), np.nan)
for i, lam in enumerate(lambdas):
    ufm = UFMSolver(lambda_W=lam, lambda_H=lam, feature_dim=2 * k, nonnegative=True, bias=False,
                    random_state=0).fit(y)
    measured[i] = [np.mean(np.sum(ufm.H_[y == c] ** 2, axis=1)) for c in range(k)]
    opt = theory.nonnegative_ce_optimum(sizes, lam, lam)
    predicted[i] = opt.mean_norms_sq
    if not opt.complete_collapse:
        score[i] = minority_collapse(ufm.H_, y, ufm.W_)["collapse_score"].to_numpy()
critical = np.sqrt(sizes * (k - 1) / (n ** 2 * k))  # lambda at which class k collapses
print("class sizes", sizes.tolist(), "-> critical lambda per class:", np.round(critical, 4).tolist())
print(f"max |measured - theory| of ||h_k||^2 over the sweep: {np.abs(measured - predicted).max():.2e}")

# %%
# Feature norms: solver (dots) on the closed form (lines)
# -------------------------------------------------------
fig, (ax, ax_score) = plt.subplots(1, 2, figsize=(11, 4))
for c in range(k):
    ax.plot(lambdas, measured[:, c], "o", color=f"C{c}", label=f"n={sizes[c]} measured")
    ax.plot(lambdas, predicted[:, c], "-", color=f"C{c}", alpha=0.6)
    ax.axvline(critical[c], color=f"C{c}", ls=":", alpha=0.8)
    ax_score.plot(lambdas, score[:, c], "o-", color=f"C{c}", label=f"n={sizes[c]}")
    ax_score.axvline(critical[c], color=f"C{c}", ls=":", alpha=0.8)
ax.set_xscale("log")
ax.set_xlabel("lambda_W = lambda_H")
ax.set_ylabel("||h_k||^2 of class k")
ax.set_title("Minority collapse (Dang et al. 2024)")
ax.legend(fontsize=8)
ax_score.set_xscale("log")
ax_score.axhline(0.5, color="k", lw=0.8, ls=":")
ax_score.set_xlabel("lambda_W = lambda_H")
ax_score.set_ylabel("minority_collapse score")
ax_score.set_title("The score reaches 1 at each critical lambda (dotted)")
ax_score.legend(fontsize=8)
for a in (ax, ax_score):  # a few labelled ticks: the sweep spans less than two decades
    a.set_xticks([2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1], ["0.002", "0.005", "0.01", "0.02", "0.05", "0.1"])
    a.xaxis.set_minor_formatter(plt.NullFormatter())
fig.tight_layout()

# %%
# The solver matches the closed form along the whole sweep, and each class's
# norm reaches zero at its critical :math:`\\lambda`. The collapse score rises
# continuously as a class approaches its critical :math:`\\lambda` and is 1
# beyond it; the default threshold 0.5 flags a class shortly before it
# collapses.
