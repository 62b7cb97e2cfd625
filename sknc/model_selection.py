"""Multi-label stratified K-fold by iterative stratification."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection._split import _BaseKFold
from sklearn.utils import check_random_state

from ._validation import group_labels

__all__ = ["MultilabelStratifiedKFold"]


class MultilabelStratifiedKFold(_BaseKFold):
    """K-fold cross-validation that stratifies every label of a multi-label target.

    Iterative stratification (Sechidis, Tsoumakas & Vlahavas, 2011): repeatedly
    take the label with the fewest unassigned samples and deal its samples to
    the folds that still need that label most (ties: the fold that needs the
    most samples overall, then a random or the first fold). Rare labels are
    therefore spread first, where plain K-fold would lump them together.
    scikit-learn has no multi-label stratified splitter; this one is accepted by
    ``GridSearchCV(cv=...)`` and ``cross_validate``.

    Parameters
    ----------
    n_splits : int, default=5
    shuffle : bool, default=False
        Visit samples in random order and break ties at random.
    random_state : int, RandomState or None
        Used only with ``shuffle=True``.

    Notes
    -----
    1-D ``y`` is treated as a one-hot indicator, giving ordinary stratified folds.

    Examples
    --------
    Every fold gets its share of each label, the rare third one included:

    >>> import numpy as np
    >>> from sknc import MultilabelStratifiedKFold
    >>> Y = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1]] * 10)
    >>> cv = MultilabelStratifiedKFold(n_splits=5)
    >>> [Y[test].sum(axis=0).tolist() for _, test in cv.split(np.zeros((50, 1)), Y)]
    [[4, 6, 4], [4, 6, 4], [4, 6, 4], [4, 6, 4], [4, 6, 4]]
    """

    def __init__(self, n_splits=5, *, shuffle=False, random_state=None):
        super().__init__(n_splits=n_splits, shuffle=shuffle, random_state=random_state)

    def _indicator(self, y):
        if y is None:
            raise ValueError("MultilabelStratifiedKFold needs y (an indicator matrix or class labels).")
        groups = group_labels(y, min_classes=1)  # 0/1 indicators, NaN, ragged and mixed-type labels
        if groups.multilabel:
            return groups.sets[groups.group]
        return np.eye(groups.n_classes, dtype=bool)[groups.group]

    def _iter_test_indices(self, X=None, y=None, groups=None):
        Y = self._indicator(y)
        n, k = Y.shape
        folds = self.n_splits
        rng = check_random_state(self.random_state) if self.shuffle else None
        visit = rng.permutation(n) if rng is not None else np.arange(n)
        Y = Y[visit]
        fold_of = np.full(n, -1)
        need_total = np.full(folds, n / folds)
        need_label = np.tile(Y.sum(axis=0) / folds, (folds, 1))  # (folds, k)
        remaining = Y.copy()
        unassigned = np.ones(n, dtype=bool)

        def choose(candidates):
            if rng is not None and candidates.size > 1:
                return int(rng.choice(candidates))
            return int(candidates[0])

        while remaining.any():
            counts = remaining.sum(axis=0)
            label = int(np.argmin(np.where(counts > 0, counts, np.iinfo(np.int64).max)))
            for i in np.flatnonzero(remaining[:, label]):
                best = np.flatnonzero(need_label[:, label] == need_label[:, label].max())
                if best.size > 1:
                    best = best[need_total[best] == need_total[best].max()]
                f = choose(best)
                fold_of[i] = f
                unassigned[i] = False
                need_label[f] -= Y[i]
                need_total[f] -= 1
                remaining[i] = False
        for i in np.flatnonzero(unassigned):  # samples without any label
            f = choose(np.flatnonzero(need_total == need_total.max()))
            fold_of[i] = f
            need_total[f] -= 1
        for f in range(folds):
            yield np.sort(visit[fold_of == f])

    def split(self, X, y, groups=None):
        """Generate train/test indices; ``y`` is required."""
        if y is None:
            raise ValueError("MultilabelStratifiedKFold needs y (an indicator matrix or class labels).")
        return super().split(X, y, groups)
