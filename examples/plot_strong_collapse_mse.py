"""Mixon et al., Figure 1: strong neural collapse of the unregularised MSE UFM from small initialisation.

Gradient descent (step 0.5) on the unconstrained features model with C = N = 3 and
p = 15, from random W0, H0 of Frobenius norm eps and b0 = 0. The distance of the
limit point to strong neural collapse shrinks as eps -> 0: the Gram error like eps^2,
the feature and bias errors like eps.

Run: ``python examples/strong_collapse_mse.py [--out strong_collapse.png]``
"""

import argparse
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.exceptions import ConvergenceWarning

from sknc import UFMSolver


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="strong_collapse.png")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    y = np.repeat(np.arange(3), 3)
    eps_values = [1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001]
    errors = {key: np.zeros((len(eps_values), args.seeds)) for key in ("gram", "features", "bias")}
    for i, eps in enumerate(eps_values):
        for seed in range(args.seeds):
            ufm = UFMSolver(loss="mse", lambda_W=0, lambda_H=0, feature_dim=15, solver="gd", lr=0.5, max_iter=6000,
                            tol=1e-10, init="norm", init_scale=eps, random_state=seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                ufm.fit(y)
            for key in errors:
                errors[key][i, seed] = ufm.theory_gap_[f"strong_nc_{key}"]
    print(f"{'eps':>8} {'||WW^T - sqrt(N)(I-J/C)||':>28} {'||H - W/sqrt(N)||/||H||':>24} {'||b - 1/C||':>12}")
    for i, eps in enumerate(eps_values):
        print(f"{eps:8.3g} {errors['gram'][i].mean():28.3e} {errors['features'][i].mean():24.3e} "
              f"{errors['bias'][i].mean():12.3e}")
    slope = {k: np.polyfit(np.log(eps_values[2:]), np.log(v[2:].mean(1)), 1)[0] for k, v in errors.items()}
    print("log-log slopes (small eps): " + ", ".join(f"{k} {s:.2f}" for k, s in slope.items()))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    titles = {"gram": "Gram error (~ eps^2)", "features": "feature error (~ eps)", "bias": "bias error (~ eps)"}
    for ax, (key, values) in zip(axes, errors.items()):
        ax.loglog(eps_values, values.mean(1), "o-")
        ax.set_xlabel("initial scale eps")
        ax.set_title(titles[key])
    fig.suptitle("Strong neural collapse as the initialisation shrinks (Mixon et al., Fig. 1)")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
