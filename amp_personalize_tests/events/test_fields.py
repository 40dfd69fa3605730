import pytest

from amp_personalize.events import EventShapeError, extract
from amp_personalize.events.fields import dedupe_key, event_time_ms
from amp_personalize.events.windows import window_key, window_of, window_start_ms


def test_dedupe_key_prefers_uuid_then_insert_ids():
    assert dedupe_key({"uuid": "U", "$insert_id": "I", "insert_id": "J"}) == "U"
    assert dedupe_key({"$insert_id": "I", "insert_id": "J"}) == "I"
    assert dedupe_key({"insert_id": "J"}) == "J"


def test_dedupe_key_without_ids_is_stable_across_key_order():
    a = dedupe_key({"event_type": "click", "user_id": "1", "event_properties": {"item_id": "x", "b": 2}})
    b = dedupe_key({"event_properties": {"b": 2, "item_id": "x"}, "user_id": "1", "event_type": "click"})
    c = dedupe_key({"event_type": "click", "user_id": "2", "event_properties": {"item_id": "x", "b": 2}})
    assert a == b != c
    assert a.startswith("sha256:")


@pytest.mark.parametrize(
    "event, expected",
    [
        ({"time": 1700000000123}, 1700000000123),
        ({"time": 1700000000123.9}, 1700000000123),
        ({"event_time": "2023-11-14 22:13:20.123456"}, 1700000000123),
        ({"event_time": "2023-11-14T22:13:20"}, 1700000000000),
        ({"client_event_time": "2023-11-14 22:13:20.5"}, 1700000000500),
        ({"server_received_time": "2023-11-14 22:13:21"}, 1700000001000),
        ({"time": "soon", "event_time": "garbage", "client_event_time": "2023-11-14 22:13:20"}, 1700000000000),
        ({"time": True}, None),
        ({"time": 17e20}, None),  # not epoch ms
        ({"time": 1795727000}, None),  # epoch seconds: 1970-01-21 as ms
        ({"time": 1795727000, "event_time": "2026-11-26 18:03:20"}, 1795716200000),
        ({"event_time": "9999-12-31 23:59:59.999999"}, None),  # QA: year 10000 once rounded
        ({"event_time": "1970-01-01 00:00:00"}, None),
        ({}, None),
    ],
)
def test_event_time(event, expected):
    assert event_time_ms(event) == expected


def test_extract_reads_the_spec_fields():
    record = extract(
        {
            "event_type": "initial_impression",
            "user_id": 42,
            "device_id": "d",
            "session_id": -1,
            "uuid": "abc",
            "time": 1700000000000,
            "event_properties": {"items_shown": ["a", 7, None, {"x": 1}], "feed_type": "popular", "recommendation_id": "r1"},
        },
        "events[0]",
    )
    assert record["kind"] == "event"
    assert record["user_id"] == "42"
    assert record["session_id"] is None
    assert record["items_shown"] == ["a", "7", None, None]
    assert (record["feed_type"], record["recommendation_id"], record["event_id"]) == ("popular", "r1", "abc")


@pytest.mark.parametrize(
    "shown, landed",
    [
        # Each entry that is not an id lands as None in its place: "b" was shown third.
        (["a", None, "b"], ["a", None, "b"]),
        ([None, {"id": "x"}, "", True, ["y"], "c", 7, 2.5], [None, None, None, None, None, "c", "7", "2.5"]),
        ([None, "", {}, False], [None, None, None, None]),  # nothing shown, positions and all
        ([], None),
        ("a", None),  # not a list
    ],
)
def test_items_shown_keep_each_id_at_its_position(shown, landed):
    record = extract({"event_type": "initial_impression", "event_properties": {"items_shown": shown}}, "e")
    assert record["items_shown"] == landed


@pytest.mark.parametrize("value", [-1, 1.8446744073709552e19, 9.3e18, True, "123"])
def test_session_ids_that_are_not_session_start_times_are_dropped(value):
    # 1.8e19 came from the fuzzer: it once turned into an int too large to land (a 500).
    assert extract({"event_type": "click", "session_id": value}, "e")["session_id"] is None


def test_user_payloads_and_bad_elements():
    assert extract({"user_id": "u1", "user_properties": {}}, "x")["kind"] == "user"
    with pytest.raises(EventShapeError, match=r"events\[3\] is not an object \(got str\)"):
        extract("click", "events[3]")
    with pytest.raises(EventShapeError, match=r"events\[0\] has no event_type and no user_id or device_id"):
        extract({"time": 1}, "events[0]")
    with pytest.raises(EventShapeError, match=r"events\[1\].event_type must be a non-empty string"):
        extract({"event_type": 5, "user_id": "u"}, "events[1]")


def test_windows_align_to_utc_and_round_trip():
    ts = 1700000000123  # 2023-11-14 22:13:20 UTC
    assert window_key(window_of(ts, 60)) == "20231114T2200Z"
    assert window_key(window_of(ts, 15)) == "20231114T2200Z"
    assert window_key(window_of(ts, 5)) == "20231114T2210Z"
    assert window_start_ms("20231114T2210Z") == window_of(ts, 5)
