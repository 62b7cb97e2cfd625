"""The ``sknc`` command line.

Exit codes: 0 success; 1 the computation failed on usable arguments (bad data:
an empty or damaged file, labels that do not match, training that diverged);
2 bad usage (unknown option, out-of-range value, missing file, unsupported
format, an output path that cannot be written). Every failure is one line on
stderr (set ``SKNC_DEBUG=1`` for the traceback). Output paths are checked
before any training or solving starts.

Only ``argparse`` is imported up front, so ``sknc --help`` starts at once; each
command imports what it needs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class _UsageError(Exception):
    """Bad arguments or files: reported with exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (its default prints the whole usage block)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ------------------------------------------------------------------ argument types
def _int_at_least(low):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def _float_in(low, strict):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")) or value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low:g} and finite, got {text}")
        return value

    parse.__name__ = "number"
    return parse


_nonnegative = _float_in(0.0, strict=False)
_positive = _float_in(0.0, strict=True)


def _format_value(v) -> str:
    import numpy as np

    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)) or (isinstance(v, float) and float(v).is_integer() and abs(v) < 1e12):
        return f"{int(v)}"
    return f"{float(v):.6g}"


def format_report(report, title="NC report") -> str:
    """Render a report Series as an aligned two-column table."""
    width = max(len(str(k)) for k in report.index)
    lines = [title, "-" * (width + 16)]
    lines += [f"{str(k):<{width}}  {_format_value(v):>12}" for k, v in report.items()]
    return "\n".join(lines)


def _usage_from_io(fn, *args, **kwargs):
    """Run an ``_io`` call, turning unusable paths into usage errors (bad content stays a data error)."""
    from . import _io

    try:
        return fn(*args, **kwargs)
    except _io.UnusableFileError as exc:
        raise _UsageError(str(exc)) from exc


def _check_device(device):
    from ._validation import check_device

    try:
        return check_device(device)
    except (TypeError, ValueError) as exc:
        raise _UsageError(str(exc)) from exc


# ------------------------------------------------------------------------ metrics
def _cmd_metrics(args) -> int:
    import numpy as np

    from . import _io
    from .metrics import nc_report, tagwise_average

    if args.out:
        _usage_from_io(_io.check_writable_file, args.out, (".csv", ".json"))
    for table_file in (args.per_class, args.cdnv_matrix):
        if table_file:
            _usage_from_io(_io.check_writable_file, table_file, (".csv",))
    bundle = _usage_from_io(_io.load_bundle, args.features)
    labels = _usage_from_io(_io.load_labels, args.labels) if args.labels else bundle.get("labels")
    W, b = bundle.get("W"), bundle.get("b")
    if args.weights:
        W, b = _usage_from_io(_io.load_weights, args.weights)
    if labels is None:
        raise _UsageError("no labels: pass --labels FILE or store an array 'labels' (or 'y') in the .npz features file.")
    if args.no_classifier:
        W = b = None
    report = nc_report(bundle["features"], labels, W, b, global_mean=args.global_mean, between=args.between,
                       class_means=args.class_means, ncc_accuracy=args.ncc_accuracy, feature_rank=args.feature_rank)
    print(format_report(report, title=f"NC report of {args.features}"))
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] > 1:
        try:
            summary = tagwise_average(bundle["features"], labels, class_means=args.class_means).summary
            print("\nTag-wise average per multiplicity")
            print(summary.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
        except ValueError as exc:  # e.g. no label set of size 2..K-1 in the data
            print(f"\n(no tag-wise summary: {exc})")
    if args.out:
        print(f"\nwrote {_io.write_report(report, args.out)}")
    _per_class_tables(args, bundle["features"], labels)
    return EXIT_OK


def _per_class_tables(args, features, labels):
    """``--per-class`` / ``--cdnv-matrix``: write the tables; one that is undefined on the data is said, not fatal."""
    import numpy as np

    from .exceptions import UndefinedMetricError
    from .metrics import cdnv_matrix, class_variability

    if args.per_class:
        try:
            table = class_variability(features, labels, global_mean=args.global_mean, between=args.between,
                                      class_means=args.class_means)
        except UndefinedMetricError as exc:
            print(f"\n(no per-class table: {exc})")
        else:
            table.to_csv(args.per_class)
            print("\nLeast collapsed classes (largest share of NC1)")
            print(table.sort_values("nc1", ascending=False).head(5).to_string(float_format=lambda x: f"{x:.4g}"))
            print(f"wrote {args.per_class}")
    if args.cdnv_matrix:
        try:
            matrix = cdnv_matrix(features, labels, class_means=args.class_means)
        except UndefinedMetricError as exc:
            print(f"\n(no CDNV matrix: {exc})")
            return
        matrix.to_csv(args.cdnv_matrix)
        values = matrix.to_numpy()
        if np.isfinite(values).any():
            a, b = np.unravel_index(np.nanargmax(values), values.shape)
            print(f"\nLargest pairwise CDNV: classes {matrix.index[a]!r} and {matrix.columns[b]!r} "
                  f"({values[a, b]:.4g}; mean over pairs {np.nanmean(values):.4g})")
        print(f"wrote {args.cdnv_matrix}")


# --------------------------------------------------------------------------- demo
def _cmd_demo(args) -> int:
    from . import _io

    epochs = args.epochs if args.epochs is not None else (60 if args.quick else 500)
    out = _usage_from_io(_io.check_writable_dir, args.out)
    device = _check_device(args.device)

    from sklearn.metrics import accuracy_score, hamming_loss, jaccard_score, label_ranking_average_precision_score

    from ._progress import CheckpointTable, Progress
    from .classifier import PALClassifier
    from .datasets import load_multilabel_digits
    from .metrics import nc_report, tagwise_average
    from .theory import estimator_to_ufm_lambdas

    data = load_multilabel_digits(random_state=0)
    Xtr, Ytr, Xte, Yte = data.X_train, data.Y_train, data.X_test, data.Y_test
    print(
        f"sknc demo: multi-label digits, {len(Xtr)} train / {len(Xte)} test samples, K={Ytr.shape[1]}, "
        f"label sets of size {sorted(set(Ytr.sum(1).tolist()))}; {epochs} epochs on {device}"
    )
    clf = PALClassifier(
        max_epochs=epochs,
        track_nc=max(1, epochs // 5),
        callbacks=[("progress", Progress(epochs)), ("table", CheckpointTable())],
        device=device,
        random_state=args.seed,
    )
    print("decision_rule='auto': a first run on 85% of the rows chooses the decision rule on the other 15%, "
          "then the network trains on every row")
    clf.fit(Xtr, Ytr)
    held = ", ".join(f"{rule} {score:.3f}" for rule, score in clf.decision_scores_.items())
    print(f"chosen rule: {clf.decision_rule_} (held-out subset accuracy: {held})")
    H = clf.transform(Xtr)
    report = nc_report(H, Ytr, clf.coef_, clf.intercept_)
    pred = clf.predict(Xte)
    test = {
        "subset_accuracy": float(accuracy_score(Yte, pred)),
        "jaccard_samples": float(jaccard_score(Yte, pred, average="samples", zero_division=1.0)),
        "hamming_loss": float(hamming_loss(Yte, pred)),
        "label_ranking_average_precision": float(
            label_ranking_average_precision_score(Yte, clf.decision_function(Xte))),
    }
    # The estimator's per-sample feature decay is lambda_H / N in the UFM's normalisation.
    lambda_W, lambda_H = estimator_to_ufm_lambdas(clf.lambda_W, clf.lambda_H, len(Xtr))
    tagwise = tagwise_average(H, Ytr, regularization={"lambda_W": lambda_W, "lambda_H": lambda_H, "loss": clf.loss})
    print()
    print(format_report(report, title="NC of the training features (final)"))
    print(f"\nTest metrics (decision rule: {clf.decision_rule_})")
    for key, value in test.items():
        print(f"  {key:<32} {value:.4f}")
    print("\nTag-wise scale per multiplicity: measured vs UFM theory")
    print(tagwise.summary[["multiplicity", "n_sets", "angle_mean", "scale_mean", "scale_theory"]].to_string(
        index=False, float_format=lambda v: f"{v:.4f}"))

    clf.history_.to_csv(out / "history.csv", index=False)
    tagwise.sets.to_csv(out / "tagwise_sets.csv", index=False)
    tagwise.summary.to_csv(out / "tagwise_summary.csv", index=False)
    payload = {"train_nc": _io.json_ready(report), "test": _io.json_ready(test), "epochs": epochs, "seed": args.seed}
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


# ---------------------------------------------------------------------------- ufm
def _parse_counts(text, what):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise _UsageError(f"{what} must be comma-separated integers; got {text!r}.") from exc
    if not values:
        raise _UsageError(f"{what} lists no counts.")
    return values


def _parse_sets(text):
    out = {}
    parts = [part.strip() for part in text.split(",")]
    if not any(parts):
        raise _UsageError("--sets is empty; give m:count pairs such as 1:3,2:1.")
    for part in parts:
        try:
            m, c = part.split(":")
            m, c = int(m), int(c)
        except ValueError as exc:
            raise _UsageError(f"--sets takes m:count pairs such as 1:3,2:1; got {text!r}.") from exc
        if m in out:
            raise _UsageError(f"--sets gives multiplicity {m} twice ({text!r}); give each multiplicity once.")
        out[m] = c
    return out


def _ufm_labels(args):
    import numpy as np
    from itertools import combinations

    k = args.classes
    if args.loss in ("pal", "pal_mean"):
        sets = _parse_sets("1:3,2:1" if args.sets is None else args.sets)
        rows = []
        for m, count in sorted(sets.items()):
            if not 1 <= m <= k:
                raise _UsageError(f"multiplicity {m} in --sets must be between 1 and --classes={k}.")
            if count < 1:
                raise _UsageError(f"--sets: the count of multiplicity {m} must be positive; got {count}.")
            for s in combinations(range(k), m):
                row = np.zeros(k, dtype=int)
                row[list(s)] = 1
                rows += [row] * count
        return np.array(rows)
    if args.sets is not None:
        raise _UsageError("--sets is for --loss pal/pal_mean; use --sizes or --per-class for ce/mse.")
    sizes = _parse_counts(args.sizes, "--sizes") if args.sizes else [args.per_class] * k
    if len(sizes) != k:
        raise _UsageError(f"--sizes lists {len(sizes)} counts but --classes is {k}.")
    if min(sizes) < 1:
        raise _UsageError(f"class sizes in --sizes must be positive; got {min(sizes)}.")
    return np.repeat(np.arange(k), sizes)


def _cmd_ufm(args) -> int:
    import warnings

    from . import _io

    if args.plot:
        _usage_from_io(_io.check_writable_file, args.plot, _io.FIGURE_SUFFIXES)
    Y = _ufm_labels(args)
    if args.lr is not None and args.solver == "lbfgs":
        raise _UsageError("--lr applies to --solver gd or adam (L-BFGS chooses its own steps).")
    device = _check_device(args.device)

    from sklearn.exceptions import ConvergenceWarning

    from .ufm import UFMSolver

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
        device=device,
        random_state=args.seed,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        solver.fit(Y)
    k = args.classes
    print(f"UFM: loss={args.loss}, K={k}, N={len(Y)}, d={solver.W_.shape[1]}, lambda_W={args.lambda_W}, "
          f"lambda_H={args.lambda_H}, lambda_b={args.lambda_b}, bias={not args.no_bias}, nonnegative={args.nonnegative}")
    print(f"  objective {solver.objective_:.12g} after {solver.n_iter_} iterations "
          f"(gradient norm {solver.grad_norm_:.2e}, converged={solver.converged_})")
    for w in caught:
        print(f"  warning: {w.message}")
    if solver.theory_ is None:
        print("  no closed form applies to this setting (see sknc.theory).")
    else:
        print(f"  theory: {type(solver.theory_).__name__}, objective {solver.theory_.objective:.12g}")
        for key, gap in solver.theory_gap_.items():
            print(f"    gap {key:<24} {gap:.3e}")
    if args.plot:
        from .plotting import plot_ufm_dynamics

        plot_ufm_dynamics(solver.history_).savefig(args.plot, dpi=110)
        print(f"  wrote {args.plot}")
    return EXIT_OK


# -------------------------------------------------------------------------- study
def _read_grid(path):
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        raise _UsageError(f"--grid {p} is a folder; give a JSON file.")
    try:
        grid = json.loads(p.read_text())
    except FileNotFoundError as exc:
        raise _UsageError(f"no such file: {p}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _UsageError(f"{p} is not valid JSON ({exc}).") from exc
    grids = grid if isinstance(grid, list) else [grid]
    if not grids or not all(isinstance(g, dict) and g for g in grids):
        raise _UsageError(f"{p}: the grid must be a JSON object {{param: [values, ...]}} (or a list of them).")
    return grid, grids


def _parse_settings(items, valid):
    params = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise _UsageError(f"--set takes PARAM=VALUE (VALUE in JSON), e.g. lr=0.05 or hidden_sizes=[64,64]; "
                              f"got {item!r}.")
        if key not in valid and "__" not in key:
            raise _UsageError(f"--set: unknown PALClassifier parameter {key!r}.")
        try:
            params[key] = json.loads(text)
        except json.JSONDecodeError:
            params[key] = text  # a bare word such as cnn or sgd
    return params


def _scoring(names, multilabel):
    from sklearn.metrics import get_scorer, get_scorer_names

    from .scoring import NC_METRICS, OPT_IN_METRICS, multilabel_scorers, nc_scorers

    known = {**NC_METRICS, **OPT_IN_METRICS}
    quality = multilabel_scorers() if multilabel else {}
    default_quality = list(quality) if multilabel else ["accuracy"]
    names = names.split(",") if names else ["nc1", "nc2_h", "nc2_w", "nc3", "nc4", *default_quality]
    names = [n.strip() for n in names if n.strip()]
    metrics = [name[4:] if name.startswith("neg_") and name[4:] in known else name for name in names]
    # the NC scorers of one search share one report per split (with every option their keys need)
    shared = nc_scorers([m for m in metrics if m in known])
    scoring = {}
    for name, metric in zip(names, metrics):
        if metric in known:
            score_name = metric if known[metric] else f"neg_{metric}"
            scoring[score_name] = shared[score_name]
        elif name in quality:
            scoring[name] = quality[name]
        elif name in get_scorer_names():
            scoring[name] = get_scorer(name)
        else:
            raise _UsageError(f"--scoring: unknown score {name!r}; use NC metrics {sorted(known)}, "
                              f"{sorted(multilabel_scorers())} or a scikit-learn scorer name.")
    return scoring


def _versions():
    import platform
    from importlib import metadata

    from . import __version__

    out = {"python": platform.python_version(), "sknc": __version__}
    for dist in ("numpy", "scipy", "pandas", "scikit-learn", "torch", "skorch", "joblib", "matplotlib",
                 "dask", "distributed"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None  # recorded as absent: a re-run knows the study ran without it
    return out


def _cmd_study(args) -> int:
    import shlex
    from pathlib import Path

    from . import _io

    out = _usage_from_io(_io.check_writable_dir, args.out)
    grid, grids = _read_grid(args.grid)
    device = _check_device(args.device)

    import joblib
    import numpy as np
    import pandas as pd
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    from ._validation import group_labels
    from .classifier import PALClassifier
    from .model_selection import MultilabelStratifiedKFold
    from .study import history_scorers, study_table, study_trajectories, tracked_epochs

    valid = set(PALClassifier().get_params())
    for g in grids:
        unknown = sorted(k for k in g if k not in valid and "__" not in k)
        if unknown:
            raise _UsageError(f"unknown PALClassifier parameter(s) in the grid: {unknown}.")
        if not all(isinstance(v, list) and v for v in g.values()):
            raise _UsageError("every grid entry must be a non-empty JSON list of values.")
    fixed = _parse_settings(args.set, valid)
    if args.data:
        X, y, target = _usage_from_io(_io.load_dataset, args.data, args.target)
        source = str(Path(args.data).resolve())
    else:
        if args.target:
            raise _UsageError("--target needs --data.")
        from .datasets import load_multilabel_digits

        data = load_multilabel_digits(random_state=0)
        X, y, target, source = data.X_train, data.Y_train, None, "bundled multi-label digits (training split)"
    multilabel = group_labels(y, len(X)).multilabel  # also validates the labels before any training
    scoring = _scoring(args.scoring, multilabel)
    refit = args.refit or ("jaccard_samples" if "jaccard_samples" in scoring else
                           "accuracy" if "accuracy" in scoring else next(iter(scoring)))
    if refit not in scoring:
        raise _UsageError(f"--refit {refit!r} is not one of the scores {sorted(scoring)}.")
    epoch_values = sorted({int(e) for g in grids for e in g.get("max_epochs", [args.epochs])})
    if args.track_every:
        epochs = sorted({e for m in epoch_values for e in tracked_epochs(m, args.track_every)})
        columns = ["nc1", "nc2_h", "nc2_w", "nc3"] + (["tagwise_angle"] if multilabel else [])
        scoring |= history_scorers(epochs, columns + ["train_loss"])
    params = {"max_epochs": args.epochs, "track_nc": args.track_every, "device": device,
              "random_state": args.seed, "module": args.module, **fixed}
    try:
        estimator = PALClassifier(**params)
    except TypeError as exc:
        raise _UsageError(str(exc)) from exc
    _check_candidates(estimator, grid, int(np.prod(np.shape(X)[1:])),
                      tuple(np.shape(X)[1:]) if np.ndim(X) in (3, 4) else None)
    splitter = (MultilabelStratifiedKFold(args.cv, shuffle=True, random_state=args.seed) if multilabel
                else StratifiedKFold(args.cv, shuffle=True, random_state=args.seed))
    # Written before the search: a study folder says what ran even if the run is interrupted.
    (out / "grid.json").write_text(json.dumps(grid, indent=2))
    rerun = ["sknc", "study", "--grid", str((out / "grid.json").resolve()), "--out", str(out.resolve())]
    for name in ("data", "target", "module", "epochs", "track_every", "cv", "scoring", "refit", "seed", "n_jobs",
                 "device"):
        value = getattr(args, name)
        if value is not None:
            rerun += [f"--{name.replace('_', '-')}", str(Path(value).resolve()) if name == "data" else str(value)]
    for item in args.set or []:
        rerun += ["--set", item]
    settings = {"command": shlex.join(rerun), "data": source, "target": target, "n_samples": len(X),
                "multilabel": bool(multilabel), "estimator": {k: repr(v) for k, v in params.items()},
                "cv": repr(splitter), "scoring": sorted(k for k in scoring if not k.startswith("history_")),
                "refit": refit, "return_train_score": True}
    (out / "settings.json").write_text(json.dumps(settings, indent=2))
    (out / "versions.json").write_text(json.dumps(_versions(), indent=2))

    search = GridSearchCV(estimator, grid, scoring=scoring, refit=False, cv=splitter, n_jobs=args.n_jobs,
                          return_train_score=True, error_score=np.nan)
    if args.scheduler:
        try:
            from distributed import Client
        except ImportError as exc:
            raise _UsageError("--scheduler needs dask.distributed: pip install 'sknc[dask]'.") from exc
        with Client(args.scheduler, timeout="20s"), joblib.parallel_config(backend="dask"):
            _fit_search(search, X, y)
    else:
        _fit_search(search, X, y)
    results = pd.DataFrame(search.cv_results_)
    results.to_csv(out / "cv_results.csv", index=False)
    table = study_table(search.cv_results_)
    best = int(np.nanargmax(results[f"mean_test_{refit}"])) if results[f"mean_test_{refit}"].notna().any() else None
    table.to_csv(out / "study.csv", index=False)
    written = ["grid.json", "settings.json", "versions.json", "cv_results.csv", "study.csv"]
    trajectories = None
    if args.track_every:
        try:
            trajectories = study_trajectories(search.cv_results_)
        except ValueError:
            trajectories = None
        else:
            trajectories.to_csv(out / "trajectories.csv", index=False)
            written.append("trajectories.csv")
    shown = [c for c in table.columns if not c.endswith("_std")]
    print(table[shown].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if best is not None:
        print(f"\nbest by {refit} (test folds): {search.cv_results_['params'][best]}")
    failed = int(results[f"mean_test_{refit}"].isna().sum())
    if failed:
        print(f"{failed} candidate(s) failed on at least one fold (NaN above); see the warnings.")
    written += _study_figures(search.cv_results_, grids, refit, trajectories, out)
    print(f"wrote {', '.join(written)} to {out}/")
    return EXIT_OK


def _check_candidates(estimator, grid, n_features, image_shape=None):
    """Every grid candidate's parameters checked before any fit (a bad value would fail every fit of it)."""
    from sklearn.base import clone
    from sklearn.model_selection import ParameterGrid

    try:
        candidates = list(ParameterGrid(grid))
    except (TypeError, ValueError) as exc:
        raise _UsageError(f"the grid is not a parameter grid ({exc}).") from exc
    for params in candidates:
        try:
            clone(estimator).set_params(**params)._check_configuration(n_features, image_shape)
        except (TypeError, ValueError) as exc:
            raise _UsageError(f"grid candidate {params}: {' '.join(str(exc).split())}") from exc


def _fit_search(search, X, y):
    """``search.fit``; when every fit failed, the first failure's own message instead of the whole traceback."""
    try:
        search.fit(X, y)
    except ValueError as exc:
        text = str(exc)
        if not text.startswith("All the") or "fits failed" not in text:
            raise
        last = [line for line in text.strip().splitlines() if line.strip()][-1].strip()
        first = text.split(".")[0]
        raise ValueError(f"{first}; the error: {last}") from None


def _study_figures(cv_results, grids, refit, trajectories, out):
    try:
        import matplotlib.pyplot as plt

        from .plotting import plot_study, plot_study_heatmap, plot_trajectories
    except ImportError:
        print("matplotlib is not installed: skipping the figures (pip install 'sknc[plot]').")
        return []
    import pandas as pd

    frame = pd.DataFrame(cv_results)
    varied = [c[len("param_"):] for c in frame.columns
              if c.startswith("param_") and frame[c].astype(str).nunique() > 1]
    first = varied[0] if varied else next(iter(grids[0]))
    hue = varied[1] if len(varied) == 2 else None
    nc = "nc1" if "mean_test_neg_nc1" in frame.columns else None
    metrics = [m for m in (nc, refit) if m]
    figures = {"study.png": lambda: plot_study(cv_results, first, metrics, hue=hue)}
    if len(varied) == 2 and nc:
        figures["heatmap.png"] = lambda: plot_study_heatmap(cv_results, varied[0], varied[1], nc)
    if trajectories is not None and "nc1" in set(trajectories["metric"]):
        figures["trajectories.png"] = lambda: plot_trajectories(cv_results, "nc1")
    written = []
    for name, draw in figures.items():
        try:
            fig = draw()
        except ValueError as exc:  # e.g. every value NaN: the tables above still hold the results
            print(f"(no {name}: {exc})")
            continue
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(name)
    return written


# ------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sknc",
        description="Neural-collapse tools: metrics of saved features, UFM solutions, training demos, studies.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"sknc {__version__}",
                        help="print sknc's version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    m = sub.add_parser(
        "metrics",
        help="NC report of saved features",
        description=(
            "Compute every applicable neural-collapse metric of saved features. FEATURES is an "
            ".npy, .npz, .csv or .parquet file of shape (n_samples, d); an .npz holds 'features' (or 'X') "
            "and may also hold 'labels' (or 'y'), 'W' (K x d) and 'b' (K,): the layout sknc study --data reads."
        ),
    )
    m.add_argument("features", metavar="FEATURES", help="features file (.npy/.npz/.csv/.parquet)")
    m.add_argument(
        "--labels",
        metavar="LABELS",
        help="labels file: 1-D class labels or a 0/1 indicator matrix (multi-label); "
        "default: the 'labels' (or 'y') array of an .npz FEATURES file",
    )
    m.add_argument(
        "--weights",
        metavar="W",
        help="classifier file: an .npy/.csv K x d matrix, or an .npz with 'W' and optional 'b'; "
        "default: 'W'/'b' of an .npz FEATURES file",
    )
    m.add_argument("--no-classifier", action="store_true", help="ignore any classifier stored with the features")
    m.add_argument("--global-mean", choices=("class", "sample"), default="class",
                   help="centre of the class means: mean of class means (default) or sample mean")
    m.add_argument("--between", choices=("class", "sample"), default="class",
                   help="weighting of the between-class covariance: 1/K (default) or n_k/N")
    m.add_argument("--class-means", choices=("auto", "singletons", "tagwise"), default="auto",
                   help="multi-label: class means of single-label samples, or estimated from every label set "
                        "(default auto: estimated when a class has fewer than 2 single-label samples)")
    m.add_argument("--out", metavar="FILE", help="also write the report to FILE (.csv or .json)")
    m.add_argument("--ncc-accuracy", action="store_true",
                   help="add ncc_accuracy: the share of samples nearest to their own class mean (one more read)")
    m.add_argument("--feature-rank", action="store_true",
                   help="add the effective and stable rank of the features themselves (one more read, n d^2)")
    m.add_argument("--per-class", metavar="FILE",
                   help="also write each class's size, within-class variance, share of NC1 and relative "
                        "variability to FILE (.csv)")
    m.add_argument("--cdnv-matrix", metavar="FILE",
                   help="also write the pairwise CDNV of every pair of classes to FILE (.csv, K x K)")
    m.set_defaults(func=_cmd_metrics)

    d = sub.add_parser(
        "demo",
        help="train PALClassifier on the bundled multi-label digits and show neural collapse",
        description=(
            "Train PALClassifier (tuned defaults) on multi-label digits built from scikit-learn's bundled "
            "8x8 digits, with live progress, NC tables at checkpoints, final test metrics and the tag-wise "
            "scale against UFM theory; writes plots, CSV and JSON to --out. About 30 s on 2 CPU cores "
            "(500 epochs); --quick takes a few seconds."
        ),
    )
    d.add_argument("--epochs", type=_int_at_least(1), help="training epochs (default 500; 60 with --quick)")
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
    u.add_argument("--classes", type=_int_at_least(2), default=4, help="number of classes K >= 2 (default 4)")
    u.add_argument("--per-class", type=_int_at_least(1), default=5, help="samples per class for ce/mse (default 5)")
    u.add_argument("--sizes", help="comma-separated class sizes for ce/mse, e.g. 2,4,8,16 (imbalanced)")
    u.add_argument("--sets", help="samples per label set by multiplicity for pal, e.g. 1:3,2:1 (default)")
    u.add_argument("--lambda-W", dest="lambda_W", type=_nonnegative, default=5e-3, help="weight decay (default 5e-3)")
    u.add_argument("--lambda-H", dest="lambda_H", type=_nonnegative, default=5e-3, help="feature decay (default 5e-3)")
    u.add_argument("--lambda-b", dest="lambda_b", type=_nonnegative, default=0.0, help="bias decay (default 0)")
    u.add_argument("--no-bias", action="store_true", help="no classifier bias")
    u.add_argument("--nonnegative", action="store_true", help="constrain features to be >= 0 (ReLU UFM)")
    u.add_argument("--feature-dim", type=_int_at_least(1), help="feature dimension d (default K)")
    u.add_argument("--solver", choices=("lbfgs", "gd", "adam"), default="lbfgs", help="optimiser (default lbfgs)")
    u.add_argument("--lr", type=_positive, help="step size for gd/adam")
    u.add_argument("--max-iter", type=_int_at_least(1), default=10000, help="iteration limit (default 10000)")
    u.add_argument("--init-scale", type=_positive, default=0.1, help="initialisation scale (default 0.1)")
    u.add_argument("--init-norm", action="store_true", help="scale the initial W and H to Frobenius norm --init-scale")
    u.add_argument("--record-every", type=_int_at_least(1), default=10, help="history period for --plot (default 10)")
    u.add_argument("--device", default="cpu", help="torch device (default cpu)")
    u.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    u.add_argument("--plot", metavar="FILE", help="save the dynamics (objective, gradient, NC) to FILE (.png, .pdf, ...)")
    u.set_defaults(func=_cmd_ufm)

    s = sub.add_parser(
        "study",
        help="GridSearchCV study of PALClassifier: training-fold NC, per-epoch trajectories, figures",
        description=(
            "Run a GridSearchCV over PALClassifier parameters with NC scorers on the training and the test "
            "folds (NC is a property of the training features), quality scorers and, with --track-every, the "
            "per-epoch NC trajectory of every candidate; locally or on a Dask scheduler. Writes study.csv, "
            "cv_results.csv, trajectories.csv, the figures and, to re-run the study, grid.json, settings.json "
            "(with the command line) and versions.json to --out."
        ),
    )
    s.add_argument("--grid", required=True, metavar="FILE", help='JSON grid, e.g. {"lambda_H": [0.03, 0.3, 3]}')
    s.add_argument("--data", metavar="FILE",
                   help="training data: .npz with arrays X and y (or features and labels; y may be an indicator), "
                        "or a .csv/.parquet table; "
                        "default the bundled multi-label digits")
    s.add_argument("--target", metavar="COLS",
                   help="label column(s) of a .csv/.parquet --data, comma-separated (several = multi-label "
                        "indicator); default the column y, label or target")
    s.add_argument("--module", default="mlp", help="backbone: mlp (default), cnn or resnet18")
    s.add_argument("--set", action="append", metavar="PARAM=VALUE",
                   help="fix a PALClassifier parameter (VALUE in JSON), e.g. --set hidden_sizes=[64,64]; repeatable")
    s.add_argument("--epochs", type=_int_at_least(1), default=100, help="max_epochs of each fit (default 100)")
    s.add_argument("--track-every", type=_int_at_least(1), default=10,
                   help="record NC every this many epochs for the trajectories (default 10)")
    s.add_argument("--cv", type=_int_at_least(2), default=3, help="number of folds (default 3)")
    s.add_argument("--scoring", metavar="NAMES",
                   help="comma-separated scores: NC metrics (nc1, nc2_h, ...), jaccard_samples, neg_hamming_loss, "
                        "or scikit-learn scorer names (default: nc1..nc4 and the quality scores)")
    s.add_argument("--refit", help="score that names the best candidate (default jaccard_samples or accuracy)")
    s.add_argument("--seed", type=int, default=0, help="random_state of every fit and of the folds (default 0)")
    s.add_argument("--n-jobs", type=int, default=1, help="parallel jobs (default 1; -1 for all)")
    s.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler address, e.g. tcp://host:8786")
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
    prog = f"sknc {args.command}"
    try:
        return args.func(args)
    except _UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ImportError as exc:  # an optional dependency the command needs
        print(f"{prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line, never a traceback; SKNC_DEBUG=1 shows it
        if os.environ.get("SKNC_DEBUG"):
            raise
        kind = "" if isinstance(exc, (ValueError, TypeError, ArithmeticError, OSError)) else "internal error: "
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{prog}: failed: {kind}{message}", file=sys.stderr)
        return EXIT_FAIL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
