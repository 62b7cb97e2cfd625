"""Reading feature/label/weight arrays from .npy, .npz, .csv and .parquet files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

SUPPORTED = (".npy", ".npz", ".csv", ".parquet")


def _check_path(path) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such file: {p}")
    if p.suffix.lower() not in SUPPORTED:
        raise ValueError(f"unsupported file type {p.suffix!r} for {p}; use one of {', '.join(SUPPORTED)}.")
    return p


def _table(p: Path) -> pd.DataFrame:
    if p.suffix.lower() == ".parquet":
        return pd.read_parquet(p)
    frame = pd.read_csv(p)
    # A header row is assumed; if every column name parses as a number there was none.
    try:
        [float(c) for c in frame.columns]
    except ValueError:
        return frame
    return pd.read_csv(p, header=None)


def load_bundle(path) -> dict:
    """Load a features file; an .npz may also carry ``labels``, ``W`` and ``b``."""
    p = _check_path(path)
    suffix = p.suffix.lower()
    if suffix == ".npy":
        return {"features": np.load(p, allow_pickle=False)}
    if suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            if "features" not in z.files:
                raise ValueError(f"{p} holds arrays {z.files}; an .npz features file needs an array named 'features'.")
            return {k: z[k] for k in ("features", "labels", "W", "b") if k in z.files}
    return {"features": _table(p).to_numpy()}


def load_labels(path) -> np.ndarray:
    """Load labels: 1-D class labels, or a 2-D 0/1 indicator (several columns)."""
    p = _check_path(path)
    suffix = p.suffix.lower()
    if suffix == ".npy":
        return np.load(p, allow_pickle=False)
    if suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            key = "labels" if "labels" in z.files else z.files[0]
            return z[key]
    frame = _table(p)
    return frame.iloc[:, 0].to_numpy() if frame.shape[1] == 1 else frame.to_numpy()


def load_weights(path):
    """Load a classifier: ``W`` (and optionally ``b``) from .npy/.npz/.csv/.parquet."""
    p = _check_path(path)
    suffix = p.suffix.lower()
    if suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            if "W" not in z.files:
                raise ValueError(f"{p} holds arrays {z.files}; a weights .npz needs an array named 'W'.")
            return z["W"], (z["b"] if "b" in z.files else None)
    if suffix == ".npy":
        return np.load(p, allow_pickle=False), None
    return _table(p).to_numpy(dtype=float), None


def write_report(report, path) -> Path:
    """Write a Series or DataFrame as CSV (``.csv``) or JSON (``.json``)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    suffix = p.suffix.lower()
    if isinstance(report, pd.Series):
        frame = report.rename("value").rename_axis("metric").reset_index()
    else:
        frame = report
    if suffix == ".csv":
        frame.to_csv(p, index=False)
    elif suffix == ".json":
        records = report.to_dict() if isinstance(report, pd.Series) else frame.to_dict(orient="records")
        p.write_text(json.dumps(records, indent=2, default=float))
    else:
        raise ValueError(f"--out must end in .csv or .json; got {p.name!r}.")
    return p
