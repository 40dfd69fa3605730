"""Offline metrics as AWS Personalize defines them for solution versions, and its evaluation split.

The point is comparability: a local model scored here can be set beside the numbers
GetSolutionMetrics returns for a Personalize solution version, name for name. Definitions follow
"Evaluating an Amazon Personalize solution version with metrics"
(https://docs.aws.amazon.com/personalize/latest/dg/working-with-training-metrics.html):

- the split: 90% of users, picked at random, train with all their interactions; for each of the
  other 10% the oldest 90% of interactions are model input and the newest 10% are held out;
- coverage: unique recommended items from all queries / unique items in the interactions and
  items datasets (the caller passes that denominator as ``catalog``);
- mean_reciprocal_rank_at_25: mean over queries of 1/rank of the first relevant recommendation
  in the top 25 (0 when none is relevant);
- normalized_discounted_cumulative_gain_at_K: DCG with weight 1/log(1 + position), position 1 at
  the top, divided by the ideal DCG;
- precision_at_K: relevant recommendations in the top K divided by K (by K even when the user
  has fewer than K relevant items, so it cannot always reach 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

CUTOFFS: tuple[int, ...] = (5, 10, 25)
DEPTH = max(CUTOFFS)  # Personalize scores the top 25 of each query; nothing deeper counts.
MRR_CUTOFF = 25

METRIC_NAMES: tuple[str, ...] = (
    "coverage",
    f"mean_reciprocal_rank_at_{MRR_CUTOFF}",
    *(f"normalized_discounted_cumulative_gain_at_{k}" for k in CUTOFFS),
    *(f"precision_at_{k}" for k in CUTOFFS),
)

REQUIRED_COLUMNS = ("user_id", "item_id", "event_time")

# 1/log2(1 + position) for positions 1..DEPTH. Personalize writes 1/log(1 + position) without a
# base; NDCG is a ratio of two sums of the same weights, so the base cancels out.
_DISCOUNT = 1.0 / np.log2(np.arange(2, DEPTH + 2, dtype=np.float64))
# _IDEAL_DCG[n - 1]: the best DCG possible with n relevant items, all ranked first.
_IDEAL_DCG = np.cumsum(_DISCOUNT)


@dataclass(frozen=True)
class Split:
    """Personalize's evaluation split.

    ``train`` is what a model may learn from: every interaction of training users plus the older
    part of each test user's history (Personalize gives that part to the model as input; the local
    recommender learns from it directly). ``holdout`` is the newest part of each test user's
    history, the ground truth recommendations for ``test_users`` are scored against.
    """

    train: pl.DataFrame
    holdout: pl.DataFrame
    test_users: list[str]


def _half_up(x: float) -> int:
    """Round half up: round() sends 2.5 to 2 but 3.5 to 4; every .5 should go the same way."""
    return int(np.floor(x + 0.5))


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value}")


def _pick_test_users(users: pl.Series, seed: int, test_fraction: float) -> pl.Series:
    """Random users, reproducible for a seed whatever order the events arrived in (users are sorted first).

    The count is test_fraction of the users rounded half up, at least one and never all of them,
    so tiny datasets still get both a test set and a training set.
    """
    ordered = users.unique().sort()
    n_users = ordered.len()
    if n_users < 2:
        raise ValueError(f"need at least 2 users to split into training and testing users, got {n_users}")
    n_test = min(n_users - 1, max(1, _half_up(n_users * test_fraction)))
    picks = np.random.default_rng(seed).choice(n_users, size=n_test, replace=False)
    return ordered.gather(np.sort(picks))


def _holdout_size(n: pl.Expr, holdout_fraction: float) -> pl.Expr:
    """Newest share of a test user's history to hold out: rounded half up, at least 1, at most n - 1.

    Personalize only says "the newest 10%"; for 2-14 interactions that rounds to one held-out
    interaction. Keeping at least one interaction as input means a test user is never a cold user.
    """
    rounded = (n * holdout_fraction + 0.5).floor().cast(pl.Int64)  # half up, like _half_up
    return pl.min_horizontal(pl.max_horizontal(rounded, pl.lit(1)), n - 1)


def personalize_split(
    interactions: pl.DataFrame,
    seed: int = 42,
    test_fraction: float = 0.1,
    holdout_fraction: float = 0.1,
) -> Split:
    """Split interactions the way Personalize does before it scores a solution version.

    Test users are drawn from all users (Personalize: "randomly selecting 90% of users ... and the
    other 10% as testing data"). A drawn user with a single interaction has nothing to give as
    input and nothing to hold out at the same time, so they stay entirely in ``train`` and are not
    in ``test_users``; Personalize does not document this case. Events at the same instant are
    ordered by item_id so the boundary between input and holdout is deterministic.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in interactions.columns]
    if missing:
        raise ValueError(f"interactions lack column(s) {missing}")
    _check_fraction("test_fraction", test_fraction)
    _check_fraction("holdout_fraction", holdout_fraction)

    drawn = _pick_test_users(interactions["user_id"], seed, test_fraction)
    n = pl.len().over("user_id")
    position = pl.int_range(pl.len()).over("user_id")  # 0 = oldest, after the sort below
    is_holdout = pl.col("user_id").is_in(drawn.implode()) & (n >= 2) & (position >= n - _holdout_size(n, holdout_fraction))
    marked = interactions.sort("user_id", "event_time", "item_id", maintain_order=True).with_columns(
        is_holdout.alias("_holdout")
    )
    holdout = marked.filter(pl.col("_holdout")).drop("_holdout")
    train = marked.filter(~pl.col("_holdout")).drop("_holdout")
    return Split(train=train, holdout=holdout, test_users=holdout["user_id"].unique().sort().to_list())


def relevant_items(holdout: pl.DataFrame) -> dict[str, set[str]]:
    """Per test user, the items of their held-out interactions: Personalize's "relevant" set.

    A set, because relevance is binary in Personalize's metrics: interacting with an item twice
    in the holdout does not make recommending it count twice.
    """
    grouped = holdout.group_by("user_id").agg(pl.col("item_id").unique())
    return {user: set(items) for user, items in grouped.iter_rows()}


def _top(recs: Iterable[str], depth: int) -> list[str]:
    """First `depth` distinct items: a repeated item must not be credited twice (NDCG would exceed 1)."""
    out = list(dict.fromkeys(recs))
    return out[:depth]


def _queries(relevant: Mapping[str, set[str]]) -> list[str]:
    """Users Personalize would query: test users with at least one held-out item, in a stable order."""
    return sorted(user for user, items in relevant.items() if items)


def _hit_matrix(
    users: Sequence[str],
    recommended: Mapping[str, Sequence[str]],
    relevant: Mapping[str, set[str]],
) -> np.ndarray:
    """hits[u, p] is True when user u's recommendation at position p + 1 is relevant.

    A user with no recommendations gets an all-False row: returning nothing is scored as a miss.
    """
    hits = np.zeros((len(users), DEPTH), dtype=bool)
    for row, user in enumerate(users):
        wanted = relevant[user]
        recs = _top(recommended.get(user, ()), DEPTH)
        hits[row, : len(recs)] = [item in wanted for item in recs]
    return hits


def _reciprocal_rank(hits: np.ndarray, k: int) -> np.ndarray:
    top = hits[:, :k]
    first = top.argmax(axis=1)
    return np.where(top.any(axis=1), 1.0 / (first + 1), 0.0)


def ndcg(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """The ideal ranking puts min(k, |relevant|) relevant items first, so a user with one relevant
    item scores 1 when it is ranked first, whatever k is."""
    dcg = hits[:, :k] @ _DISCOUNT[:k]
    ideal = _IDEAL_DCG[np.minimum(n_relevant, k) - 1]
    return dcg / ideal


def _precision(hits: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].sum(axis=1) / k


def _coverage(users: Sequence[str], recommended: Mapping[str, Sequence[str]], catalog: int) -> float:
    if catalog <= 0:
        raise ValueError(f"catalog must be the positive number of unique items, got {catalog}")
    shown = {item for user in users for item in _top(recommended.get(user, ()), DEPTH)}
    return len(shown) / catalog


def offline_metrics(
    recommended: dict[str, list[str]],
    relevant: dict[str, set[str]],
    catalog: int,
) -> dict[str, float]:
    """All of METRIC_NAMES, averaged over queries as Personalize does.

    Queries are users with at least one relevant item; other users in ``recommended`` are
    ignored for every metric, coverage included (Personalize's coverage counts items "from all
    queries"). Only the top 25 distinct items of each list count. ``catalog`` is the number of
    unique items in the interactions and items datasets.
    """
    users = _queries(relevant)
    if not users:
        raise ValueError("no user has a relevant item: there is nothing to score")
    hits = _hit_matrix(users, recommended, relevant)
    n_relevant = np.fromiter((len(relevant[u]) for u in users), dtype=np.int64, count=len(users))

    metrics = {
        "coverage": _coverage(users, recommended, catalog),
        f"mean_reciprocal_rank_at_{MRR_CUTOFF}": float(_reciprocal_rank(hits, MRR_CUTOFF).mean()),
    }
    for k in CUTOFFS:
        metrics[f"normalized_discounted_cumulative_gain_at_{k}"] = float(ndcg(hits, n_relevant, k).mean())
    for k in CUTOFFS:
        metrics[f"precision_at_{k}"] = float(_precision(hits, k).mean())
    return {name: metrics[name] for name in METRIC_NAMES}
