"""What the product reads from one Amplitude event (SPEC section 3), in one place.

The receiver extracts these once, at the door, and lands them beside the raw event, so the
pipeline reads typed top-level columns instead of re-parsing every event's JSON.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import orjson

# The first of these present names the event for deduplication; Amplitude resends the same
# uuid/insert_id on each of its up to 10 retries.
DEDUPE_FIELDS = ("uuid", "$insert_id", "insert_id")
# Used in this order when the epoch-ms `time` is absent.
TIME_STRING_FIELDS = ("event_time", "client_event_time", "server_received_time")
# An event time outside [1973-03-03, 5138) is a unit mistake (seconds, microseconds) or a
# placeholder ("9999-12-31", "1970-01-01"), not a time: the receive time stands in for it.
# Epoch seconds of any real date are below the lower bound; past the upper one a datetime
# overflows where a check shows examples (year 10000 failed a whole window).
MIN_EPOCH_MS = 10**11
MAX_EPOCH_MS = 10**14
# orjson parses 1024 levels of objects and lists but serializes only 254, and a landed line wraps
# the event in one more object: an event may be this deep, itself included. A test pins it.
MAX_EVENT_DEPTH = 253


class EventShapeError(ValueError):
    """An element of a request that cannot be an event or a user payload."""


def nested_too_deeply(where: str) -> EventShapeError:
    return EventShapeError(
        f"{where} is nested too deeply: at most {MAX_EVENT_DEPTH} levels of objects and lists, the event itself included"
    )


def _plausible(ms: float) -> bool:
    return MIN_EPOCH_MS <= ms < MAX_EPOCH_MS


def _id(value: object) -> str | None:
    """Ids arrive as strings or numbers; anything else (null, objects, empty) means 'absent'."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return str(value)


def dedupe_key(event: dict) -> str:
    for name in DEDUPE_FIELDS:
        key = _id(event.get(name))
        if key is not None:
            return key
    canonical = orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
    return "sha256:" + hashlib.sha256(canonical).hexdigest()[:32]


def _time_string_ms(value: object) -> int | None:
    if not isinstance(value, str) or len(value) < 19:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    ms = parsed.timestamp() * 1000
    return int(ms) if _plausible(ms) else None


def event_time_ms(event: dict) -> int | None:
    """Event time in epoch ms, or None when the event carries none (the receive time is used)."""
    raw = event.get("time")
    if not isinstance(raw, bool) and isinstance(raw, (int, float)) and _plausible(raw):
        return int(raw)
    for name in TIME_STRING_FIELDS:
        parsed = _time_string_ms(event.get(name))
        if parsed is not None:
            return parsed
    return None


def _session_id(value: object) -> int | None:
    # Amplitude sends -1 for "no session"; past int64 it is not a session start time either.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 2**63:
        return None
    return int(value)


def _items(value: object) -> list[str | None] | None:
    """The ids shown, in order, with None in place of each entry that is not an id.

    The None keeps every id at its index in the list as sent: that index is its position in
    what the user was shown. Consumers treat only the ids as items (a list of only Nones is
    nothing shown). An empty list, or no list, is None.
    """
    if not isinstance(value, list):
        return None
    return [_id(item) for item in value] or None


def extract(obj: object, where: str) -> dict:
    """The landed record of one request element, or EventShapeError saying what is wrong and where.

    An element is an event (it has `event_type`) or a user payload (Amplitude's "Send Users":
    a user or device id, no event type). Users are landed and counted as skipped.
    """
    if not isinstance(obj, dict):
        raise EventShapeError(f"{where} is not an object (got {type(obj).__name__})")
    event_type = obj.get("event_type")
    user_id = _id(obj.get("user_id"))
    device_id = _id(obj.get("device_id"))
    if event_type is None:
        if user_id is None and device_id is None:
            raise EventShapeError(f"{where} has no event_type and no user_id or device_id")
        kind = "user"
    elif not isinstance(event_type, str) or not event_type.strip():
        raise EventShapeError(f"{where}.event_type must be a non-empty string (got {event_type!r:.60})")
    else:
        kind = "event"
    props = obj.get("event_properties")
    if not isinstance(props, dict):
        props = {}
    try:  # serializing is the only thing here that can fail, and only past orjson's depth limit
        event_id = dedupe_key(obj)
        properties = orjson.dumps(props).decode() if props else None
    except orjson.JSONEncodeError:
        raise nested_too_deeply(where) from None
    return {
        "kind": kind,
        "event_id": event_id,
        "event_type": event_type,
        "user_id": user_id,
        "device_id": device_id,
        "session_id": _session_id(obj.get("session_id")),
        "event_time": event_time_ms(obj),
        "item_id": _id(props.get("item_id")),
        "items_shown": _items(props.get("items_shown")),
        "feed_type": _id(props.get("feed_type")),
        "recommendation_id": _id(props.get("recommendation_id")),
        # As JSON text, so the lake can keep every property without re-parsing the raw event.
        "properties": properties,
        "event": obj,
    }

