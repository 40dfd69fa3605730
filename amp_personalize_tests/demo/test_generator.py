from collections import Counter, defaultdict

import pytest

from amp_personalize.demo.generator import (
    DAY_MS,
    DEFAULT_END_MS,
    generate_events,
    user_taste,
    write_ndjson_gz,
)
from amp_personalize.events import extract, load_weights
from amp_personalize.events.fields import event_time_ms

SIZE = {"n_users": 80, "n_items": 400, "days": 7, "seed": 3}
IMPRESSIONS = {"initial_impression", "scroll_impression"}


@pytest.fixture(scope="module")
def events() -> list[dict]:
    return generate_events(**SIZE)


def kind(event: dict) -> str:
    return event["event_type"].lower()


def unique(events: list[dict]) -> list[dict]:
    """Each event once, as the pipeline counts them after deduplication."""
    seen: dict[str, dict] = {}
    for event in events:
        seen.setdefault(event["uuid"], event)
    return list(seen.values())


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not(tmp_path):
    small = {"n_users": 30, "n_items": 200, "days": 3}
    first = write_ndjson_gz(generate_events(**small, seed=1), tmp_path / "a.ndjson.gz").read_bytes()
    again = write_ndjson_gz(generate_events(**small, seed=1), tmp_path / "b.ndjson.gz").read_bytes()
    other = write_ndjson_gz(generate_events(**small, seed=2), tmp_path / "c.ndjson.gz").read_bytes()
    assert first == again
    assert first != other


def test_every_event_is_an_object_the_receiver_accepts(events):
    for number, event in enumerate(events):
        assert isinstance(event, dict) and isinstance(event["event_type"], str) and event["event_type"]
        assert extract(event, f"events[{number}]")["kind"] == "event"


def test_every_weighted_type_and_the_non_ml_types_appear(events):
    types = {kind(e) for e in events}
    assert set(load_weights().weights) <= types
    assert {"session_start", "page_view", "search"} <= types


def test_events_lie_in_the_requested_window(events):
    times = [event_time_ms(e) for e in events]
    assert all(DEFAULT_END_MS - SIZE["days"] * DAY_MS <= t < DEFAULT_END_MS for t in times)


def test_retries_are_exact_copies_some_resent_much_later(events):
    positions: dict[str, list[int]] = defaultdict(list)
    for position, event in enumerate(events):
        positions[event["uuid"]].append(position)
    retried = [p for p in positions.values() if len(p) > 1]
    assert 0.01 < len(retried) / len(positions) < 0.06
    assert all(events[p[0]] == events[q] for p in retried for q in p[1:])
    assert all(events[p[0]]["$insert_id"] == events[p[-1]]["$insert_id"] for p in retried)
    assert sum(p[-1] - p[0] > 100 for p in retried) > len(retried) / 5


def test_a_few_events_arrive_hours_after_later_ones(events):
    latest, late = 0, 0
    for event in unique(events):
        t = event_time_ms(event)
        late += t < latest - 3_600_000
        latest = max(latest, t)
    assert 0.005 < late / len(events) < 0.05


def test_feeds_show_20_items_then_scrolls_of_5_to_10(events):
    feeds = [e for e in events if kind(e) in IMPRESSIONS and e["event_properties"]["items_shown"]]
    sizes = Counter((kind(e), len(e["event_properties"]["items_shown"])) for e in feeds)
    assert {size for impression, size in sizes if impression == "initial_impression"} == {20}
    assert {size for impression, size in sizes if impression == "scroll_impression"} <= set(range(5, 11))
    shown = [e["event_properties"] for e in feeds]
    assert {p["feed_type"] for p in shown} == {"popular", "latest", "following", "for_you"}
    assert all(("recommendation_id" in p) == (p["feed_type"] == "for_you") for p in shown)


def click_positions(events: list[dict]) -> list[int]:
    """Where each feed click sat in the initial impression it came from (clicks on scrolled items excluded)."""
    sessions: dict[tuple, list[dict]] = defaultdict(list)
    for event in unique(events):
        if event.get("user_id") and event["session_id"] > 0 and "time" in event:
            sessions[(event["user_id"], event["session_id"])].append(event)
    positions = []
    for session in sessions.values():
        last_shown: dict[str, tuple[str, int]] = {}
        for event in sorted(session, key=lambda e: e["time"]):
            props = event["event_properties"]
            if kind(event) in IMPRESSIONS:
                last_shown.update((item, (kind(event), i)) for i, item in enumerate(props["items_shown"]))
            elif kind(event) == "click" and props.get("item_id") in last_shown:
                impression, position = last_shown[props["item_id"]]
                if impression == "initial_impression":
                    positions.append(position)
    return positions


def test_clicks_favour_the_top_of_the_feed(events):
    positions = Counter(click_positions(events))
    top = sum(positions[p] for p in range(0, 5))
    bottom = sum(positions[p] for p in range(15, 20))
    assert bottom > 0 and top > 2 * bottom


def test_users_click_what_matches_their_taste(events):
    taste = user_taste(SIZE["seed"], SIZE["n_users"], SIZE["n_items"])
    shown = [(e["user_id"], item) for e in unique(events) if kind(e) in IMPRESSIONS and e.get("user_id")
             for item in e["event_properties"]["items_shown"]]
    clicks = [(e["user_id"], e["event_properties"]["item_id"]) for e in unique(events)
              if kind(e) == "click" and e.get("user_id") and "item_id" in e["event_properties"]]
    liked_shown = sum(taste.likes(u, i) for u, i in shown)
    liked_clicks = sum(taste.likes(u, i) for u, i in clicks)
    liked_rate = liked_clicks / liked_shown
    other_rate = (len(clicks) - liked_clicks) / (len(shown) - liked_shown)
    assert liked_rate > 3 * other_rate  # clicks per item shown


def test_negative_feedback_falls_mostly_on_items_outside_the_users_taste(events):
    taste = user_taste(SIZE["seed"], SIZE["n_users"], SIZE["n_items"])
    negative = [e for e in unique(events) if kind(e) in {"downvote", "hide", "flag"} and e.get("user_id")]
    assert sum(not taste.likes(e["user_id"], e["event_properties"]["item_id"]) for e in negative) > 0.8 * len(negative)


def test_malformed_events_are_present_but_rare(events):
    weighted = set(load_weights().weights)
    known = weighted | {"session_start", "page_view", "search"}
    broken = {
        "no user_id": [e for e in events if "user_id" not in e],
        "click without item": [e for e in events if kind(e) == "click" and "item_id" not in e["event_properties"]],
        "empty impression": [e for e in events if kind(e) in IMPRESSIONS and not e["event_properties"]["items_shown"]],
        "unknown type": [e for e in events if kind(e) not in known],
        "time only as a string": [e for e in events if "time" not in e],
    }
    assert all(broken.values()), {name: len(found) for name, found in broken.items()}
    assert all(event_time_ms(e) is not None for e in broken["time only as a string"])
    assert sum(map(len, broken.values())) < 0.005 * len(events)


def test_a_few_event_types_vary_in_case(events):
    variants = sum(e["event_type"] != e["event_type"].lower() for e in events)
    assert 0.003 < variants / len(events) < 0.03


def test_some_ids_are_not_ascii(events):
    users = {e.get("user_id") for e in events}
    items = {item for e in events for item in e["event_properties"].get("items_shown", [])}
    assert {"usuário_7", "研究者_42"} <= users
    assert "論文_12" in items or "пост_99" in items


def test_taste_is_one_or_two_topics_per_user():
    taste = user_taste(7, 50, 200)
    assert len(taste.user_topics) == 50 and len(taste.item_topic) == 200
    assert all(1 <= len(topics) <= 2 for topics in taste.user_topics.values())
    assert set(taste.item_type.values()) == {"paper", "post", "fundraiser"}


def test_each_event_comes_with_its_delivery_time_in_delivery_order(events):
    from amp_personalize.demo.generator import generate_deliveries

    deliveries = generate_deliveries(**SIZE)
    assert [event for _, event in deliveries] == events
    times = [when for when, _ in deliveries]
    assert times == sorted(times)
    assert all(when >= event_time_ms(event) for when, event in deliveries if "time" in event)
