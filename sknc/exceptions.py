"""Warnings and exceptions raised by sknc.

This module imports nothing heavy, so every layer of the package can use it.
"""

from __future__ import annotations

__all__ = ["NCWarning", "UndefinedMetricError", "TrainingDivergedError"]


class NCWarning(UserWarning):
    """A neural-collapse quantity is undefined on the given data.

    The quantity is reported as NaN in its own place (a report key, a history
    column, a score) and everything else is still computed; the warning names
    the affected keys and why they are undefined. One warning is issued per
    report.

    Examples
    --------
    All samples share one point, so the class means coincide; the report still
    comes back, with NaN where a quantity is undefined:

    >>> import warnings
    >>> import numpy as np
    >>> import sknc
    >>> H, y = np.ones((30, 4)), np.repeat(np.arange(3), 10)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     report = sknc.nc_report(H, y)
    >>> caught[0].category.__name__, bool(np.isnan(report["nc1"]))
    ('NCWarning', True)
    """


class UndefinedMetricError(ValueError):
    """A single metric was asked for on data where it is undefined.

    Raised by the single-metric functions (:func:`sknc.nc1`, :func:`sknc.cdnv`,
    ...), whose message names the degeneracy (e.g. two class means that
    coincide). :func:`sknc.nc_report` never raises it: it reports NaN in that
    key and issues an :class:`NCWarning` instead.

    Examples
    --------
    >>> import numpy as np
    >>> import sknc
    >>> H, y = np.ones((30, 4)), np.repeat(np.arange(3), 10)
    >>> try:
    ...     sknc.nc1(H, y)
    ... except sknc.UndefinedMetricError as error:
    ...     print(error)
    all class means coincide (between-class rank 0 at tolerance 1.78e-15), so NC1 is undefined
    """


class TrainingDivergedError(FloatingPointError, ValueError):
    """Training produced a non-finite loss or non-finite features.

    Raised at the end of the epoch where it happened, with the epoch, the last
    loss and the likely causes in the message. It is both a
    :class:`FloatingPointError` and a :class:`ValueError`, so scikit-learn's
    ``error_score`` handling and ``except ValueError`` clauses catch it.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_iris
    >>> from sknc import PALClassifier, TrainingDivergedError
    >>> X, y = load_iris(return_X_y=True)
    >>> try:
    ...     PALClassifier(lr=1e6, max_epochs=5, random_state=0).fit(X.astype(np.float32), y)
    ... except TrainingDivergedError as error:
    ...     print(str(error).split(",")[0])
    training diverged in epoch ...
    """
