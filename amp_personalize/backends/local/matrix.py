"""From interaction rows to the sparse user x item matrices the models work on."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
import polars as pl
import scipy.sparse as sp


@dataclass
class Matrices:
    users: np.ndarray  # user ids (str), row order
    items: np.ndarray  # item ids (str), column order
    positive: sp.csr_matrix  # training signal: each pair's positive weight, as `weighting` says
    recency: sp.csr_matrix  # `positive` of each pair by how recent it is within the user, for scoring
    negative: sp.csr_matrix  # 1 where the user downvoted, hid or flagged the item
    shown: sp.csr_matrix  # times an item was shown to the user and never acted on
    # 1 + how many of the user's pairs are strictly newer, where `positive` has a value (same
    # layout): lets the selection try half-lives without rebuilding. Not saved with a model.
    newer: sp.csr_matrix | None = None


def _codes(frame: pl.DataFrame, column: str, ids: np.ndarray) -> np.ndarray:
    lookup = pl.DataFrame({column: ids, "code": np.arange(len(ids), dtype=np.int64)})
    return frame.select(column).join(lookup, on=column, how="left", maintain_order="left")["code"].to_numpy()


def _csr(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    keep = (rows >= 0) & (cols >= 0)
    return sp.csr_matrix((values[keep], (rows[keep], cols[keep])), shape=shape, dtype=np.float32)


# The first is the default: the weight table's values as they are (upvote 2, click 1), which is
# what an operator who set them expects. `log1p` was the default until MovieLens-1M: it had been
# read off MovieLens-100k's test split, and on MovieLens-1M's time split it cost 0.04x popularity
# (docs/recommender.md).
WEIGHTINGS = ("linear", "log1p", "binary")


def pair_weight(summed: np.ndarray, weighting: str) -> np.ndarray:
    """A (user, item) pair's training value from the sum of its positive event weights.

    Which works best depends on the data (an upvote may or may not say more than a click), so
    the model's selection chooses: `binary` ignores the weights, `linear` takes them as they
    are, `log1p` is between (many repeats of one event do not swamp a single strong one).
    """
    if weighting == "binary":
        return (summed > 0).astype(np.float64)
    if weighting == "linear":
        return summed
    if weighting == "log1p":
        return np.log1p(summed)
    raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")


def build_matrices(
    interactions: pl.DataFrame,
    impressions: pl.DataFrame | None = None,
    history_half_life: float = 0.0,
    weighting: str = WEIGHTINGS[0],
) -> Matrices:
    """Positive part for training; negatives and unclicked impressions kept apart for scoring.

    Training on the positive part only is what works for implicit-feedback models: a flag is
    not "less than a click" on the same axis, it is a veto, applied at scoring time.
    """
    # Integer codes and a numpy sort instead of a polars group_by on two string keys with a
    # filter inside the aggregation: same matrices, 2-3x faster at 5M interactions.
    users_s = interactions["user_id"].unique().sort()
    items_s = interactions["item_id"].unique().sort()
    users, items = users_s.to_numpy().astype(object), items_s.to_numpy().astype(object)
    shape = (len(users), len(items))
    codes = interactions.select(
        pl.col("user_id").cast(pl.Enum(users_s)).to_physical().cast(pl.Int64).alias("row"),
        pl.col("item_id").cast(pl.Enum(items_s)).to_physical().cast(pl.Int64).alias("col"),
        pl.col("event_value"),
        pl.col("event_time").dt.epoch("ms").alias("t"),
    )
    pair = codes["row"].to_numpy() * shape[1] + codes["col"].to_numpy()
    order = np.argsort(pair, kind="stable")
    pair = pair[order]
    starts = np.flatnonzero(np.diff(pair, prepend=-1))  # first event of each (user, item); codes are >= 0
    pair = pair[starts]
    rows, cols = pair // shape[1], (pair % shape[1]).astype(np.int32)
    value = codes["event_value"].to_numpy()[order]
    weight = pair_weight(np.add.reduceat(np.where(value > 0, value, 0.0), starts), weighting)
    disliked = np.logical_or.reduceat(value < 0, starts)
    last_time = np.maximum.reduceat(codes["t"].to_numpy()[order], starts)
    indptr = np.r_[0, np.cumsum(np.bincount(rows, minlength=shape[0]))]  # pairs are sorted by (row, col)

    def csr(values: np.ndarray) -> sp.csr_matrix:
        matrix = sp.csr_matrix((values.astype(np.float32), cols.copy(), indptr.copy()), shape=shape)  # eliminate_zeros works in place
        matrix.eliminate_zeros()
        return matrix

    positive = csr(weight)
    # What a user did last can say most about what they want next: at scoring time each pair's
    # weight halves every `history_half_life` newer items of the same user (0 turns this off).
    # Pairs at the same instant get the same rank (the number of strictly newer pairs): their
    # order is unknown, and ranking ties by item id would let an arbitrary order leak in.
    newest_first = np.argsort(-last_time, kind="stable")
    newest_first = newest_first[np.argsort(rows[newest_first], kind="stable")]
    sorted_rows, sorted_time = rows[newest_first], last_time[newest_first]
    position = np.arange(len(rows))
    new_instant = np.r_[True, (sorted_rows[1:] != sorted_rows[:-1]) | (sorted_time[1:] != sorted_time[:-1])]
    first_of_instant = np.maximum.accumulate(np.where(new_instant, position, 0))
    recency_rank = np.empty(len(rows), dtype=np.int64)
    recency_rank[newest_first] = first_of_instant - indptr[sorted_rows]
    newer = csr((recency_rank + 1) * (weight > 0))
    negative = csr(disliked)
    shown = sp.csr_matrix(shape, dtype=np.float32)
    if impressions is not None and impressions.height:
        counts = impressions.group_by("user_id", "item_id").len()
        counts = counts.join(interactions.select("user_id", "item_id").unique(), on=["user_id", "item_id"], how="anti")
        shown = _csr(_codes(counts, "user_id", users), _codes(counts, "item_id", items), counts["len"].to_numpy().astype(np.float32), shape)
    matrices = Matrices(users, items, positive, positive, negative, shown, newer)
    return replace(matrices, recency=recency_weighted(matrices, history_half_life))


def recency_weighted(matrices: Matrices, half_life: float) -> sp.csr_matrix:
    """`positive` with each pair halved every `half_life` newer pairs of its user (0: unchanged)."""
    recency = matrices.positive.copy()
    if half_life > 0:
        recency.data *= (0.5 ** ((matrices.newer.data - 1) / half_life)).astype(np.float32)
    return recency


def time_decayed_popularity(interactions: pl.DataFrame, items: np.ndarray, as_of: datetime, half_life_days: float) -> np.ndarray:
    """Positive weight per item, each event's weight halved every half_life_days of age."""
    age_days = (pl.lit(as_of) - pl.col("event_time")).dt.total_seconds() / 86_400
    per_item = (
        interactions.filter(pl.col("event_value") > 0)
        .group_by("item_id")
        .agg((pl.col("event_value") * (0.5 ** (age_days.clip(0) / half_life_days))).sum().alias("score"))
    )
    lookup = pl.DataFrame({"item_id": items}).join(per_item, on="item_id", how="left", maintain_order="left")
    return lookup["score"].fill_null(0.0).to_numpy().astype(np.float64)
