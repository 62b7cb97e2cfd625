"""NCAccumulator.all_reduce: the additive state summed over the ranks of a torch.distributed group.

The reduction is built on tensor collectives (gloo on the CPU, NCCL on GPUs):
one ``all_gather_object`` of a few hundred bytes of metadata per rank (what
must agree, and the label sets each rank saw), then ``all_reduce`` of the
float64 arrays. Every rank checks every rank's metadata before any tensor
moves, so a mismatch (another feature width, dtype, label type or width,
shift, convention or pass) raises the same ``ValueError`` naming the rank and
the field on every rank instead of hanging in a collective.

First pass: the label sets of all ranks are united in one sorted order; each
set's shift is that of the lowest rank that saw it (or the common shift);
every rank re-expresses its sums around those shifts exactly (Chan et al.'s
update, the one ``merge`` uses) at the largest scaling exponent of any rank,
and the sums are added. Second pass: every rank planned it from the same
reduced first pass and classifier (checked by a digest), so its sums add as
they are. Every rank ends with the identical state.

torch is imported here only, when ``all_reduce`` is called.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ._state import plan_digest
from ._stats import FirstPass

__all__ = ["DistributedMixin", "PeerFailure", "reduce_failures"]


def _dist():
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("torch.distributed is not initialised: call torch.distributed.init_process_group "
                           "on every rank first.")
    return torch, dist


def _digest(a):
    return None if a is None else hashlib.blake2b(np.ascontiguousarray(a, dtype=np.float64).tobytes(),
                                                  digest_size=12).hexdigest()


def _device_for(dist, group, be):
    """Where the collectives run: the accumulator's own CUDA device, or what the group's backend needs."""
    torch = be.torch if be is not None and be.name == "torch" else __import__("torch")
    if be is not None and be.name == "torch" and be.device is not None and torch.device(be.device).type != "cpu":
        return torch.device(be.device)
    backend = str(dist.get_backend(group)).lower()
    if "nccl" in backend:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


class PeerFailure(ValueError):
    """Another rank failed; this rank learnt it in a collective that every rank took part in."""


_FAILED = "sknc: this rank failed"


def reduce_failures(message, group=None):
    """Every rank learns whether any rank failed: ``(rank, message)`` of the first that did, else None.

    ``message`` is None on a rank that did not fail. A rank that fails calls
    this while the others may be in :meth:`DistributedMixin.all_reduce`'s
    metadata exchange: that exchange recognises the failure and raises
    :class:`PeerFailure` there, so no rank waits for a collective that never
    comes.
    """
    _, dist = _dist()
    world = dist.get_world_size(group)
    gathered = [None] * world
    dist.all_gather_object(gathered, None if message is None else (_FAILED, message), group=group)
    for rank, item in enumerate(gathered):
        if isinstance(item, tuple) and item and item[0] == _FAILED:
            return rank, item[1]
        if isinstance(item, dict):  # that rank is in all_reduce: it learns of this failure there and stops
            continue
    return None


class DistributedMixin:
    """``all_reduce`` over a torch.distributed process group."""

    def _sync_meta(self):
        meta = {"started": self._started, "params": {"global_mean": self.global_mean, "between": self.between,
                                                     "feature_rank": bool(getattr(self, "feature_rank", False))}}
        if not self._started:
            return meta
        fp = self._first
        common = self._common if isinstance(self._common, np.ndarray) else None
        meta.update(
            d=int(self._d), multilabel=bool(self._multilabel), width=self._width, kind=self._kind,
            dtype=self._data_dtype().name, scatter=fp.scatter is not None,
            shift="per label set" if common is None else f"common {_digest(common)}",
            phase="second" if self._second is not None else "first", reduced=getattr(self, "_reduced", None),
            exp=int(fp.exp) if fp.seen_squares else None, amax=float(fp.amax), eps=float(self._eps),
            keys=[np.packbits(k).tobytes() for k in self._key_list] if self._multilabel else list(self._key_list),
        )
        if self._second is not None:
            meta["plan"] = plan_digest(self._second.plan)
        return meta

    def all_reduce(self, group=None):
        """Sum this accumulator's state over the ranks of a ``torch.distributed`` group; returns self.

        Call it on every rank once per pass: after the first pass (then run the
        second pass per rank from the identical reduced means, with the same
        ``W, b``) and after the second. Every rank ends with the state of the
        whole data, so ``report`` gives the same numbers on every rank, equal to
        the single-process report to rounding. A rank with no rows takes part
        (its state is empty; in the second pass it calls
        :meth:`update_second_pass` with an empty batch and the same ``W``).

        Built on tensor collectives: gloo for CPU statistics, NCCL for CUDA
        ones (the accumulator's device, or the group's backend). Ranks whose
        feature widths, dtypes, label types, indicator widths, shifts,
        conventions or passes differ raise one ``ValueError`` naming the rank
        and the field, on every rank, before any tensor is exchanged.

        Parameters
        ----------
        group : torch.distributed.ProcessGroup, optional
            Default: the world.
        """
        _, dist = _dist()
        world = dist.get_world_size(group)
        metas = [None] * world
        dist.all_gather_object(metas, self._sync_meta(), group=group)
        for rank, m in enumerate(metas):
            if isinstance(m, tuple) and m and m[0] == _FAILED:
                raise PeerFailure(f"rank {rank} failed, so this rank stops too: {m[1]}")
        phase = _check_metas(metas)
        if phase is None:
            return self
        if phase == "first":
            self._all_reduce_first(metas, group, dist)
        else:
            self._all_reduce_second(metas, group, dist)
        self._reduced = phase
        return self

    # ---------------------------------------------------------------- first pass
    def _all_reduce_first(self, metas, group, dist):
        torch = __import__("torch")
        rank = dist.get_rank(group)
        ref = next(m for m in metas if m["started"])
        if not self._started:  # an empty shard adopts the layout of the others
            from ._backend import backend_for

            self._start(backend_for(np.zeros((1, 1))), ref["d"], ref["multilabel"], ref["width"], ref["kind"], 2)
            self._first = FirstPass(self._be, ref["d"], with_squares=True, with_scatter=ref["scatter"],
                                    with_total=ref["params"]["feature_rank"])
        be = self._be
        device = _device_for(dist, group, be)
        # the union of the label sets, in one order on every rank, and the rank that owns each set's shift
        owner = {}
        for r, m in enumerate(metas):
            for key in m.get("keys", ()):
                owner.setdefault(key, r)
        keys = sorted(owner)
        index = {key: g for g, key in enumerate(keys)}
        mine = self._sync_meta()["keys"] if self._started else []
        order = np.array([index[k] for k in mine], dtype=np.intp)
        n_groups, d = len(keys), ref["d"]
        scatter = all(m["scatter"] for m in metas if m["started"])
        started = [m for m in metas if m["started"]]
        common = isinstance(self._common, np.ndarray) and ref["shift"].startswith("common")
        # every set's shift: the common one, or that of the lowest rank that saw the set (a sum of one term)
        if common:
            shifts = np.broadcast_to(self._common, (n_groups, d)).copy()
        else:
            own = np.zeros((n_groups, d))
            local_shift = be.to_numpy(self._first.shift)
            for g_local, g in enumerate(order):
                if owner[keys[g]] == rank:
                    own[g] = local_shift[g_local]
            shifts = self._reduce_array(own, device, dist, group, torch)
        exps = [m["exp"] for m in started if m["exp"] is not None]
        total = FirstPass(be, d, with_squares=True, with_scatter=scatter, with_total=ref["params"]["feature_rank"])
        total.grow(be.asarray(shifts))
        if exps:
            total.exp, total.seen_squares = max(exps), True
        local = self._first
        if local.scatter is not None and not scatter:
            local.scatter = None  # another rank kept none: the merged stream needs the second pass
        if len(order):
            single = self._multiplicities(self._key_list, self._multilabel) == 1
            total.merge(local, order, single)
        # add: counts (exact in float64 below 2^53), sums, squares, scatter
        counts = self._reduce_array(total.counts.astype(np.float64), device, dist, group, torch)
        total.counts = np.rint(counts).astype(np.int64)
        total.sums = be.asarray(self._reduce_array(be.to_numpy(total.sums), device, dist, group, torch))
        total.sq = be.asarray(self._reduce_array(be.to_numpy(total.sq), device, dist, group, torch))
        if total.scatter is not None:
            total.scatter = be.asarray(self._reduce_array(be.to_numpy(total.scatter), device, dist, group, torch))
        if total.total is not None:
            total.total = be.asarray(self._reduce_array(be.to_numpy(total.total), device, dist, group, torch))
        total.amax = max(m["amax"] for m in started)
        self._first = total
        self._eps = max(m["eps"] for m in started)
        self.mode_ = "one_pass" if scatter else "two_pass"
        if common:
            self._common = np.asarray(self._common)
        if self._multilabel:
            rows = [np.unpackbits(np.frombuffer(k, dtype=np.uint8))[: self._width].astype(bool) for k in keys]
            self._key_list = rows
            self._keys = {k: g for g, k in enumerate(keys)}
        else:
            self._key_list = list(keys)
            self._keys = dict(index)
        # the second pass's projection basis, computed on the group's first rank and sent to the others: an SVD
        # on another thread count or machine may differ in its last bits, and sums in other bases do not add
        self.__dict__.pop("_shared_basis", None)
        self.__dict__.pop("_shared_probes", None)
        if self.second_pass_possible:
            payload = [None]
            if rank == 0:
                self._share_plan_basis()
                payload = [(self._shared_basis, self._shared_probes)]
            src = 0 if group is None else dist.get_global_rank(group, 0)
            dist.broadcast_object_list(payload, src=src, group=group)
            self._shared_basis, self._shared_probes = payload[0]

    # ---------------------------------------------------------------- second pass
    def _all_reduce_second(self, metas, group, dist):
        torch = __import__("torch")
        sp = self._second
        be = self._be
        device = _device_for(dist, group, be)
        for name in sp.SUMS:
            setattr(sp, name, be.asarray(self._reduce_array(be.to_numpy(getattr(sp, name)), device, dist, group,
                                                            torch)))
        counts = self._reduce_array(sp.counts.astype(np.float64), device, dist, group, torch)
        sp.counts = np.rint(counts).astype(np.int64)
        agree = int(getattr(sp.agree, "item", lambda: sp.agree)())
        sp.agree = int(round(float(self._reduce_array(np.array([float(agree)]), device, dist, group, torch)[0])))
        sp.max_row_sq = float(self._reduce_array(np.array([sp.max_row_sq]), device, dist, group, torch,
                                                 op="max")[0])

    @staticmethod
    def _reduce_array(a, device, dist, group, torch, op="sum"):
        """``a`` summed (or maxed) over the ranks, as a host float64 array."""
        t = torch.as_tensor(np.ascontiguousarray(a, dtype=np.float64)).to(device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX, group=group)
        return t.cpu().numpy()


_FIELDS = (("d", "feature width"), ("dtype", "feature dtype"), ("multilabel", "label format (1-D or indicator)"),
           ("width", "indicator width"), ("kind", "label type"), ("shift", "shift"), ("phase", "pass"),
           ("reduced", "reduction state"))


def _check_metas(metas):
    """The phase every started rank is in (None when no rank has data); raises on any disagreement."""
    params = metas[0]["params"]
    for rank, m in enumerate(metas):
        if m["params"] != params:
            field = next(k for k in params if m["params"][k] != params[k])
            raise ValueError(f"rank {rank} measures {field}={m['params'][field]!r} but rank 0 "
                             f"{field}={params[field]!r}; build the accumulators alike on every rank.")
    started = [(r, m) for r, m in enumerate(metas) if m["started"]]
    if not started:
        return None
    r0, ref = started[0]
    phases = {m["phase"] for _, m in started}
    if len(phases) > 1:
        late = next(r for r, m in started if m["phase"] == "first")
        raise ValueError(f"rank {late} has not started the second pass while rank "
                         f"{next(r for r, m in started if m['phase'] == 'second')} has; call update_second_pass on "
                         "every rank (with an empty batch where a rank has no rows) before all_reduce.")
    for rank, m in started[1:]:
        for key, what in _FIELDS:
            if m[key] != ref[key]:
                raise ValueError(f"rank {rank} has {what} {m[key]!r} but rank {r0} has {ref[key]!r}; every rank "
                                 "must feed the same kind of data to the same pass before all_reduce.")
    phase = ref["phase"]
    if ref["reduced"] == phase:
        raise ValueError(f"the {phase} pass was all-reduced already: its state is that of every rank; calling "
                         "all_reduce again would count each rank's rows once per rank.")
    if phase == "second":
        missing = [r for r, m in enumerate(metas) if not m["started"]]
        if missing:
            raise ValueError(f"rank {missing[0]} has no first pass while the others are in the second; "
                             "all_reduce the first pass on every rank first.")
        for rank, m in started[1:]:
            if m["plan"] != ref["plan"]:
                raise ValueError(f"rank {rank} planned its second pass from other class means or another "
                                 f"classifier than rank {r0}; all_reduce the first pass, then give every rank "
                                 "the same W and b.")
    return phase
