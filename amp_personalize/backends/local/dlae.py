"""Linear autoencoders in closed form: EASE and DLAE from one inverse of the Gram matrix.

EASE (Steck 2019) learns B minimizing ||X - XB||^2 + l2 ||B||^2 with B's diagonal forced to
zero, so an item cannot predict itself. DLAE (Steck 2020, "Autoencoders that don't overfit
towards the identity") drops that constraint and instead penalizes each weight by how often its
item occurs, as dropout of the input would: Lambda = l2 + p / (1 - p) * diag(X'X). It costs the
same inverse and ranked better on the public datasets measured here (docs/recommender.md), so
the model's selection tries both.

Both come from P = (X'X + Lambda)^-1:
  zero diagonal (EASE, and with dropout the full-rank EDLAE):  B = I - P / diag(P)
  free diagonal (DLAE):                                        B = (X'X + Lambda)^-1 X'X = I - P Lambda
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack


def gram(positive: sp.csr_matrix) -> np.ndarray:
    """X'X in float64: the inverse below loses too much in float32 on large catalogs."""
    return (positive.T @ positive).toarray().astype(np.float64)


def penalty(gram_diagonal: np.ndarray, l2: float, dropout: float) -> np.ndarray:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    return l2 + dropout / (1.0 - dropout) * gram_diagonal


def autoencoder(
    g: np.ndarray, l2: float, dropout: float = 0.0, zero_diagonal: bool = True, overwrite: bool = False
) -> np.ndarray:
    """B (float32, items x items) from the Gram matrix `g`, left untouched unless `overwrite`.

    In place where LAPACK allows it: at 9,000 items one float64 matrix is 650 MB, and copies of
    it made the peak memory of a fit 3.4 GiB.
    """
    lam = penalty(np.diag(g).copy(), l2, dropout)
    work = g if overwrite else g.copy()
    work[np.diag_indices_from(work)] += lam
    # X'X + Lambda is symmetric positive definite: Cholesky then its inverse (potrf + potri,
    # ~n^3 flops) instead of LU-based np.linalg.inv (~2 n^3). LAPACK works on Fortran order:
    # the transpose of a C-ordered symmetric matrix is the same matrix in Fortran order, so
    # handing it `work.T` lets both steps run in place instead of on a copy.
    factor, info = lapack.dpotrf(work.T, lower=False, overwrite_a=True, clean=False)
    if info != 0:
        raise np.linalg.LinAlgError(f"Gram matrix plus penalty is not positive definite (potrf info={info})")
    inverse, info = lapack.dpotri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"inverse failed (potri info={info})")
    _mirror_upper(inverse)  # potri fills the upper triangle only
    if zero_diagonal:
        inverse /= -np.diag(inverse).copy()
        inverse[np.diag_indices_from(inverse)] = 0.0
    else:
        inverse *= -lam[None, :]
        inverse[np.diag_indices_from(inverse)] += 1.0
    return np.ascontiguousarray(inverse, dtype=np.float32)


def _mirror_upper(a: np.ndarray, block: int = 1024) -> None:
    """Copy the upper triangle onto the lower one, a block of rows at a time (no full-size temporary)."""
    n = a.shape[0]
    for start in range(0, n, block):
        stop = min(start + block, n)
        a[start:stop, :start] = a[:start, start:stop].T
        square = a[start:stop, start:stop]
        lower = np.tril_indices(stop - start, -1)
        square[lower] = square.T[lower]


def ease(positive: sp.csr_matrix, l2: float = 250.0) -> np.ndarray:
    return autoencoder(gram(positive), l2, 0.0, zero_diagonal=True, overwrite=True)
