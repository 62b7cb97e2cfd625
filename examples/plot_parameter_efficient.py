"""
A fixed simplex-ETF head with feature dimension K
=================================================

Zhu et al. (2021, *A geometric analysis of neural collapse with
unconstrained features*) and Li et al. (2024) observe that, since the
classifier converges to a simplex ETF anyway, it can be fixed to one from the
start and the feature dimension shrunk to the number of classes :math:`K`,
saving parameters at little cost in accuracy. This page trains both variants
of :class:`sknc.PALClassifier` (``fixed_etf=True, feature_dim=K`` against a
learned head with 64 features) on the bundled multi-label digits and compares
held-out subset accuracy and Jaccard, trainable parameters, and NC on the
training features.

200 epochs per variant (the MLP backbone's default), about 30 s on two CPU
cores.
"""

# %%
import matplotlib.pyplot as plt
import pandas as pd
from sklearn.metrics import accuracy_score, jaccard_score

from sknc import PALClassifier, load_multilabel_digits, nc_report

data = load_multilabel_digits(random_state=0)
k = data.Y_train.shape[1]
variants = {
    "learned head, d=64": dict(fixed_etf=False, feature_dim=64),
    f"fixed ETF head, d=K={k}": dict(fixed_etf=True, feature_dim=k),
}
rows = []
for name, params in variants.items():
    clf = PALClassifier(max_epochs=200, device="cpu", random_state=0, **params)
    clf.fit(data.X_train, data.Y_train)
    rep = nc_report(clf.transform(data.X_train), data.Y_train, clf.coef_, clf.intercept_)
    pred = clf.predict(data.X_test)
    rows.append({
        "variant": name,
        "trainable parameters": clf.n_parameters_,
        "test subset accuracy": accuracy_score(data.Y_test, pred),
        "test Jaccard": jaccard_score(data.Y_test, pred, average="samples"),
        "NC1": rep["nc1"],
        "NC2 (means)": rep["nc2_h"],
        "NC3": rep["nc3"],
        "tag-wise angle": rep["tagwise_angle"],
    })
table = pd.DataFrame(rows).set_index("variant")
print(table.to_string(float_format=lambda v: f"{v:.4g}"))

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
for ax, col in zip(axes, ["test subset accuracy", "test Jaccard", "NC1"]):
    ax.bar(range(len(table)), table[col], color=["C0", "C3"])
    ax.set_xticks(range(len(table)), table.index, fontsize=8)
    ax.set_title(col)
fig.suptitle("Fixed ETF head with feature_dim = K vs a learned head")
fig.tight_layout()

# %%
# The fixed head has fewer trainable parameters (no classifier weights, a
# narrower feature layer) and its classifier is an exact simplex ETF by
# construction; the table shows what it costs in accuracy and collapse on
# these data.
