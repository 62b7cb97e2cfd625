"""Neural-collapse hyperparameter studies: trajectories through a search, tidy tables of its results.

Neural collapse is a property of the *training* features, so a study reads the
NC scores that ``GridSearchCV(..., return_train_score=True)`` computes on each
fitted model's own training fold (``mean_train_neg_nc1``); the test-fold values
(``mean_test_neg_nc1``) measure how the collapse transfers to held-out data.

The per-epoch NC history of every fit (recorded by ``track_nc`` or
:class:`~sknc.NCTracker`) travels through the search as scores: one
:class:`HistoryScorer` per (history column, epoch) reads the value from the
fitted estimator's history. Only numbers leave the workers, so the
trajectories come back the same way under any joblib backend (sequential,
loky, Dask) and no network is kept.
"""

from __future__ import annotations

import numbers
import re

import numpy as np
import pandas as pd

from .scoring import NC_METRICS, OPT_IN_METRICS

__all__ = [
    "HistoryScorer",
    "history_frame",
    "history_scorers",
    "study_table",
    "study_trajectories",
    "tracked_epochs",
]

_HISTORY = re.compile(r"^mean_test_history_(?P<column>.+)@(?P<epoch>\d+)$")
_DEFAULT_HISTORY = ("nc1", "nc2_h", "nc2_w", "nc3")


def tracked_epochs(max_epochs, every):
    """Epochs at which ``track_nc=every`` (or ``NCTracker(every=every)``) records NC in a run of ``max_epochs``.

    Every ``every``-th epoch and the last one, as the tracker records them.

    Examples
    --------
    >>> tracked_epochs(25, 10)
    [10, 20, 25]
    """
    for name, value in (("max_epochs", max_epochs), ("every", every)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    epochs = list(range(every, max_epochs + 1, every))
    if not epochs or epochs[-1] != max_epochs:
        epochs.append(int(max_epochs))
    return epochs


def history_frame(estimator):
    """The per-epoch history of a fitted estimator as a DataFrame (one row per epoch).

    Accepts sknc estimators (``history_``), any skorch net (``history``) and a
    Pipeline ending in either. Per-batch records are dropped.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_iris
    >>> from sknc import PALClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> X = X.astype(np.float32)  # raw: PALClassifier scales its inputs itself
    >>> from sknc.study import history_frame
    >>> net = PALClassifier(hidden_sizes=(16,), max_epochs=4, track_nc=2, random_state=0).fit(X, y)
    >>> frame = history_frame(net)
    >>> frame["epoch"].tolist(), frame.dropna(subset=["nc1"])["epoch"].tolist()
    ([1, 2, 3, 4], [2, 4])
    """
    if hasattr(estimator, "steps"):  # a Pipeline: the history lives in its last step
        estimator = estimator.steps[-1][1]
    history = getattr(estimator, "history_", None)
    if isinstance(history, pd.DataFrame):
        return history
    history = getattr(estimator, "history", None)
    if history is None:
        raise TypeError(f"{type(estimator).__name__} keeps no training history (history_ or a skorch history).")
    rows = [{k: v for k, v in row.items() if k != "batches" and not isinstance(v, (list, dict))} for row in history]
    return pd.DataFrame(rows)


class HistoryScorer:
    """A scorer that returns one value of the fitted estimator's training history.

    ``HistoryScorer("nc1", 50)(estimator, X, y)`` is the ``nc1`` the tracker
    recorded at epoch 50, whatever ``X`` and ``y`` are: it carries the
    trajectory through ``GridSearchCV`` without keeping the network. A value
    that was not recorded (early stopping, another tracking period) is NaN.

    Parameters
    ----------
    column : str
        History column, e.g. ``'nc1'``, ``'valid_nc1'``, ``'train_loss'``.
    epoch : int
        Epoch number (1-based, as skorch counts).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_iris
    >>> from sknc import PALClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> X = X.astype(np.float32)  # raw: PALClassifier scales its inputs itself
    >>> from sknc.study import HistoryScorer, history_frame
    >>> net = PALClassifier(hidden_sizes=(16,), max_epochs=4, track_nc=2, random_state=0).fit(X, y)
    >>> recorded = history_frame(net).set_index("epoch")["nc1"]
    >>> bool(HistoryScorer("nc1", 4)(net, X, y) == recorded[4])
    True
    >>> bool(np.isnan(HistoryScorer("nc1", 3)(net, X, y)))  # not a tracked epoch
    True
    """

    def __init__(self, column, epoch):
        self.column = column
        self.epoch = epoch

    def __call__(self, estimator, X=None, y=None):
        frame = history_frame(estimator)
        if self.column not in frame.columns or "epoch" not in frame.columns:
            return np.nan
        rows = frame.loc[frame["epoch"] == self.epoch, self.column]
        return float(rows.iloc[-1]) if len(rows) and pd.notna(rows.iloc[-1]) else np.nan

    def __repr__(self):
        return f"HistoryScorer({self.column!r}, {self.epoch})"


def history_scorers(epochs, columns=_DEFAULT_HISTORY):
    """``{name: HistoryScorer}`` for every (column, epoch): add them to a search's ``scoring`` dict.

    Names are ``history_<column>@<epoch>``; :func:`study_trajectories` turns
    the resulting ``cv_results_`` columns back into trajectories. The values
    are history records, not scores to rank by (refit on another key).

    Parameters
    ----------
    epochs : iterable of int
        Epochs to keep, e.g. ``tracked_epochs(max_epochs, track_nc)``.
    columns : iterable of str, default=('nc1', 'nc2_h', 'nc2_w', 'nc3')
        History columns to keep.

    Examples
    --------
    >>> sorted(history_scorers([10, 20], columns=["nc1"]))
    ['history_nc1@10', 'history_nc1@20']
    """
    epochs = sorted({int(e) for e in epochs})
    if not epochs or epochs[0] < 1:
        raise ValueError(f"epochs must be positive integers; got {epochs!r}.")
    columns = [columns] if isinstance(columns, str) else list(columns)
    return {f"history_{c}@{e}": HistoryScorer(c, e) for c in columns for e in epochs}


def _params(frame):
    params = [c for c in frame.columns if c.startswith("param_")]
    out = frame[params].copy()
    out.columns = [c[len("param_"):] for c in params]
    return out


def _metric_of(score):
    """``neg_nc1`` -> (``nc1``, -1): scores of NC metrics where smaller is more collapsed are negated."""
    higher_is_better = {**NC_METRICS, **OPT_IN_METRICS}
    if score.startswith("neg_") and score[4:] in higher_is_better and not higher_is_better[score[4:]]:
        return score[4:], -1.0
    return score, 1.0


def study_table(cv_results):
    """One row per candidate: its parameters and every score's train/test mean and std.

    NC scores are turned back into the metric (``neg_nc1`` -> ``nc1``, a
    positive number, smaller = more collapsed) and named ``<metric>_train``,
    ``<metric>_train_std``, ``<metric>_test``, ``<metric>_test_std``; quality
    scores keep their names. History columns are left to
    :func:`study_trajectories`.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sknc import nc_scorers, study_table
    >>> X, y = load_iris(return_X_y=True)
    >>> search = GridSearchCV(LogisticRegression(max_iter=500), {"C": [0.1, 10.0]}, cv=3,
    ...                       scoring=nc_scorers(["nc1", "nc3"]), refit=False,
    ...                       return_train_score=True).fit(X, y)
    >>> table = study_table(search.cv_results_)
    >>> list(table.columns[:5])
    ['C', 'nc1_train', 'nc1_train_std', 'nc1_test', 'nc1_test_std']
    >>> bool((table["nc1_train"] > 0).all())
    True
    """
    frame = pd.DataFrame(cv_results)
    out = _params(frame)
    scores = [c[len("mean_test_"):] for c in frame.columns
              if c.startswith("mean_test_") and not c.startswith("mean_test_history_")]
    for score in scores:
        metric, sign = _metric_of(score)
        for split in ("train", "test"):
            if f"mean_{split}_{score}" in frame.columns:
                # + 0.0 turns the -0.0 of a negated zero score (nc4 = 0) into 0.0, printed "0", not "-0"
                out[f"{metric}_{split}"] = sign * frame[f"mean_{split}_{score}"].to_numpy(dtype=float) + 0.0
                out[f"{metric}_{split}_std"] = frame[f"std_{split}_{score}"].to_numpy(dtype=float)
    return out


def study_trajectories(cv_results):
    """Per-candidate trajectories recorded by :func:`history_scorers`, as a long DataFrame.

    Columns: ``candidate`` (the row of ``cv_results_``), the parameters,
    ``metric``, ``epoch``, ``mean`` and ``std`` over the folds (NaN epochs,
    never recorded, are dropped).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_iris
    >>> from sknc import PALClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> X = X.astype(np.float32)  # raw: PALClassifier scales its inputs itself
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sknc import history_scorers, study_trajectories
    >>> scoring = {"accuracy": "accuracy", **history_scorers([2, 4], columns=["nc1"])}
    >>> search = GridSearchCV(PALClassifier(hidden_sizes=(16,), max_epochs=4, track_nc=2, random_state=0),
    ...                       {"lr": [0.01, 0.02]}, cv=2, scoring=scoring, refit=False).fit(X, y)
    >>> traj = study_trajectories(search.cv_results_)
    >>> list(traj.columns)
    ['candidate', 'lr', 'metric', 'epoch', 'mean', 'std']
    >>> traj["epoch"].tolist()
    [2, 4, 2, 4]
    """
    frame = pd.DataFrame(cv_results)
    params = _params(frame)
    parts = []
    for column in frame.columns:
        match = _HISTORY.match(column)
        if match is None:
            continue
        part = params.copy()
        part.insert(0, "candidate", np.arange(len(frame)))
        part["metric"] = match["column"]
        part["epoch"] = int(match["epoch"])
        part["mean"] = frame[column].to_numpy(dtype=float)
        part["std"] = frame[f"std_test_history_{match['column']}@{match['epoch']}"].to_numpy(dtype=float)
        parts.append(part)
    if not parts:
        raise ValueError("cv_results holds no history scores: add history_scorers(...) to the search's scoring.")
    out = pd.concat(parts, ignore_index=True)
    out = out[np.isfinite(out["mean"])]
    return out.sort_values(["candidate", "metric", "epoch"], ignore_index=True)
