"""The ``sknc`` command line.

Exit codes: 0 success, 1 the computation failed on valid arguments (bad data),
2 bad usage (unknown option, missing file, unsupported format).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from . import _io

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class _UsageError(Exception):
    pass


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
        except ValueError:
            pass
    if args.out:
        try:
            path = _io.write_report(report, args.out)
        except ValueError as exc:
            raise _UsageError(str(exc)) from exc
        print(f"\nwrote {path}")
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
