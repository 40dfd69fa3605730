"""personalize_events and its sensor: sealed segments to PutEvents once each, impressions
attached, a refused event set aside (a run of nothing but refusals failing), and an acknowledged event reaching PutEvents
within the freshness target with default settings."""

import time
from datetime import datetime, timezone

import dagster as dg
import httpx
import pytest

from amp_personalize.assets.personalize_events import personalize_events
from amp_personalize.backends.personalize.ids import fit_id
from amp_personalize.backends.personalize.ledger import Ledger
from amp_personalize.backends.personalize.realtime import push_frame
from amp_personalize.events import load_weights
from amp_personalize.events.windows import window_key, window_of, window_start_ms
from amp_personalize.landing.segments import sealed_segments
from amp_personalize.receiver import create_app
from amp_personalize.resources import AmpResource
from amp_personalize.sensors.personalize_sensor import personalize_events_sensor
from amp_personalize.settings import Settings
from amp_personalize.transforms.landing import read_landing
from amp_personalize.transforms.raw_events import raw_events
from amp_personalize.transforms.weights import weights_frame
from amp_personalize_tests.backends.personalize_fakes import (
    DATASET,
    DATASET_GROUP,
    Service,
    fake_resource,
    make_clients,
)
from amp_personalize_tests.conftest import LiveReceiver
from amp_personalize_tests.landing_fixture import write_segment

NOW_MS = int(time.time() * 1000)
WINDOW = window_key(window_of(NOW_MS, 60))
SHOWN = [f"d{k}" for k in range(30)]


def ev(uuid, kind, user, n, session=5, **props):
    return {"uuid": uuid, "event_type": kind, "user_id": user, "session_id": session, "time": NOW_MS - 60_000 + n * 1000, "event_properties": props}


def resources(data_dir, clients):
    return {"amp": AmpResource(data_dir=str(data_dir), backend="personalize"), "personalize": fake_resource(clients, key=str(data_dir))}


def put_events_service(clients, refuse: set[str] = frozenset()):
    def answer(params):
        bad = [e["eventId"] for e in params["eventList"] if e["eventId"] in refuse]
        if bad:
            return 400, {"__type": "InvalidInputException", "message": f"invalid item for event {bad[0]}"}
        return {}

    return Service(clients.events, "PutEvents", answer)


def sensor_tick(instance, resources):
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        return personalize_events_sensor(context)


def sent_ids(service) -> list[str]:
    return [e["eventId"] for r in service.requests for e in r["eventList"]]


def test_each_landed_interaction_reaches_put_events_once_with_its_impression(tmp_path):
    write_segment(tmp_path, WINDOW, [
        ev("imp-1", "initial_impression", "u1", 0, items_shown=SHOWN, feed_type="popular"),
        ev("click-1", "click", "u1", 1, item_id="d2"),
        ev("down-1", "downvote", "u1", 2, item_id="d9"),
        ev("view-1", "page_view", "u2", 3),
        ev("up-1", "upvote", "u2", 4, session=-1, item_id="d5"),
    ], name="0000000000001-r1-000001")
    # Amplitude re-delivered click-1; it landed again in another segment.
    write_segment(tmp_path, WINDOW, [ev("click-1", "click", "u1", 1, item_id="d2"), ev("share-1", "share", "u3", 5, item_id="d7")],
                  name="0000000000002-r1-000002")
    clients = make_clients()
    service = put_events_service(clients)
    result = dg.materialize([personalize_events], resources=resources(tmp_path, clients))
    assert result.success
    assert sorted(sent_ids(service)) == ["click-1", "down-1", "share-1", "up-1"]
    events = {e["eventId"]: (r, e) for r in service.requests for e in r["eventList"]}
    request, click = events["click-1"]
    assert click["impression"] == SHOWN[:25] and click["itemId"] == "d2" and click["eventType"] == "click"
    assert request["trackingId"] == "tracking-1" and request["userId"] == "u1" and request["sessionId"] == "5"
    assert events["down-1"][1]["eventValue"] == -1.0  # pushed: the exclusion filter reads it
    assert events["up-1"][0]["sessionId"] == "u2:" + datetime.fromtimestamp(NOW_MS / 1000 - 56, timezone.utc).strftime("%Y-%m-%d")
    meta = result.asset_materializations_for_node("personalize_events")[0].metadata
    assert meta["events"].value == 4 and meta["segments"].value == 2 and meta["impression_only_events_not_sent"].value == 1
    # The fixture stamps receipt a few seconds into the window: the lag is the time since then.
    assert meta["ack_to_push_p95_s"].value == pytest.approx(time.time() - window_start_ms(WINDOW) / 1000, abs=30)

    # A re-run finds nothing pending; a new segment re-delivering share-1 sends only what is new.
    assert dg.materialize([personalize_events], resources=resources(tmp_path, clients)).success
    assert sorted(sent_ids(service)) == ["click-1", "down-1", "share-1", "up-1"]
    write_segment(tmp_path, WINDOW, [ev("share-1", "share", "u3", 5, item_id="d7"), ev("click-2", "click", "u3", 6, item_id="d8")],
                  name="0000000000003-r1-000003")
    assert dg.materialize([personalize_events], resources=resources(tmp_path, clients)).success
    assert sorted(sent_ids(service)) == ["click-1", "click-2", "down-1", "share-1", "up-1"]


def test_a_click_pushed_by_a_later_run_still_carries_the_feed_shown_before_it(tmp_path):
    write_segment(tmp_path, WINDOW, [ev("imp-1", "scroll_impression", "u1", 0, items_shown=["d1", "d2"])], name="0000000000001-r1-000001")
    clients = make_clients()
    service = put_events_service(clients)
    assert dg.materialize([personalize_events], resources=resources(tmp_path, clients)).success
    assert service.requests == []  # nothing to send yet: an impression has no item of its own
    write_segment(tmp_path, WINDOW, [ev("click-1", "click", "u1", 9, item_id="d2")], name="0000000000002-r1-000002")
    assert dg.materialize([personalize_events], resources=resources(tmp_path, clients)).success
    [[click]] = [r["eventList"] for r in service.requests]
    assert click["eventId"] == "click-1" and click["impression"] == ["d1", "d2"]


def test_pushed_impressions_hold_the_ids_shown_and_nothing_else(tmp_path):
    """Landed lists keep a null where an entry was not an id; PutEvents gets only the ids."""
    write_segment(tmp_path, WINDOW, [
        ev("imp-1", "initial_impression", "u1", 0, items_shown=["d1", None, {"id": "d9"}, "", "d2"]),
        ev("imp-2", "scroll_impression", "u1", 1, items_shown=[None, ""]),  # no ids: not the feed before click-1
        ev("click-1", "click", "u1", 2, item_id="d2"),
        ev("click-2", "click", "u1", 3, item_id="d1", items_shown=[None]),  # its own list shows no ids either
    ], name="0000000000001-r1-000001")
    # What the run remembers for later clicks: the one feed that showed ids, and only its ids.
    raw, _ = raw_events(read_landing(sealed_segments(tmp_path / "landing", WINDOW))[0])
    _, shown = push_frame(raw, weights_frame(load_weights()))
    assert shown.select("user_id", "items_shown").rows() == [("u1", ["d1", "d2"])]
    clients = make_clients()
    service = put_events_service(clients)
    assert dg.materialize([personalize_events], resources=resources(tmp_path, clients)).success
    # A later run attaches the feed the ledger remembered: ids only there too.
    write_segment(tmp_path, WINDOW, [ev("click-3", "click", "u1", 9, item_id="d1")], name="0000000000002-r1-000002")
    assert dg.materialize([personalize_events], resources=resources(tmp_path, clients)).success
    events = {e["eventId"]: e for r in service.requests for e in r["eventList"]}
    assert sorted(events) == ["click-1", "click-2", "click-3"]
    assert [events[e]["impression"] for e in sorted(events)] == [["d1", "d2"]] * 3


def test_a_refused_event_is_set_aside_and_named_while_the_rest_reach_put_events(tmp_path):
    write_segment(tmp_path, WINDOW, [
        ev("ok-1", "click", "u1", 1, item_id="d1"),
        ev("bad-1", "click", "u2", 2, item_id="d2"),
        ev("ok-2", "upvote", "u2", 3, item_id="d3"),  # same user and session as bad-1: one call
    ])
    clients = make_clients()
    service = put_events_service(clients, refuse={"bad-1"})
    result = dg.materialize([personalize_events], resources=resources(tmp_path, clients))
    assert result.success
    ledger = Ledger(tmp_path / "personalize" / "ledger.sqlite")
    assert ledger.count() == 2 and set(ledger.refused()) == {"bad-1"}
    assert len(ledger.done_segments()) == 1  # nothing of it is left for the next run to retry
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    refused = checks["every_event_accepted"]
    assert not refused.passed and refused.severity == dg.AssetCheckSeverity.WARN
    assert refused.metadata["first_refused"].value == {"bad-1": "InvalidInputException: invalid item for event bad-1"}
    # Amplitude delivers bad-1 again in a later segment: it is not sent again.
    write_segment(tmp_path, WINDOW, [ev("bad-1", "click", "u2", 2, item_id="d2")], name="0000000000009-r1-000009")
    calls = len(service.requests)
    assert dg.materialize([personalize_events], resources=resources(tmp_path, clients)).success
    assert len(service.requests) == calls


def test_a_run_whose_every_event_is_refused_fails_and_leaves_its_segments_pending(tmp_path):
    write_segment(tmp_path, WINDOW, [ev(f"e{i}", "click", f"u{i}", i % 50, item_id="d1") for i in range(30)])
    clients = make_clients()
    put_events_service(clients, refuse={f"e{i}" for i in range(30)})
    result = dg.materialize([personalize_events], resources=resources(tmp_path, clients), raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0].event_specific_data.user_failure_data.description
    assert "refused the last 20 events in a row" in failure and "check the tracking id" in failure
    ledger = Ledger(tmp_path / "personalize" / "ledger.sqlite")
    assert ledger.done_segments() == set() and ledger.refused() == {}
    fixed = put_events_service(clients_fixed := make_clients())
    assert dg.materialize([personalize_events], resources=resources(tmp_path, clients_fixed)).success
    assert sorted(sent_ids(fixed)) == sorted(f"e{i}" for i in range(30))


def test_the_lag_check_warns_about_events_pushed_long_after_their_acknowledgment(tmp_path):
    nothing = dg.materialize([personalize_events], resources=resources(tmp_path, make_clients()))
    assert {c.check_name: c.passed for c in nothing.get_asset_check_evaluations()} == {
        "every_event_accepted": True, "pushed_within_two_minutes": True,  # nothing pending, nothing late
    }
    # Received two hours ago (the push was down meanwhile): pushed now, far past the target.
    write_segment(tmp_path, window_key(window_of(NOW_MS - 2 * 3_600_000, 60)), [ev("old-1", "click", "u1", 1, item_id="d1")])
    clients = make_clients()
    put_events_service(clients)
    late = dg.materialize([personalize_events], resources=resources(tmp_path, clients))
    lag = {c.check_name: c for c in late.get_asset_check_evaluations()}["pushed_within_two_minutes"]
    assert not lag.passed and lag.severity == dg.AssetCheckSeverity.WARN
    assert lag.metadata["ack_to_push_p95_s"].value > 3600


def test_the_sensor_requests_a_push_only_while_segments_are_pending(tmp_path):
    amp = AmpResource(data_dir=str(tmp_path), backend="personalize")
    with dg.instance_for_test() as instance:
        def tick():
            return sensor_tick(instance, {"amp": amp, "personalize": fake_resource(make_clients())})

        assert isinstance(tick(), dg.SkipReason)
        write_segment(tmp_path, WINDOW, [ev("c1", "click", "u1", 1, item_id="d1")])
        request = tick()
        assert isinstance(request, dg.RunRequest) and request.tags["segments"] == "1"
        clients = make_clients()
        put_events_service(clients)
        assert dg.materialize([personalize_events], resources=resources(tmp_path, clients), instance=instance).success
        assert "every sealed segment" in tick().skip_message


@pytest.mark.slow
def test_an_acknowledged_event_reaches_put_events_within_a_minute_with_default_settings(tmp_path):
    """Default settings: segments seal after 15 s, the sensor ticks every 30 s. The test ticks
    the sensor every half second, then adds the 30 s a real tick could be away in the worst case."""
    settings = Settings.from_env({"AMP_DATA_DIR": str(tmp_path)})
    assert settings.segment_max_age_seconds == 15 and settings.personalize.push_interval_seconds == 30
    amp = AmpResource.from_settings(settings)
    amp = AmpResource(**{**amp.model_dump(), "backend": "personalize"})
    clients = make_clients()
    service = put_events_service(clients)
    with LiveReceiver(create_app(settings)) as live, dg.instance_for_test() as instance:
        reply = httpx.post(live.url + "/webhooks/amplitude/", json={"events": [
            {"event_type": "click", "user_id": "fresh-user", "insert_id": "fresh-1", "session_id": 9, "event_properties": {"item_id": "d1"}}
        ]}, timeout=10)
        acknowledged = time.time()
        assert reply.status_code == 200
        deadline = time.monotonic() + 45
        while not isinstance(sensor_tick(instance, {"amp": amp, "personalize": fake_resource(make_clients())}), dg.RunRequest):
            assert time.monotonic() < deadline, "the segment was never sealed"
            time.sleep(0.5)
        pushed = dg.materialize([personalize_events], resources={"amp": amp, "personalize": fake_resource(clients, key="fresh")}, instance=instance)
    assert sent_ids(service) == ["fresh-1"]
    assert {c.check_name: c.passed for c in pushed.get_asset_check_evaluations()} == {"every_event_accepted": True, "pushed_within_two_minutes": True}
    measured = service.times[0] - acknowledged
    print(f"ack -> PutEvents {measured:.1f} s measured, {measured + settings.personalize.push_interval_seconds:.1f} s with a full sensor interval")
    worst_case = measured + settings.personalize.push_interval_seconds
    assert measured < 25 and worst_case <= 60, f"ack to PutEvents {measured:.1f} s here, {worst_case:.1f} s with a full sensor interval"


def test_a_second_push_run_at_the_same_time_refuses_instead_of_sending_twice(tmp_path):
    from amp_personalize.backends.personalize.ledger import exclusive_push

    write_segment(tmp_path, WINDOW, [ev("c1", "click", "u1", 1, item_id="d1")])
    clients = make_clients()
    service = put_events_service(clients)
    with exclusive_push(tmp_path / "personalize" / "ledger.sqlite"):  # a push run already going
        result = dg.materialize([personalize_events], resources=resources(tmp_path, clients), raise_on_error=False)
    assert not result.success and service.requests == []
    assert "another run is pushing" in result.get_step_failure_events()[0].event_specific_data.user_failure_data.description
    assert dg.materialize([personalize_events], resources=resources(tmp_path, clients)).success
    assert sent_ids(service) == ["c1"]


def test_a_users_calls_stay_in_order_while_other_users_go_in_parallel(tmp_path):
    """Personalize orders a session by arrival: a user's calls never overtake each other."""
    from amp_personalize.backends.personalize.push import push
    from amp_personalize.backends.personalize.put_events import put_events_requests
    from amp_personalize_tests.backends.test_push_exactly_once import events

    frame = events([f"e{i:02d}" for i in range(50)])  # u0 and u1 alternate: 25 events each, 3 calls each
    requests = put_events_requests(frame, "tid")
    clients = make_clients()
    completed: list[str] = []

    def answer(params):
        ids = [e["eventId"] for e in params["eventList"]]
        time.sleep(0.3 if "e00" in ids or "e01" in ids else 0.01)  # each user's first call is slow
        completed.extend(ids)
        return {}

    service = Service(clients.events, "PutEvents", answer)
    push(requests, clients.events, Ledger(tmp_path / "l.sqlite"), max_tps=1000, concurrency=4)
    for user in ("u0", "u1"):
        own = {e["eventId"] for q in requests if q["userId"] == user for e in q["eventList"]}
        sent = [e for e in completed if e in own]
        assert sent == sorted(sent) and len(sent) == 25, (user, sent)
    assert service.max_in_flight == 2  # the two users did run side by side


def test_an_event_with_a_long_id_is_pushed_under_its_digest_and_counted_in_the_lag(tmp_path):
    long_id = "insert-" + "x" * 300
    write_segment(tmp_path, WINDOW, [ev(long_id, "click", "u1", 1, item_id="d1")])
    clients = make_clients()
    service = put_events_service(clients)
    result = dg.materialize([personalize_events], resources=resources(tmp_path, clients))
    assert sent_ids(service) == [fit_id(long_id)]
    meta = result.asset_materializations_for_node("personalize_events")[0].metadata
    assert "ack_to_push_p95_s" in meta  # the lag is found under the id the request used


def test_the_ledger_serves_one_dataset_group_a_recreated_tracker_in_it_included(tmp_path):
    """The ledger says what one dataset group has; read for another, it would keep those events from it."""
    write_segment(tmp_path, WINDOW, [ev("c1", "click", "u1", 1, item_id="d1")], name="0000000000001-r1-000001")
    clients = make_clients()
    service = put_events_service(clients)

    def push(**settings):
        resources = {"amp": AmpResource(data_dir=str(tmp_path), backend="personalize"),
                     "personalize": fake_resource(clients, key=str(tmp_path), **settings)}
        return dg.materialize([personalize_events], resources=resources, raise_on_error=False)

    def sensor(**settings):
        resources = {"amp": AmpResource(data_dir=str(tmp_path), backend="personalize"), "personalize": fake_resource(clients, **settings)}
        with dg.instance_for_test() as instance:
            return sensor_tick(instance, resources)

    assert push().success and sent_ids(service) == ["c1"]
    # The event tracker recreated in the same dataset group: a new tracking id, the same events.
    write_segment(tmp_path, WINDOW, [ev("c2", "click", "u1", 2, item_id="d2")], name="0000000000002-r1-000002")
    assert push(tracking_id="tracking-2").success
    assert sent_ids(service) == ["c1", "c2"] and service.requests[-1]["trackingId"] == "tracking-2"

    # Another dataset group: refused, naming what changed and what to do; nothing sent or marked.
    write_segment(tmp_path, WINDOW, [ev("c3", "click", "u1", 3, item_id="d3")], name="0000000000003-r1-000003")
    elsewhere = {"tracking_id": "tracking-3", "dataset_group_arn": DATASET_GROUP + "-2", "interactions_dataset_arn": DATASET + "-2"}
    result = push(**elsewhere)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.event_specific_data.error.message
    assert f"AWS_PERSONALIZE_DATASET_GROUP_ARN was '{DATASET_GROUP}' and is now '{DATASET_GROUP}-2'" in message
    assert "AWS_PERSONALIZE_TRACKING_ID was 'tracking-2' and is now 'tracking-3'" in message
    assert "move ledger.sqlite and its -wal and -shm files aside" in message
    assert sent_ids(service) == ["c1", "c2"]
    # The sensor says the same instead of starting a run every tick that is bound to fail.
    assert sensor(**elsewhere).skip_message.startswith("not pushing: ")
    assert isinstance(sensor(tracking_id="tracking-2"), dg.RunRequest)  # c3 waits for the old group

    # Moved aside as the message says: the new dataset group gets every event.
    for path in (tmp_path / "personalize").glob("ledger.sqlite*"):
        path.rename(path.with_name("old-" + path.name))
    assert push(**elsewhere).success
    assert sorted(sent_ids(service)[2:]) == ["c1", "c2", "c3"]
    assert {r["trackingId"] for r in service.requests[2:]} == {"tracking-3"}
