"""Warnings and exceptions raised by sknc.

This module imports nothing heavy, so every layer of the package can use it.
"""

from __future__ import annotations

import re
import sys
import warnings

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


# ------------------------------------------------------------------- one warning per site and cause
_SEEN = set()
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _filter_action(category, message, module, lineno):
    """The action the active warning filters give this warning (what ``warnings.warn`` would do)."""
    for action, msg, cat, mod, line in warnings.filters:
        if ((msg is None or msg.match(message)) and issubclass(category, cat)
                and (mod is None or mod.match(module)) and (line == 0 or line == lineno)):
            return action
    return warnings.defaultaction


def warn_once(message, category=None, *, cause=None, stacklevel=2):
    """Warn once per call site and cause, whatever resets Python's own registry.

    Python shows a ``'default'`` warning once per site and exact text, but every
    ``warnings.catch_warnings`` block (scikit-learn, skorch and joblib enter many)
    clears that memory, and texts that quote an epoch or a count differ each
    time; a 13-fit search printed the same NC warning 76 times. Here the cause is
    the text with its numbers blanked (or ``cause`` when given), and the site is
    the frame the warning points at. Filters that say ``'always'``, ``'error'``
    or ``'ignore'`` (``pytest.warns``, ``warnings.simplefilter('always')``) are
    obeyed as usual: the memory applies only where Python would dedupe too.
    """
    category = NCWarning if category is None else category
    try:
        frame = sys._getframe(stacklevel)
    except ValueError:  # a shallower stack than asked for: the outermost frame
        frame = None
    module = "sys" if frame is None else frame.f_globals.get("__name__", "<string>")
    site = ("sys", 1) if frame is None else (frame.f_code.co_filename, frame.f_lineno)
    action = _filter_action(category, message, module, site[1])
    if action not in ("always", "error", "ignore"):
        key = (category, site, _NUMBER.sub("#", message) if cause is None else cause)
        if key in _SEEN:
            return
        _SEEN.add(key)
    warnings.warn(message, category, stacklevel=stacklevel + 1)


def _forget_warnings():
    """Clear the memory of :func:`warn_once` (tests)."""
    _SEEN.clear()
