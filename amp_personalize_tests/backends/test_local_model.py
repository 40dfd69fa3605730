"""The local recommender on tiny handcrafted data where the right answer is obvious."""

from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from amp_personalize.backends.local.model import LocalModel, LocalParams, fit

NOW = datetime(2026, 1, 10, tzinfo=timezone.utc)


def interactions(rows):
    """rows: (user, item, value[, days_ago])"""
    return pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "event_type": ["click" if r[2] > 0 else "flag" for r in rows],
            "event_value": [float(r[2]) for r in rows],
            "event_time": [NOW - timedelta(days=r[3] if len(r) > 3 else 1) for r in rows],
        }
    ).with_columns(pl.col("event_time").cast(pl.Datetime("ms", "UTC")))


# Two tastes: papers p1..p4 go together, posts q1..q4 go together. Everyone who read p1 and p2
# also read p3, and a few read p4; "alice" read p1 and p2 only, so p3 is her obvious next item.
TASTE = [
    *[(f"reader{i}", item, 1.0) for i in range(6) for item in ("p1", "p2", "p3")],
    *[(f"reader{i}", "p4", 1.0) for i in range(2)],
    *[(f"poster{i}", item, 1.0) for i in range(8) for item in ("q1", "q2", "q3", "q4")],
    ("alice", "p1", 1.0),
    ("alice", "p2", 2.0),
]


def top(model: LocalModel, user: str, n: int = 3) -> list[str]:
    return model.recommend([user], n)["item_id"].to_list()


@pytest.mark.parametrize("algorithm", ["ease", "dlae"])
def test_the_obvious_next_item_comes_first(algorithm):
    model = fit(interactions(TASTE), None, NOW, LocalParams(algorithm=algorithm))
    assert model.algorithm == algorithm
    assert top(model, "alice", 2) == ["p3", "p4"]
    assert model.recommend(["alice"], 2)["source"].to_list() == ["model", "model"]


def test_item_item_path_agrees_on_the_obvious_answer():
    model = fit(interactions(TASTE), None, NOW, LocalParams(algorithm="item_knn"))
    assert model.algorithm == "item_knn"
    assert top(model, "alice", 2) == ["p3", "p4"]


def test_above_the_dense_limit_a_factorization_agrees_on_the_obvious_answer():
    model = fit(interactions(TASTE), None, NOW, LocalParams(algorithm="dlae", ease_max_items=1, factors=4, als_iterations=30))
    assert model.algorithm == "als"
    assert top(model, "alice", 1) == ["p3"]


def test_seen_items_are_excluded_by_default_and_can_be_kept():
    assert not {"p1", "p2"} & set(top(fit(interactions(TASTE), None, NOW), "alice", 8))
    kept = fit(interactions(TASTE), None, NOW, LocalParams(exclude_seen=False))
    assert {"p1", "p2"} & set(top(kept, "alice", 8))


def test_a_flagged_item_is_never_recommended_and_pulls_its_neighbours_down():
    rows = TASTE + [("alice", "p3", -2.5)]  # alice flags the obvious next paper
    pulling = LocalParams(exclude_seen=False, negative_pull=0.5)
    model = fit(interactions(rows), None, NOW, pulling)
    recs = model.recommend(["alice"], 8)
    assert "p3" not in recs["item_id"].to_list()
    assert "p3" not in fit(interactions(rows), None, NOW, LocalParams()).recommend(["alice"], 8)["item_id"].to_list(), "a veto without the pull"
    plain = fit(interactions(TASTE), None, NOW, pulling).recommend(["alice"], 8)
    score = lambda df, item: df.filter(pl.col("item_id") == item)["score"][0]  # noqa: E731
    assert score(recs, "p4") < score(plain, "p4"), "p3's neighbour p4 should lose score after the flag"


def test_unclicked_impressions_nudge_but_never_outweigh_actions():
    shown = pl.DataFrame({"user_id": ["alice"] * 50, "item_id": ["p3"] * 50, "event_time": [NOW] * 50}).with_columns(
        pl.col("event_time").cast(pl.Datetime("ms", "UTC"))
    )
    nudging = LocalParams(impression_penalty=0.02)
    plain = fit(interactions(TASTE), None, NOW, nudging).recommend(["alice"], 2)
    nudged = fit(interactions(TASTE), shown, NOW, nudging).recommend(["alice"], 2)
    p3 = lambda df: df.filter(pl.col("item_id") == "p3")["score"][0]  # noqa: E731
    assert p3(nudged) < p3(plain)
    capped = nudging.impression_penalty * nudging.impression_cap  # 6% of the top score
    assert p3(plain) - p3(nudged) == pytest.approx(capped * p3(plain), rel=1e-3)
    assert nudged["item_id"].to_list()[0] == "p3", "50 impressions must not outweigh what the user did"


def test_unknown_users_get_time_decayed_popularity():
    rows = [(f"u{i}", "old_hit", 1.0, 20) for i in range(10)] + [(f"v{i}", "new_hit", 1.0, 1) for i in range(4)]
    model = fit(interactions(rows + [("w", "other", 1.0, 30)]), None, NOW)
    recs = model.recommend(["stranger"], 2)
    assert recs["item_id"].to_list() == ["new_hit", "old_hit"]  # 4 recent beat 10 from two months ago
    assert set(recs["source"]) == {"popularity"}


def test_short_lists_are_backfilled_with_popular_items():
    model = fit(interactions(TASTE), None, NOW)
    recs = model.recommend(["alice"], 6)  # only 2 unseen papers; the rest must be filled
    assert recs.height == 6 and recs["rank"].to_list() == [1, 2, 3, 4, 5, 6]
    assert recs["item_id"].n_unique() == 6
    assert recs["source"].to_list()[:2] == ["model", "model"]


def test_similar_items_and_a_save_load_round_trip(tmp_path):
    model = fit(interactions(TASTE), None, NOW)
    sim = model.similar_items(["p1"], 3)
    assert set(sim["similar_item_id"]) == {"p2", "p3", "p4"}
    assert (sim["item_id"] == "p1").all() and sim["score"].is_sorted(descending=True)
    model.save(tmp_path)
    again = LocalModel.load(tmp_path)
    assert again.recommend(["alice", "x"], 4).equals(model.recommend(["alice", "x"], 4))
    assert again.similar_items(None, 3).equals(model.similar_items(None, 3))
