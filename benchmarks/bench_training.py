"""Training speed of PALClassifier: against a hand-written torch loop, the CPU CNN's targets, and threads.

Three parts, each measured side by side in one run (``--only`` picks one):

``hand``
    Epoch time of PALClassifier against a hand-written loop on the same network, data, batch size,
    optimizer (SGD, momentum 0.9, weight decay), feature penalty and cosine schedule, alternating the two
    so that machine noise hits both alike: the MLP on 20 000 synthetic rows, and the default CNN on 6000
    strips of digits (28x84). Target: ratio <= 1.15.
``cnn``
    The default CNN with default settings: PAL loss after 5 epochs against the loss of the best constant
    prediction (no learning) on 1900 MNIST-like images of one or two digits (28x28; the bundled digits
    resized to 14x14, two to a 2x2 grid), and seconds per epoch on 6000 strips of two or three upscaled
    digits (28x84). Targets: below 0.8x; at most 15 s. (Test accuracy of the strips against
    ``MLPClassifier``: ``benchmarks/bench_rules.py``.)
``threads``
    The thread policy (``n_threads=None``: one intra-op thread for small networks) against torch's default
    (every core), on an idle machine and with a second process busy on one core: the demo's MLP for 20
    epochs and ``sknc demo --quick``'s fit (60 epochs), the CNN for 3 epochs on the strips.

Run: ``python benchmarks/bench_training.py [--only hand|cnn|threads]``. The machine is shared: read ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np
import torch

from sknc import PALClassifier, PALLoss, load_multilabel_digits, make_multilabel_images, make_multilabel_strips
from sknc.nn import MLP, FeatureClassifier, LinearHead, SmallCNN


# ------------------------------------------------------------------------------------------------ data
def synthetic(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d))
    y = rng.integers(0, k, n)
    return (centres[y] + rng.standard_normal((n, d))).astype(np.float32), y


def _digits():
    from sklearn.datasets import load_digits

    return load_digits()


def mnist_like_pairs(seed=0):
    """1900 images 28x28: 100 single digits per class and 20 per pair, bundled digits resized to 14x14."""
    from scipy.ndimage import zoom

    digits = _digits()
    small = np.stack([zoom(im / 16.0, 14 / 8, order=1) for im in digits.images]).astype(np.float32)
    return make_multilabel_images(small, digits.target, n_per_class=100, n_per_set=20, multiplicities=(1, 2),
                                  max_shift=2, random_state=seed)


def digit_strips(n=6000, seed=0):
    """28x84 strips of two or three digits: bundled digits upscaled 3x into 28x28 cells."""
    digits = _digits()
    cells = np.pad(np.kron(digits.images / 16.0, np.ones((3, 3))), ((0, 0), (2, 2), (2, 2))).astype(np.float32)
    return make_multilabel_strips(cells, digits.target, n, random_state=seed)


def no_learning_loss(Y):
    """PAL loss of the best constant logits (the label frequencies): what training must beat."""
    freq = Y.sum(0) / Y.sum()
    return float(-(Y @ np.log(freq)).mean())


# ------------------------------------------------------------------------------------------ hand loops
def hand_loop(X, Y, backbone, head, epochs, batch_size, lr, wd, lam_h, seed, scale=None):
    """The training PALClassifier runs, written out: PAL loss + lambda_H/2 mean ||h||^2, SGD, cosine."""
    torch.manual_seed(seed)
    model = FeatureClassifier(backbone, head)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=wd)
    crit = PALLoss(check_targets=False)
    Xt = torch.as_tensor(X if scale is None else X * scale)
    Yt = torch.as_tensor(Y, dtype=torch.float32 if Y.ndim == 2 else torch.int64)
    times = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = lr * 1e-3 + (lr - lr * 1e-3) * (1 + math.cos(math.pi * epoch / epochs)) / 2
        model.train()
        for idx in torch.randperm(len(Xt)).split(batch_size):
            logits, feats = model(Xt[idx])
            loss = crit(logits, Yt[idx]) + 0.5 * lam_h * feats.pow(2).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    return times


def part_hand(rounds=3, epochs=3):
    print("== PALClassifier against a hand-written loop (median epoch; same network, data and settings)")
    X, y = synthetic(20000, 256, 10)
    strips, Y = digit_strips()
    cases = [
        ("MLP 256-512-512-512 features-10, 20 000 rows", X, y, "mlp",
         lambda: (MLP(256, (512, 512, 512)), LinearHead(512, 10)), dict(hidden_sizes=(512, 512), feature_dim=512)),
        ("CNN (default), 6000 strips 28x84", strips[:, None], Y, "cnn",
         lambda: (SmallCNN(1, 64), LinearHead(64, 10)), dict()),
    ]
    for title, data, labels, module, build, extra in cases:
        ours, hand = [], []
        backbone, _ = build()
        clf = PALClassifier(module=module, max_epochs=1, input_scaling=None, device="cpu", **extra)
        assert sum(p.numel() for p in clf.initialize(data[:8], labels[:8]).net_.module_.backbone.parameters()) == \
            sum(p.numel() for p in backbone.parameters()), "the hand loop must train the same network"
        for r in range(rounds):
            clf = PALClassifier(module=module, max_epochs=epochs, lr=0.05, lambda_W=5e-4, lambda_H=1e-3,
                                decision_rule="threshold", input_scaling=None, device="cpu", random_state=r, **extra)
            clf.fit(data, labels)
            ours += list(clf.history_["dur"])
            before = torch.get_num_threads()
            torch.set_num_threads(clf._threads() or before)  # the threads PALClassifier trained on
            try:
                backbone, head = build()
                hand += hand_loop(data, labels, backbone, head, epochs, 128, 0.05, 5e-4, 1e-3, seed=r)
            finally:
                torch.set_num_threads(before)
        s, h = statistics.median(ours), statistics.median(hand)
        print(f"  {title}: PALClassifier {s * 1e3:7.1f} ms, hand loop {h * 1e3:7.1f} ms, ratio {s / h:.3f} "
              "(target <= 1.15)")


def part_cnn():
    print("== The default CNN with default settings")
    X, Y = mnist_like_pairs()
    base = no_learning_loss(Y)
    clf = PALClassifier(module="cnn", max_epochs=None, decision_rule="threshold", device="cpu",
                        random_state=0).fit(X, Y)
    loss5 = float(clf.history_["train_loss"].iloc[4])
    print(f"  MNIST-like 28x28, {len(X)} images: loss after 5 epochs {loss5:.3f}, no-learning {base:.3f}, "
          f"ratio {loss5 / base:.2f} (target < 0.8); {clf.history_['dur'].median():.2f} s per epoch, "
          f"{len(clf.history_)} epochs")
    strips, Ys = digit_strips()
    clf = PALClassifier(module="cnn", max_epochs=3, decision_rule="threshold", device="cpu",
                        random_state=0).fit(strips, Ys)
    print(f"  strips 28x84, {len(strips)} images: {clf.history_['dur'].median():.2f} s per epoch (target <= 15)")
    print(f"  (the default CNN: {clf._macs_per_sample / 1e6:.1f} M multiply-adds per strip)")


@contextlib.contextmanager
def busy_core():
    """A second process spinning on one core for the duration of the block."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.5)
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def part_threads():
    print(f"== Thread policy ({os.cpu_count()} cores; torch's default: {torch.get_num_threads()} threads)")
    data = load_multilabel_digits(random_state=0)
    strips, Ys = digit_strips(2000)
    cases = [
        ("demo MLP, 20 epochs", data.X_train, data.Y_train, dict(max_epochs=20)),
        ("sknc demo --quick fit (60 epochs, decision_rule='auto')", data.X_train, data.Y_train,
         dict(max_epochs=60, track_nc=12, decision_rule="auto")),
        ("CNN, 2000 strips, 3 epochs", strips, Ys, dict(module="cnn", max_epochs=3)),
    ]
    for title, X, Y, params in cases:
        params = {"decision_rule": "threshold", **params}
        line = []
        for load in ("idle", "busy"):
            for name, n_threads in (("policy", None), ("all cores", "all")):
                clf = PALClassifier(device="cpu", random_state=0, n_threads=n_threads, **params)
                with busy_core() if load == "busy" else contextlib.nullcontext():
                    t0 = time.perf_counter()
                    clf.fit(X, Y)
                    seconds = time.perf_counter() - t0
                line.append(f"{load}/{name} ({clf._threads() or torch.get_num_threads()} thr) {seconds:6.1f} s")
        print(f"  {title}:\n    " + "\n    ".join(line))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("hand", "cnn", "threads"))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    parts = {"hand": part_hand, "cnn": part_cnn, "threads": part_threads}
    for name, part in parts.items():
        if args.only in (None, name):
            part()


if __name__ == "__main__":
    main()
