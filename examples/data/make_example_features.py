"""Create examples/data/digits_mlp_features.npz: real penultimate features for `sknc metrics`.

A two-hidden-layer ReLU MLP is trained on scikit-learn's bundled 8x8 digits; the
features are its second hidden layer on the training images, and ``W``/``b`` its
output layer. Run from the repository root::

    python examples/data/make_example_features.py
"""

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.neural_network import MLPClassifier


def main(out=Path(__file__).parent / "digits_mlp_features.npz"):
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    mlp = MLPClassifier(hidden_layer_sizes=(64, 32), alpha=1e-3, max_iter=600, random_state=0)
    mlp.fit(X, y)
    hidden = np.maximum(X @ mlp.coefs_[0] + mlp.intercepts_[0], 0.0)
    features = np.maximum(hidden @ mlp.coefs_[1] + mlp.intercepts_[1], 0.0)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        features=features.astype(np.float32),
        labels=y.astype(np.int64),
        W=mlp.coefs_[2].T.astype(np.float32),
        b=mlp.intercepts_[2].astype(np.float32),
    )
    print(f"wrote {out} (train accuracy {mlp.score(X, y):.3f})")


if __name__ == "__main__":
    main()
