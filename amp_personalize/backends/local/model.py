"""The local model: fit, score users in batches, find similar items, save and load.

Scoring starts from the user's positive history (recent items weighing most, when the
selection found that recency pays) times the item-item weights, or from the user's ALS factors,
then applies the negatives where they help: items the user downvoted, hid or flagged are never
offered and pull their neighbours down; items shown often without a click lose a little,
capped, so impressions nudge the ranking without ever outweighing what the user did. Which
algorithm and which of these settings a training uses is chosen on its own data
(selection.py); the defaults here are the simplest ones.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from amp_personalize.backends.base import RECOMMENDATIONS_SCHEMA, SIMILAR_ITEMS_SCHEMA
from amp_personalize.backends.local.als import als
from amp_personalize.backends.local.dlae import autoencoder, gram
from amp_personalize.backends.local.matrix import (
    WEIGHTINGS,
    Matrices,
    build_matrices,
    time_decayed_popularity,
)
from amp_personalize.backends.local.similarity import cosine_top_k

MODEL_FILE = "model.npz"


# The algorithms a model can use: dense linear autoencoders up to `ease_max_items`, above that
# a factorization or the item-item cosine; `popularity` is what is served when no model beat it.
DENSE_ALGORITHMS = ("ease", "dlae")
ALGORITHMS = (*DENSE_ALGORITHMS, "als", "item_knn", "popularity")


@dataclass(frozen=True)
class LocalParams:
    # "auto": DLAE up to ease_max_items, ALS above; selection.py replaces it with its choice.
    algorithm: str = "auto"
    # Above this many items the dense inverse (items^3) costs more than it is worth: ~20 s and
    # 330 MB of weights at 9,000 items on these 2 cores, and at MovieLens latest-small's 9,066
    # items DLAE ranked clearly better than ALS (docs/recommender.md). Above it the selection
    # chooses between ALS (als.py) and the item-item cosine.
    ease_max_items: int = 10_000
    l2: float = 100.0
    dropout: float = 0.25  # DLAE's dropout-style penalty p: each weight costs p / (1 - p) x its item's count
    weighting: str = WEIGHTINGS[0]  # a pair's training value from its summed positive weight (matrix.pair_weight)
    factors: int = 64
    als_regularization: float = 1.0
    als_alpha: float = 1.0
    als_iterations: int = 12
    neighbours: int = 100
    # Off unless the selection finds they pay: on MovieLens-100k a pull of 0.5 cost 3-8% NDCG@10.
    negative_pull: float = 0.0
    impression_penalty: float = 0.0
    impression_cap: float = 3.0
    exclude_seen: bool = True
    popularity_half_life_days: float = 7.0
    # Halve a history item's weight at scoring every this many newer items (0: off). It helped
    # on one dataset's per-user newest split and not on others' future; selection.py decides.
    history_half_life: float = 0.0
    seed: int = 42

    def resolved_algorithm(self, n_items: int) -> str:
        """What fit() runs on a catalog of n_items: a dense model above the limit becomes ALS."""
        algorithm = self.algorithm
        if algorithm == "auto":
            algorithm = "dlae"
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be 'auto' or one of {ALGORITHMS}, got {algorithm!r}")
        return "als" if algorithm in DENSE_ALGORITHMS and n_items > self.ease_max_items else algorithm


@dataclass
class LocalModel:
    params: LocalParams
    algorithm: str
    matrices: Matrices
    weights: np.ndarray | sp.csr_matrix  # items x items, used for scoring (empty for ALS)
    similar: sp.csr_matrix  # items x items cosine top-k, for similar items
    popularity: np.ndarray
    info: dict = field(default_factory=dict)
    user_factors: np.ndarray | None = None  # ALS: users x factors, rows as matrices.users
    item_factors: np.ndarray | None = None  # ALS: items x factors

    # -- scoring ------------------------------------------------------------------------------

    def _scores(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores, from_model) for a batch of known users; excluded items are -inf."""
        m, p = self.matrices, self.params
        history = m.positive[rows]
        disliked = m.negative[rows]
        if self.algorithm == "als":
            scores = self.user_factors[rows] @ self.item_factors.T
        else:
            scores = _dense(m.recency[rows] @ self.weights)
        # ALS has no item-item weights for a veto to pull through: its vetoes only mask.
        if disliked.nnz and p.negative_pull and self.algorithm != "als":
            pull = disliked @ self.weights
            if sp.issparse(pull):  # a few hundred entries per user: subtract them, no dense copy
                pull = pull.tocoo()
                scores[pull.row, pull.col] -= p.negative_pull * pull.data
            else:
                scores -= p.negative_pull * _dense(pull)
        from_model = scores > 0
        if p.exclude_seen:
            _mask(scores, history)
        _mask(scores, disliked)  # a veto, whatever exclude_seen says
        if m.shown.nnz and p.impression_penalty:
            # Relative to the best score the user can be offered, so a long scroll past an item
            # costs it at most penalty x cap (6%) of that, whatever the scale of the scores.
            best = np.maximum(scores.max(axis=1, keepdims=True), 0)
            scores -= p.impression_penalty * m.shown[rows].minimum(p.impression_cap).toarray() * best
        # A tiny popularity term orders items the model knows nothing about, so short lists
        # are backfilled with what is popular, never with arbitrary items (all of a list, for
        # the popularity stand-in served when no model beat it).
        share = 1.0 if self.algorithm == "popularity" else 1e-6
        scores += (share * self._popularity_unit()).astype(np.float32)  # float64 here upcasts the whole batch
        return scores, from_model

    def _popularity_unit(self) -> np.ndarray:
        top = self.popularity.max() if self.popularity.size else 0.0
        return self.popularity / top if top > 0 else self.popularity

    def recommend_rows(self, rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-n item indices, scores and from-model flags for a batch of users."""
        scores, from_model = self._scores(rows)
        top = _top_n(scores, n)
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        return top, np.take_along_axis(scores, top, axis=1), np.take_along_axis(from_model, top, axis=1)

    def recommend(self, user_ids: list[str], n: int, batch: int = 2048) -> pl.DataFrame:
        index = {u: i for i, u in enumerate(self.matrices.users)}
        known = [(u, index[u]) for u in user_ids if u in index]
        unknown = [u for u in user_ids if u not in index]
        frames = []
        chunks = [known[start : start + batch] for start in range(0, len(known), batch)]
        # Two batches at a time on threads: the sparse products and argpartition release the GIL.
        with ThreadPoolExecutor(max_workers=2) as pool:
            ranked = pool.map(lambda chunk: self.recommend_rows(np.array([r for _, r in chunk], dtype=np.int64), n), chunks)
        for chunk, (top, scores, from_model) in zip(chunks, ranked):
            valid = np.isfinite(scores)
            width = top.shape[1]
            frames.append(
                pl.DataFrame(
                    {
                        "user_id": np.repeat([u for u, _ in chunk], width)[valid.ravel()],
                        "rank": np.tile(np.arange(1, width + 1, dtype=np.int32), len(chunk))[valid.ravel()],
                        "item_id": self.matrices.items[top.ravel()][valid.ravel()],
                        "score": scores.ravel()[valid.ravel()].astype(np.float64),
                        "source": np.where(from_model.ravel(), "model", "popularity")[valid.ravel()],
                    },
                    schema=RECOMMENDATIONS_SCHEMA,
                )
            )
        if unknown:
            frames.append(self.popular(unknown, n))
        if not frames:
            return pl.DataFrame(schema=RECOMMENDATIONS_SCHEMA)
        # Ranks are renumbered after dropping masked items, so every list reads 1..n.
        return pl.concat(frames).with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("user_id").alias("rank"))

    def popular_for_rows(self, rows: np.ndarray, n: int) -> np.ndarray:
        """Top-n popular items per known user, minus what the user has seen: the baseline."""
        scores = np.tile(self.popularity.astype(np.float32), (len(rows), 1))
        if self.params.exclude_seen:
            _mask(scores, self.matrices.positive[rows])
        _mask(scores, self.matrices.negative[rows])
        top = _top_n(scores, n)
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        return np.take_along_axis(top, order, axis=1)

    def popular(self, user_ids: list[str], n: int) -> pl.DataFrame:
        order = np.argsort(-self.popularity, kind="stable")[:n]
        items, scores = self.matrices.items[order], self.popularity[order]
        return pl.DataFrame(
            {
                "user_id": np.repeat(user_ids, len(order)),
                "rank": np.tile(np.arange(1, len(order) + 1, dtype=np.int32), len(user_ids)),
                "item_id": np.tile(items, len(user_ids)),
                "score": np.tile(scores, len(user_ids)).astype(np.float64),
                "source": "popularity",
            },
            schema=RECOMMENDATIONS_SCHEMA,
        )

    def similar_items(self, item_ids: list[str] | None, n: int) -> pl.DataFrame:
        """Top-n cosine neighbours per item (every item if item_ids is None)."""
        items = self.matrices.items
        if item_ids is None:
            rows = np.arange(len(items))
        else:
            index = {it: i for i, it in enumerate(items)}
            rows = np.array([index[i] for i in item_ids if i in index], dtype=np.int64)
        sim = self.similar[rows].tocoo()
        ranked = (
            pl.DataFrame({"row": rows[sim.row], "col": sim.col.astype(np.int64), "score": sim.data.astype(np.float64)})
            .sort(["row", "score", "col"], descending=[False, True, False])
            .with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("row").alias("rank"))
            .filter(pl.col("rank") <= n)
        )
        return pl.DataFrame(
            {
                "item_id": items[ranked["row"].to_numpy()],
                "rank": ranked["rank"],
                "similar_item_id": items[ranked["col"].to_numpy()],
                "score": ranked["score"],
            },
            schema=SIMILAR_ITEMS_SCHEMA,
        )

    # -- persistence --------------------------------------------------------------------------

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        m = self.matrices
        arrays = {
            "users": m.users.astype(str),
            "items": m.items.astype(str),
            "popularity": self.popularity,
            "dense_weights": self.weights if isinstance(self.weights, np.ndarray) else np.zeros((0, 0), np.float32),
            "user_factors": self.user_factors if self.user_factors is not None else np.zeros((0, 0), np.float32),
            "item_factors": self.item_factors if self.item_factors is not None else np.zeros((0, 0), np.float32),
        }
        for name, matrix in (
            ("positive", m.positive), ("recency", m.recency), ("negative", m.negative), ("shown", m.shown), ("similar", self.similar)
        ):
            arrays.update(_pack(name, matrix))
        if not isinstance(self.weights, np.ndarray):
            arrays.update(_pack("sparse_weights", self.weights))
        path = directory / MODEL_FILE
        tmp = directory / ".model.npz.tmp"
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        tmp.replace(path)
        (directory / "params.json").write_text(json.dumps({"params": asdict(self.params), "algorithm": self.algorithm, "info": self.info}, indent=2, default=str))
        return path

    @classmethod
    def load(cls, directory: Path) -> "LocalModel":
        meta = json.loads((directory / "params.json").read_text())
        with np.load(directory / MODEL_FILE, allow_pickle=False) as z:
            users, items = z["users"].astype(object), z["items"].astype(object)
            matrices = Matrices(
                users, items, _unpack("positive", z), _unpack("recency", z), _unpack("negative", z), _unpack("shown", z)
            )
            weights = z["dense_weights"] if z["dense_weights"].size else _unpack("sparse_weights", z)
            factors = [z[name] if name in z.files and z[name].size else None for name in ("user_factors", "item_factors")]
            return cls(
                LocalParams(**meta["params"]), meta["algorithm"], matrices, weights, _unpack("similar", z), z["popularity"], meta["info"],
                *factors,
            )


def fit(
    interactions: pl.DataFrame,
    impressions: pl.DataFrame | None,
    as_of: datetime,
    params: LocalParams = LocalParams(),
    with_similar: bool = True,
) -> LocalModel:
    """The model for `params` on this data. `with_similar=False` skips the similar-items cosine
    (a third of a fit at 20,000 items) when only the recommendations will be scored."""
    matrices = build_matrices(interactions, impressions, params.history_half_life, params.weighting)
    model = fit_matrices(matrices, params, with_similar)
    model.popularity = time_decayed_popularity(interactions, matrices.items, as_of, params.popularity_half_life_days)
    return model


def fit_matrices(matrices: Matrices, params: LocalParams, with_similar: bool = True) -> LocalModel:
    """The weights for `params` on built matrices; popularity is left empty for the caller."""
    n_items = len(matrices.items)
    algorithm = params.resolved_algorithm(n_items)
    similar = cosine_top_k(matrices.positive, params.neighbours) if with_similar or algorithm == "item_knn" else _empty(n_items)
    user_factors = item_factors = None
    if algorithm in DENSE_ALGORITHMS:
        dropout = params.dropout if algorithm == "dlae" else 0.0
        weights = autoencoder(gram(matrices.positive), params.l2, dropout, zero_diagonal=algorithm == "ease", overwrite=True)
    elif algorithm == "als":
        weights = _empty(n_items)
        user_factors, item_factors = als(
            matrices.positive, params.factors, params.als_regularization, params.als_alpha, params.als_iterations, params.seed
        )
    elif algorithm == "item_knn":
        weights = similar
    else:  # popularity: every list comes from the popularity backfill
        weights = _empty(n_items)
    info = {"users": len(matrices.users), "items": n_items, "training_pairs": int(matrices.positive.nnz)}
    return LocalModel(params, algorithm, matrices, weights, similar, np.zeros(n_items), info, user_factors, item_factors)


def _empty(n_items: int) -> sp.csr_matrix:
    return sp.csr_matrix((n_items, n_items), dtype=np.float32)


def _top_n(scores: np.ndarray, n: int) -> np.ndarray:
    """Unordered top-n columns per row. Partitioning scores at width - n is ~2x faster than -scores
    at n - 1 on real score batches (distinct values); the order is set by the caller's sort."""
    width = scores.shape[1]
    n = min(n, width)
    return np.argpartition(scores, width - n, axis=1)[:, width - n :]


def _dense(x) -> np.ndarray:
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float32)


def _mask(scores: np.ndarray, matrix: sp.csr_matrix) -> None:
    coo = matrix.tocoo()
    scores[coo.row, coo.col] = -np.inf


def _pack(name: str, matrix: sp.spmatrix) -> dict[str, np.ndarray]:
    m = matrix.tocsr()
    return {f"{name}_data": m.data, f"{name}_indices": m.indices, f"{name}_indptr": m.indptr, f"{name}_shape": np.array(m.shape)}


def _unpack(name: str, z) -> sp.csr_matrix:
    return sp.csr_matrix((z[f"{name}_data"], z[f"{name}_indices"], z[f"{name}_indptr"]), shape=tuple(z[f"{name}_shape"]))
