"""Well-known recommenders for benchmarks/quality.py, each tuned honestly before it is scored.

Every baseline picks its hyperparameters on a validation split carved from the training part
only (the same per-user newest rule as the test split), is refitted on the whole training part
with the winner, and is scored once on the test split. None of this is product code: the
product's model is scored beside these, never tuned by them.

  popularity  positive interactions per item in the training part (the ratio's denominator)
  EASE        Steck 2019; l2 grid x input (binary, or weighted: upvote 2, click 1, negatives 0)
  DLAE        Steck 2020; (l2, dropout p) grid x input, no zero-diagonal constraint
  ALS         the `implicit` package's CPU ALS with 128 factors; (regularization, alpha) grid x input
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

from amp_personalize.backends.local.als import als
from amp_personalize.backends.local.dlae import autoencoder, gram

K = 10
INPUTS = ("binary", "weighted")
# Grids: wide on small catalogs; on large ones each dense fit takes tens of seconds here, so
# fewer points (still bracketing the values that won on the small catalog).
EASE_L2 = {"small": (50, 100, 200, 400, 800, 1600), "large": (100, 400, 1600)}
DLAE_GRID = {"small": tuple(itertools.product((1, 10, 100, 400), (0.1, 0.25, 0.5, 0.75))), "large": ((10, 0.25), (10, 0.5), (100, 0.33))}
# ALS fits take about a second on these datasets, so its grid is the same whatever the catalog.
ALS_GRID = {size: tuple(itertools.product((0.1, 1.0, 10.0, 30.0), (1.0, 5.0, 20.0))) for size in ("small", "large")}
ALS_FACTORS, ALS_ITERATIONS = 128, 15
LARGE_CATALOG = 4000


@dataclass
class Data:
    """A training part and its targets as matrices over the training catalog."""

    users: np.ndarray  # query user ids, rows of `relevant`
    items: np.ndarray  # catalog, columns
    user_index: dict
    binary: sp.csr_matrix  # all users x items: 1 per positive pair
    weighted: sp.csr_matrix  # summed positive event weights (upvote 2, click 1)
    seen: sp.csr_matrix  # any interaction, negatives included: never recommended again
    rows: np.ndarray  # query users' rows in the matrices
    relevant: sp.csr_matrix  # query users x items
    ideal: np.ndarray  # relevant items per query user, in the catalog or not (NDCG's ideal ranking)


def matrices(train: pl.DataFrame, targets: pl.DataFrame) -> Data:
    """train: user_id, item_id, event_value; targets: user_id, item_id (relevant held-out items)."""
    users = train["user_id"].unique().sort()
    items = train["item_id"].unique().sort()
    codes = train.select(
        pl.col("user_id").cast(pl.Enum(users)).to_physical().cast(pl.Int64).alias("r"),
        pl.col("item_id").cast(pl.Enum(items)).to_physical().cast(pl.Int64).alias("c"),
        pl.col("event_value").clip(lower_bound=0).alias("v"),
    )
    shape = (users.len(), items.len())
    r, c, v = codes["r"].to_numpy(), codes["c"].to_numpy(), codes["v"].to_numpy()
    weighted = sp.csr_matrix((v, (r, c)), shape=shape, dtype=np.float64)
    weighted.eliminate_zeros()
    binary = weighted.copy()
    binary.data[:] = 1.0
    seen = sp.csr_matrix((np.ones(len(r)), (r, c)), shape=shape)
    known = targets.filter(pl.col("user_id").is_in(users.implode()))
    query = known["user_id"].unique().sort()
    in_catalog = known.filter(pl.col("item_id").is_in(items.implode()))
    qi = in_catalog.select(
        pl.col("user_id").cast(pl.Enum(query)).to_physical().cast(pl.Int64).alias("q"),
        pl.col("item_id").cast(pl.Enum(items)).to_physical().cast(pl.Int64).alias("c"),
    )
    relevant = sp.csr_matrix((np.ones(qi.height), (qi["q"].to_numpy(), qi["c"].to_numpy())), shape=(query.len(), items.len()))
    # A relevant item outside the training catalog cannot be recommended by anyone, but it still
    # counts in the ideal ranking: NDCG's denominator uses every relevant item.
    ideal = known.group_by("user_id").len().sort("user_id")["len"].to_numpy()
    user_index = {u: i for i, u in enumerate(users.to_list())}
    rows = np.array([user_index[u] for u in query.to_list()], dtype=np.int64)
    return Data(query.to_numpy(), items.to_numpy(), user_index, binary.tocsr(), weighted.tocsr(), seen.tocsr(), rows, relevant, ideal)


def ndcg(data: Data, ranked: np.ndarray) -> np.ndarray:
    """Per query user NDCG@10; the ideal counts every relevant item, in the catalog or not."""
    top = ranked[:, :K]
    rows = np.repeat(np.arange(top.shape[0]), top.shape[1])
    hits = np.asarray(data.relevant[rows, top.ravel()]).reshape(top.shape) > 0
    discount = 1.0 / np.log2(np.arange(2, K + 2))
    ideal = np.cumsum(discount)[np.minimum(data.ideal, K) - 1]
    return (hits * discount).sum(axis=1) / ideal


def top_k(scores: np.ndarray, seen: sp.csr_matrix, k: int = K) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float32).copy()
    coo = seen.tocoo()
    scores[coo.row, coo.col] = -np.inf
    part = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def _input(data: Data, name: str) -> sp.csr_matrix:
    return data.binary if name == "binary" else data.weighted


def score_popularity(data: Data) -> np.ndarray:
    counts = np.asarray(data.binary.sum(axis=0)).ravel()
    return ndcg(data, top_k(np.tile(counts, (len(data.rows), 1)), data.seen[data.rows]))


def _dense_scores(data: Data, x: sp.csr_matrix, b: np.ndarray) -> np.ndarray:
    return np.asarray(x[data.rows] @ b)


def fits(name: str, n_items: int):
    """(label, fit function) per grid point: fit(data) -> per-user NDCG@10 of its top-10."""
    size = "large" if n_items > LARGE_CATALOG else "small"
    out = []
    if name == "EASE":
        for inp, l2 in itertools.product(INPUTS, EASE_L2[size]):
            def f(data, inp=inp, l2=l2):
                x = _input(data, inp)
                return ndcg(data, top_k(_dense_scores(data, x, autoencoder(gram(x), l2, 0.0, True)), data.seen[data.rows]))
            out.append((f"{inp} l2={l2:g}", f))
    elif name == "DLAE":
        for inp, (l2, p) in itertools.product(INPUTS, DLAE_GRID[size]):
            def f(data, inp=inp, l2=l2, p=p):
                x = _input(data, inp)
                return ndcg(data, top_k(_dense_scores(data, x, autoencoder(gram(x), l2, p, False)), data.seen[data.rows]))
            out.append((f"{inp} l2={l2:g} p={p:g}", f))
    elif name == "ALS":
        for inp, (reg, alpha) in itertools.product(INPUTS, ALS_GRID[size]):
            def f(data, inp=inp, reg=reg, alpha=alpha):
                u, v = als(_input(data, inp), ALS_FACTORS, reg, alpha, ALS_ITERATIONS, seed=0)
                return ndcg(data, top_k(u[data.rows] @ v.T, data.seen[data.rows]))
            out.append((f"{inp} reg={reg:g} alpha={alpha:g}", f))
    else:
        raise ValueError(name)
    return out


def tuned(name: str, validation: Data, test: Data) -> tuple[np.ndarray, str, float, float]:
    """Grid search on validation, then one score on test: (per-user NDCG@10, winner, seconds,
    the winner's validation NDCG@10)."""
    started = time.perf_counter()
    grid = fits(name, len(validation.items))
    best_label, best_fit, best = None, None, -1.0
    for label, f in grid:
        value = float(f(validation).mean())
        if value > best:
            best_label, best_fit, best = label, f, value
    return best_fit(test), best_label, time.perf_counter() - started, best
