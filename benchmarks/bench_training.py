"""Epoch time of PALClassifier against a hand-written torch training loop.

Same network (sknc's MLP backbone + linear head), same data, batch size,
optimizer (SGD, momentum 0.9, weight decay), feature penalty and cosine
schedule; measured side by side in one run, alternating the two so that
machine noise hits both alike. Target: ratio <= 1.15.

Run: ``python benchmarks/bench_training.py [--epochs 5] [--n 20000]``
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch

from sknc import PALClassifier, PALLoss
from sknc.nn import FeatureClassifier, LinearHead, MLP


def make_data(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d))
    y = rng.integers(0, k, n)
    X = (centres[y] + rng.standard_normal((n, d))).astype(np.float32)
    return X, y


def hand_loop(X, y, hidden, epochs, batch_size, lr, wd, lam_h, seed):
    torch.manual_seed(seed)
    k = int(y.max()) + 1
    model = FeatureClassifier(MLP(X.shape[1], hidden), LinearHead(hidden[-1], k))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=wd)
    crit = PALLoss(check_targets=False)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y, dtype=torch.int64)
    n = len(Xt)
    times = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = lr * 1e-3 + (lr - lr * 1e-3) * (1 + math.cos(math.pi * epoch / epochs)) / 2
        model.train()
        for idx in torch.randperm(n).split(batch_size):
            logits, feats = model(Xt[idx])
            loss = crit(logits, yt[idx]) + 0.5 * lam_h * n * feats.pow(2).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    d, k, hidden, batch, lr, wd, lam_h = 256, 10, (512, 512), 128, 0.05, 5e-4, 1e-5
    X, y = make_data(args.n, d, k)
    sknc_epochs, hand_epochs = [], []
    for r in range(args.rounds):
        clf = PALClassifier(hidden_sizes=hidden, max_epochs=args.epochs, batch_size=batch, lr=lr, lambda_W=wd,
                            lambda_H=lam_h, device="cpu", random_state=r)
        clf.fit(X, y)
        sknc_epochs += list(clf.history_["dur"])
        hand_epochs += hand_loop(X, y, hidden, args.epochs, batch, lr, wd, lam_h, seed=r)
    s, h = statistics.median(sknc_epochs), statistics.median(hand_epochs)
    print(f"MLP {d}-{hidden}-{k}, N={args.n}, batch {batch}, SGD+momentum, {args.epochs} epochs x {args.rounds} rounds")
    print(f"  PALClassifier (skorch)   median epoch {s * 1e3:8.1f} ms")
    print(f"  hand-written torch loop  median epoch {h * 1e3:8.1f} ms")
    print(f"  ratio {s / h:.3f} (target <= 1.15)")


if __name__ == "__main__":
    main()
