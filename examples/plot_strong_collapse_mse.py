"""
Strong neural collapse of the MSE UFM from small initialisation
===============================================================

Mixon, Parshall & Pi (2022, *Neural collapse with unconstrained features*),
Figure 1: gradient descent on the *unregularised* squared-loss UFM with
:math:`C = N = 3` samples and :math:`p = 15` feature dimensions, started from
random :math:`W_0, H_0` of Frobenius norm :math:`\\varepsilon` and
:math:`b_0 = 0`, converges to a point whose distance to "strong" neural
collapse shrinks with :math:`\\varepsilon`: the Gram error like
:math:`\\varepsilon^2`, the feature and bias errors like :math:`\\varepsilon`.
Here :class:`sknc.UFMSolver` runs the same gradient flow (``solver='gd'``,
step 0.5, per-sample variables, since the path matters) and
``theory_gap_`` holds the three errors of :func:`sknc.theory.strong_collapse_errors`.

Fast path: 3 seeds per :math:`\\varepsilon`, about 30 seconds on two CPU cores.
"""

# %%
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.exceptions import ConvergenceWarning

from sknc import UFMSolver

y = np.repeat(np.arange(3), 3)
eps_values = [1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001]
seeds = 3
errors = {key: np.zeros((len(eps_values), seeds)) for key in ("gram", "features", "bias")}
for i, eps in enumerate(eps_values):
    for seed in range(seeds):
        ufm = UFMSolver(loss="mse", lambda_W=0, lambda_H=0, feature_dim=15, solver="gd", lr=0.5, max_iter=6000,
                        tol=1e-10, init="norm", init_scale=eps, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # the flow is stopped at 6000 steps, as in the paper
            ufm.fit(y)
        for key in errors:
            errors[key][i, seed] = ufm.theory_gap_[f"strong_nc_{key}"]

print(f"{'eps':>8} {'||WW^T - sqrt(N)(I-J/C)||':>28} {'||H - W/sqrt(N)||/||H||':>24} {'||b - 1/C||':>12}")
for i, eps in enumerate(eps_values):
    print(f"{eps:8.3g} {errors['gram'][i].mean():28.3e} {errors['features'][i].mean():24.3e} "
          f"{errors['bias'][i].mean():12.3e}")
slope = {k: np.polyfit(np.log(eps_values[2:]), np.log(v[2:].mean(1)), 1)[0] for k, v in errors.items()}
print("log-log slopes (small eps): " + ", ".join(f"{k} {s:.2f}" for k, s in slope.items()))

# %%
# The three errors against the initial scale (log-log)
# ----------------------------------------------------
fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
titles = {"gram": "Gram error (slope 2)", "features": "feature error (slope 1)", "bias": "bias error (slope 1)"}
for ax, (key, values) in zip(axes, errors.items()):
    ax.loglog(eps_values, values.mean(1), "o-")
    ax.set_xlabel("initial scale eps")
    ax.set_title(titles[key])
fig.suptitle("Strong neural collapse as the initialisation shrinks (Mixon et al. 2022, Fig. 1)")
fig.tight_layout()

# %%
# The slopes printed above are the paper's: 2 for the Gram error, 1 for the
# feature and bias errors, once :math:`\\varepsilon` is small enough for the
# flow to stay near the linearised dynamics.
