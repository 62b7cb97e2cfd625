"""A hyperparameter study as ordinary scikit-learn code: how do lambda_H and the ETF head change NC and accuracy?

GridSearchCV over PALClassifier on the bundled multi-label digits, scored by sknc's NC
scorers and multi-label quality scorers with multi-label stratified folds. Pass
``--scheduler tcp://host:8786`` to run the same search on a Dask cluster.

Run: ``python examples/gridsearch_study.py [--epochs 100] [--n-jobs 2] [--out study.png]``
"""

import argparse

import joblib
import matplotlib

matplotlib.use("Agg")
import pandas as pd
from sklearn.model_selection import GridSearchCV

from sknc import MultilabelStratifiedKFold, PALClassifier, load_multilabel_digits, multilabel_scorers, nc_scorers
from sknc.plotting import plot_study


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--scheduler", help="Dask scheduler address")
    parser.add_argument("--out", default="study.png")
    args = parser.parse_args()
    data = load_multilabel_digits(random_state=0)
    search = GridSearchCV(
        PALClassifier(max_epochs=args.epochs, device="cpu", random_state=0),
        {"lambda_H": [1e-4, 6e-4, 2e-3], "fixed_etf": [True, False]},
        scoring=nc_scorers() | multilabel_scorers(),
        refit="jaccard_samples",
        cv=MultilabelStratifiedKFold(3),
        n_jobs=args.n_jobs,
    )
    if args.scheduler:
        from dask.distributed import Client

        with Client(args.scheduler), joblib.parallel_config(backend="dask"):
            search.fit(data.X_train, data.Y_train)
    else:
        search.fit(data.X_train, data.Y_train)
    res = pd.DataFrame(search.cv_results_)
    cols = ["param_lambda_H", "param_fixed_etf", "mean_test_neg_nc1", "mean_test_neg_nc2_h", "mean_test_jaccard_samples",
            "mean_test_subset_accuracy"]
    print(res[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print("best:", search.best_params_)
    plot_study(search.cv_results_, "lambda_H", ["neg_nc1", "neg_nc2_h", "jaccard_samples"]).savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
