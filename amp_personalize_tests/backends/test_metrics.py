"""Offline metrics and split, checked against Personalize's documented example and hand arithmetic.

Weights used below, w(p) = 1/log2(1 + p):
  w1 = 1, w2 = 0.630930, w3 = 0.5, w4 = 0.430677, w5 = 0.386853, w6 = 0.356207, w7 = 0.333333
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest

from amp_personalize.backends.metrics import (
    METRIC_NAMES,
    Split,
    offline_metrics,
    personalize_split,
    relevant_items,
)

NDCG = "normalized_discounted_cumulative_gain_at_{}"
MRR = "mean_reciprocal_rank_at_25"
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def filler(n: int, prefix: str = "nope") -> list[str]:
    """n recommendations nobody finds relevant."""
    return [f"{prefix}{i}" for i in range(n)]


# --- metric names -----------------------------------------------------------------------------


def test_metric_names_are_personalizes():
    assert METRIC_NAMES == (
        "coverage",
        "mean_reciprocal_rank_at_25",
        "normalized_discounted_cumulative_gain_at_5",
        "normalized_discounted_cumulative_gain_at_10",
        "normalized_discounted_cumulative_gain_at_25",
        "precision_at_5",
        "precision_at_10",
        "precision_at_25",
    )
    m = offline_metrics({"u": ["a"]}, {"u": {"a"}}, catalog=1)
    assert tuple(m) == METRIC_NAMES


# --- Personalize's worked example -------------------------------------------------------------


def test_personalize_documented_example():
    """The docs' example: the 2nd and 5th of a user's recommendations are in their testing data, K = 5.

    reciprocal_rank   = 1/2                                                   = 0.5000
    ndcg_at_5         = (1/log(1+2) + 1/log(1+5)) / (1/log(1+1) + 1/log(1+2)) = 0.6241
    precision_at_5    = 2/5                                                   = 0.4000
    The ideal DCG has two terms, so the user's testing data holds exactly those two items.
    """
    recommended = {"user": ["i1", "i2", "i3", "i4", "i5"]}
    relevant = {"user": {"i2", "i5"}}
    m = offline_metrics(recommended, relevant, catalog=10)

    assert round(m[NDCG.format(5)], 4) == 0.6241
    # the docs write log without a base: natural log gives the same ratio as log2
    by_the_docs = (1 / math.log(1 + 2) + 1 / math.log(1 + 5)) / (1 / math.log(1 + 1) + 1 / math.log(1 + 2))
    assert m[NDCG.format(5)] == pytest.approx(by_the_docs, abs=1e-12)
    assert m[MRR] == pytest.approx(0.5)
    assert m["precision_at_5"] == pytest.approx(0.4)
    # nothing below position 5, so deeper cutoffs keep the same DCG and ideal (min(K, 2) = 2 terms)
    assert m[NDCG.format(10)] == pytest.approx(by_the_docs)
    assert m[NDCG.format(25)] == pytest.approx(by_the_docs)
    # precision divides by K, not by the list length: 2/10 and 2/25
    assert m["precision_at_10"] == pytest.approx(0.2)
    assert m["precision_at_25"] == pytest.approx(0.08)
    # 5 distinct items recommended out of 10
    assert m["coverage"] == pytest.approx(0.5)


# --- perfect and worst ------------------------------------------------------------------------


def test_perfect_ranking_of_few_relevant_items():
    """3 relevant items ranked 1-3: NDCG = 1 at every K, MRR = 1, but precision is hits / K: 3/5, 3/10, 3/25."""
    recommended = {"u": ["x", "y", "z", *filler(22)]}
    m = offline_metrics(recommended, {"u": {"x", "y", "z"}}, catalog=25)
    for k in (5, 10, 25):
        assert m[NDCG.format(k)] == pytest.approx(1.0)
    assert m[MRR] == pytest.approx(1.0)
    assert m["precision_at_5"] == pytest.approx(0.6)
    assert m["precision_at_10"] == pytest.approx(0.3)
    assert m["precision_at_25"] == pytest.approx(0.12)
    assert m["coverage"] == pytest.approx(1.0)  # 25 distinct items of 25


def test_perfect_everything():
    """25 relevant items, all recommended in the top 25: every metric is 1."""
    items = [f"i{n}" for n in range(25)]
    m = offline_metrics({"u": items}, {"u": set(items)}, catalog=25)
    assert m == pytest.approx(dict.fromkeys(METRIC_NAMES, 1.0))


def test_worst_case_is_all_zero_except_coverage():
    """No relevant item in the top 25; the one at position 26 is beyond what Personalize scores."""
    recommended = {"u": [*filler(25), "hit"]}
    m = offline_metrics(recommended, {"u": {"hit"}}, catalog=100)
    for name in METRIC_NAMES[1:]:
        assert m[name] == 0.0, name
    assert m["coverage"] == pytest.approx(25 / 100)  # only the top 25 count as recommended


# --- NDCG details -----------------------------------------------------------------------------


def test_ndcg_ideal_uses_min_of_k_and_relevant_count():
    """One relevant item at position 3: DCG = w3 = 0.5, ideal = w1 = 1 (not w1+...+wK), so NDCG = 0.5 at every K."""
    m = offline_metrics({"u": ["a", "b", "hit", "c", "d"]}, {"u": {"hit"}}, catalog=5)
    for k in (5, 10, 25):
        assert m[NDCG.format(k)] == pytest.approx(0.5)
    assert m[MRR] == pytest.approx(1 / 3)


def test_ndcg_more_relevant_items_than_k():
    """7 relevant items, the first 5 recommendations are 5 of them, the rest miss.

    @5:  DCG = w1..w5 = 2.948459, ideal = w1..w5 (min(5, 7) = 5)       -> 1
    @10: DCG = 2.948459,          ideal = w1..w7 = 3.638000 (min(10, 7)) -> 0.810462
    """
    relevant = {f"r{n}" for n in range(7)}
    recommended = {"u": ["r0", "r1", "r2", "r3", "r4", *filler(20)]}
    m = offline_metrics(recommended, {"u": relevant}, catalog=100)
    assert m[NDCG.format(5)] == pytest.approx(1.0)
    assert m[NDCG.format(10)] == pytest.approx(0.8104616, abs=1e-6)
    assert m[NDCG.format(25)] == pytest.approx(0.8104616, abs=1e-6)
    assert m["precision_at_5"] == pytest.approx(1.0)
    assert m["precision_at_10"] == pytest.approx(0.5)


def test_ndcg_partial_hits():
    """Relevant {x, y, z}; x at 1, y at 3, z not recommended.

    DCG = w1 + w3 = 1.5; ideal = w1 + w2 + w3 = 2.130930; NDCG = 1.5 / 2.130930 = 0.703918
    """
    recommended = {"u": ["x", "n1", "y", "n2", "n3"]}
    m = offline_metrics(recommended, {"u": {"x", "y", "z"}}, catalog=10)
    assert m[NDCG.format(5)] == pytest.approx(1.5 / (1 + 1 / math.log2(3) + 0.5))
    assert m[NDCG.format(5)] == pytest.approx(0.703918, abs=1e-6)


# --- averaging over queries -------------------------------------------------------------------


def test_mrr_and_precision_average_over_users_with_relevant_items():
    """a: first hit at 1 -> 1; b: first hit at 4 -> 1/4; c: no hit -> 0.  MRR = 1.25 / 3 = 0.416667.

    precision_at_5: a hits at 1 and 2 -> 2/5; b one hit -> 1/5; c -> 0.  mean = 0.6 / 3 = 0.2.
    d has no relevant items and e is not in `relevant`: both are skipped.
    """
    recommended = {
        "a": ["a1", "a2", "x", "y", "z"],
        "b": ["x", "y", "z", "b1", "w"],
        "c": ["x", "y", "z", "w", "v"],
        "d": ["d1", "d2"],
        "e": ["e1"],
    }
    relevant = {"a": {"a1", "a2"}, "b": {"b1"}, "c": {"c1"}, "d": set()}
    m = offline_metrics(recommended, relevant, catalog=20)
    assert m[MRR] == pytest.approx(1.25 / 3)
    assert m["precision_at_5"] == pytest.approx(0.2)
    # coverage over the queries a, b, c only: {a1, a2, x, y, z, b1, w, v} = 8 of 20
    assert m["coverage"] == pytest.approx(8 / 20)


def test_user_without_recommendations_counts_as_a_miss():
    """a: perfect (1); b: relevant items but no recommendations (0).  Means: 0.5."""
    m = offline_metrics({"a": ["x"]}, {"a": {"x"}, "b": {"y"}}, catalog=2)
    assert m[MRR] == pytest.approx(0.5)
    assert m[NDCG.format(5)] == pytest.approx(0.5)
    assert m["precision_at_5"] == pytest.approx((1 / 5 + 0) / 2)


def test_repeated_recommendation_is_credited_once():
    """[x, x, y] with relevant {x}: x at 1 only; y at position 2 after de-duplication. precision_at_5 = 1/5."""
    m = offline_metrics({"u": ["x", "x", "y"]}, {"u": {"x"}}, catalog=4)
    assert m["precision_at_5"] == pytest.approx(0.2)
    assert m[NDCG.format(5)] == pytest.approx(1.0)
    assert m["coverage"] == pytest.approx(2 / 4)


def test_coverage_counts_unique_items_across_users():
    """a recommends i1 i2 i3, b recommends i2 i3 i4: 4 unique of 8."""
    recommended = {"a": ["i1", "i2", "i3"], "b": ["i2", "i3", "i4"]}
    m = offline_metrics(recommended, {"a": {"i1"}, "b": {"zz"}}, catalog=8)
    assert m["coverage"] == pytest.approx(0.5)


def test_no_users_to_score_and_bad_catalog_are_errors():
    with pytest.raises(ValueError, match="nothing to score"):
        offline_metrics({"a": ["x"]}, {"a": set()}, catalog=3)
    with pytest.raises(ValueError, match="catalog"):
        offline_metrics({"a": ["x"]}, {"a": {"x"}}, catalog=0)


def _reference(recommended: dict[str, list[str]], relevant: dict[str, set[str]], catalog: int) -> dict[str, float]:
    """Straight per-user loops over the written definitions, to check the vectorised version."""
    users = [u for u, items in relevant.items() if items]
    out: dict[str, list[float]] = {name: [] for name in METRIC_NAMES[1:]}
    shown: set[str] = set()
    for u in users:
        recs = list(dict.fromkeys(recommended.get(u, [])))[:25]
        shown.update(recs)
        rel = relevant[u]
        rr = next((1 / p for p, item in enumerate(recs, 1) if item in rel), 0.0)
        out[MRR].append(rr)
        for k in (5, 10, 25):
            dcg = sum(1 / math.log(1 + p) for p, item in enumerate(recs[:k], 1) if item in rel)
            ideal = sum(1 / math.log(1 + p) for p in range(1, min(k, len(rel)) + 1))
            out[NDCG.format(k)].append(dcg / ideal)
            out[f"precision_at_{k}"].append(sum(item in rel for item in recs[:k]) / k)
    return {"coverage": len(shown) / catalog, **{name: sum(v) / len(v) for name, v in out.items()}}


def test_vectorised_matches_reference_and_is_fast():
    rng = np.random.default_rng(7)
    catalog = 2_000
    items = np.array([f"item{n}" for n in range(catalog)])
    popular = rng.zipf(1.3, size=400_000) % catalog  # skewed, so popular items collide with holdouts
    recommended, relevant = {}, {}
    for n in range(5_000):
        user = f"user{n}"
        recommended[user] = items[rng.choice(catalog, size=25, replace=False)].tolist()
        relevant[user] = set(items[popular[n * 80 : n * 80 + int(rng.integers(0, 12))]].tolist())
    started = time.perf_counter()
    fast = offline_metrics(recommended, relevant, catalog)
    elapsed = time.perf_counter() - started
    assert fast == pytest.approx(_reference(recommended, relevant, catalog), rel=1e-12, abs=1e-12)
    assert elapsed < 1.0
    assert 0 < fast[NDCG.format(25)] < 1


# --- the split --------------------------------------------------------------------------------


def events(counts: dict[str, int]) -> pl.DataFrame:
    """counts[user] interactions per user, one minute apart; item k of a user is "{user}:item{k:03d}"."""
    rows = [
        {
            "event_id": f"{user}:{k}",
            "user_id": user,
            "item_id": f"{user}:item{k:03d}",
            "event_time": T0 + timedelta(minutes=k),
        }
        for user, n in counts.items()
        for k in range(n)
    ]
    schema = {
        "event_id": pl.String,
        "user_id": pl.String,
        "item_id": pl.String,
        "event_time": pl.Datetime("ms", "UTC"),
    }
    return pl.DataFrame(rows, schema=schema)


@pytest.fixture
def hundred_users() -> pl.DataFrame:
    return events({f"user{n:03d}": 20 for n in range(100)})


def test_split_90_10_users_newest_10_percent_held_out(hundred_users: pl.DataFrame):
    split = personalize_split(hundred_users, seed=42)
    assert isinstance(split, Split)
    assert len(split.test_users) == 10  # 10% of 100 users
    assert split.test_users == sorted(split.test_users)
    assert set(split.holdout["user_id"]) == set(split.test_users)
    # 20 interactions per test user: 10% = 2 newest held out, 18 older ones stay in train
    per_user = split.holdout.group_by("user_id").len()
    assert per_user["len"].to_list() == [2] * 10
    for user in split.test_users:
        kept = split.train.filter(pl.col("user_id") == user)
        held = split.holdout.filter(pl.col("user_id") == user)
        assert kept.height == 18
        assert kept["event_time"].max() < held["event_time"].min()
        assert sorted(held["item_id"]) == [f"{user}:item018", f"{user}:item019"]
    # training users keep everything
    training_users = set(hundred_users["user_id"]) - set(split.test_users)
    assert split.train.filter(pl.col("user_id").is_in(list(training_users))).height == 90 * 20


def test_split_partitions_rows_without_overlap(hundred_users: pl.DataFrame):
    split = personalize_split(hundred_users, seed=3)
    train_ids, holdout_ids = set(split.train["event_id"]), set(split.holdout["event_id"])
    assert not train_ids & holdout_ids
    assert train_ids | holdout_ids == set(hundred_users["event_id"])
    assert split.train.height + split.holdout.height == hundred_users.height
    assert split.train.columns == hundred_users.columns == split.holdout.columns


def test_split_is_deterministic_per_seed_and_ignores_row_order(hundred_users: pl.DataFrame):
    first = personalize_split(hundred_users, seed=42)
    again = personalize_split(hundred_users.sample(fraction=1.0, shuffle=True, seed=99), seed=42)
    assert again.test_users == first.test_users
    assert again.holdout.equals(first.holdout)
    assert again.train.equals(first.train)
    other = personalize_split(hundred_users, seed=43)
    assert other.test_users != first.test_users


@pytest.mark.parametrize(
    ("users", "fraction", "expected"),
    [(100, 0.1, 10), (95, 0.1, 10), (94, 0.1, 9), (10, 0.1, 1), (3, 0.1, 1), (2, 0.9, 1)],
)
def test_test_user_count_rounds_half_up_and_keeps_both_sides(users: int, fraction: float, expected: int):
    """9.5 -> 10, 9.4 -> 9, 0.3 -> at least 1, 1.8 -> at most users - 1."""
    split = personalize_split(events({f"u{n:03d}": 3 for n in range(users)}), test_fraction=fraction)
    assert len(split.test_users) == expected


def test_holdout_size_per_user_history_length():
    """Held out = newest round-half-up(10% of n), at least 1, for n >= 2:

    n=2 -> 0.2 -> 1;  n=5 -> 0.5 -> 1;  n=14 -> 1.4 -> 1;  n=15 -> 1.5 -> 2;  n=25 -> 2.5 -> 3;  n=40 -> 4.
    A drawn user with one interaction stays entirely in train and is not a test user.
    """
    expected = {1: 0, 2: 1, 5: 1, 14: 1, 15: 2, 25: 3, 40: 4}
    sizes = list(expected) * 10
    counts = {f"u{i:03d}": n for i, n in enumerate(sizes)}
    split = personalize_split(events(counts), seed=42, test_fraction=0.5)
    held = dict(split.holdout.group_by("user_id").len().iter_rows())
    assert {counts[u] for u in split.test_users} == set(expected) - {1}  # every size > 1 was drawn
    for user in split.test_users:
        assert held[user] == expected[counts[user]], counts[user]
    singles = {u for u, n in counts.items() if n == 1}
    assert not singles & set(split.test_users)
    assert singles <= set(split.train["user_id"])


def test_ties_at_the_boundary_break_by_item_id():
    """Both users: a at t0, then c and b at the same t1.  n = 3 -> 1 held out: (t1, "c") is the newest."""
    t1 = T0 + timedelta(minutes=1)
    frame = pl.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u2", "u2", "u2"],
            "item_id": ["a", "c", "b", "a", "b", "c"],
            "event_time": [T0, t1, t1, T0, t1, t1],
        }
    )
    split = personalize_split(frame, test_fraction=0.5)
    assert len(split.test_users) == 1
    assert split.holdout["item_id"].to_list() == ["c"]


def test_split_rejects_bad_input(hundred_users: pl.DataFrame):
    with pytest.raises(ValueError, match="test_fraction"):
        personalize_split(hundred_users, test_fraction=1.0)
    with pytest.raises(ValueError, match="holdout_fraction"):
        personalize_split(hundred_users, holdout_fraction=0.0)
    with pytest.raises(ValueError, match="event_time"):
        personalize_split(hundred_users.drop("event_time"))
    with pytest.raises(ValueError, match="at least 2 users"):
        personalize_split(events({"only": 5}))


def test_relevant_items_are_sets_per_user():
    holdout = pl.DataFrame({"user_id": ["a", "a", "a", "b"], "item_id": ["x", "y", "x", "z"]})
    assert relevant_items(holdout) == {"a": {"x", "y"}, "b": {"z"}}


def test_split_then_oracle_recommender_scores_one(hundred_users: pl.DataFrame):
    """Recommending exactly each test user's newest items (newest first) is a perfect ranking."""
    split = personalize_split(hundred_users)
    relevant = relevant_items(split.holdout)
    assert set(relevant) == set(split.test_users)
    recommended = {user: sorted(items, reverse=True) for user, items in relevant.items()}
    m = offline_metrics(recommended, relevant, catalog=hundred_users["item_id"].n_unique())
    assert m[MRR] == pytest.approx(1.0)
    for k in (5, 10, 25):
        assert m[NDCG.format(k)] == pytest.approx(1.0)
    assert m["precision_at_5"] == pytest.approx(2 / 5)
    assert m["coverage"] == pytest.approx(20 / 2000)  # 10 users x 2 items of 100 x 20
