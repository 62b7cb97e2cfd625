"""Speed of sknc's metrics core against the way peer tools compute the same numbers.

Measured side by side in one run (the machines are shared and noisy: read the ratios).

1. Full NC report, N=50 000, d=512, K=10 (float64 features):
   reference = per-sample outer products for Sigma_W, dense ``scipy.linalg.pinv`` of
   Sigma_B, a Python loop for the NCC rule; sknc = ``nc_report``.
   Also the ratio of ``nc_report`` to one N x d x K matrix product (``H @ W.T``).
2. Tag-wise metric alone at K=30 with all 435 pairs present: reference = the
   official multi-label code's per-sample grouping and its O(K^4 d) angle loops;
   sknc = ``tagwise_average`` + ``tagwise_angle_ratio``.

Targets: >= 50x on both, and the report within 3x of the matrix product.

Run: ``python benchmarks/bench_metrics.py [--quick]``
"""

from __future__ import annotations

import argparse
import time
from itertools import combinations

import numpy as np
import scipy.linalg

import sknc


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


# ------------------------------------------------------------ peer-style references
def reference_report(H, y, W, b, k):
    n, d = H.shape
    means = np.zeros((k, d))
    counts = np.zeros(k)
    for i in range(n):  # per-sample accumulation, as in the paper scripts
        means[y[i]] += H[i]
        counts[y[i]] += 1
    means /= counts[:, None]
    mu_g = H.mean(0)
    sigma_w = np.zeros((d, d))
    for i in range(n):
        diff = H[i] - means[y[i]]
        sigma_w += np.outer(diff, diff)
    sigma_w /= n
    centred = means - mu_g
    sigma_b = centred.T @ centred / k
    nc1 = np.trace(sigma_w @ scipy.linalg.pinv(sigma_b)) / k
    ncc = np.array([np.argmin(np.linalg.norm(h - means, axis=1)) for h in H])
    agree = np.mean(ncc == np.argmax(H @ W.T + b, axis=1))
    return nc1, agree


def reference_tagwise(H, Y):
    k = Y.shape[1]
    groups = {}
    for h, row in zip(H, Y):  # the official code's per-sample grouping by label-set string
        key = str(np.flatnonzero(row))
        groups.setdefault(key, []).append(h)
    means = {key: np.mean(v, axis=0) for key, v in groups.items()}
    single = [means[str(np.array([c]))] for c in range(k)]
    pair_keys = [key for key in means if len(np.fromstring(key.strip("[]"), sep=" ")) == 2]

    def angle(u, v):
        return np.degrees(np.arccos(np.clip(u @ v / np.linalg.norm(u) / np.linalg.norm(v), -1, 1)))

    own = []
    for key in pair_keys:
        i, j = np.fromstring(key.strip("[]"), sep=" ").astype(int)
        own.append(angle(single[i] + single[j], means[key]))
    others = []
    for i, j in combinations(range(k), 2):
        for key in pair_keys:
            others.append(angle(single[i] + single[j], means[key]))
    return np.mean(own) / np.mean(others)


# --------------------------------------------------------------------------- data
def report_data(n, d, k, rng):
    M = sknc.simplex_etf(k, d, norm=5.0, random_state=0)
    y = rng.integers(0, k, n)
    H = M[y] + 0.5 * rng.standard_normal((n, d))
    W = M + 0.1 * rng.standard_normal((k, d))
    return H, y, W, rng.standard_normal(k) * 0.1


def tagwise_data(k, d, per_set, rng):
    M = sknc.simplex_etf(k, d, norm=3.0, random_state=1)
    sets = [(c,) for c in range(k)] + list(combinations(range(k), 2))
    Y = np.zeros((len(sets) * per_set, k), dtype=np.int8)
    H = np.empty((len(sets) * per_set, d))
    for s_idx, s in enumerate(sets):
        rows = slice(s_idx * per_set, (s_idx + 1) * per_set)
        Y[rows, list(s)] = 1
        H[rows] = 1.7 * M[list(s)].mean(0) + 0.3 * rng.standard_normal((per_set, d))
    return H, Y


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller N for a smoke run")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = 5_000 if args.quick else 50_000
    d, k = 512, 10

    H, y, W, b = report_data(n, d, k, rng)
    t_gemm, _ = best_of(lambda: H @ W.T, 5)
    t_sknc, rep = best_of(lambda: sknc.nc_report(H, y, W, b, global_mean="sample"), 3)
    t_ref, (nc1_ref, agree_ref) = best_of(lambda: reference_report(H, y, W, b, k), 1)
    assert np.isclose(rep["nc1"], nc1_ref, rtol=1e-6), (rep["nc1"], nc1_ref)
    assert np.isclose(rep["ncc_agreement"], agree_ref)

    kt, dt = (10, 64) if args.quick else (30, 64)
    Ht, Yt = tagwise_data(kt, dt, 20, rng)
    t_tag, ratio = best_of(lambda: (sknc.tagwise_average(Ht, Yt), sknc.tagwise_angle_ratio(Ht, Yt))[1], 3)
    t_tag_ref, ratio_ref = best_of(lambda: reference_tagwise(Ht, Yt), 1)
    assert np.isclose(ratio, ratio_ref, rtol=1e-6), (ratio, ratio_ref)

    print(f"NC report, N={n}, d={d}, K={k} (float64)")
    print(f"  one N x d x K matmul      {t_gemm * 1e3:9.1f} ms")
    print(f"  sknc.nc_report            {t_sknc * 1e3:9.1f} ms   ({t_sknc / t_gemm:.2f}x the matmul; target <= 3x)")
    print(f"  peer-style reference      {t_ref * 1e3:9.1f} ms   (sknc is {t_ref / t_sknc:.0f}x faster; target >= 50x)")
    print(f"Tag-wise metric, K={kt}, {Yt.shape[0]} samples, {len(Ht) // 20 - kt} pair sets, d={dt}")
    print(f"  sknc tagwise + ratio      {t_tag * 1e3:9.1f} ms")
    print(f"  official-code loops       {t_tag_ref * 1e3:9.1f} ms   (sknc is {t_tag_ref / t_tag:.0f}x faster; target >= 50x)")


if __name__ == "__main__":
    main()
