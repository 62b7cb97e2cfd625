"""NCAccumulator: NC statistics of data that arrive in batches (one or two passes, any device)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .._validation import (
    LabelGroups,
    _indicator,
    _label_array,
    as_feature_array,
    label_kind,
    missing_singletons_message,
)
from . import _collapse as C
from ._backend import backend_for
from ._distributed import DistributedMixin
from ._perclass import PerClassMixin
from ._state import StateMixin, plan_digest
from ._report import _CONVENTIONS, _check_conventions, _shown, align_classifier, geometry_of, report_from
from ._stats import _FULL_GRAM_MAX, FirstPass, SecondPass, Statistics, _block_rows, compiled_loops, make_plan
from ._stats import _give_back as _stats_give_back
from ._stats import _gram_of, nearest_mean_correct, nearest_mean_table
from . import _tagwise_means as TM

__all__ = ["NCAccumulator"]

_MODES = ("auto", "one_pass", "two_pass")
_PARAMS = ("n_classes", "mode", "global_mean", "between", "classes", "strict", "shift", "class_means",
           "ncc_accuracy", "feature_rank", "per_class")


class NCAccumulator(StateMixin, DistributedMixin, PerClassMixin):
    """Streaming NC statistics: memory independent of the number of samples.

    **First pass** (:meth:`update`): per label set, a count, a shift (a sample
    of the set), the float64 sum of the shifted features and of their squared
    norms. Shifting keeps sums and squares free of cancellation however far the
    data sit from the origin; shards merge exactly (Chan et al.'s update).

    **Second pass** (:meth:`update_second_pass`, over the same data): every
    multiplicity-1 row is centred on its final class mean and projected onto the
    span of the centred class means, with one product ``(h - mu) [U | W^T]``.
    That gives NC1 exactly and, with ``W``, NC4 in the same pass; no ``d x d``
    matrix is formed.

    In ``mode='one_pass'`` the first pass also keeps the ``d x d`` scatter of
    the shifted multiplicity-1 features, so NC1 is available after a single
    read; NC4 still needs the second pass, because the nearest-class-mean rule
    needs the final means.

    Parameters
    ----------
    n_classes : int, optional
        Number of classes (indicator width). Needed only to tell an
        all-singleton multi-label stream from a multi-class one; inferred
        otherwise, and used by ``mode='auto'``.
    mode : {'auto', 'one_pass', 'two_pass'}, default='auto'
        ``'auto'`` keeps the ``d x d`` scatter only when it costs less than a
        second pass's projection, i.e. when ``d <= 2 K`` (``K`` from
        ``n_classes``, the indicator width, or the first batch); otherwise
        NC1 waits for the second pass.
    global_mean, between : {'class', 'sample'}, default='class'
        The NC1 conventions the second pass measures (see :func:`sknc.nc1`);
        :meth:`report` computes NC1 for these (any convention in one-pass
        mode). Every other key accepts any convention at report time.
    classes : array-like, optional
        The class of each row of the classifier ``W`` (1-D labels), as in
        :func:`sknc.nc_report`: a stream that misses some of ``W``'s classes is
        measured on the classes present.
    strict : bool, default=False
        What to do when the second pass reads other rows than the first (an
        augmenting loader, a reshuffled generator with other crops): by
        default the keys that need the second pass are NaN with an
        :class:`sknc.NCWarning` naming the classes whose means moved; with
        ``strict=True`` :meth:`report` raises ``ValueError``.
    shift : None, 'first_batch' or array-like of shape (d,), default=None
        The point the first pass's sums are taken around. ``None``: each label
        set's own first sample (no cancellation however far the data sit from
        the origin). A common shift (the first row of the first batch, or a
        vector agreed beforehand, e.g. broadcast from rank 0) makes every
        first-pass sum a plain sum of ``h - shift``, which any engine adds as
        it is; shards with different shifts are re-expressed exactly when
        merged (:meth:`merge`, :meth:`all_reduce`).
    class_means : {'auto', 'singletons', 'tagwise'}, default='auto'
        Multi-label data: the class means of the single-label samples, or
        estimated from every label set's mean (see :func:`sknc.nc_report`);
        decided after the first pass. Under the estimate the second pass
        centres every labelled row on its set's mean; NC1 needs it (one-pass
        mode keeps the scatter of single-label rows only).
    ncc_accuracy : bool, default=False
        Also count, in the second pass, the rows whose nearest class mean is
        their own class's: the report's ``ncc_accuracy`` (no classifier
        needed; the "law of data separation" measures it at every layer). One
        ``K x d`` product per row in float64 beside the pass. Single-label
        class means only.
    feature_rank : bool, default=False
        Also keep the ``d x d`` scatter of every row in the first pass (about
        its label set's shift; merged and reduced like the sums): the report's
        ``features_effective_rank`` and ``features_stable_rank``, the ranks of
        the features themselves. ``n d^2`` operations more.
    per_class : bool, default=False
        Also keep, in the second pass, each class's squared coordinates along
        the class means' span (a ``K x r`` state, ``r`` the rank of the
        means): :meth:`class_variability` then gives each class's share of
        NC1, exactly. Single-label class means only.

    Notes
    -----
    Torch tensors on an accelerator are reduced on their device in float64;
    nothing of size ``n x d`` is copied to the host. CPU tensors are read
    through numpy without a copy. Features of any scale (1e-300 to 1e300) give
    the same metrics (squares are taken after scaling by a power of two).

    Examples
    --------
    >>> import numpy as np
    >>> from sknc import NCAccumulator, simplex_etf
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(3), 50)
    >>> M = simplex_etf(3, 5, random_state=0)
    >>> H = M[y] + 0.01 * rng.standard_normal((150, 5))
    >>> batches = np.array_split(np.arange(150), 4)
    >>> acc = NCAccumulator(mode="two_pass")
    >>> for part in batches:
    ...     _ = acc.update(H[part], y[part])
    >>> for part in batches:                      # the second pass: NC1 and NC4
    ...     _ = acc.update_second_pass(H[part], y[part], W=M)
    >>> report = acc.report(W=M)
    >>> bool(report["nc1"] < 1e-3), float(report["nc4"])
    (True, 0.0)
    """

    # the state and the reductions over processes live in their own modules (mixins); named here so that the
    # class documents them as its own
    state_dict = StateMixin.state_dict
    load_state_dict = StateMixin.load_state_dict
    copy = StateMixin.copy
    merge_all = StateMixin.merge_all
    all_reduce = DistributedMixin.all_reduce

    def __init__(self, n_classes=None, mode="auto", global_mean="class", between="class", classes=None,
                 strict=False, shift=None, class_means="auto", ncc_accuracy=False, feature_rank=False,
                 per_class=False):
        self.n_classes = n_classes
        self.mode = mode
        self.global_mean = global_mean
        self.between = between
        self.classes = classes
        self.strict = strict
        self.shift = shift
        self.class_means = class_means
        self.ncc_accuracy = ncc_accuracy
        self.feature_rank = feature_rank
        self.per_class = per_class

    def get_params(self, deep=True):
        """The constructor's parameters (as scikit-learn's ``get_params``)."""
        return {name: getattr(self, name) for name in _PARAMS}

    def _common_shift(self, d):
        """The common shift as a float64 (d,) array, None for per-set shifts, 'first_batch' until it is known."""
        if self.shift is None or (isinstance(self.shift, str) and self.shift == "first_batch"):
            return self.shift
        if isinstance(self.shift, str):
            raise ValueError(f"shift must be None, 'first_batch' or a vector of length d; got {self.shift!r}.")
        from .._validation import untensor

        vec = np.asarray(untensor(self.shift), dtype=np.float64).reshape(-1)
        if vec.shape != (d,) or not np.isfinite(vec).all():
            raise ValueError(f"shift must be a finite vector of length d = {d}; got shape {vec.shape}.")
        return vec

    # ------------------------------------------------------------------ state
    def _start(self, be, d, multilabel, width, kind, k_first):
        if self.mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}; got {self.mode!r}.")
        _check_conventions(self.global_mean, self.between, 1.0, None)
        TM.check_class_means(self.class_means)
        if self.n_classes is not None and (isinstance(self.n_classes, bool) or int(self.n_classes) < 2):
            raise ValueError(f"n_classes must be an integer >= 2; got {self.n_classes!r}.")
        k_est = int(self.n_classes or width or max(k_first, 2))
        mode = self.mode
        if mode == "auto":
            mode = "one_pass" if d <= 2 * k_est else "two_pass"
        self.mode_ = mode
        self._be = be
        self._d = d
        self._multilabel = multilabel
        self._width = width
        self._kind = kind
        self._keys = {}  # label-set key -> group id
        self._key_list = []  # label value (1-D) or bool row (indicator), per group
        self._first = FirstPass(be, d, with_squares=True, with_scatter=mode == "one_pass",
                                with_total=bool(self.feature_rank))
        self._eps = 0.0
        self._second = None
        self._plan_key = None
        self._common = self._common_shift(d)  # None, 'first_batch' (until the first row arrives) or (d,)

    @property
    def _started(self):
        return hasattr(self, "_first")

    def _labels(self, y, n):
        """``(multilabel, width, kind, unique_keys, inverse, raw_uniques, first_rows)`` of a batch's labels."""
        arr, _ = _label_array(y)
        ind = _indicator(arr)
        if ind is not None:
            if ind.shape[0] != n:
                raise ValueError(f"y has {ind.shape[0]} rows but the feature batch has {n}.")
            packed = np.ascontiguousarray(np.packbits(ind, axis=1))
            keys = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()
            uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
            return True, ind.shape[1], "indicator", [u.tobytes() for u in uniq], inverse.ravel(), ind[first], first
        lab = arr.ravel() if arr.ndim == 2 else arr
        if lab.ndim != 1:
            raise ValueError(f"y must be 1-D class labels or a 2-D indicator matrix; got shape {arr.shape}.")
        if lab.shape[0] != n:
            raise ValueError(f"y has {lab.shape[0]} labels but the feature batch has {n} rows.")
        if lab.dtype.kind == "f" and not np.isfinite(lab).all():
            raise ValueError("y contains NaN or infinity.")
        uniq, first, inverse = np.unique(lab, return_index=True, return_inverse=True)
        return False, None, label_kind(lab), uniq.tolist(), inverse.ravel(), list(uniq), first

    def _empty_batch(self, features_batch):
        """True for a batch with no rows (a no-op once its width is checked)."""
        shape = tuple(getattr(features_batch, "shape", np.shape(features_batch)))
        if len(shape) == 2 and shape[0] == 0:
            if self._started and shape[1] != self._d:
                raise ValueError(f"feature batch has {shape[1]} dims; earlier batches had {self._d}.")
            return True
        return False

    def _check_batch(self, features_batch, y_batch):
        x, eps = as_feature_array(features_batch, "features batch")
        be = backend_for(x)
        multilabel, width, kind, keys, inverse, raw, first = self._labels(y_batch, x.shape[0])
        if self._started:
            if be.name != self._be.name or str(be.device) != str(self._be.device):
                raise TypeError(
                    f"this batch lives on {be.device or 'the host (numpy)'} but earlier batches on "
                    f"{self._be.device or 'the host (numpy)'}; keep one device per accumulator."
                )
            if x.shape[1] != self._d:
                raise ValueError(f"feature batch has {x.shape[1]} dims; earlier batches had {self._d}.")
            if multilabel != self._multilabel or width != self._width:
                raise ValueError("y format changed between batches (1-D labels vs indicator, or its width).")
            if kind != self._kind:
                raise TypeError(
                    f"this batch has {kind} labels but earlier batches had {self._kind} labels "
                    "(e.g. 0 and '0' would silently be two classes); use one label type."
                )
        elif self.n_classes is not None and width is not None and width != self.n_classes:
            raise ValueError(f"y has {width} columns but n_classes={self.n_classes}.")
        return x, eps, be, multilabel, width, kind, keys, inverse, raw, first

    def update(self, features_batch, y_batch):
        """Add a batch (first pass).

        Parameters
        ----------
        features_batch : array-like, torch.Tensor or dask array of shape (n_batch, d)
            A dask array is map-reduced on its cluster: every row chunk is
            accumulated where it lives, the chunks' states are merged in a tree
            on the workers, and only the merged state comes here.
        y_batch : array-like of shape (n_batch,) or (n_batch, K)

        Returns
        -------
        self
        """
        from ._dask import dask_states, is_dask_array

        if is_dask_array(features_batch) or is_dask_array(y_batch):
            params = self.get_params()
            return self.merge(NCAccumulator(**params).load_state_dict(
                dask_states(features_batch, y_batch, params, passes=1)))
        if self._empty_batch(features_batch):
            return self
        x, eps, be, multilabel, width, kind, keys, inverse, raw, first = self._check_batch(features_batch, y_batch)
        if self._started and self._second is not None:
            raise ValueError("the second pass has started; update() belongs to the first pass only.")
        if getattr(self, "_reduced", None) == "first":
            raise ValueError("the first pass was all-reduced: its state is every rank's, and rows added now would "
                             "be counted once per rank at the next reduction; add every batch before all_reduce.")
        if not self._started:
            self._start(be, x.shape[1], multilabel, width, kind, len(keys))
        # map the batch's label sets to group ids, registering new ones (their shift: their first row here)
        gids = np.empty(len(keys), dtype=np.intp)
        new = []
        for i, key in enumerate(keys):
            gid = self._keys.get(key)
            if gid is None:
                gid = len(self._key_list) + len(new)
                new.append(i)
            gids[i] = gid
        ids_np = gids[inverse]
        fp = self._first
        if new:
            shift = be.to_float64(be.take(x, be.index(first[new])))
            if not be.all_finite(shift):
                raise ValueError(f"features contain NaN or infinity in {be.bad_rows(x)} row(s).")
            common = self._common
            if isinstance(common, str):  # 'first_batch': the first row of the first batch, from now on
                common = be.to_numpy(be.to_float64(be.rows(x, 0, 1)))[0]
            if common is not None:
                shift = be.asarray(np.broadcast_to(common, (len(new), self._d)).copy())
            fp.grow(shift)
        single = None
        if fp.scatter is not None:
            mult = self._multiplicities(raw, multilabel)
            single_np = (mult == 1)[inverse] if multilabel else None
            single = None if single_np is None else (single_np if be.name == "numpy" else be.torch.as_tensor(
                single_np, device=be.device))
        # the batch goes into a child pass in row blocks, absorbed only once all of it is valid; float32 rows of
        # streams with few label sets so far go through the compiled loops
        fp.kern = compiled_loops(be, x.dtype, fp.n_groups) if fp.scatter is None else None
        # a child over the batch's label sets only (with many classes a batch holds a few of them)
        subset = np.unique(gids)
        if len(subset) == fp.n_groups:
            subset, local = None, ids_np
        else:
            local = np.searchsorted(subset, ids_np)
        child = fp.child(subset)
        try:
            for s, e in self._chunks(x.shape[0]):
                ids_c = local[s:e]
                sing = None if single is None else single[s:e]
                child.add(be.rows(x, s, e), ids_c if be.name == "numpy" else be.index(ids_c), ids_c, sing)
        except ValueError:
            _stats_give_back(child)
            if new:  # roll back the groups registered for this batch
                self._shrink(len(self._key_list))
            raise
        fp.absorb(child, subset)
        for i in new:
            self._keys[keys[i]] = len(self._key_list)
            self._key_list.append(raw[i])
        if new and common is not None:
            self._common = common
        self._eps = max(self._eps, eps)
        return self

    def _chunks(self, n, block=None):
        k = self._width or max(len(self._key_list), 2)
        if block is None:
            block = _block_rows(self._d, k, 4) if self._be.name == "numpy" else 1 << 16
        return [(s, min(s + block, n)) for s in range(0, n, block)]

    def _shrink(self, n_groups):
        fp = self._first
        fp.counts = fp.counts[:n_groups]
        fp.shift, fp.sums, fp.sq = fp.shift[:n_groups], fp.sums[:n_groups], fp.sq[:n_groups]
        fp.decompositions = {}

    @staticmethod
    def _multiplicities(raw, multilabel):
        if not multilabel:
            return np.ones(len(raw), dtype=int)
        return np.array([int(np.sum(r)) for r in raw])

    # ------------------------------------------------------------- groups, sorted
    def _groups(self):
        """LabelGroups of the accumulated stream (sorted like group_labels) and the group order."""
        if self._multilabel:
            sets = np.array(self._key_list, dtype=bool).reshape(len(self._key_list), self._width)
            packed = np.ascontiguousarray(np.packbits(sets, axis=1))
            order = np.argsort(packed.view(np.dtype((np.void, packed.shape[1]))).ravel(), kind="stable")
            sets = sets[order]
            classes = np.arange(self._width)
        else:
            raw = np.array(self._key_list)
            order = np.argsort(raw, kind="stable")
            classes = raw[order]
            k = len(classes)
            if k < 2:
                raise ValueError(f"the stream holds {k} class(es); at least 2 are needed.")
            groups = LabelGroups(classes=classes, multilabel=False, set_matrix=None, group=np.zeros(0, dtype=np.intp),
                                 multiplicity=np.ones(k, dtype=np.intp), class_group=np.arange(k))
            return groups, order
        k = sets.shape[1]
        if k < 2:
            raise ValueError(f"the stream holds {k} class(es); at least 2 are needed.")
        multiplicity = sets.sum(axis=1).astype(np.intp)
        class_group = np.full(k, -1, dtype=np.intp)
        singles = np.flatnonzero(multiplicity == 1)
        class_group[sets[singles].argmax(axis=1)] = singles
        groups = LabelGroups(classes=classes, multilabel=self._multilabel, set_matrix=sets,
                             group=np.zeros(0, dtype=np.intp), multiplicity=multiplicity, class_group=class_group)
        return groups, order

    def _check_started(self):
        if not self._started or not self._key_list:
            raise ValueError("the accumulator is empty: call update() with at least one batch first.")

    # ------------------------------------------------------------------ second pass
    @property
    def second_pass_possible(self):
        """False when some class has no multiplicity-1 sample (no class means to centre on)."""
        if not self._started or not self._key_list:
            return False
        if self._estimated():
            return self._first_statistics(within=False)[1].has_class_means
        return not self._groups()[0].missing_singletons().size

    def _estimated(self):
        """Whether the class means are estimated from the label sets (see ``class_means``)."""
        groups, order = self._groups()
        return TM.resolve_class_means(self.class_means, groups, self._first.counts[order]) == "tagwise"

    def _first_statistics(self, within=True):
        """The first pass's statistics of the label sets (sorted) and, under the tag-wise estimate, the
        estimated statistics built on them (else None). ``within``: with the within-set sums of squares."""
        self._check_started()
        groups, order = self._groups()
        fp = self._first
        counts = fp.counts[order]
        origin, rel = fp.means(order)
        stats = Statistics(groups, counts, (origin, rel), self._eps or float(np.finfo(np.float64).eps))
        if not self._estimated():
            return stats, None
        est = TM.estimated_statistics(stats)
        if within and est.has_class_means:
            fitted = est.estimate.fitted
            set_groups, _ = TM.set_view(groups, fitted)
            sets = Statistics(set_groups, counts[fitted], (origin, rel[fitted]), stats.eps)
            sets._within, sets._within_exp = self._first_pass_within(order[fitted], rel[fitted], origin,
                                                                     counts[fitted])
            est.sets = sets
        return stats, est

    def _first_pass_within(self, source, rel, origin, n):
        """Per group ``source[j]`` (first-pass order) with mean ``rel[j]`` (relative to ``origin``) and count
        ``n[j]``: the sum of squared distances of its rows from their mean, ``sq - n ||mean - shift||^2``
        (scaled), in row blocks (with many classes every K x d temporary is hundreds of MB)."""
        fp, be = self._first, self._be
        shift_all, sq_all = be.to_numpy(fp.shift), be.to_numpy(fp.sq)
        own = np.ldexp(1.0, -fp.exp)
        n = np.asarray(n, dtype=np.float64)
        within = np.empty(len(source))
        for start in range(0, len(source), 4096):
            rows = slice(start, start + 4096)
            delta = rel[rows] - (shift_all[source[rows]] - origin)
            delta *= own
            within[rows] = sq_all[source[rows]] - n[rows] * np.einsum("ij,ij->i", delta, delta)
        return np.maximum(within, 0.0), fp.exp

    def update_second_pass(self, features_batch, y_batch, W=None, b=None):
        """Add a batch of the second pass over the same data.

        Centres each multiplicity-1 row on its final class mean: gives NC1 (and
        exact within-class sums) without the ``d x d`` scatter and, when ``W``
        is given, the NCC agreement behind ``nc4``. Pass the same ``W``/``b``
        with every batch and to :meth:`report`.

        Returns
        -------
        self
        """
        self._check_started()
        if getattr(self, "_reduced", None) == "second":
            raise ValueError("the second pass was all-reduced: add every second-pass batch before all_reduce.")
        from ._dask import dask_states, is_dask_array

        if is_dask_array(features_batch) or is_dask_array(y_batch):  # each chunk from this first pass, on the cluster
            if self._second is not None and not _same(self._plan_key, (W, b)):
                raise ValueError("every batch of the second pass needs the same W and b (the ones of its first "
                                 "batch).")
            first = self.state_dict() if self._second is None else _first_only(self.state_dict())
            done = NCAccumulator(**self.get_params()).load_state_dict(
                dask_states(features_batch, y_batch, self.get_params(), W, b, first=first))
            if self._second is None:
                return self.load_state_dict(done.state_dict())
            return self.merge(done)
        if self._empty_batch(features_batch):
            # a shard without rows still joins the second pass (its plan is that of every other shard)
            if self._second is None:
                dtype = getattr(features_batch, "dtype", np.float64)
                self._begin_second(W, b, _work_dtype_of(self._be, dtype))
            else:
                self._same_classifier(W, b, None)
            return self
        x, eps, be, multilabel, width, kind, keys, inverse, raw, _ = self._check_batch(features_batch, y_batch)
        groups, order = self._groups()
        if self._second is None:
            self._begin_second(W, b, be.work_dtype_np(x))
        else:
            self._same_classifier(W, b, groups.n_classes)
            self._attach_classifier(W, b)
        rank_of_group = np.empty(len(order), dtype=np.intp)
        rank_of_group[order] = np.arange(len(order))
        topm = getattr(self, "_topm", None)
        if topm is not None:
            # tag-wise estimate: every labelled row is centred on its label set's mean (the sets are the classes)
            lookup = topm["position"]
        else:
            # class index (position in the sorted classes) of every multiplicity-1 row
            lookup = np.full(groups.n_groups, -1, dtype=np.intp)
            have = groups.class_group >= 0
            lookup[groups.class_group[have]] = np.flatnonzero(have)
        cls_of_key = np.empty(len(keys), dtype=np.intp)
        for i, key in enumerate(keys):
            gid = self._keys.get(key)
            if gid is None:
                raise ValueError(f"the second pass holds a label (set) never seen in the first pass: {raw[i]!r}.")
            cls_of_key[i] = lookup[rank_of_group[gid]]
        cls_np = cls_of_key[inverse]
        rows = np.flatnonzero(cls_np >= 0)
        if rows.size == 0:
            return self
        if rows.size < len(cls_np):
            x = be.take(x, be.index(rows))
            cls_np = cls_np[rows]
        child = self._second.child()
        try:
            # many classes: the products with the means and W go in class tiles, so larger row blocks pay
            for s, e in self._chunks(len(cls_np), 2048 if self._second.plan.direct else None):
                c_np = cls_np[s:e]
                child.add(be.rows(x, s, e), c_np if be.name == "numpy" else be.index(c_np), c_np, strict=True)
                if self._second.plan.ncc_labels:
                    rows64 = be.to_numpy(be.rows(x, s, e)).astype(np.float64)
                    rows64 -= self._ncc_means[0]
                    child.ncc_correct += nearest_mean_correct(rows64, c_np, self._ncc_means[1])
                if topm is not None and topm["W"] is not None:
                    rows64 = be.to_numpy(be.rows(x, s, e)).astype(np.float64)
                    rows64 -= topm["origin"]
                    child.agree += TM.topm_agreement(rows64, topm["mult"][c_np], topm["means_rel"], topm["W"],
                                                     topm["bias"])
        except ValueError:
            _stats_give_back(child)
            raise
        self._second.merge(child)
        _stats_give_back(child)
        return self

    def _class_geometry(self):
        """The first pass's class means (relative, origin, counts) and their between-class geometry."""
        groups, order = self._groups()
        if groups.missing_singletons().size:
            raise ValueError(missing_singletons_message(groups) + ".")
        origin, rel = self._first.means()
        idx = order[groups.class_group]  # one gather (and none when the groups are the classes in order)
        if not np.array_equal(idx, np.arange(len(idx))):
            rel = rel[idx]
        counts = self._first.counts[idx]
        geom = C.between_geometry(rel, counts, self.global_mean, self.between, None, self._eps, origin,
                                  cache=self._first.decompositions)
        return groups, origin, rel, geom

    def _class_means_rows(self):
        """A function of a slice of classes giving their first-pass means relative to the origin (the second
        pass of many classes reads its means from the first pass's sums instead of keeping a K x d copy)."""
        groups, order = self._groups()
        source = order[groups.class_group]
        fp = self._first

        def rows(block):
            return fp.means(source[block])[1]

        return rows

    def _share_plan_basis(self):
        """Fix the second pass's projection basis and probe directions from the first pass (no classifier
        needed), so that every shard that runs its second pass from this state uses the very same ones: an SVD
        run on another thread count or machine may differ in its last bits, and second-pass sums in
        different bases do not add."""
        if self.second_pass_possible and getattr(self, "_shared_basis", None) is None:
            from ._stats import probe_directions

            self._shared_basis = (self._estimated_geometry()[1].span if self._estimated()
                                  else self._class_geometry()[3].span)
            self._shared_probes = probe_directions(self._d)
        return self

    def _begin_second(self, W, b, work_dtype, w_key=None):
        """Fix the second pass's plan from the first pass's means (and the classifier).

        ``w_key``: a restored pass's classifier checksum (its W comes with the next batch or the report).
        """
        self._topm = None
        if self._estimated():
            return self._begin_second_sets(W, b, work_dtype, w_key)
        groups, origin, rel, geom = self._class_geometry()
        match = align_classifier(W, b, self._d, groups, self.classes)
        # the NCC agreement needs every class of the classifier in the data
        w, bias = (match.w, match.bias) if match.complete else (None, None)
        basis = getattr(self, "_shared_basis", None)
        basis = geom.span if basis is None else basis
        probes = getattr(self, "_shared_probes", None)
        key = _ClassifierKey(W, b) if w_key is None else _ClassifierKey.restored(w_key)
        plan = make_plan(None, basis, self._first.amax, work_dtype, W=w, b=bias,
                         full_gram=basis.shape[1] <= _FULL_GRAM_MAX, means_rel=rel, origin=origin,
                         centred_gram=_gram_of(geom), probes=True if probes is None else probes,
                         rel_rows=self._class_means_rows(), w_key=key.sums if key.sums[0] is not None else None)
        if self.ncc_accuracy:
            plan = replace(plan, ncc_labels=True)
            self._ncc_means = (origin, nearest_mean_table(rel))  # built once, read by every batch
        if self.per_class:
            plan = replace(plan, per_class=True)
        self._second = SecondPass(self._be, plan)
        self._second_geometry = replace(geom, centred=None, gram=None)  # what NC1 reads of it (no K x d copy)
        self._shared_basis, self._shared_probes = plan.basis, plan.probes
        self._plan_key = key

    def _estimated_geometry(self):
        """The tag-wise estimate of the class means (first pass) and its between-class geometry."""
        stats, est = self._first_statistics(within=False)
        if not est.has_class_means:
            raise ValueError(est.class_means_problem + ".")
        return est, TM._geometry(est, self.global_mean, self.between, None)

    def _begin_second_sets(self, W, b, work_dtype, w_key):
        """The second pass under the tag-wise estimate: rows centred on their label set's mean, projected on
        the span of the estimated class means; with W, each row's |S| nearest estimated means against its |S|
        largest logits (counted beside the pass)."""
        est, geom = self._estimated_geometry()
        groups, order = self._groups()
        fitted = est.estimate.fitted
        _, position = TM.set_view(groups, fitted)
        basis = getattr(self, "_shared_basis", None)
        basis = geom.span if basis is None else basis
        probes = getattr(self, "_shared_probes", None)
        key = _ClassifierKey(W, b) if w_key is None else _ClassifierKey.restored(w_key)
        plan = make_plan(None, basis, self._first.amax, work_dtype, full_gram=basis.shape[1] <= _FULL_GRAM_MAX,
                         means_rel=est.group_rel[fitted], origin=est.origin,
                         probes=True if probes is None else probes)
        plan = replace(plan, outside_key=key.sums if key.sums[0] is not None else None)
        self._second = SecondPass(self._be, plan)
        self._second_geometry = replace(geom, centred=None, gram=None)
        self._shared_basis, self._shared_probes = plan.basis, plan.probes
        self._plan_key = key
        self._topm = {"position": position, "mult": groups.multiplicity[fitted], "origin": est.origin,
                      "means_rel": est.means_rel, "W": None, "bias": None}
        self._set_topm_classifier(W, b)

    def _set_topm_classifier(self, W, b):
        topm = self._topm
        if W is None or topm["W"] is not None:
            return
        match = align_classifier(W, b, self._d, self._groups()[0], self.classes)
        if match.complete:
            topm["W"] = match.w
            topm["bias"] = match.w @ topm["origin"] + (0.0 if match.bias is None else match.bias)

    def _attach_classifier(self, W, b):
        """A restored second pass gets its classifier back (checked against its checksum before)."""
        if getattr(self, "_topm", None) is not None:
            self._set_topm_classifier(W, b)
            self._plan_key = _ClassifierKey(W, b)
            return
        plan = self._second.plan
        if plan.W is not None or plan.w_key is None or W is None:
            return
        groups, _ = self._groups()
        match = align_classifier(W, b, self._d, groups, self.classes)
        if match.complete:
            fresh = make_plan(plan.means64, plan.basis, plan.amax, plan.dtype, W=match.w, b=match.bias,
                              full_gram=plan.full_gram, means_rel=plan.means_rel, probes=plan.probes,
                              origin=plan.origin, rel_rows=plan.rel_rows, w_key=plan.w_key)
            self._second.plan = replace(fresh, centred_gram=plan.centred_gram, scale_exp=plan.scale_exp,
                                        ncc_labels=plan.ncc_labels, per_class=plan.per_class)
            self._second.release_tables()
        self._plan_key = _ClassifierKey(W, b)

    def update_agreement(self, features_batch, y_batch, W, b=None):
        """Second pass with a classifier (kept for sknc 0.1 code): same as :meth:`update_second_pass`."""
        if W is None:
            raise ValueError("update_agreement needs the classifier weights W.")
        return self.update_second_pass(features_batch, y_batch, W, b)

    def _same_classifier(self, W, b, k):
        if not _same(self._plan_key, (W, b)):
            raise ValueError("every batch of the second pass needs the same W and b (the ones of its first batch).")

    # ------------------------------------------------------------------- merge
    def merge(self, other):
        """Fold another accumulator (e.g. a shard) into this one; returns self (``other`` is not modified).

        Before the second pass, first-pass statistics add up (label sets one
        shard lacks, different shifts: re-expressed exactly). Shards that ran
        their second pass from the same merged first pass (the sharded two-pass
        workflow: merge, give every shard a copy, second pass per shard, merge)
        add their second-pass statistics. An empty accumulator takes a copy of
        the other's state, in either pass. :meth:`merge_all` returns a new
        accumulator instead.
        """
        if not isinstance(other, NCAccumulator):
            raise TypeError(f"can only merge an NCAccumulator; got {type(other).__name__}.")
        if not other._started:
            return self
        if not self._started:  # the identity: a copy of the other's state (kept on this one's device, if any)
            return self.load_state_dict(other.state_dict())
        if other._d != self._d or other._multilabel != self._multilabel or other._width != self._width:
            raise ValueError("cannot merge accumulators of different feature width or label format.")
        if other._kind != self._kind:
            raise TypeError(f"cannot merge {other._kind} labels into {self._kind} labels.")
        if (self._first.total is None) != (other._first.total is None):
            raise ValueError(f"cannot merge an accumulator built with feature_rank={other._first.total is not None} "
                             f"into one with feature_rank={self._first.total is not None}: the features' scatter "
                             "would cover one of them only; build them alike.")
        if self._second is not None or other._second is not None:
            return self._merge_second(other)
        be = self._be
        order = np.empty(len(other._key_list), dtype=np.intp)
        new_shift = []
        for og, raw in enumerate(other._key_list):
            key = np.packbits(raw).tobytes() if self._multilabel else raw
            gid = self._keys.get(key)
            if gid is None:
                gid = len(self._key_list)
                self._keys[key] = gid
                self._key_list.append(raw)
                new_shift.append(og)
            order[og] = gid
        if new_shift:
            self._first.grow(be.take(be.asarray(other._first.shift), be.index(np.asarray(new_shift))))
        single = self._multiplicities(other._key_list, other._multilabel) == 1
        if (self._first.scatter is None) != (other._first.scatter is None):
            self._first.scatter = None  # one side has no scatter: the merged stream needs the second pass
            self.mode_ = "two_pass"
        self._first.merge(_as_backend(other._first, be), order, single)
        self._eps = max(self._eps, other._eps)
        return self

    def _merge_second(self, other):
        if self._second is None or other._second is None:
            raise ValueError("merge shards in the same pass: both before the second pass, or both in it.")
        if not np.array_equal(self._first.counts, other._first.counts) or \
                plan_digest(self._second.plan) != plan_digest(other._second.plan):
            raise ValueError(
                "second-pass shards must start from the same (merged) first pass and classifier; merge the first "
                "passes, give every shard a copy, then run the second pass per shard with the same W and b."
            )
        self._second.merge(_second_on(other._second, self._be))
        return self

    # ------------------------------------------------------------------ report
    def _statistics(self):
        self._check_started()
        if self._estimated():
            return self._estimated_statistics()
        groups, order = self._groups()
        fp = self._first
        be = self._be
        counts = fp.counts[order]
        origin, rel = fp.means(order)
        stats = Statistics(groups, counts, (origin, rel), self._eps or float(np.finfo(np.float64).eps))
        stats.decompositions = fp.decompositions  # the same means: the plan's decomposition serves the report
        stats.ncc_requested = bool(self.ncc_accuracy)
        if not stats.has_class_means:
            return stats
        cg = groups.class_group
        n = counts[cg].astype(np.float64)
        # within-class sums of squares from the first pass, sq - n ||mean - shift||^2 (scaled), in row blocks:
        # with many classes every K x d temporary is hundreds of MB
        shift_all, sq_all = be.to_numpy(fp.shift), be.to_numpy(fp.sq)
        own = np.ldexp(1.0, -fp.exp)
        source = order[cg]  # first-pass group of each class
        within = np.empty(len(cg))
        for start in range(0, len(cg), 4096):
            rows = slice(start, start + 4096)
            delta = rel[cg[rows]] - (shift_all[source[rows]] - origin)
            delta *= own
            within[rows] = sq_all[source[rows]] - n[rows] * np.einsum("ij,ij->i", delta, delta)
        stats._within = np.maximum(within, 0.0)
        stats._within_exp = fp.exp
        if fp.scatter is not None:
            stats._scatter, stats._scatter_exp, stats._shift = be.to_numpy(fp.scatter), fp.exp, shift_all[order]
        if self._second is not None:
            sp = self._second
            complete = np.array_equal(sp.counts, n.astype(np.int64))
            if not complete:
                raise ValueError(
                    f"the second pass has seen {int(sp.counts.sum())} multiplicity-1 samples, the first pass "
                    f"{int(n.sum())} (per class {sp.counts.tolist()} vs {n.astype(int).tolist()}); feed the same "
                    "data to both passes before report()."
                )
            mismatch = sp.data_mismatch()
            if mismatch is not None:
                stats.second_pass_problem = self._mismatch_message(stats.groups, *mismatch)
                if self.strict:
                    raise ValueError(stats.second_pass_problem[0].upper() + stats.second_pass_problem[1:] + ".")
                return stats  # the first pass's keys stand; those of the second pass say why they are NaN
            within, Q, agree, shift = sp.finish()
            if sp.plan.direct:  # many classes: the pass's K x d tables give way to the report's arrays
                sp.release_tables()
            if shift is not None:  # float32: the first pass's means are exact float64 sums already
                stats.correct_class_means(sp.centres(), shift)
            stats._within, stats._within_exp = within, sp.plan.scale_exp
            stats._gram, stats._gram_basis, stats._gram_exp = Q, sp.plan.basis, sp.plan.scale_exp
            stats._gram_per_class = sp.per_class_scatter
            stats.gram_conventions = f"global_mean={self.global_mean!r}, between={self.between!r}"
            stats.nc1_geometry = self._second_geometry
            if sp.plan.classified:
                stats.agree, stats.n_agree = agree, int(n.sum())
            if sp.plan.ncc_labels:
                stats.ncc_correct = float(be.to_numpy(sp.ncc_correct)[0])
        return stats

    def _estimated_statistics(self):
        """:meth:`_statistics` under the tag-wise estimate of the class means."""
        _, est = self._first_statistics(within=True)
        sp = self._second
        if not est.has_class_means or sp is None or getattr(self, "_topm", None) is None:
            return est
        sets = est.sets
        if not np.array_equal(sp.counts, sets.group_counts):
            raise ValueError(
                f"the second pass has seen {int(sp.counts.sum())} labelled samples, the first pass "
                f"{int(sets.group_counts.sum())}; feed the same data to both passes before report().")
        mismatch = sp.data_mismatch()
        if mismatch is not None:
            bad, shifts = mismatch
            labels = est.groups.sets[est.estimate.fitted][bad]
            named = [tuple(est.groups.classes[np.flatnonzero(row)].tolist()) for row in labels]
            top = float(np.max(shifts))
            size = "by more than their spread" if not np.isfinite(top) else f"by up to {top:.2g} within-set std"
            est.second_pass_problem = sets.second_pass_problem = (
                f"the second pass read other rows than the first: the means of label set(s) {_shown(named)} moved "
                f"{size} (an augmenting or reshuffled data source?), so the keys that need the second pass are "
                "undefined; feed both passes the same rows")
            if self.strict:
                raise ValueError(est.second_pass_problem[0].upper() + est.second_pass_problem[1:] + ".")
            return est
        within, Q, _, shift = sp.finish()
        if shift is not None:  # float32: centred on the means' rounding, removed exactly
            sets.correct_class_means(sp.centres(), shift)
        sets._within, sets._within_exp = within, sp.plan.scale_exp
        sets._gram, sets._gram_basis, sets._gram_exp = Q, sp.plan.basis, sp.plan.scale_exp
        sets.gram_conventions = f"global_mean={self.global_mean!r}, between={self.between!r}"
        est.nc1_geometry = self._second_geometry
        if sp.plan.outside_key is not None and self._topm["W"] is not None:
            est.agree, est.n_agree = int(sp.agree), int(sets.group_counts.sum())
        return est

    def _data_dtype(self):
        """The dtype the first pass's rows came in, as far as the pass can tell (its eps): float32 or float64."""
        return np.dtype(np.float32) if self._eps > 1e-10 else np.dtype(np.float64)

    @staticmethod
    def _mismatch_message(groups, bad, shifts):
        names = _shown([groups.classes[i] for i in bad])
        top = float(np.max(shifts))
        size = "by more than their spread" if not np.isfinite(top) else f"by up to {top:.2g} within-class std"
        return (f"the second pass read other rows than the first: the means of class(es) {names} moved {size} "
                "(an augmenting or reshuffled data source?), so the keys that need the second pass are undefined; "
                "feed both passes the same rows, e.g. a DataLoader without random transforms")

    def report(self, W=None, b=None, **conventions):
        """The NC report of everything seen so far (keyword conventions as in :func:`sknc.nc_report`).

        Keys that need the second pass (``nc1`` in two-pass mode, ``nc4`` and
        ``ncc_agreement``) are NaN, with an :class:`sknc.NCWarning` saying so,
        until it has run.
        """
        fixed_options = ("class_means", "ncc_accuracy", "feature_rank", "per_class")
        unknown = set(conventions) - set(_CONVENTIONS) - set(fixed_options)
        if unknown:
            raise TypeError(f"unknown report option(s): {sorted(unknown)}; choose from "
                            f"{sorted(_CONVENTIONS) + list(fixed_options)}.")
        for fixed in fixed_options:
            if conventions.pop(fixed, getattr(self, fixed)) != getattr(self, fixed):
                raise ValueError(f"{fixed} is fixed when the accumulator is built (the second pass depends on it): "
                                 f"this one has {fixed}={getattr(self, fixed)!r}.")
        opts = {**_CONVENTIONS, **conventions}
        _check_conventions(opts["global_mean"], opts["between"], opts["cdnv_power"], opts["rtol"])
        if W is not None and self._second is not None and getattr(self, "_topm", None) is not None \
                and self._plan_key.sums[0] is not None and _same(self._plan_key, (W, b)):
            self._set_topm_classifier(W, b)  # a restored pass counted with this classifier
        stats = self._statistics()
        stats.feature_rank_requested = bool(self.feature_rank)
        if self.feature_rank:
            stats.feature_scatter = self._first.total_about_mean()
        match = align_classifier(W, b, self._d, stats.groups, self.classes)
        if self._second is not None and match.w is not None:
            if self._plan_key.sums[0] is not None and not _same(self._plan_key, (W, b)):
                raise ValueError("report(W, b) must use the W and b of the second pass.")
            if self._plan_key.sums[0] is None:
                stats.agree = None
        geom = None
        if stats.has_class_means:
            geom = geometry_of(stats, opts["global_mean"], opts["between"], opts["rtol"])
        from ._report import _check_pair_options

        _check_pair_options(opts["pair_sample"], opts["tile_bytes"], opts["random_state"])
        return report_from(stats, geom, match.w, match.bias, normalize=opts["normalize"],
                           nc3_squared=opts["nc3_squared"], cdnv_power=opts["cdnv_power"],
                           source="NCAccumulator.report", match=match, pair_sample=opts["pair_sample"],
                           tile_bytes=opts["tile_bytes"], random_state=opts["random_state"])


def _first_only(state):
    """A state without its second pass (what every chunk of a second pass starts from)."""
    return {**state, "second": None}


def _work_dtype_of(be, dtype):
    """The second pass's working dtype for rows of ``dtype`` (float32 rows stay float32)."""
    try:
        name = str(dtype).replace("torch.", "")
        return np.dtype(np.float32) if np.dtype(name) in (np.float32, np.float16) or name == "bfloat16" else \
            np.dtype(np.float64)
    except TypeError:
        return np.dtype(np.float64)


def _copy(a):
    """A float64 host copy of a classifier array (None stays None)."""
    from .._validation import untensor

    return None if a is None else np.array(untensor(a), dtype=np.float64)


class _ClassifierKey:
    """The classifier of a second pass: the arrays as given (no copy; ``K x d`` can be hundreds of MB) and a
    checksum of their values, to tell whether later batches come with the same ``W, b``. A restored pass knows
    the checksum only."""

    def __init__(self, W, b):
        self.W, self.b = W, b
        self.sums = (_checksum(W), _checksum(b, W))
        self.versions = (getattr(W, "_version", None), getattr(b, "_version", None))

    @classmethod
    def restored(cls, sums):
        key = cls(None, None)
        key.sums = tuple(tuple(s) if isinstance(s, list) else s for s in sums)
        return key

    def same(self, W, b):
        if self.sums[0] is None:
            return W is None
        if W is None:
            return False
        if W is self.W and b is self.b and self.versions[0] is not None and \
                (getattr(W, "_version", None), getattr(b, "_version", None)) == self.versions:
            return True  # the same tensors, which count their in-place changes: none since
        return (_checksum(W), _checksum(b, W)) == self.sums


def _checksum(a, like=None):
    """:func:`sknc._fingerprint.checksum` of a classifier array; a bias ``b`` of None counts as zeros."""
    from .._fingerprint import checksum
    from .._validation import untensor

    if a is None:
        if like is None:
            return None
        a = np.zeros(np.shape(untensor(like))[0])
    return checksum(a)


def _same(key, given):
    """Whether ``(W, b)`` is the classifier of ``key`` (``b`` None and zeros are the same bias)."""
    return key.same(*given)


def _second_on(sp, be):
    """A second pass's sums on backend ``be`` (for merges across devices)."""
    if sp.be.name == be.name and str(sp.be.device) == str(be.device):
        return sp
    out = SecondPass.__new__(SecondPass)
    out.__dict__.update(sp.__dict__)
    for name in SecondPass.SUMS:
        setattr(out, name, be.asarray(sp.be.to_numpy(getattr(sp, name))))
    out.agree = int(getattr(sp.agree, "item", lambda: sp.agree)())
    return out


def _as_backend(fp, be):
    """A view of another FirstPass's arrays on backend ``be`` (for merges across devices)."""
    if fp.be.name == be.name and str(fp.be.device) == str(be.device):
        return fp
    out = FirstPass(be, fp.d, with_squares=fp.with_squares, with_scatter=fp.scatter is not None,
                    with_total=fp.total is not None)
    out.counts = fp.counts.copy()
    out.shift, out.sums = be.asarray(fp.be.to_numpy(fp.shift)), be.asarray(fp.be.to_numpy(fp.sums))
    if fp.sq is not None:
        out.sq = be.asarray(fp.be.to_numpy(fp.sq))
    if fp.scatter is not None:
        out.scatter = be.asarray(fp.be.to_numpy(fp.scatter))
    if fp.total is not None:
        out.total = be.asarray(fp.be.to_numpy(fp.total))
    out.exp, out.amax, out.seen_squares = fp.exp, fp.amax, fp.seen_squares
    return out
