"""Which multi-label decision rule wins, measured: PALClassifier's rules side by side on one network per data set.

For each data set one network is trained (``random_state=0``, default settings) and every fixed rule predicts
the test split from it; ``decision_rule='auto'`` trains a network on 85% of the training rows, picks the rule
with the best subset accuracy on the other 15%, and trains again on every row. ``MLPClassifier``
(scikit-learn defaults, 300 iterations, on flat pixels) is the reference. Prints subset accuracy, Jaccard (samples), Hamming loss and the share of
predicted sets of each size.

    python benchmarks/bench_rules.py

Data (bundled, no download): scikit-learn's 8x8 digits placed one to three to a 16x16 image
(:func:`sknc.load_multilabel_digits`, the MLP backbone), with and without single-label samples; and strips
of two or three digits, 28x84 like MNIST strips, from the bundled digits upscaled 3x (a 24x24 digit in a
28x28 cell; :func:`sknc.make_multilabel_strips`, 6000 train and 1500 test strips from disjoint source
images, the CNN backbone); and 28x28 images of one or two digits resized to 14x14 (M-lab MNIST-like, the
CNN). ``--quick`` leaves the strips out.
"""

import argparse
import time
import warnings

import numpy as np
from sklearn.metrics import accuracy_score, hamming_loss, jaccard_score
from sklearn.neural_network import MLPClassifier

import sknc

DATA = {
    "digits, sizes 1-2 (bundled default)": dict(),
    "digits, sizes 1-3": dict(n_per_set=({2: 12, 3: 3}, {2: 4, 3: 1}), multiplicities=(1, 2, 3)),
    "digits, sizes 2-3, no single-label sample": dict(n_per_class=(0, 0), n_per_set=({2: 20, 3: 4}, {2: 6, 3: 1}),
                                                      multiplicities=(2, 3)),
}
RULES = ("threshold", "tagwise", "topk", "mean_logit")


def _row(name, Y, P, seconds=None):
    sizes = np.bincount(P.sum(axis=1), minlength=4)[:4] / len(P)
    extra = "" if seconds is None else f"  fit {seconds:5.1f} s"
    jaccard = jaccard_score(Y, P, average="samples", zero_division=1.0)
    print(f"  {name:<24} subset {accuracy_score(Y, P):.3f}  jaccard {jaccard:.3f}  hamming {hamming_loss(Y, P):.4f}  "
          f"sizes 0-3 {np.round(sizes, 2).tolist()}{extra}")


def upscaled_digit_strips(n_train=6000, n_test=1500, seed=0):
    """28x84 strips of two or three upscaled bundled digits; train and test from disjoint source images."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    cells = np.pad(np.kron(digits.images / 16.0, np.ones((3, 3))), ((0, 0), (2, 2), (2, 2))).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(cells))
    cut = int(0.75 * len(cells))
    train, test = order[:cut], order[cut:]
    Xtr, Ytr = sknc.make_multilabel_strips(cells[train], digits.target[train], n_train, random_state=seed)
    Xte, Yte = sknc.make_multilabel_strips(cells[test], digits.target[test], n_test, random_state=seed + 1)
    return Xtr, Ytr, Xte, Yte


def mnist_like_pairs(seed=0):
    """28x28 images of one or two bundled digits resized to 14x14 (M-lab MNIST-like); disjoint sources."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = np.stack([zoom(im / 16.0, 14 / 8, order=1) for im in digits.images]).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(small))
    cut = int(0.75 * len(small))
    train, test = order[:cut], order[cut:]
    Xtr, Ytr = sknc.make_multilabel_images(small[train], digits.target[train], n_per_class=100, n_per_set=20,
                                           multiplicities=(1, 2), max_shift=2, random_state=seed)
    Xte, Yte = sknc.make_multilabel_images(small[test], digits.target[test], n_per_class=30, n_per_set=6,
                                           multiplicities=(1, 2), max_shift=2, random_state=seed + 1)
    return Xtr, Ytr, Xte, Yte


def datasets(quick):
    for title, kwargs in DATA.items():
        data = sknc.load_multilabel_digits(**kwargs)
        yield title, (data.X_train, data.Y_train, data.X_test, data.Y_test), {}
    yield "MNIST-like 28x28, 1-2 resized digits (CNN)", mnist_like_pairs(), {"module": "cnn"}
    if not quick:
        yield "strips 28x84, 2-3 upscaled digits (CNN)", upscaled_digit_strips(), {"module": "cnn"}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="everything but the strips")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    for title, (Xtr, Ytr, Xte, Yte), params in datasets(args.quick):
        truth = np.bincount(Yte.sum(axis=1), minlength=4)[:4] / len(Yte)
        print(f"{title}: {len(Xtr)} train / {len(Xte)} test, true sizes 0-3 {np.round(truth, 2).tolist()}")
        start = time.perf_counter()
        net = sknc.PALClassifier(random_state=0, device="cpu", decision_rule="threshold", **params).fit(Xtr, Ytr)
        seconds = time.perf_counter() - start
        for rule in RULES:
            _row(rule, Yte, net.set_params(decision_rule=rule).predict(Xte), seconds if rule == RULES[0] else None)
        start = time.perf_counter()
        auto = sknc.PALClassifier(random_state=0, device="cpu", decision_rule="auto", **params).fit(Xtr, Ytr)
        seconds = time.perf_counter() - start
        _row(f"auto -> {auto.decision_rule_}", Yte, auto.predict(Xte), seconds)
        print("    held-out scores:", {k: round(v, 3) for k, v in auto.decision_scores_.items()})
        start = time.perf_counter()
        mlp = MLPClassifier(max_iter=300, random_state=0).fit(Xtr.reshape(len(Xtr), -1), Ytr)
        _row("MLPClassifier", Yte, mlp.predict(Xte.reshape(len(Xte), -1)), time.perf_counter() - start)


if __name__ == "__main__":
    main()
