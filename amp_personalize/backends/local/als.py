"""Implicit-feedback matrix factorization (ALS, Hu, Koren & Volinsky 2008) for large catalogs.

Above the dense-inverse limit the linear autoencoders (dlae.py) cost items^3; ALS costs about
pairs x factors^2 per iteration, so it scales to the catalogs that limit leaves out, and it
ranked far better than the item-item cosine it replaces there (docs/recommender.md). The
`implicit` package's CPU solver does the work (conjugate gradient, OpenMP threads); it is
called on the CPU only, so no GPU or CUDA build is ever looked for.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits


def als(
    positive: sp.csr_matrix,
    factors: int,
    regularization: float,
    alpha: float,
    iterations: int,
    seed: int,
    threads: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """(user factors, item factors), float32, from users x items confidences.

    Confidence is 1 + alpha * value for observed pairs, 1 for the rest (the paper's C_ui).
    """
    from implicit.cpu.als import AlternatingLeastSquares  # imported here: a compiled extension, only needed to fit

    # implicit runs its own threads; BLAS threads on top of them oversubscribe the cores (implicit
    # warns about it when the model is made), so BLAS gets one while it fits.
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=factors, regularization=regularization, alpha=alpha, iterations=iterations,
            calculate_training_loss=False, num_threads=threads, random_state=seed,
        )
        model.fit(positive.astype(np.float32).tocsr(), show_progress=False)
    return np.ascontiguousarray(model.user_factors, dtype=np.float32), np.ascontiguousarray(model.item_factors, dtype=np.float32)
