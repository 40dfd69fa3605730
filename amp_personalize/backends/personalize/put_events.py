"""PutEvents requests from weighted events: grouped, chunked and trimmed to what the API takes.

PutEvents takes up to 10 events for one user and one session per call, each an interaction
with an item (impression-only events ride on the interaction that follows them, see
`impressions.attach_impressions`), impressions of 1 to 25 items, `properties` JSON of at most
1,024 characters and a `recommendationId` of at most 40.
botocore checks none of that, so it is done here, and every request then passes `validate`.
"""

from __future__ import annotations

import orjson
import polars as pl

from amp_personalize.backends.personalize.ids import fit_id
from amp_personalize.backends.personalize.validation import validate
from amp_personalize.transforms import UTC_MS

MAX_EVENTS_PER_CALL = 10
MAX_IMPRESSION = 25
MAX_PROPERTIES = 1024
MAX_RECOMMENDATION_ID = 40
# Keys PutEvents refuses in `properties`, in any letter case (its API reference lists userId,
# sessionId, eventType, timestamp, recommendationId and impression), plus the event's own
# fields: one Amplitude event with a `timestamp` property would otherwise be refused again on
# every push run, and hold its segments back with it.
RESERVED_PROPERTIES = frozenset(k.lower() for k in (
    "userId", "sessionId", "eventType", "timestamp", "recommendationId", "impression",
    "itemId", "eventValue", "sentAt", "eventId", "item_id", "items_shown", "recommendation_id",
))

# What the builder reads: raw_events rows joined to their weight (see transforms.interactions).
EVENTS_SCHEMA = {
    "event_id": pl.String(),
    "user_id": pl.String(),
    "session_id": pl.Int64(),
    "event_type": pl.String(),
    "event_value": pl.Float64(),
    "item_id": pl.String(),
    "items_shown": pl.List(pl.String()),
    "event_time": UTC_MS,
    "recommendation_id": pl.String(),
    "properties": pl.String(),
}


def _properties(raw: str | None) -> str | None:
    """The event's properties minus reserved keys, dropping keys from the end until it fits."""
    if not raw:
        return None
    try:
        props = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(props, dict):
        return None
    kept = {k: v for k, v in props.items() if k.lower() not in RESERVED_PROPERTIES}
    while kept:
        text = orjson.dumps(kept).decode()
        if len(text) <= MAX_PROPERTIES:
            return text
        kept.pop(next(reversed(kept)))
    return None


def session_keys(events: pl.DataFrame) -> pl.Expr:
    """Amplitude's session_id, or a stable per-user-per-day session when it has none (-1)."""
    return (
        pl.when(pl.col("session_id").is_not_null())
        .then(pl.col("session_id").cast(pl.String))
        .otherwise(pl.col("user_id") + pl.lit(":") + pl.col("event_time").dt.strftime("%Y-%m-%d"))
    )


def _api_event(row: dict) -> dict:
    """One PutEvents event per interaction; the impression is the first 25 items it was shown with."""
    event = {
        "eventId": fit_id(row["event_id"]),
        "eventType": row["event_type"],
        "sentAt": row["event_time"],
        "itemId": fit_id(row["item_id"]),
    }
    if row["event_value"] is not None:
        event["eventValue"] = row["event_value"]
    rec = row["recommendation_id"]
    if rec and len(rec) <= MAX_RECOMMENDATION_ID:
        event["recommendationId"] = rec
    props = _properties(row["properties"])
    if props:
        event["properties"] = props
    shown = [fit_id(i) for i in (row["items_shown"] or []) if i is not None][:MAX_IMPRESSION]
    if shown:
        event["impression"] = shown
    return event


def put_events_requests(events: pl.DataFrame, tracking_id: str) -> list[dict]:
    """Requests for every event, as few as the user/session structure allows, in time order."""
    ordered = (
        events.filter(pl.col("user_id").is_not_null(), pl.col("item_id").is_not_null())
        .with_columns(session_keys(events).alias("session_key"))
        .sort("user_id", "session_key", "event_time", "event_id")
    )
    requests: list[dict] = []
    for (user_id, session), group in ordered.group_by("user_id", "session_key", maintain_order=True):
        api_events = [_api_event(row) for row in group.iter_rows(named=True)]
        for start in range(0, len(api_events), MAX_EVENTS_PER_CALL):
            request = {
                "trackingId": tracking_id,
                "userId": fit_id(user_id),
                "sessionId": fit_id(session),
                "eventList": api_events[start : start + MAX_EVENTS_PER_CALL],
            }
            validate("personalize-events", "PutEvents", request)
            requests.append(request)
    return requests


def minimum_calls(events: pl.DataFrame) -> int:
    """The fewest PutEvents calls any client could make for these events: the efficiency bar."""
    counts = (
        events.filter(pl.col("user_id").is_not_null(), pl.col("item_id").is_not_null())
        .group_by("user_id", session_keys(events).alias("session_key"))
        .len()
    )
    return int(((counts["len"] + MAX_EVENTS_PER_CALL - 1) // MAX_EVENTS_PER_CALL).sum())
