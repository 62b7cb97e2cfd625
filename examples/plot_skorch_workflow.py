"""
A skorch-style workflow with PALClassifier
==========================================

:class:`sknc.PALClassifier` is a scikit-learn estimator that trains a skorch
net, and it keeps skorch's habits: routed double-underscore parameters
(``module__``, ``optimizer__``, ``callbacks__NAME__param``) in the constructor,
in ``set_params`` and in grids; a validation split with ``valid_loss`` in the
history; skorch's own callbacks (``EarlyStopping``, ``Checkpoint``,
``LRScheduler``, ``EpochScoring``); and ``save_params`` / ``load_params``.
This page runs all of it on single-label ``load_digits`` (a few seconds per
fit on two CPU cores).
"""

# %%
# Routed parameters in a grid search
# ----------------------------------
# ``module__batch_norm`` goes to the MLP backbone, ``optimizer__nesterov`` to
# ``torch.optim.SGD``, exactly as in a skorch ``NeuralNet``. NC is a property
# of the training features, so the search also scores the training folds.
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from skorch.callbacks import EarlyStopping

from sknc import PALClassifier, nc_scorers

X, y = load_digits(return_X_y=True)
X = (X / 16).astype(np.float32)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)

search = GridSearchCV(
    PALClassifier(hidden_sizes=(128, 128), max_epochs=15, device="cpu", random_state=0),
    {"module__batch_norm": [False, True], "optimizer__nesterov": [False, True]},
    scoring={"accuracy": "accuracy"} | nc_scorers(["nc1"]),
    refit="accuracy",
    cv=StratifiedKFold(3, shuffle=True, random_state=0),
    return_train_score=True,
)
search.fit(X_train, y_train)
for params, acc, nc1 in zip(search.cv_results_["params"], search.cv_results_["mean_test_accuracy"],
                            search.cv_results_["mean_train_neg_nc1"]):
    print(f"{params}: test-fold accuracy {acc:.3f}, training-fold NC1 {-nc1:.3f}")
print("best:", search.best_params_, f"held-out accuracy {search.score(X_test, y_test):.3f}")

# %%
# Early stopping on a validation split
# ------------------------------------
# ``validation_fraction`` holds out a stratified 20% (skorch's ``train_split``
# works too), so ``valid_loss`` and ``valid_acc`` appear in ``history_``, and
# skorch's ``EarlyStopping`` watches it. The routed
# ``callbacks__early__patience`` sets the callback's parameter by name.
clf = PALClassifier(
    hidden_sizes=(128, 128),
    max_epochs=200,
    validation_fraction=0.2,
    callbacks=[("early", EarlyStopping(monitor="valid_loss", patience=8))],
    callbacks__early__patience=10,
    track_nc=5,
    device="cpu",
    random_state=0,
    **search.best_params_,
)
clf.fit(X_train, y_train)
history = clf.history_
print(f"stopped after {len(history)} of 200 epochs; best valid_loss {history['valid_loss'].min():.4f} "
      f"at epoch {int(history.loc[history['valid_loss'].idxmin(), 'epoch'])}")
print(f"held-out accuracy {clf.score(X_test, y_test):.3f}")

fig, (ax_loss, ax_nc) = plt.subplots(1, 2, figsize=(10, 3.8))
ax_loss.plot(history["epoch"], history["train_loss"], label="train_loss")
ax_loss.plot(history["epoch"], history["valid_loss"], label="valid_loss")
ax_loss.axvline(history.loc[history["valid_loss"].idxmin(), "epoch"], color="k", ls=":", label="best valid_loss")
ax_loss.set_xlabel("epoch")
ax_loss.set_ylabel("PAL loss")
ax_loss.legend()
ax_loss.set_title("Early stopping on the validation split")
tracked = history.dropna(subset=["nc1"])
ax_nc.semilogy(tracked["epoch"], tracked["nc1"], marker="o", label="nc1 (training data)")
ax_nc.set_xlabel("epoch")
ax_nc.set_ylabel("NC1")
ax_nc.legend()
ax_nc.set_title("NC1 until the stop")
fig.tight_layout()

# %%
# Save, reload, continue
# ----------------------
# ``save_params`` writes skorch's parameter files; a fresh estimator with the
# same settings is built for the data by ``initialize`` and filled by
# ``load_params``. Its predictions are identical. ``warm_start=True`` (or
# ``partial_fit``) then continues training instead of starting over.
with tempfile.TemporaryDirectory() as folder:
    params, history_file = Path(folder) / "params.pt", Path(folder) / "history.json"
    clf.save_params(f_params=params, f_history=history_file)
    clone = PALClassifier(**clf.get_params()).initialize(X_train, y_train)
    clone.load_params(f_params=params, f_history=history_file)
    same = np.array_equal(clone.predict_proba(X_test), clf.predict_proba(X_test))
    print("reloaded model predicts identically:", same)

clone.set_params(warm_start=True, max_epochs=3)
clone.fit(X_train, y_train)
print(f"after 3 more epochs: {len(clone.history_)} epochs in history, "
      f"held-out accuracy {clone.score(X_test, y_test):.3f}")
