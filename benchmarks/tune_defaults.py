"""Evidence for PALClassifier's defaults (lambda_H, lr), on more than the bundled multi-label digits.

For each feature decay in the sweep (the other parameters at their defaults):

(a) single-label ``load_digits`` scaled to [0, 1] (70/30 split): test accuracy after
    20 epochs and with the default budget, for the default 256-256 network and a
    32-unit one (targets: >= 0.90 and >= 0.95);
(b) ``module='cnn'`` on multi-label images that ``make_multilabel_images`` builds
    from 28x28 digits (the bundled 8x8 digits, upsampled): after 5 epochs, the
    share of all-zero feature rows and the PAL loss relative to its trivial value
    ``ln K * mean|S|`` (targets: < 5%, well below 1);
(c) the bundled multi-label digits (500 epochs, as ``sknc demo``): training-set NC1,
    NC2, tag-wise angle and test subset accuracy against scikit-learn's
    ``MLPClassifier(256, 256)``.

The defaults chosen (lambda_H=0.3, lr=0.1) are the strongest feature decay that keeps
(a) at >= 0.90 after 20 epochs with the 32-unit network.

Run: ``python benchmarks/tune_defaults.py [--quick]`` (the full run takes about an
hour on 2 CPU cores, most of it the CNN; ``--quick`` skips the CNN and shortens (c)).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

from sknc import PALClassifier, load_multilabel_digits, make_multilabel_images, nc_report


def single_label(lam, rows):
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split((X / 16).astype(np.float32), y, test_size=0.3, random_state=0, stratify=y)
    for hidden in [(256, 256), (32,)]:
        for epochs in (20, None):
            clf = PALClassifier(hidden_sizes=hidden, lambda_H=lam, max_epochs=epochs, device="cpu", random_state=0)
            clf.fit(Xtr, ytr)
            rows.append(("(a) load_digits", lam, f"{hidden} {clf._max_epochs()} epochs", f"test accuracy "
                         f"{clf.score(Xte, yte):.3f}"))


def cnn(lam, rows):
    from scipy.ndimage import zoom

    digits = load_digits()
    images = zoom(digits.images / 16.0, (1, 3.5, 3.5), order=1)  # 28 x 28
    X, Y = make_multilabel_images(images, digits.target, n_per_class=300, n_per_set=20, random_state=0)
    X = X.reshape(len(X), -1).astype(np.float32)
    t0 = time.perf_counter()
    clf = PALClassifier(module="cnn", input_shape=(1, 56, 56), lambda_H=lam, max_epochs=5, device="cpu",
                        random_state=0).fit(X, Y)
    H = clf.transform(X)
    logits = torch.as_tensor(clf.decision_function(X))
    pal = float(-(torch.as_tensor(Y) * torch.log_softmax(logits, 1)).sum(1).mean())
    trivial = np.log(Y.shape[1]) * Y.sum(1).mean()
    rows.append(("(b) cnn 28x28 multi-label", lam, f"N={len(X)}, 5 epochs, {time.perf_counter() - t0:.0f} s",
                 f"zero rows {np.mean(np.all(H == 0, axis=1)):.1%}, PAL loss / trivial {pal / trivial:.2f}"))


def demo(lam, epochs, rows, mlp_scores):
    data = load_multilabel_digits(random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = PALClassifier(lambda_H=lam, max_epochs=epochs, device="cpu", random_state=0).fit(data.X_train,
                                                                                                data.Y_train)
        rep = nc_report(clf.transform(data.X_train), data.Y_train, clf.coef_, clf.intercept_)
    subset = accuracy_score(data.Y_test, clf.predict(data.X_test))
    rows.append(("(c) multi-label digits", lam, f"{epochs} epochs", f"NC1 {rep['nc1']:.4f}, NC2 {rep['nc2_h']:.3f}, "
                 f"angle {rep['tagwise_angle']:.2f} deg, subset accuracy {subset:.3f} (MLP {mlp_scores:.3f})"))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="skip the CNN, 200 epochs for (c)")
    parser.add_argument("--lambdas", default="0,0.1,0.3,1.0", help="feature decays to sweep (default 0,0.1,0.3,1.0)")
    args = parser.parse_args()
    from sklearn.neural_network import MLPClassifier

    data = load_multilabel_digits(random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp = MLPClassifier((256, 256), max_iter=300, random_state=0).fit(data.X_train, data.Y_train)
    mlp_subset = accuracy_score(data.Y_test, mlp.predict(data.X_test))
    rows = []
    for lam in [float(v) for v in args.lambdas.split(",")]:
        single_label(lam, rows)
        if not args.quick:
            cnn(lam, rows)
        demo(lam, 200 if args.quick else 500, rows, mlp_subset)
        for row in rows:
            print(f"{row[0]:<28} lambda_H={row[1]:<5g} {row[2]:<28} {row[3]}", flush=True)
        rows.clear()


if __name__ == "__main__":
    main()
