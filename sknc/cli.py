"""The ``sknc`` command line.

Exit codes: 0 success, 1 the computation failed on valid arguments (bad data),
2 bad usage (unknown option, missing file, unsupported format).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from skorch.callbacks import Callback

from . import _io

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class _UsageError(Exception):
    """Bad arguments or files: reported with exit code 2."""


def _format_value(v) -> str:
    if isinstance(v, (int, np.integer)) or (isinstance(v, float) and float(v).is_integer() and abs(v) < 1e12):
        return f"{int(v)}"
    return f"{float(v):.6g}"


def format_report(report, title="NC report") -> str:
    """Render a report Series as an aligned two-column table."""
    width = max(len(str(k)) for k in report.index)
    lines = [title, "-" * (width + 16)]
    lines += [f"{str(k):<{width}}  {_format_value(v):>12}" for k, v in report.items()]
    return "\n".join(lines)


def _cmd_metrics(args) -> int:
    from .metrics import nc_report, tagwise_average

    try:
        bundle = _io.load_bundle(args.features)
        labels = _io.load_labels(args.labels) if args.labels else bundle.get("labels")
        W, b = bundle.get("W"), bundle.get("b")
        if args.weights:
            W, b = _io.load_weights(args.weights)
    except (FileNotFoundError, ValueError) as exc:
        raise _UsageError(str(exc)) from exc
    if labels is None:
        raise _UsageError("no labels: pass --labels FILE or store an array 'labels' in the .npz features file.")
    if args.no_classifier:
        W = b = None
    report = nc_report(
        bundle["features"], labels, W, b, global_mean=args.global_mean, between=args.between
    )
    print(format_report(report, title=f"NC report of {args.features}"))
    if np.asarray(labels).ndim == 2 and np.asarray(labels).shape[1] > 1:
        try:
            summary = tagwise_average(bundle["features"], labels).summary
            print("\nTag-wise average per multiplicity")
            print(summary.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
        except ValueError as exc:  # e.g. no label set of size 2..K-1 in the data
            print(f"\n(no tag-wise summary: {exc})")
    if args.out:
        try:
            path = _io.write_report(report, args.out)
        except ValueError as exc:
            raise _UsageError(str(exc)) from exc
        print(f"\nwrote {path}")
    return EXIT_OK


class _Progress(Callback):
    """Live progress of a skorch net: one updating line on a terminal, every few epochs otherwise."""

    def __init__(self, total, stream=None):
        self.total = total
        self.stream = stream

    def on_epoch_end(self, net, **kwargs):
        stream = self.stream or sys.stdout
        row = net.history[-1]
        epoch = row["epoch"]
        text = f"epoch {epoch:4d}/{self.total}  loss {row['train_loss']:.4f}  lr {row.get('lr', float('nan')):.4g}"
        if "nc1" in row:
            text += f"  nc1 {row['nc1']:.3g}"
        if stream.isatty():
            stream.write("\r" + text.ljust(72))
            if epoch == self.total:
                stream.write("\n")
        elif epoch % max(1, self.total // 20) == 0 or epoch == self.total or epoch == 1:
            stream.write(text + "\n")
        stream.flush()


_TABLE_KEYS = ("nc1", "nc2_h", "nc2_w", "nc3", "nc4", "tagwise_angle")


class _CheckpointTable(Callback):
    """Print an NC table whenever the NC tracker recorded a row."""

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        if "nc1" not in row:
            return
        if sys.stdout.isatty():
            sys.stdout.write("\n")
        cells = "  ".join(f"{k} {row[k]:.4g}" for k in _TABLE_KEYS if k in row)
        print(f"  [NC checkpoint, epoch {row['epoch']}] {cells}")


def _cmd_demo(args) -> int:
    from sklearn.metrics import accuracy_score, hamming_loss, jaccard_score, label_ranking_average_precision_score

    from .classifier import PALClassifier
    from .datasets import load_multilabel_digits
    from .metrics import nc_report, tagwise_average

    if args.epochs is not None and args.epochs < 1:
        raise _UsageError(f"--epochs must be a positive integer; got {args.epochs}.")
    epochs = args.epochs if args.epochs is not None else (60 if args.quick else 500)
    out = Path(args.out)
    data = load_multilabel_digits(random_state=0)
    Xtr, Ytr, Xte, Yte = data.X_train, data.Y_train, data.X_test, data.Y_test
    print(
        f"sknc demo: multi-label digits, {len(Xtr)} train / {len(Xte)} test samples, K={Ytr.shape[1]}, "
        f"label sets of size {sorted(set(Ytr.sum(1).tolist()))}; {epochs} epochs on {args.device}"
    )
    every = max(1, epochs // 5)
    clf = PALClassifier(
        max_epochs=epochs,
        track_nc=every,
        callbacks=[("progress", _Progress(epochs)), ("table", _CheckpointTable())],
        device=args.device,
        random_state=args.seed,
    )
    try:
        clf.fit(Xtr, Ytr)
    except ValueError as exc:
        if "CUDA" in str(exc):
            raise _UsageError(str(exc)) from exc
        raise
    H = clf.transform(Xtr)
    report = nc_report(H, Ytr, clf.coef_, clf.intercept_)
    pred = clf.predict(Xte)
    test = {
        "subset_accuracy": float(accuracy_score(Yte, pred)),
        "jaccard_samples": float(jaccard_score(Yte, pred, average="samples", zero_division=1.0)),
        "hamming_loss": float(hamming_loss(Yte, pred)),
        "label_ranking_average_precision": float(label_ranking_average_precision_score(Yte, clf.decision_function(Xte))),
    }
    tagwise = tagwise_average(H, Ytr, regularization={"lambda_W": clf.lambda_W, "lambda_H": clf.lambda_H, "loss": clf.loss})
    print()
    print(format_report(report, title="NC of the training features (final)"))
    print("\nTest metrics (tag-wise-average decision rule)")
    for key, value in test.items():
        print(f"  {key:<32} {value:.4f}")
    print("\nTag-wise scale per multiplicity: measured vs UFM theory")
    print(tagwise.summary[["multiplicity", "n_sets", "angle_mean", "scale_mean", "scale_theory"]].to_string(
        index=False, float_format=lambda v: f"{v:.4f}"))

    out.mkdir(parents=True, exist_ok=True)
    clf.history_.to_csv(out / "history.csv", index=False)
    tagwise.sets.to_csv(out / "tagwise_sets.csv", index=False)
    tagwise.summary.to_csv(out / "tagwise_summary.csv", index=False)
    payload = {"train_nc": {k: float(v) for k, v in report.items()}, "test": test, "epochs": epochs, "seed": args.seed}
    (out / "report.json").write_text(json.dumps(payload, indent=2))
    written = ["history.csv", "tagwise_sets.csv", "tagwise_summary.csv", "report.json"]
    try:
        from .plotting import plot_class_means, plot_nc_history, plot_tagwise
    except ImportError:
        print("\nmatplotlib is not installed: skipping plots (pip install 'sknc[plot]').")
    else:
        import matplotlib.pyplot as plt

        single = Ytr.sum(1) == 1
        figures = {
            "nc_history.png": plot_nc_history(clf.history_),
            "class_means_2d.png": plot_class_means(H[single], Ytr[single].argmax(1), clf.coef_, dims=2),
            "class_means_3d.png": plot_class_means(H[single], Ytr[single].argmax(1), clf.coef_, dims=3),
            "tagwise.png": plot_tagwise(tagwise),
        }
        for name, fig in figures.items():
            fig.savefig(out / name, dpi=110)
            plt.close(fig)
            written.append(name)
    print(f"\nwrote {', '.join(written)} to {out}/")
    return EXIT_OK


def _parse_counts(text, what):
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise _UsageError(f"{what} must be comma-separated integers; got {text!r}.") from exc


def _parse_sets(text):
    out = {}
    for part in text.split(","):
        try:
            m, c = part.split(":")
            out[int(m)] = int(c)
        except ValueError as exc:
            raise _UsageError(f"--sets takes m:count pairs such as 1:3,2:1; got {text!r}.") from exc
    return out


def _cmd_ufm(args) -> int:
    import warnings
    from itertools import combinations

    from sklearn.exceptions import ConvergenceWarning

    from .ufm import UFMSolver

    k = args.classes
    if args.loss in ("pal", "pal_mean"):
        sets = _parse_sets(args.sets or "1:3,2:1")
        rows = []
        for m, count in sorted(sets.items()):
            if not 1 <= m <= k:
                raise _UsageError(f"multiplicity {m} in --sets must be between 1 and --classes={k}.")
            for s in combinations(range(k), m):
                row = np.zeros(k, dtype=int)
                row[list(s)] = 1
                rows += [row] * count
        Y = np.array(rows)
    else:
        sizes = _parse_counts(args.sizes, "--sizes") if args.sizes else [args.per_class] * k
        if len(sizes) != k:
            raise _UsageError(f"--sizes lists {len(sizes)} counts but --classes is {k}.")
        if min(sizes) < 1:
            raise _UsageError("class sizes must be positive.")
        Y = np.repeat(np.arange(k), sizes)
    solver = UFMSolver(
        loss=args.loss,
        feature_dim=args.feature_dim,
        lambda_W=args.lambda_W,
        lambda_H=args.lambda_H,
        lambda_b=args.lambda_b,
        bias=not args.no_bias,
        nonnegative=args.nonnegative,
        solver=args.solver,
        lr=args.lr,
        max_iter=args.max_iter,
        init="norm" if args.init_norm else "normal",
        init_scale=args.init_scale,
        record_every=args.record_every if args.plot else 0,
        random_state=args.seed,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        solver.fit(Y)
    print(f"UFM: loss={args.loss}, K={k}, N={len(Y)}, d={solver.W_.shape[1]}, lambda_W={args.lambda_W}, "
          f"lambda_H={args.lambda_H}, lambda_b={args.lambda_b}, bias={not args.no_bias}, nonnegative={args.nonnegative}")
    print(f"  objective {solver.objective_:.12g} after {solver.n_iter_} iterations "
          f"(gradient norm {solver.grad_norm_:.2e}, converged={solver.converged_})")
    for w in caught:
        print(f"  warning: {w.message}")
    if solver.theory_ is None:
        print("  no closed form applies to this setting (see sknc.theory).")
    else:
        ref = solver.theory_
        print(f"  theory: {type(ref).__name__}, objective {ref.objective:.12g}")
        for key, gap in solver.theory_gap_.items():
            print(f"    gap {key:<24} {gap:.3e}")
    if args.plot:
        from .plotting import plot_ufm_dynamics

        plot_ufm_dynamics(solver.history_).savefig(args.plot, dpi=110)
        print(f"  wrote {args.plot}")
    return EXIT_OK


def _cmd_study(args) -> int:
    import joblib
    import pandas as pd
    from sklearn.model_selection import GridSearchCV

    from .classifier import PALClassifier
    from .datasets import load_multilabel_digits
    from .model_selection import MultilabelStratifiedKFold
    from .scoring import multilabel_scorers, nc_scorers

    try:
        grid = json.loads(Path(args.grid).read_text())
    except FileNotFoundError as exc:
        raise _UsageError(f"no such file: {args.grid}") from exc
    except json.JSONDecodeError as exc:
        raise _UsageError(f"{args.grid} is not valid JSON: {exc}") from exc
    if not isinstance(grid, (dict, list)) or not grid:
        raise _UsageError("the grid must be a JSON object {param: [values, ...]} (or a list of them).")
    valid = set(PALClassifier().get_params())
    for g in grid if isinstance(grid, list) else [grid]:
        unknown = set(g) - valid
        if unknown:
            raise _UsageError(f"unknown PALClassifier parameter(s) in the grid: {sorted(unknown)}.")
        if not all(isinstance(v, list) and v for v in g.values()):
            raise _UsageError("every grid entry must be a non-empty JSON list of values.")
    data = load_multilabel_digits(random_state=0)
    scoring = nc_scorers() | multilabel_scorers()
    search = GridSearchCV(
        PALClassifier(max_epochs=args.epochs, device=args.device, random_state=0),
        grid,
        scoring=scoring,
        refit=args.refit,
        cv=MultilabelStratifiedKFold(args.cv),
        n_jobs=args.n_jobs,
        error_score="raise",
    )
    if args.scheduler:
        try:
            from distributed import Client
        except ImportError as exc:
            raise _UsageError("--scheduler needs dask.distributed: pip install 'sknc[dask]'.") from exc
        with Client(args.scheduler, timeout="20s"), joblib.parallel_config(backend="dask"):
            search.fit(data.X_train, data.Y_train)
    else:
        search.fit(data.X_train, data.Y_train)
    frame = pd.DataFrame(search.cv_results_)
    keep = [c for c in frame.columns if c.startswith("param_") or c.startswith("mean_test_") or c.startswith("std_test_")]
    table = frame[keep]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "study.csv", index=False)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"\nbest by {args.refit}: {search.best_params_}")
    written = ["study.csv"]
    try:
        from .plotting import plot_study
    except ImportError:
        print("matplotlib is not installed: skipping study.png (pip install 'sknc[plot]').")
    else:
        first = next(iter(grid if isinstance(grid, dict) else grid[0]))
        plot_study(search.cv_results_, first, ["neg_nc1", args.refit]).savefig(out / "study.png", dpi=110)
        written.append("study.png")
    print(f"wrote {', '.join(written)} to {out}/")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sknc",
        description="Neural-collapse tools: metrics of saved features, UFM solutions, training demos.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    m = sub.add_parser(
        "metrics",
        help="NC report of saved features",
        description=(
            "Compute every applicable neural-collapse metric of saved features. FEATURES is an "
            ".npy, .npz, .csv or .parquet file of shape (n_samples, d); an .npz may also hold "
            "arrays 'labels', 'W' (K x d) and 'b' (K,)."
        ),
    )
    m.add_argument("features", metavar="FEATURES", help="features file (.npy/.npz/.csv/.parquet)")
    m.add_argument(
        "--labels",
        metavar="LABELS",
        help="labels file: 1-D class labels or a 0/1 indicator matrix (multi-label); "
        "default: the 'labels' array of an .npz FEATURES file",
    )
    m.add_argument(
        "--weights",
        metavar="W",
        help="classifier file: an .npy/.csv K x d matrix, or an .npz with 'W' and optional 'b'; "
        "default: 'W'/'b' of an .npz FEATURES file",
    )
    m.add_argument("--no-classifier", action="store_true", help="ignore any classifier stored with the features")
    m.add_argument(
        "--global-mean",
        choices=("class", "sample"),
        default="class",
        help="centre of the class means: mean of class means (default) or sample mean",
    )
    m.add_argument(
        "--between",
        choices=("class", "sample"),
        default="class",
        help="weighting of the between-class covariance: 1/K (default) or n_k/N",
    )
    m.add_argument("--out", metavar="FILE", help="also write the report to FILE (.csv or .json)")
    m.set_defaults(func=_cmd_metrics)

    d = sub.add_parser(
        "demo",
        help="train PALClassifier on the bundled multi-label digits and show neural collapse",
        description=(
            "Train PALClassifier (tuned defaults) on multi-label digits built from scikit-learn's bundled "
            "8x8 digits, with live progress, NC tables at checkpoints, final test metrics and the tag-wise "
            "scale against UFM theory; writes plots, CSV and JSON to --out. About 30 seconds on 2 CPU cores."
        ),
    )
    d.add_argument("--epochs", type=int, help="training epochs (default 500; 60 with --quick)")
    d.add_argument("--quick", action="store_true", help="a short run (60 epochs) to try things out")
    d.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu' or 'cuda'")
    d.add_argument("--seed", type=int, default=0, help="random_state of the network (default 0)")
    d.add_argument("--out", default="sknc-demo", help="output folder (default ./sknc-demo)")
    d.set_defaults(func=_cmd_demo)

    u = sub.add_parser(
        "ufm",
        help="solve an unconstrained feature model and compare with theory",
        description="Solve a UFM with UFMSolver and print its optimum against the matching closed form.",
    )
    u.add_argument("--loss", choices=("ce", "pal", "pal_mean", "mse"), default="ce", help="loss (default ce)")
    u.add_argument("--classes", type=int, default=4, help="number of classes K (default 4)")
    u.add_argument("--per-class", type=int, default=5, help="samples per class for ce/mse (default 5)")
    u.add_argument("--sizes", help="comma-separated class sizes for ce/mse, e.g. 2,4,8,16 (imbalanced)")
    u.add_argument("--sets", help="samples per label set by multiplicity for pal, e.g. 1:3,2:1 (default)")
    u.add_argument("--lambda-W", dest="lambda_W", type=float, default=5e-3, help="weight decay (default 5e-3)")
    u.add_argument("--lambda-H", dest="lambda_H", type=float, default=5e-3, help="feature decay (default 5e-3)")
    u.add_argument("--lambda-b", dest="lambda_b", type=float, default=0.0, help="bias decay (default 0)")
    u.add_argument("--no-bias", action="store_true", help="no classifier bias")
    u.add_argument("--nonnegative", action="store_true", help="constrain features to be >= 0 (ReLU UFM)")
    u.add_argument("--feature-dim", type=int, help="feature dimension d (default K)")
    u.add_argument("--solver", choices=("lbfgs", "gd", "adam"), default="lbfgs", help="optimiser (default lbfgs)")
    u.add_argument("--lr", type=float, help="step size for gd/adam")
    u.add_argument("--max-iter", type=int, default=10000, help="iteration limit (default 10000)")
    u.add_argument("--init-scale", type=float, default=0.1, help="initialisation scale (default 0.1)")
    u.add_argument("--init-norm", action="store_true", help="scale the initial W and H to Frobenius norm --init-scale")
    u.add_argument("--record-every", type=int, default=10, help="history period for --plot (default 10)")
    u.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    u.add_argument("--plot", metavar="FILE", help="save the dynamics (objective, gradient, NC) to FILE")
    u.set_defaults(func=_cmd_ufm)

    s = sub.add_parser(
        "study",
        help="GridSearchCV study of PALClassifier with NC and quality scorers",
        description=(
            "Run a GridSearchCV over PALClassifier parameters on the bundled multi-label digits with NC "
            "scorers (neg_nc1, neg_nc2_h, ...) and multi-label quality scorers, locally or on a Dask "
            "scheduler; writes study.csv and study.png to --out."
        ),
    )
    s.add_argument("--grid", required=True, metavar="FILE", help='JSON grid, e.g. {"lambda_H": [1e-4, 6e-4]}')
    s.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler address, e.g. tcp://host:8786")
    s.add_argument("--n-jobs", type=int, default=1, help="parallel jobs (default 1; -1 for all)")
    s.add_argument("--epochs", type=int, default=100, help="max_epochs of each fit (default 100)")
    s.add_argument("--cv", type=int, default=3, help="folds of MultilabelStratifiedKFold (default 3)")
    s.add_argument("--refit", default="jaccard_samples", help="score that picks the best model (default jaccard_samples)")
    s.add_argument("--device", default="cpu", help="device of every fit (default cpu)")
    s.add_argument("--out", default="sknc-study", help="output folder (default ./sknc-study)")
    s.set_defaults(func=_cmd_study)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help
        return int(exc.code or 0)
    try:
        return args.func(args)
    except _UsageError as exc:
        print(f"sknc {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, TypeError) as exc:
        print(f"sknc {args.command}: failed: {exc}", file=sys.stderr)
        return EXIT_FAIL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
