from itertools import combinations

import numpy as np
import pytest

from sknc import TagWiseAverageClassifier, simplex_etf


def _etf_data(k=6, d=8, scales={1: 1.0, 2: 1.7, 3: 2.3}, sets=None, per_set=2, seed=0):
    M = simplex_etf(k, d, norm=3.0, random_state=seed)
    sets = sets or [(c,) for c in range(k)] + list(combinations(range(k), 2)) + list(combinations(range(k), 3))
    H, Y = [], []
    for s in sets:
        for _ in range(per_set):
            H.append(5.0 + scales[len(s)] * M[list(s)].mean(0))  # translated prototypes
            row = np.zeros(k, dtype=np.int64)
            row[list(s)] = 1
            Y.append(row)
    return np.array(H), np.array(Y), M


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("search", ["fast", "exhaustive"])
def test_exact_prototypes_are_recovered(metric, search):
    H, Y, _ = _etf_data()
    rule = TagWiseAverageClassifier(metric=metric, search=search).fit(H, Y)
    assert rule.scales_[2] == pytest.approx(1.7) and rule.scales_[3] == pytest.approx(2.3)
    pred = rule.predict(H)
    assert pred.dtype == Y.dtype
    assert np.array_equal(pred, Y)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_fast_search_equals_exhaustive_on_etf_means(metric):
    H, Y, M = _etf_data()
    rule = TagWiseAverageClassifier(metric=metric).fit(H, Y)
    rng = np.random.default_rng(1)
    probes = 5.0 + rng.standard_normal((500, H.shape[1])) * 2  # arbitrary features, not near prototypes
    assert rule.search_disagreement(probes) == 0.0
    fast = rule.predict(probes)
    rule.set_params(search="exhaustive")
    assert np.array_equal(fast, rule.predict(probes))


def test_unseen_set_with_seen_tags_is_predicted():
    k = 5
    train_sets = [(c,) for c in range(k)] + [(0, 1), (2, 3)]
    H, Y, M = _etf_data(k=k, sets=train_sets)
    rule = TagWiseAverageClassifier(metric="euclidean").fit(H, Y)
    unseen = 5.0 + 1.7 * M[[1, 4]].mean(0)
    expected = np.zeros(k, dtype=np.int64)
    expected[[1, 4]] = 1
    assert np.array_equal(rule.predict(unseen[None])[0], expected)


def test_max_multiplicity_extends_candidates():
    H, Y, M = _etf_data(k=5, sets=[(c,) for c in range(5)] + [(0, 1)])
    rule = TagWiseAverageClassifier(max_multiplicity=3).fit(H, Y)
    assert list(rule.multiplicities_) == [1, 2, 3]
    triple = 5.0 + M[[0, 2, 4]].sum(0)
    assert rule.predict(triple[None])[0].tolist() == [1, 0, 1, 0, 1]


def test_one_d_labels_give_nearest_class_mean():
    rng = np.random.default_rng(0)
    M = simplex_etf(4, 6, norm=2.0, random_state=0)
    y = np.repeat(np.array(["a", "b", "c", "d"]), 10)
    H = M[np.repeat(np.arange(4), 10)] + 0.1 * rng.standard_normal((40, 6))
    rule = TagWiseAverageClassifier(metric="euclidean").fit(H, y)
    assert np.array_equal(rule.predict(H), y)


def test_class_never_alone_uses_the_tagwise_estimate():
    # class 3 never occurs alone: its mean comes from the pairs it is in (the estimator of the NC metrics)
    H, Y, M = _etf_data(k=4, sets=[(0,), (1,), (2,), (0, 3), (1, 3), (2, 3), (0, 1)], scales={1: 1.0, 2: 1.0})
    rule = TagWiseAverageClassifier(metric="euclidean").fit(H, Y)
    assert rule.means_estimated_by_ == "tagwise"
    assert np.allclose(rule.means_ + rule.center_, 5.0 + M, atol=1e-8)
    assert rule.scales_[2] == pytest.approx(1.0)
    assert np.array_equal(rule.predict(H), Y)
    together = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1], [1, 1, 1]])
    with pytest.raises(ValueError, match=r"do not determine the mean of class\(es\) 0, 1 "):
        TagWiseAverageClassifier().fit(np.random.default_rng(0).standard_normal((4, 3)), together)


def test_bad_input():
    H, Y, _ = _etf_data(k=4)
    rule = TagWiseAverageClassifier().fit(H, Y)
    with pytest.raises(ValueError, match="features"):
        rule.predict(H[:, :3])
    with pytest.raises(ValueError, match="NaN|infinity"):
        TagWiseAverageClassifier().fit(np.full_like(H, np.nan), Y)


def test_auto_search_is_exhaustive_within_its_budget_and_exact():
    H, Y, M = _etf_data(k=6)
    rule = TagWiseAverageClassifier(metric="euclidean").fit(H, Y)
    assert rule.search_ == "exhaustive"  # 6 + 15 + 20 candidate sets
    assert TagWiseAverageClassifier(max_candidates=10).fit(H, Y).search_ == "fast"
    # the prediction is the most likely candidate, found here by an independent loop over every set
    rng = np.random.default_rng(3)
    probes = 5.0 + 2.0 * rng.standard_normal((200, H.shape[1]))
    centred = probes - rule.center_
    best = []
    for h in centred:
        scored = []
        for m in (1, 2, 3):
            for s in combinations(range(6), m):
                proto = rule.scales_[m] / m * rule.means_[list(s)].sum(0)
                scored.append((-np.sum((h - proto) ** 2) / (2 * rule.noise_scale_) + rule.size_log_prior_[m], s))
        best.append(max(scored)[1])
    expected = np.zeros((200, 6), dtype=int)
    for i, s in enumerate(best):
        expected[i, list(s)] = 1
    assert np.array_equal(rule.predict(probes), expected)


def test_size_prior_keeps_rare_large_sets_rare():
    # 90% single labels, 10% pairs; new samples are noisier than the training ones
    rng = np.random.default_rng(0)
    k, d = 5, 10
    M = simplex_etf(k, d, norm=3.0, random_state=0)
    pairs = list(combinations(range(k), 2))

    def draw(n, noise):
        Y = np.zeros((n, k), dtype=int)
        for i in range(n):
            Y[i, [rng.integers(k)] if rng.random() < 0.9 else list(pairs[rng.integers(len(pairs))])] = 1
        H = 1.4 * (Y @ M) / Y.sum(1, keepdims=True)  # pairs: 1.4 times their tags' average
        return H + noise * rng.standard_normal((n, d)), Y

    Htr, Ytr = draw(2000, 0.3)
    Hval, Yval = draw(500, 1.2)
    Hte, Yte = draw(2000, 1.2)
    plain = TagWiseAverageClassifier(metric="euclidean", size_prior=False).fit(Htr, Ytr)
    prior = TagWiseAverageClassifier(metric="euclidean").fit(Htr, Ytr).fit_noise(Hval, Yval)
    assert prior.noise_scale_ > 5 * TagWiseAverageClassifier(metric="euclidean").fit(Htr, Ytr).noise_scale_
    share = {name: float(np.mean(r.predict(Hte).sum(1) == 2)) for name, r in (("plain", plain), ("prior", prior))}
    truth = float(np.mean(Yte.sum(1) == 2))
    assert abs(share["prior"] - truth) < abs(share["plain"] - truth)
    assert share["plain"] > 2 * truth  # without the prior the rule over-predicts pairs
    exact = {name: float(np.mean(np.all(r.predict(Hte) == Yte, axis=1))) for name, r in (("plain", plain),
                                                                                      ("prior", prior))}
    assert exact["prior"] > exact["plain"]
