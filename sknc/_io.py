"""Reading arrays from .npy, .npz, .csv and .parquet files, with errors that name the file and the problem.

Two kinds of failure: the path cannot be used at all (missing, a folder, an
unsupported suffix: :class:`UnusableFileError`, a usage error) and the file is
there but its content is not what it should be (empty, truncated, not numeric:
:class:`BadFileError`, a data error). Both subclass ``ValueError``.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

SUPPORTED = (".npy", ".npz", ".csv", ".parquet")
FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff", ".webp")


class UnusableFileError(ValueError):
    """The path cannot be read as asked (missing, a folder, an unsupported type)."""


class BadFileError(ValueError):
    """The file exists but its content cannot be used (empty, truncated, not numeric, wrong arrays)."""


def _check_path(path) -> Path:
    p = Path(path)
    if p.is_dir():
        raise UnusableFileError(f"{p} is a folder; give a file ({', '.join(SUPPORTED)}).")
    if not p.exists():
        raise UnusableFileError(f"no such file: {p}")
    if p.suffix.lower() not in SUPPORTED:
        raise UnusableFileError(f"unsupported file type {p.suffix!r} for {p}; use one of {', '.join(SUPPORTED)}.")
    if p.stat().st_size == 0:
        raise BadFileError(f"{p} is empty.")
    return p


def _npy(p: Path) -> np.ndarray:
    try:
        return np.load(p, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc) or "Object arrays" in str(exc):
            raise BadFileError(f"{p} holds Python objects, not a numeric array; save it with numpy.save.") from exc
        raise BadFileError(f"{p} is not a readable .npy file (truncated or not written by numpy.save).") from exc
    except (OSError, EOFError) as exc:
        raise BadFileError(f"{p} is not a readable .npy file (truncated or not written by numpy.save).") from exc


def _npz(p: Path, keys=None) -> dict:
    """Every array (or those in ``keys`` that exist) of an .npz archive, read now."""
    if not zipfile.is_zipfile(p):
        raise BadFileError(f"{p} is not an .npz archive (not a zip file); write it with numpy.savez.")
    try:
        with np.load(p, allow_pickle=False) as archive:
            names = list(archive.files)
            wanted = names if keys is None else [k for k in keys if k in names]
            arrays = {k: archive[k] for k in wanted}
    except ValueError as exc:
        if "pickle" in str(exc) or "Object arrays" in str(exc):
            raise BadFileError(f"{p} holds Python objects, not numeric arrays; save them with numpy.savez.") from exc
        raise BadFileError(f"{p} is a damaged .npz archive ({exc}).") from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise BadFileError(f"{p} is a damaged or truncated .npz archive ({exc}).") from exc
    except Exception as exc:  # zlib.error and friends from a corrupt member
        raise BadFileError(f"{p} is a damaged .npz archive ({type(exc).__name__}: {exc}).") from exc
    for key, value in arrays.items():
        if not isinstance(value, np.ndarray):  # numpy hands back raw bytes for a member that is not .npy
            raise BadFileError(f"{p}: the member {key!r} is not a numpy array (a damaged archive?).")
    return {"_files": names, **arrays}


def _table(p: Path):
    import pandas as pd

    try:
        if p.suffix.lower() == ".parquet":
            return pd.read_parquet(p)
        frame = pd.read_csv(p)
    except ImportError as exc:
        raise UnusableFileError(f"reading {p.suffix} files needs an extra package: {exc}") from exc
    except pd.errors.EmptyDataError as exc:
        raise BadFileError(f"{p} holds no data.") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise BadFileError(f"{p} is not a readable {p.suffix} table ({exc}).") from exc
    # A header row is assumed; if every column name parses as a number there was none.
    try:
        [float(c) for c in frame.columns]
    except (TypeError, ValueError):
        return frame
    return pd.read_csv(p, header=None)


def _numeric(frame, p: Path, what: str) -> np.ndarray:
    bad = [str(c) for c in frame.columns if not (frame[c].dtype.kind in "biuf")]
    if bad:
        raise BadFileError(f"{p}: {what} column(s) {bad[:5]} are not numeric.")
    if frame.shape[0] == 0:
        raise BadFileError(f"{p} has a header but no rows.")
    return frame.to_numpy(dtype=float)


# the names an .npz may give its arrays: every command reads both spellings (``sknc metrics`` and ``sknc study``)
_FEATURE_NAMES = ("features", "X")
_LABEL_NAMES = ("labels", "y", "Y")


def _first_of(arrays, names):
    return next((k for k in names if k in arrays), None)


def load_bundle(path) -> dict:
    """Load a features file; an .npz may also carry ``labels``, ``W`` and ``b``.

    An .npz names its arrays ``features`` (or ``X``) and ``labels`` (or ``y``),
    as :func:`load_dataset` reads them.
    """
    p = _check_path(path)
    suffix = p.suffix.lower()
    if suffix == ".npy":
        return {"features": _npy(p)}
    if suffix == ".npz":
        arrays = _npz(p, _FEATURE_NAMES + _LABEL_NAMES + ("W", "b"))
        x_key, y_key = _first_of(arrays, _FEATURE_NAMES), _first_of(arrays, _LABEL_NAMES)
        if x_key is None:
            raise BadFileError(f"{p} holds arrays {arrays['_files']}; an .npz features file needs one named "
                               "'features' (or 'X').")
        out = {"features": arrays[x_key]}
        if y_key is not None:
            out["labels"] = arrays[y_key]
        out.update({k: arrays[k] for k in ("W", "b") if k in arrays})
        return out
    return {"features": _numeric(_table(p), p, "feature")}


def load_labels(path) -> np.ndarray:
    """Load labels: 1-D class labels, or a 2-D 0/1 indicator (several columns)."""
    p = _check_path(path)
    suffix = p.suffix.lower()
    if suffix == ".npy":
        return _npy(p)
    if suffix == ".npz":
        arrays = _npz(p)
        names = arrays.pop("_files")
        if not names:
            raise BadFileError(f"{p} holds no arrays.")
        return arrays[_first_of(arrays, _LABEL_NAMES) or names[0]]
    frame = _table(p)
    return frame.iloc[:, 0].to_numpy() if frame.shape[1] == 1 else frame.to_numpy()


def load_weights(path):
    """Load a classifier: ``W`` (and optionally ``b``) from .npy/.npz/.csv/.parquet."""
    p = _check_path(path)
    suffix = p.suffix.lower()
    if suffix == ".npz":
        arrays = _npz(p, ("W", "b"))
        if "W" not in arrays:
            raise BadFileError(f"{p} holds arrays {arrays['_files']}; a weights .npz needs an array named 'W'.")
        return arrays["W"], arrays.get("b")
    if suffix == ".npy":
        return _npy(p), None
    return _numeric(_table(p), p, "weight"), None


def load_dataset(path, target=None):
    """``(X, y, target_names)`` for a study: an .npz with ``X`` and ``y``, or a table with target columns.

    ``target``: comma-separated column names of a .csv/.parquet file (several
    columns = a multi-label indicator); default the column ``y``, ``label`` or
    ``target`` if there is one. An .npz holds arrays ``X`` and ``y`` (or
    ``features`` and ``labels``).
    """
    p = _check_path(path)
    suffix = p.suffix.lower()
    if suffix == ".npy":
        raise UnusableFileError(f"{p}: a study needs features and labels; use an .npz with arrays X and y, or a table.")
    if suffix == ".npz":
        arrays = _npz(p)
        names = arrays.pop("_files")
        x_key = _first_of(arrays, _FEATURE_NAMES)
        y_key = _first_of(arrays, _LABEL_NAMES)
        if x_key is None or y_key is None:
            raise BadFileError(f"{p} holds arrays {names}; a study .npz needs 'X' and 'y' (or 'features' and 'labels').")
        return arrays[x_key], arrays[y_key], None
    frame = _table(p)
    if target is None:
        found = [c for c in ("y", "label", "target") if c in frame.columns]
        if not found:
            raise BadFileError(f"{p}: name the label column(s) with --target; columns are {list(frame.columns)[:10]}.")
        columns = found[:1]
    else:
        columns = [c.strip() for c in str(target).split(",") if c.strip()]
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise BadFileError(f"{p} has no column(s) {missing}; columns are {list(frame.columns)[:10]}.")
    features = frame.drop(columns=columns)
    if features.shape[1] == 0:
        raise BadFileError(f"{p} has no feature columns besides the target {columns}.")
    X = _numeric(features, p, "feature").astype(np.float32)
    y = frame[columns[0]].to_numpy() if len(columns) == 1 else _numeric(frame[columns], p, "target").astype(int)
    return X, y, columns


def check_writable_dir(path) -> Path:
    """Create ``path`` if needed and prove a file can be written there; ``UnusableFileError`` otherwise."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UnusableFileError(f"output folder {p} is an existing file.")
    try:
        p.mkdir(parents=True, exist_ok=True)
        tempfile.NamedTemporaryFile(dir=p, prefix=".sknc-write-test-").close()  # created, then removed
    except OSError as exc:
        raise UnusableFileError(f"cannot write to the output folder {p} ({exc.strerror or exc}).") from exc
    return p


def check_writable_file(path, suffixes) -> Path:
    """Check an output file's suffix and that its folder is writable, before any work is done."""
    p = Path(path)
    if p.suffix.lower() not in suffixes:
        raise UnusableFileError(f"output file {p.name!r} must end in one of {', '.join(suffixes)}.")
    if p.is_dir():
        raise UnusableFileError(f"output file {p} is a folder.")
    check_writable_dir(p.parent if str(p.parent) else ".")
    if p.exists() and not os.access(p, os.W_OK):
        raise UnusableFileError(f"cannot overwrite {p} (no write permission).")
    return p


_COUNT_KEYS = frozenset({"n_samples", "n_classes", "n_dims", "n_singletons", "nc1_rank", "epoch", "epochs",
                         "n_sets", "multiplicity"})


def json_ready(values):
    """A report (Series or dict) as plain JSON values: counts as integers, NaN as null, numbers as floats."""
    import math

    out = {}
    for key, value in dict(values).items():
        if isinstance(value, dict):
            out[key] = json_ready(value)
            continue
        if isinstance(value, (bool, np.bool_)):
            out[key] = bool(value)
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            out[key] = value
            continue
        if not math.isfinite(number):
            out[key] = None
        elif key in _COUNT_KEYS and number.is_integer():
            out[key] = int(number)
        else:
            out[key] = number
    return out


def write_report(report, path) -> Path:
    """Write a Series or DataFrame as CSV (``.csv``) or JSON (``.json``)."""
    import pandas as pd

    p = check_writable_file(path, (".csv", ".json"))
    if isinstance(report, pd.Series):
        frame = report.rename("value").rename_axis("metric").reset_index()
    else:
        frame = report
    if p.suffix.lower() == ".csv":
        frame.to_csv(p, index=False)
    else:
        records = json_ready(report) if isinstance(report, pd.Series) else [
            json_ready(row) for row in frame.to_dict(orient="records")]
        p.write_text(json.dumps(records, indent=2))
    return p
