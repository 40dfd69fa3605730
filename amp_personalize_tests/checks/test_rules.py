"""Each check fails on data made to break it, and passes on good data."""

from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from amp_personalize.checks.rules import (
    IMPRESSIONS,
    INTERACTIONS,
    RAW_EVENTS,
    USER_ITEM_SCORES,
    CheckContext,
    blocking_failures,
    evaluate,
)
from amp_personalize.events import load_weights
from amp_personalize.transforms.weights import weights_frame

NOW = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
CTX = CheckContext(weights=weights_frame(load_weights()), now=NOW)
T = NOW - timedelta(hours=1)


def interactions(**overrides):
    base = {
        "event_id": ["e1", "e2"], "user_id": ["u1", "u2"], "item_id": ["d1", "d2"],
        "event_type": ["click", "flag"], "event_value": [1.0, -2.5], "event_time": [T, T],
        "session_id": [None, None], "recommendation_id": [None, None],
    }
    base.update(overrides)
    return pl.DataFrame(base).with_columns(pl.col("event_time").cast(pl.Datetime("ms", "UTC")))


def impressions(**overrides):
    base = {
        "event_id": ["i1", "i1"], "user_id": ["u1", "u1"], "item_id": ["d1", "d2"], "position": [0, 1],
        "impression_type": ["initial_impression"] * 2, "feed_type": ["popular"] * 2,
        "event_time": [T, T], "event_value": [0.3, 0.3],
    }
    base.update(overrides)
    return pl.DataFrame(base).with_columns(pl.col("event_time").cast(pl.Datetime("ms", "UTC")))


def failed(checks, df):
    return {check.name for check, outcome in evaluate(checks, df, CTX) if not outcome.passed}


def test_good_data_passes_every_check():
    assert failed(INTERACTIONS, interactions()) == set()
    assert failed(IMPRESSIONS, impressions()) == set()


@pytest.mark.parametrize(
    "overrides, check",
    [
        ({"user_id": ["u1", None]}, "no_null_ids"),
        ({"item_id": ["", "d2"]}, "no_null_ids"),
        ({"event_id": ["e1", "e1"]}, "event_id_unique"),
        ({"event_value": [1.0, 7.5]}, "event_value_in_range"),
        ({"event_type": ["click", "teleport"]}, "event_types_known"),
        ({"event_type": ["click", "initial_impression"]}, "event_types_known"),
        ({"event_time": [T, NOW + timedelta(hours=2)]}, "no_future_timestamps"),
    ],
)
def test_interaction_checks_catch_bad_rows(overrides, check):
    assert failed(INTERACTIONS, interactions(**overrides)) == {check}


@pytest.mark.parametrize(
    "overrides, check",
    [
        ({"item_id": ["d1", None]}, "no_null_ids"),
        ({"position": [0, 0]}, "impression_unique"),
        ({"event_value": [0.3, -9.0]}, "event_value_in_range"),
        ({"impression_type": ["initial_impression", "click"]}, "impression_types_known"),
        ({"event_time": [T, NOW + timedelta(days=1)]}, "no_future_timestamps"),
    ],
)
def test_impression_checks_catch_bad_rows(overrides, check):
    assert failed(IMPRESSIONS, impressions(**overrides)) == {check}


def test_raw_events_and_scores_checks():
    raw = pl.DataFrame({"event_id": ["a", "a"], "kind": ["event", None], "event_time": [T, T]}).with_columns(
        pl.col("event_time").cast(pl.Datetime("ms", "UTC"))
    )
    assert failed(RAW_EVENTS, raw) == {"event_id_unique", "no_null_ids"}
    scores = pl.DataFrame({"user_id": ["u", "u", None], "item_id": ["d", "d", "x"]})
    assert failed(USER_ITEM_SCORES, scores) == {"no_null_ids", "pair_unique"}


def test_future_timestamps_warn_and_the_rest_block():
    results = evaluate(INTERACTIONS, interactions(event_time=[T, NOW + timedelta(hours=2)]), CTX)
    assert blocking_failures(results) == []
    results = evaluate(INTERACTIONS, interactions(user_id=[None, "u"]), CTX)
    assert blocking_failures(results) == ["no_null_ids"]


def test_a_time_past_year_9999_is_reported_not_a_crash():
    """QA: one landed 9999-12-31 string (year 10000 once rounded) failed its window's run here."""
    frame = interactions().with_columns(pl.Series("event_time", [253402300800000, 1]).cast(pl.Datetime("ms", "UTC")))
    [(check, outcome)] = [(c, o) for c, o in evaluate(INTERACTIONS, frame, CTX) if c.name == "no_future_timestamps"]
    assert not outcome.passed and outcome.metadata["rows_in_future"] == 1
    assert "+10000-01-01" in outcome.metadata["examples"]
