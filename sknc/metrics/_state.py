"""The additive state of an NCAccumulator: what ``state_dict``, pickles and every reduction carry.

State is the additive arrays and the metadata needed to check that two states
can be added: per label set a count, a shift, the float64 sums of the shifted
features and of their (scaled) squared norms, the scatter in one-pass mode;
after the second pass has started, its per-class sums (within-class squares,
projected scatter, probe sums, NCC agreement). Workspaces, the second pass's
plan and its ``K x K`` tables are derived from the state and rebuilt on
demand, so they never travel: a pickle is the state plus a few kB.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ._backend import backend_for
from ._stats import FirstPass

__all__ = ["StateMixin", "FORMAT"]

FORMAT = "sknc.NCAccumulator/1"


def _host_np(a):
    return None if a is None else np.array(a, dtype=np.float64)


def _host(be, a):
    """A host copy (never a view: a state must not change when the accumulator goes on)."""
    return None if a is None else np.array(be.to_numpy(a), copy=True, order="C")


def _own(a, dtype=np.float64):
    """A private float64 copy of a state's array (the state may be loaded more than once)."""
    return np.array(a, dtype=dtype, copy=True, order="C")


def _backend(device, current):
    """Where loaded statistics live: the device asked for, else this accumulator's, else the host."""
    if device is None:
        return current if current is not None else backend_for(np.zeros((1, 1)))
    if str(device) == "cpu":
        return backend_for(np.zeros((1, 1)))
    import torch

    return backend_for(torch.zeros((1, 1), device=device))


def plan_digest(plan) -> str:
    """A digest of what makes two second passes addable: the same basis, centring, classifier and dtype."""
    h = hashlib.blake2b(digest_size=16)
    for a in (plan.basis, plan.means64, plan.means_rel, plan.origin, plan.probes):
        if a is not None:
            h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    h.update(repr(plan.w_key).encode())  # the classifier by its checksum: a restored pass has no W until it comes
    h.update(repr(plan.outside_key).encode())
    h.update(repr(plan.ncc_labels).encode())
    h.update(repr(plan.per_class).encode())
    if plan.means_rel is None and plan.rel_rows is not None:  # means read from the first pass, in blocks
        for start in range(0, plan.n_classes, 4096):
            h.update(np.ascontiguousarray(plan.rel_rows(slice(start, start + 4096))).tobytes())
    h.update(f"{plan.scale_exp};{np.dtype(plan.dtype).str};{plan.full_gram}".encode())
    return h.hexdigest()


class StateMixin:
    """``state_dict``/``load_state_dict`` (torch's convention), compact pickles and non-mutating merges."""

    # ------------------------------------------------------------------ state
    def state_dict(self):
        """The accumulator's additive state: host numpy arrays and plain metadata.

        Everything a reduction adds (per label set: count, shift, sums, squared
        norms; the scatter in one-pass mode; after the second pass started, its
        per-class sums) and what must agree for two states to add up (feature
        width, label format and type, conventions, the scaling exponent, the
        classifier of the second pass). Nothing derived: no workspaces, plans
        or ``K x K`` tables. :meth:`load_state_dict` restores it, in another
        process too; pickling an accumulator stores exactly this.

        Examples
        --------
        >>> import numpy as np
        >>> from sknc import NCAccumulator
        >>> rng = np.random.default_rng(0)
        >>> H, y = rng.standard_normal((60, 4)), np.arange(60) % 3
        >>> state = NCAccumulator(mode="two_pass").update(H, y).state_dict()
        >>> sorted(state["first"]), state["first"]["sums"].shape
        (['amax', 'counts', 'exp', 'scatter', 'seen_squares', 'shift', 'sq', 'sums', 'total'], (3, 4))
        >>> twin = NCAccumulator(mode="two_pass").load_state_dict(state)
        >>> bool(np.array_equal(twin.state_dict()["first"]["sums"], state["first"]["sums"]))
        True
        """
        state = {"format": FORMAT, "params": self.get_params(), "started": self._started,
                 "reduced": getattr(self, "_reduced", None)}
        if not self._started:
            return state
        be, fp = self._be, self._first
        common = self._common if isinstance(self._common, np.ndarray) else None
        shift = _host(be, fp.shift)
        if common is not None:
            shift = common[None, :].copy()  # one row stands for every label set's
        labels = (np.array(self._key_list, dtype=bool).reshape(len(self._key_list), self._width)
                  if self._multilabel else np.array(self._key_list))
        state.update(
            d=int(self._d), multilabel=bool(self._multilabel), width=None if self._width is None else int(self._width),
            kind=self._kind, mode=self.mode_, eps=float(self._eps), common_shift=common is not None,
            device=str(be.device) if be.device is not None else None, labels=labels,
            first={"counts": fp.counts.copy(), "shift": shift, "sums": _host(be, fp.sums), "sq": _host(be, fp.sq),
                   "scatter": _host(be, fp.scatter), "total": _host(be, fp.total), "exp": int(fp.exp),
                   "amax": float(fp.amax),
                   "seen_squares": bool(fp.seen_squares)},
            second=None,
            # the second pass's projection basis and probe directions, once fixed (see _share_plan_basis)
            basis=_host_np(getattr(self, "_shared_basis", None)), probes=_host_np(getattr(self, "_shared_probes", None)),
        )
        sp = self._second
        if sp is not None:
            state["second"] = {
                # the classifier by its checksum only (K x d is no state): W comes again with the next batch or
                # with report(W, b), and must match
                "work_dtype": np.dtype(sp.plan.dtype).str, "w_key": self._plan_key.sums,
                "plan": plan_digest(sp.plan), "counts": sp.counts.copy(), "agree": sp._agree_count() or 0,
                "max_row_sq": float(sp.max_row_sq), **{name: _host(be, getattr(sp, name)) for name in sp.SUMS},
            }
        return state

    def load_state_dict(self, state, device=None):
        """Restore a :meth:`state_dict` (replacing everything seen so far); returns self.

        Parameters
        ----------
        state : dict
            From :meth:`state_dict` (of any process; pickles and Dask results
            carry one).
        device : str or torch.device, optional
            Where the restored statistics live: a CUDA device keeps them there
            as tensors. Default: where this accumulator's were, else the host.
        """
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(f"not an NCAccumulator state (expected format {FORMAT!r}).")
        current = self.__dict__.get("_be")
        for name, value in state["params"].items():
            setattr(self, name, value)
        for name in ("_first", "_second", "_be", "_reduced", "_shared_basis", "_shared_probes"):
            self.__dict__.pop(name, None)
        if state.get("reduced"):
            self._reduced = state["reduced"]
        if not state["started"]:
            return self
        be = _backend(device, current)
        first = state["first"]
        labels = state["labels"]
        self._start(be, state["d"], state["multilabel"], state["width"], state["kind"], 2)
        self.mode_ = state["mode"]
        fp = FirstPass(be, state["d"], with_squares=True, with_scatter=first["scatter"] is not None,
                       with_total=first.get("total") is not None)
        n_groups = len(first["counts"])
        shift = np.asarray(first["shift"], dtype=np.float64)
        if state["common_shift"]:
            self._common = shift[0].copy()
            shift = np.broadcast_to(shift[0], (n_groups, state["d"])).copy()
        fp.counts = _own(first["counts"], np.int64)
        fp.shift = be.asarray(_own(shift))
        fp.shift_w = fp.shift
        fp.sums = be.asarray(_own(first["sums"]))
        fp.sq = be.asarray(_own(first["sq"]))
        fp.scatter = None if first["scatter"] is None else be.asarray(_own(first["scatter"]))
        fp.total = None if first.get("total") is None else be.asarray(_own(first["total"]))
        fp.exp, fp.amax, fp.seen_squares = int(first["exp"]), float(first["amax"]), bool(first["seen_squares"])
        self._first = fp
        self._eps = float(state["eps"])
        if self._multilabel:
            rows = np.asarray(labels, dtype=bool).reshape(n_groups, self._width)
            self._key_list = list(rows)
            packed = np.packbits(rows, axis=1)
            self._keys = {packed[i].tobytes(): i for i in range(n_groups)}
        else:
            self._key_list = np.asarray(labels).tolist()
            self._keys = {key: i for i, key in enumerate(self._key_list)}
        if state.get("basis") is not None:
            self._shared_basis = np.asarray(state["basis"], dtype=np.float64)
            self._shared_probes = np.asarray(state["probes"], dtype=np.float64)
        second = state.get("second")
        if second is not None:
            self._begin_second(None, None, np.dtype(second["work_dtype"]), w_key=second["w_key"])
            sp = self._second
            if plan_digest(sp.plan) != second["plan"]:
                raise ValueError(
                    "this state's second pass was planned from other class means or another classifier than the "
                    "ones its first pass gives here (a state edited by hand, or another numerical library)."
                )
            for name in sp.SUMS:
                if name in second:  # (a state written before a sum existed keeps that sum at zero)
                    setattr(sp, name, be.asarray(_own(second[name])))
            sp.counts = _own(second["counts"], np.int64)
            sp.agree = int(second["agree"])
            sp.max_row_sq = float(second["max_row_sq"])
        return self

    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        return {"state": self.state_dict()}

    def __setstate__(self, payload):
        if "state" not in payload:  # an accumulator pickled by sknc 0.2: its attributes as they were
            self.__dict__.update(payload)
            return
        self.load_state_dict(payload["state"])

    # ------------------------------------------------------------------ merges without side effects
    def copy(self):
        """An independent accumulator with the same parameters and state."""
        return type(self)(**self.get_params()).load_state_dict(self.state_dict())

    def merge_all(self, others):
        """A new accumulator holding this one's state and every one of ``others``; nothing is modified.

        The building block of a tree reduction (Dask, Spark, Ray): states of
        shards in the same pass add up; an empty accumulator is the identity in
        either pass.

        Examples
        --------
        >>> import numpy as np
        >>> from sknc import NCAccumulator
        >>> rng = np.random.default_rng(0)
        >>> H, y = rng.standard_normal((90, 5)), np.arange(90) % 3
        >>> shards = [NCAccumulator(mode="one_pass").update(H[i::3], y[i::3]) for i in range(3)]
        >>> whole = shards[0].merge_all(shards[1:])
        >>> single = NCAccumulator(mode="one_pass").update(H, y)
        >>> bool(np.isclose(whole.report()["nc1"], single.report()["nc1"], rtol=1e-12))
        True
        """
        out = type(self)(**self.get_params())
        out.merge(self)
        for other in others:
            out.merge(other)
        return out
