"""Time for UFMSolver to reach the closed-form optimum, against the published recipe.

Balanced cross-entropy UFM, K=10 classes, 50 samples per class, d=32,
lambda_W = lambda_H = 5e-4 (bias learned, lambda_b = 0). Both methods minimise
the identical objective and are timed until the objective is within 1e-8
(relative) of ``sknc.theory.balanced_ce_optimum``:

* sknc: ``UFMSolver()`` (L-BFGS, float64);
* reference: full-batch gradient descent with momentum 0.9 and step 0.1 from
  N(0, 0.1^2), the recipe of the published UFM code, in a plain torch loop.

The reference checks its objective every 100 steps and gives up after
``--budget`` seconds; a give-up makes the printed speed-up a lower bound.
Both run with the torch threads a user has by default (nothing is set here).
Target: >= 100x.

Second case, N-scaling: N = 20 000 samples, K = 100 classes (200 per class),
d = 128, lambda_W = 5e-4 and lambda_H = 5e-4 per sample. ``UFMSolver`` solves
one variable per distinct label set (exact, see its Notes), so its cost does
not grow with N; it is checked against the closed form. ``--per-sample`` also
times the per-sample formulation (``reduce=False``, one free feature per
sample, what sknc 0.1 did) for the ratio; it takes minutes.

Run: ``python benchmarks/bench_ufm.py [--budget SECONDS] [--per-sample]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sknc import UFMSolver, theory

K, PER_CLASS, D, LAM = 10, 50, 32, 5e-4
TARGET = 1e-8


def reference_gd(y, f_star, budget_s, seed=0):
    torch.manual_seed(seed)
    n = len(y)
    W = (0.1 * torch.randn(K, D, dtype=torch.float64)).requires_grad_(True)
    H = (0.1 * torch.randn(n, D, dtype=torch.float64)).requires_grad_(True)
    b = torch.zeros(K, dtype=torch.float64, requires_grad=True)
    target = torch.as_tensor(y)
    opt = torch.optim.SGD([W, H, b], lr=0.1, momentum=0.9)
    t0 = time.perf_counter()
    it = 0
    while True:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(H @ W.T + b, target)
        value = loss + 0.5 * LAM * (W * W).sum() + 0.5 * LAM * (H * H).sum()
        value.backward()
        opt.step()
        it += 1
        if it % 100 == 0:
            gap = abs(value.item() - f_star) / f_star
            elapsed = time.perf_counter() - t0
            if gap <= TARGET:
                return elapsed, it, gap, True
            if elapsed > budget_s:
                return elapsed, it, gap, False


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=120.0, help="seconds before the reference gives up")
    parser.add_argument("--per-sample", action="store_true", help="also time reduce=False at N=20 000")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads (the user's default)")
    y = np.repeat(np.arange(K), PER_CLASS)
    f_star = theory.balanced_ce_optimum(K, PER_CLASS, LAM, LAM).objective

    t0 = time.perf_counter()
    ufm = UFMSolver(lambda_W=LAM, lambda_H=LAM, feature_dim=D, random_state=0).fit(y)
    t_sknc = time.perf_counter() - t0
    gap_sknc = abs(ufm.objective_ - f_star) / f_star
    assert gap_sknc <= TARGET, gap_sknc

    t_ref, it_ref, gap_ref, reached = reference_gd(y, f_star, args.budget)
    bound = "" if reached else " (reference did not reach 1e-8: lower bound)"
    print(f"Balanced CE UFM, K={K}, n={PER_CLASS}/class, d={D}, lambda_W=lambda_H={LAM}; f* = {f_star:.12f}")
    print(f"  UFMSolver (L-BFGS)        {t_sknc:8.2f} s  {ufm.n_iter_:7d} iterations  gap {gap_sknc:.1e}")
    print(f"  GD + momentum 0.9, lr 0.1 {t_ref:8.2f} s  {it_ref:7d} iterations  gap {gap_ref:.1e}")
    print(f"  speed-up {t_ref / t_sknc:.0f}x{bound}; target >= 100x")
    scaling_case(args.per_sample)


def scaling_case(per_sample):
    k, per_class, d, lam = 100, 200, 128, 5e-4
    y = np.repeat(np.arange(k), per_class)
    f_star = theory.balanced_ce_optimum(k, per_class, lam, lam).objective
    print(f"\nN-scaling: N={len(y)}, K={k}, d={d}, lambda_W=lambda_H={lam}; f* = {f_star:.12f}")
    rows = [("reduced (one variable per label set)", True)]
    if per_sample:
        rows.append(("per sample (reduce=False)", False))
    times = {}
    for name, reduce in rows:
        t0 = time.perf_counter()
        ufm = UFMSolver(lambda_W=lam, lambda_H=lam, feature_dim=d, reduce=reduce, random_state=0).fit(y)
        times[reduce] = time.perf_counter() - t0
        gap = abs(ufm.objective_ - f_star) / f_star
        print(f"  {name:38s} {times[reduce]:8.2f} s  {ufm.n_iter_:6d} iterations  gap to theory {gap:.1e}")
    if per_sample:
        print(f"  reduction speed-up {times[False] / times[True]:.0f}x")


if __name__ == "__main__":
    main()
