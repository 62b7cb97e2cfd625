"""NC of dask arrays, map-reduced on the cluster: no chunk is gathered on the client.

Every row chunk becomes an accumulator state on a worker (first pass), the
states are merged in a tree on the workers, each chunk then runs the second
pass from the merged first pass, and those states are merged in a tree again.
The client receives the final state only: the ``K x d`` sums, never the rows.
dask is imported here only, when a dask array is given.
"""

from __future__ import annotations

import numpy as np

__all__ = ["is_dask_array", "dask_states", "merge_states"]

_FAN_IN = 8  # states merged per task of the tree reduction


def is_dask_array(x) -> bool:
    """True for a ``dask.array.Array`` (tested on the type, without importing dask)."""
    return type(x).__module__.split(".")[0] == "dask" and hasattr(x, "chunks") and hasattr(x, "to_delayed")


def _aligned_chunks(X, y):
    """``(X blocks, y blocks)`` as delayed objects, one pair per row chunk (X one chunk wide)."""
    import dask.array as da

    if X.ndim != 2:
        raise ValueError(f"features must be a 2-D dask array of shape (n_samples, n_dims); got {X.ndim}-D.")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"features is empty (shape {X.shape}); at least one sample and one dimension are needed.")
    if X.numblocks[1] > 1:
        X = X.rechunk({1: -1})  # a chunk is a set of whole rows
    n = X.shape[0]
    if is_dask_array(y):
        if y.shape[0] != n:
            raise ValueError(f"y has {y.shape[0]} rows but the features have {n}.")
        y = y.rechunk({0: X.chunks[0], **({1: -1} if y.ndim == 2 else {})})
    else:
        from .._validation import untensor

        labels = np.asarray(untensor(y))
        if labels.shape[0] != n:
            raise ValueError(f"y has {labels.shape[0]} rows but the features have {n}.")
        y = da.from_array(labels, chunks=(X.chunks[0],) + labels.shape[1:])
    starts = np.concatenate([[0], np.cumsum(X.chunks[0])[:-1]]).tolist()
    return list(X.to_delayed().ravel()), list(y.to_delayed().ravel()), starts


def _in_chunk(start, x, step):
    """``step()``, a bad chunk's error naming its rows (the counts in it are the chunk's)."""
    try:
        return step()
    except ValueError as exc:
        raise ValueError(f"rows {start} to {start + len(x) - 1} (one chunk): {exc}") from exc


def _first_state(x, y, params, start=0):
    from ._accumulator import NCAccumulator

    return _in_chunk(start, x, lambda: NCAccumulator(**params).update(x, y).state_dict())


def _second_state(first, x, y, W, b, start=0):
    from ._accumulator import NCAccumulator

    acc = NCAccumulator().load_state_dict(first)
    return _in_chunk(start, x, lambda: acc.update_second_pass(x, y, W, b).state_dict())


def merge_states(*states):
    """One state holding every one of ``states`` (same pass; see :meth:`NCAccumulator.merge`).

    Second-pass states planned alike add their sums as they are (no plan is
    rebuilt); first-pass states merge through accumulators without a second
    pass (nothing derived is built either).
    """
    from ._accumulator import NCAccumulator

    started = [s for s in states if s["started"]]
    if not started:
        return states[0]
    if len(started) == 1:
        return started[0]
    if started[0].get("second") is not None:
        return _add_second(started)
    out = NCAccumulator().load_state_dict(started[0])
    for state in started[1:]:
        out.merge(NCAccumulator().load_state_dict(state))
    return out.state_dict()


def _add_second(states):
    ref = states[0]
    for state in states[1:]:
        second = state.get("second")
        if second is None or second["plan"] != ref["second"]["plan"] or \
                not np.array_equal(state["first"]["counts"], ref["first"]["counts"]):
            raise ValueError("second-pass states must come from the same merged first pass and classifier.")
    out = dict(ref)
    out["second"] = dict(ref["second"])
    from ._stats import SecondPass

    for name in SecondPass.SUMS + ("counts",):
        out["second"][name] = sum(np.asarray(s["second"][name]) for s in states)
    out["second"]["agree"] = int(sum(int(s["second"]["agree"]) for s in states))
    out["second"]["max_row_sq"] = float(max(float(s["second"]["max_row_sq"]) for s in states))
    return out


def _tree(parts):
    """A tree reduction of delayed states, ``_FAN_IN`` at a time, on the workers."""
    import dask

    merge = dask.delayed(merge_states, pure=True)
    while len(parts) > 1:
        parts = [merge(*parts[i : i + _FAN_IN]) for i in range(0, len(parts), _FAN_IN)]
    return parts[0]


def dask_states(X, y, params, W=None, b=None, passes=2, first=None):
    """The merged state(s) of a dask array's two passes, computed on the cluster.

    Returns the final state (a dict): after the second pass when ``passes=2``
    (and the first pass allows one), else after the first. ``first``: a
    first-pass state to run the second pass from (then only the second pass
    runs over the data).
    """
    import dask

    xs, ys, starts = _aligned_chunks(X, y)
    if first is None:
        first = _tree([dask.delayed(_first_state, pure=True)(x, t, params, s) for x, t, s in zip(xs, ys, starts)])
        if passes == 1:
            return dask.compute(first)[0]
        # the merged first pass stays on the cluster, with the basis every chunk's second pass projects on (one
        # task computes it: an SVD may differ in its last bits between workers); the client learns only whether
        # a second pass is possible
        first = dask.delayed(_with_plan_basis, pure=True)(first).persist()
        if not dask.compute(dask.delayed(_second_possible, pure=True)(first))[0]:
            return dask.compute(first)[0]
    else:
        first = dask.delayed(first, pure=True)
    w_node = dask.delayed(None if W is None else np.asarray(W), pure=True)  # one node, not a copy per task
    b_node = dask.delayed(None if b is None else np.asarray(b), pure=True)
    second = _tree([dask.delayed(_second_state, pure=True)(first, x, t, w_node, b_node, s)
                    for x, t, s in zip(xs, ys, starts)])
    return dask.compute(second)[0]


def _second_possible(state):
    """Whether a second pass can run from a first-pass state (every class has a single-label sample)."""
    from ._accumulator import NCAccumulator

    return NCAccumulator().load_state_dict(state).second_pass_possible


def _with_plan_basis(state):
    """The state with its second pass's projection basis fixed (see ``NCAccumulator._share_plan_basis``)."""
    from ._accumulator import NCAccumulator

    if not state["started"] or state.get("basis") is not None:
        return state
    return NCAccumulator().load_state_dict(state)._share_plan_basis().state_dict()
