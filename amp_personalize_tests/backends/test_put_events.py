"""PutEvents grouping and chunking on user/session structures that stress every limit."""

from datetime import datetime, timedelta, timezone

import orjson
import polars as pl

from amp_personalize.backends.personalize.put_events import (
    EVENTS_SCHEMA,
    minimum_calls,
    put_events_requests,
)

T0 = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)


def frame(rows: list[dict]) -> pl.DataFrame:
    base = {"session_id": None, "event_value": 1.0, "item_id": None, "items_shown": None, "recommendation_id": None, "properties": None}
    return pl.DataFrame([{**base, **r} for r in rows], schema=EVENTS_SCHEMA)


def click(i, user="u1", session=100, **extra):
    return {"event_id": f"e{i}", "user_id": user, "session_id": session, "event_type": "click", "item_id": f"d{i}", "event_time": T0 + timedelta(seconds=i), **extra}


def test_a_long_session_is_chunked_by_ten_in_time_order():
    requests = put_events_requests(frame([click(i) for i in range(23)]), "tid")
    assert [len(r["eventList"]) for r in requests] == [10, 10, 3]
    assert [e["eventId"] for r in requests for e in r["eventList"]] == [f"e{i}" for i in range(23)]  # time order, not e10 < e2
    assert {(r["userId"], r["sessionId"]) for r in requests} == {("u1", "100")}


def test_users_and_sessions_never_share_a_call_and_missing_sessions_get_a_stable_one():
    rows = [click(i, user=f"u{i % 3}", session=(None if i % 2 else 7)) for i in range(30)]
    requests = put_events_requests(frame(rows), "tid")
    assert len(requests) == minimum_calls(frame(rows))
    for r in requests:
        assert len(r["eventList"]) <= 10
    fallback = {r["sessionId"] for r in requests if r["sessionId"] != "7"}
    assert fallback == {"u0:2026-01-01", "u1:2026-01-01", "u2:2026-01-01"}
    again = put_events_requests(frame(rows), "tid")
    assert again == requests  # stable across re-runs: same calls, same ids


def test_long_impressions_long_properties_and_long_recommendation_ids_are_made_to_fit():
    shown = [f"item{k}" for k in range(60)]
    props = orjson.dumps({"item_id": "x", "itemId": "reserved", **{f"k{k}": "v" * 50 for k in range(40)}}).decode()
    rows = [
        {"event_id": "c1", "user_id": "u1", "session_id": 1, "event_type": "click", "event_value": 1.0, "item_id": "item7",
         "items_shown": shown, "event_time": T0, "properties": props, "recommendation_id": "r" * 41},
        # An impression with no item of its own is not an event Personalize can take.
        {"event_id": "imp", "user_id": "u1", "session_id": 1, "event_type": "initial_impression", "event_value": 0.3,
         "items_shown": shown, "event_time": T0, "properties": None, "recommendation_id": None},
    ]
    [request] = put_events_requests(frame(rows), "tid")
    [event] = request["eventList"]
    assert event["eventId"] == "c1" and event["itemId"] == "item7"
    assert event["impression"] == shown[:25]  # one interaction, never split into several
    assert len(event["properties"]) <= 1024
    kept = orjson.loads(event["properties"])
    assert "itemId" not in kept and "item_id" not in kept and kept
    assert "recommendationId" not in event


def test_an_impression_holds_only_ids():
    # Landed lists keep a null where an entry was not an id (positions stay true); Personalize takes ids.
    shown = [None if k % 3 == 1 else f"item{k}" for k in range(45)]  # 30 ids among 45 entries
    [request] = put_events_requests(frame([click(1, items_shown=shown), click(2, items_shown=[None, None])]), "tid")
    with_ids, without = request["eventList"]
    assert with_ids["impression"] == [i for i in shown if i is not None][:25]  # the first 25 ids, in order
    assert "impression" not in without  # nothing was shown


def test_calls_made_equal_the_minimum_on_generated_structure():
    rows = []
    for u in range(50):
        for s in range(u % 4 + 1):
            for k in range(u % 13 + 1):
                i = len(rows)
                extra = {"items_shown": [f"i{j}" for j in range((i % 40) + 1)]} if i % 5 == 0 else {}
                rows.append(click(i, user=f"user{u}", session=1000 + s, **extra))
    df = frame(rows)
    assert len(put_events_requests(df, "tid")) == minimum_calls(df)


def test_properties_put_events_refuses_are_dropped_in_any_letter_case():
    """One Amplitude event with a `timestamp` property must not be refused on every push run."""
    props = {"timestamp": 1, "SessionId": "s", "userid": "u", "EventType": "x", "recommendationID": "r", "Impression": "i",
             "feed_type": "popular", "position": 3}
    [request] = put_events_requests(frame([click(1, properties=orjson.dumps(props).decode())]), "tid")
    [event] = request["eventList"]
    assert orjson.loads(event["properties"]) == {"feed_type": "popular", "position": 3}
