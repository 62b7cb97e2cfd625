import numpy as np
import pytest

import sknc


@pytest.mark.parametrize("k,d", [(2, 1), (3, 2), (5, 5), (10, 32)])
def test_simplex_etf_structure(k, d):
    E = sknc.simplex_etf(k, d, norm=2.5, random_state=0)
    assert E.shape == (k, d)
    assert np.allclose(np.linalg.norm(E, axis=1), 2.5)
    cos = (E @ E.T) / 2.5**2
    off = cos[~np.eye(k, dtype=bool)]
    assert np.allclose(off, -1 / (k - 1))
    assert np.allclose(E.sum(0), 0, atol=1e-12)
    assert sknc.gram_etf_error(E) < 1e-12


def test_simplex_etf_random_state_and_canonical():
    a = sknc.simplex_etf(4, 6, random_state=3)
    assert np.array_equal(a, sknc.simplex_etf(4, 6, random_state=3))
    assert not np.allclose(a, sknc.simplex_etf(4, 6, random_state=4))
    canon = sknc.simplex_etf(4)
    assert np.allclose(canon, np.sqrt(4 / 3) * (np.eye(4) - 0.25))


def test_simplex_etf_bad_arguments():
    with pytest.raises(ValueError, match="dim >= K-1 = 4"):
        sknc.simplex_etf(5, 3)
    with pytest.raises(ValueError, match="at least 2"):
        sknc.simplex_etf(1)
    with pytest.raises(TypeError, match="integer"):
        sknc.simplex_etf(3.5)


def test_etf_gram_unit_norm():
    G = sknc.etf_gram(6)
    assert np.linalg.norm(G) == pytest.approx(1.0)
    assert np.allclose(G.sum(1), 0)


def test_multilabel_prototypes_sum_and_scale():
    means = np.arange(12.0).reshape(4, 3)
    sets = np.array([[1, 1, 0, 0], [0, 1, 1, 1], [0, 0, 1, 0]])
    P = sknc.multilabel_prototypes(means, sets)
    assert np.allclose(P[0], means[0] + means[1])
    assert np.allclose(P[1], means[1] + means[2] + means[3])
    Ps = sknc.multilabel_prototypes(means, sets, scales={1: 1.0, 2: 0.5, 3: 2.0})
    assert np.allclose(Ps[0], 0.5 * (means[0] + means[1]))
    assert np.allclose(Ps[1], 2.0 * P[1])
    with pytest.raises(ValueError, match="shape"):
        sknc.multilabel_prototypes(means, sets[:, :3])


def test_etf_alignment_error_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        sknc.etf_alignment_error(np.ones((3, 2)), np.ones((3, 4)))
