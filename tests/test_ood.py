"""NC-based out-of-distribution scores (sknc.ood) against their formulas and on a real shift."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score

import sknc
from sknc.ood import NCOutlierDetector, nc5


def _toy(rng, k=4, d=7, n=25):
    y = np.repeat(np.arange(k), n)
    M = 3 * rng.standard_normal((k, d))
    return M[y] + 0.3 * rng.standard_normal((len(y), d)) + 10.0, y


def test_neco_and_nc5_scores_against_their_formulas(rng):
    H, y = _toy(rng)
    probes = 10.0 + 3 * rng.standard_normal((50, H.shape[1]))
    means = np.stack([H[y == c].mean(0) for c in range(4)])
    centre = means.mean(0)
    centred = probes - centre
    # NECO: the norm of the least-squares projection on the span of the centred means, over the norm
    coef, *_ = np.linalg.lstsq((means - centre).T, centred.T, rcond=None)
    inside = np.linalg.norm(((means - centre).T @ coef).T, axis=1)
    neco = NCOutlierDetector().fit(H, y)
    assert np.allclose(neco.score_samples(probes), inside / np.linalg.norm(centred, axis=1), atol=1e-12)
    # NC5-style: the largest cosine with a centred class mean, by a loop
    best = [max(np.dot(h, m) / np.linalg.norm(h) / np.linalg.norm(m) for m in means - centre) for h in centred]
    assert np.allclose(NCOutlierDetector(score="nc5").fit(H, y).score_samples(probes), best, atol=1e-12)
    # the offset leaves the contamination share of the training features below it
    assert np.mean(neco.decision_function(H) < 0) == pytest.approx(0.05, abs=0.02)
    assert set(np.unique(neco.predict(probes))) <= {-1, 1}
    assert clone(neco).get_params() == neco.get_params()


def test_nc5_is_zero_for_orthogonal_ood_and_known_for_a_class_direction():
    k, d = 3, 5
    M = np.hstack([sknc.simplex_etf(k, 2, random_state=0), np.zeros((k, 3))])
    y = np.repeat(np.arange(k), 4)
    H = M[y]
    assert nc5(H, y, np.tile([0, 0, 1.0, 2.0, 0], (6, 1))) == pytest.approx(0.0, abs=1e-15)
    # the OOD mean along class 0's mean: |cos| is 1 with it and 1/2 with the two others (a simplex ETF)
    assert nc5(H, y, np.tile(2 * M[0], (3, 1))) == pytest.approx(2 / 3, rel=1e-12)
    report = sknc.nc_report(H, y, ood_features=np.tile(2 * M[0], (3, 1)))
    assert report["nc5"] == pytest.approx(2 / 3, rel=1e-12)
    with pytest.warns(sknc.NCWarning, match="nc5"):
        assert np.isnan(sknc.nc_report(H, y, ood_features=np.zeros((2, d)))["nc5"])
    with pytest.raises(ValueError, match="ood_features has 4 columns"):
        sknc.nc_report(H, y, ood_features=np.zeros((2, 4)))


def test_held_out_digits_are_told_apart_on_a_trained_network():
    # digits 0-4 are in distribution, 5-9 out of it: a real shift, through PALClassifier's features
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(X))
    X, y = X[order], y[order]
    known = y < 5
    cut = int(0.7 * known.sum())
    clf = sknc.PALClassifier(hidden_sizes=(128,), max_epochs=60, random_state=0, device="cpu")
    clf.fit(X[known][:cut], y[known][:cut])
    H_train, H_in, H_out = clf.transform(X[known][:cut]), clf.transform(X[known][cut:]), clf.transform(X[~known])
    truth = np.r_[np.ones(len(H_in)), np.zeros(len(H_out))]
    for score in ("neco", "nc5"):
        detector = NCOutlierDetector(score=score).fit(H_train, y[known][:cut])
        auroc = roc_auc_score(truth, np.r_[detector.score_samples(H_in), detector.score_samples(H_out)])
        assert auroc > 0.9, score  # measured: 0.96 and 0.97 (maximum softmax probability: 0.96)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="labels y"):
        NCOutlierDetector().fit(np.zeros((4, 2)), None)
    with pytest.raises(ValueError, match="coincide"):
        NCOutlierDetector().fit(np.ones((4, 2)), [0, 0, 1, 1])
    with pytest.raises(ValueError, match="score"):
        NCOutlierDetector(score="energy").fit(np.eye(4), [0, 0, 1, 1])
