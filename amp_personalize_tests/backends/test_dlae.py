"""The linear autoencoders' closed forms against the objectives they solve."""

import numpy as np
import scipy.sparse as sp

from amp_personalize.backends.local.dlae import autoencoder, gram, penalty


def data(seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    return sp.csr_matrix((rng.random((60, 12)) < 0.3).astype(np.float64))


def test_dlae_solves_its_penalized_least_squares():
    """B minimizes ||X - XB||^2 + sum_j Lambda_j ||B_j.||^2 with Steck's dropout penalty
    Lambda_j = l2 + p / (1 - p) * (X'X)_jj: the gradient (X'X + Lambda) B - X'X is zero."""
    x = data()
    g = gram(x)
    l2, p = 3.0, 0.25
    lam = l2 + p / (1 - p) * np.asarray(x.multiply(x).sum(axis=0)).ravel()
    assert np.allclose(penalty(np.diag(g), l2, p), lam)
    b = autoencoder(g, l2, p, zero_diagonal=False).astype(np.float64)
    assert np.allclose((g + np.diag(lam)) @ b, g, atol=1e-4)
    assert np.diag(b).max() > 0.05, "DLAE keeps a diagonal: no constraint forces it to zero"


def test_ease_solves_its_objective_with_a_zero_diagonal():
    """With diag(B) = 0 the optimum's gradient is zero off the diagonal (the constraint's multipliers sit on it)."""
    x = data(1)
    g = gram(x)
    b = autoencoder(g, 5.0, 0.0, zero_diagonal=True).astype(np.float64)
    assert np.allclose(np.diag(b), 0.0)
    gradient = (g + 5.0 * np.eye(len(g))) @ b - g
    off = ~np.eye(len(g), dtype=bool)
    assert np.abs(gradient[off]).max() < 1e-4


def test_the_gram_matrix_is_not_changed():
    g = gram(data(2))
    before = g.copy()
    autoencoder(g, 1.0, 0.5, zero_diagonal=False)
    assert np.array_equal(g, before)


def test_large_catalogs_match_a_plain_inverse():
    """Above 1,024 items the in-place inverse is mirrored block by block: it must still be the inverse."""
    rng = np.random.default_rng(3)
    x = sp.csr_matrix((rng.random((2000, 1100)) < 0.02).astype(np.float64))
    g = gram(x)
    lam = penalty(np.diag(g), 5.0, 0.25)
    inverse = np.linalg.inv(g + np.diag(lam))
    expected = np.eye(len(g)) - inverse * lam[None, :]
    assert np.allclose(autoencoder(g, 5.0, 0.25, zero_diagonal=False), expected, atol=1e-5)
