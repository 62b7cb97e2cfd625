"""Dang et al.: minority collapse of non-negative features under class imbalance.

Solves the ReLU (non-negative) CE UFM without bias for class sizes [4, 8, 16, 32]
while sweeping lambda = lambda_W = lambda_H, and compares the measured minority-class
feature norm with theory: class k collapses to 0 once n_k <= N^2 K lambda^2 / (K-1).

Run: ``python examples/minority_collapse.py [--out minority_collapse.png]``
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from sknc import UFMSolver, theory


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="minority_collapse.png")
    args = parser.parse_args()
    sizes = np.array([4, 8, 16, 32])
    y = np.repeat(np.arange(len(sizes)), sizes)
    k, n = len(sizes), sizes.sum()
    lambdas = np.geomspace(2e-3, 0.12, 18)
    measured = np.zeros((len(lambdas), k))
    predicted = np.zeros((len(lambdas), k))
    for i, lam in enumerate(lambdas):
        ufm = UFMSolver(lambda_W=lam, lambda_H=lam, feature_dim=2 * k, nonnegative=True, bias=False,
                        random_state=0).fit(y)
        measured[i] = [np.mean(np.sum(ufm.H_[y == c] ** 2, axis=1)) for c in range(k)]
        predicted[i] = theory.nonnegative_ce_optimum(sizes, lam, lam).mean_norms_sq
    critical = np.sqrt(sizes * (k - 1) / (n**2 * k))  # lambda at which class k collapses
    print("class sizes", sizes.tolist(), "-> theoretical collapse lambda per class:", np.round(critical, 4).tolist())
    print(f"max |measured - theory| of ||h_k||^2 over the sweep: {np.abs(measured - predicted).max():.2e}")
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for c in range(k):
        ax.plot(lambdas, measured[:, c], "o", color=f"C{c}", label=f"n={sizes[c]} measured")
        ax.plot(lambdas, predicted[:, c], "-", color=f"C{c}", alpha=0.6)
        ax.axvline(critical[c], color=f"C{c}", ls=":", alpha=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("lambda_W = lambda_H")
    ax.set_ylabel("||h_k||^2 of class k")
    ax.set_title("Minority collapse: UFMSolver (dots) vs theory (lines, thresholds dotted)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
