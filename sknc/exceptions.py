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
    """


class UndefinedMetricError(ValueError):
    """A single metric was asked for on data where it is undefined.

    Raised by the single-metric functions (:func:`sknc.nc1`, :func:`sknc.cdnv`,
    ...), whose message names the degeneracy (e.g. two class means that
    coincide). :func:`sknc.nc_report` never raises it: it reports NaN in that
    key and issues an :class:`NCWarning` instead.
    """


class TrainingDivergedError(FloatingPointError, ValueError):
    """Training produced a non-finite loss or non-finite features.

    Raised at the end of the epoch where it happened, with the epoch, the last
    loss and the likely causes in the message. It is both a
    :class:`FloatingPointError` and a :class:`ValueError`, so scikit-learn's
    ``error_score`` handling and ``except ValueError`` clauses catch it.
    """
