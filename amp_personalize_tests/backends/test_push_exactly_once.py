"""Exactly once: throttling, a 500, a crash between calls, a re-run, and a duplicate delivery."""

import time
from datetime import datetime, timedelta, timezone

import boto3
import polars as pl
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from amp_personalize.backends.personalize.ledger import Ledger, LedgerMismatch
from amp_personalize.backends.personalize.push import (
    REFUSED_BEFORE_ANY_ACCEPTED,
    PushFailed,
    push,
)
from amp_personalize.backends.personalize.put_events import (
    EVENTS_SCHEMA,
    put_events_requests,
)

T0 = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)


def events(ids: list[str]) -> pl.DataFrame:
    rows = [
        {"event_id": e, "user_id": f"u{i % 2}", "session_id": 5, "event_type": "click", "event_value": 1.0, "item_id": f"d{i}",
         "items_shown": None, "event_time": T0 + timedelta(seconds=i), "recommendation_id": None, "properties": None}
        for i, e in enumerate(ids)
    ]
    return pl.DataFrame(rows, schema=EVENTS_SCHEMA)


class Crash(Exception):
    pass


def client_recording(sent: list[str], crash_after_calls: int | None = None):
    # Our push retries; botocore's own retries would resend behind the ledger's back.
    client = boto3.client(
        "personalize-events", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x",
        config=Config(retries={"total_max_attempts": 1}),
    )
    calls = {"n": 0}

    def record(params, **kwargs):  # fires for every call that is about to reach the (stubbed) wire
        if crash_after_calls is not None and calls["n"] >= crash_after_calls:
            raise Crash("the process dies between two calls")
        calls["n"] += 1
        sent.extend(e["eventId"] for e in params["eventList"])

    client.meta.events.register("before-parameter-build.personalize-events.PutEvents", record)
    return client


def test_each_event_reaches_put_events_once_through_faults_a_crash_and_duplicates(tmp_path):
    ledger_path = tmp_path / "ledger.sqlite"
    first_segment = events([f"e{i}" for i in range(30)])  # 2 users x 15 events -> 4 calls
    requests = put_events_requests(first_segment, "tid")
    assert len(requests) == 4
    sent: list[str] = []

    client = client_recording(sent, crash_after_calls=3)
    with Stubber(client) as stub:
        stub.add_client_error("put_events", "ThrottlingException", http_status_code=400)
        stub.add_response("put_events", {})
        stub.add_client_error("put_events", "InternalFailure", http_status_code=500)
        stub.add_response("put_events", {})  # the retry that the crash stops before it is sent
        with pytest.raises(Crash):
            push(requests, client, Ledger(ledger_path), sleep=lambda s: None)
    # Throttled and 500'd attempts reached the wire too; only acknowledged ones are in the ledger.
    assert Ledger(ledger_path).count() == 10

    # Re-run after the crash, plus a second segment in which Amplitude re-delivered e3 and e29.
    second_segment = events(["e3", "e29", "e30", "e31"])
    sent_after: list[str] = []
    client = client_recording(sent_after)
    ledger = Ledger(ledger_path)
    with Stubber(client) as stub:
        for _ in range(10):
            stub.add_response("put_events", {})
        stats = push(put_events_requests(first_segment, "tid"), client, ledger, sleep=lambda s: None)
        stats2 = push(put_events_requests(second_segment, "tid"), client, ledger, sleep=lambda s: None)
        stats3 = push(put_events_requests(first_segment, "tid"), client, ledger, sleep=lambda s: None)  # a plain re-run
    pushed_before_crash = {f"e{i}" for i in range(0, 20, 2)}  # u0's first call of 10
    assert len(sent_after) == len(set(sent_after)), "an event id was sent twice after recovery"
    assert set(sent_after) == {f"e{i}" for i in range(32)} - pushed_before_crash
    assert (stats3.calls, stats3.skipped_already_pushed) == (0, 30)
    assert stats2.skipped_already_pushed == 2
    assert ledger.count() == 32
    assert stats.retries == 0


def test_a_setup_error_stops_the_push_naming_the_events(tmp_path):
    client = client_recording([])
    with Stubber(client) as stub:
        stub.add_client_error("put_events", "ResourceNotFoundException", "no such tracking id", http_status_code=404)
        with pytest.raises(PushFailed, match=r"refused events \['e0', 'e2'.*ResourceNotFoundException: no such tracking id"):
            push(put_events_requests(events(["e0", "e1", "e2"]), "tid"), client, Ledger(tmp_path / "l.sqlite"), sleep=lambda s: None)
    assert Ledger(tmp_path / "l.sqlite").count() == 0


def test_an_invalid_event_is_found_alone_and_set_aside_while_the_rest_go_through(tmp_path):
    sent: list[str] = []
    client, ledger = client_recording(sent), Ledger(tmp_path / "l.sqlite")
    requests = put_events_requests(events(["e0", "e1", "e2", "e3"]), "tid")  # u0: e0, e2; u1: e1, e3
    with Stubber(client) as stub:
        stub.add_client_error("put_events", "InvalidInputException", "bad item", http_status_code=400)  # u0's call
        stub.add_response("put_events", {})  # e0 alone
        stub.add_client_error("put_events", "InvalidInputException", "bad item e2", http_status_code=400)  # e2 alone
        stub.add_response("put_events", {})  # u1's call
        stats = push(requests, client, ledger, sleep=lambda s: None)
        stub.assert_no_pending_responses()
    assert sent == ["e0", "e2", "e0", "e2", "e1", "e3"]
    assert stats.refused == [("e2", "InvalidInputException: bad item e2")] and stats.events == 3
    assert ledger.count() == 3 and ledger.refused() == {"e2": "InvalidInputException: bad item e2"}
    # A later delivery of the same events sends none of them again, the refused one included.
    with Stubber(client):
        again = push(requests, client, ledger, sleep=lambda s: None)
    assert (again.calls, again.skipped_already_pushed, sent[6:]) == (0, 4, [])


def test_when_events_are_all_refused_the_setup_is_at_fault_and_what_was_refused_is_not_set_aside(tmp_path):
    ids = [f"e{i}" for i in range(REFUSED_BEFORE_ANY_ACCEPTED + 5)]
    frame = events(ids).with_columns(user_id=pl.col("event_id"))  # one event per call
    client, ledger = client_recording([]), Ledger(tmp_path / "l.sqlite")
    with Stubber(client) as stub:
        for _ in range(REFUSED_BEFORE_ANY_ACCEPTED):
            stub.add_client_error("put_events", "InvalidInputException", "eventValue is required", http_status_code=400)
        with pytest.raises(PushFailed, match=rf"refused the last {REFUSED_BEFORE_ANY_ACCEPTED} events in a row.*eventValue is required"):
            push(put_events_requests(frame, "tid"), client, ledger, sleep=lambda s: None)
    assert ledger.refused() == {} and ledger.count() == 0


def test_a_setup_refusing_everything_is_noticed_across_small_runs_and_an_accepted_call_resets_the_count(tmp_path):
    """The sensor's runs carry a few events each: the refusals in a row are counted across runs."""
    client, ledger = client_recording([]), Ledger(tmp_path / "l.sqlite")

    def run(ids: list[str], answers: list[str]) -> None:
        frame = events(ids).with_columns(user_id=pl.col("event_id"))
        with Stubber(client) as stub:
            for answer in answers:
                if answer == "ok":
                    stub.add_response("put_events", {})
                else:
                    stub.add_client_error("put_events", "InvalidInputException", "bad", http_status_code=400)
            push(put_events_requests(frame, "tid"), client, ledger, sleep=lambda s: None)

    run([f"a{i}" for i in range(8)], ["bad"] * 8)  # set aside: one run cannot tell
    run([f"b{i}" for i in range(8)], ["bad"] * 8)
    assert ledger.refusal_streak() == 16 and len(ledger.refused()) == 16
    with pytest.raises(PushFailed, match="refused the last 20 events in a row"):
        run([f"c{i}" for i in range(8)], ["bad"] * 4)
    assert len(ledger.refused()) == 16  # the failed run set nothing aside
    run(["d0", "d1"], ["ok", "bad"])  # the setup was fixed: one event is bad, the other went in
    assert ledger.refusal_streak() == 0 and "d1" in ledger.refused()


def test_pruning_forgets_only_ids_acknowledged_before_the_cutoff(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.record(["old-1", "old-2"])
    cutoff = int(time.time() * 1000) + 1
    time.sleep(0.01)
    ledger.record(["new-1"])
    assert ledger.prune(cutoff) == 2
    assert ledger.count() == 1 and ledger.already_pushed(["old-1", "old-2", "new-1"]) == {"new-1"}


def test_a_ledger_serves_the_dataset_it_was_first_used_for_and_refuses_another(tmp_path):
    def where(tracking=None, group=None, dataset=None):
        return {"tracking_id": tracking, "dataset_group_arn": group, "interactions_dataset_arn": dataset}

    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.bind(where("t-1"))  # unset settings bind nothing
    with pytest.raises(LedgerMismatch, match="AWS_PERSONALIZE_TRACKING_ID was 't-1' and is now 't-2'") as refused:
        ledger.bind(where("t-2"))  # no dataset known: a new tracker may be a new dataset group
    assert "recreated" not in str(refused.value)
    ledger.close()
    ledger = Ledger(tmp_path / "ledger.sqlite")  # kept on disk
    ledger.bind(where("t-1", "arn:group-1", "arn:ds-1"))  # settings given later join
    # Whichever path binds first, a dataset the other one names later is checked too.
    with pytest.raises(LedgerMismatch, match="AWS_PERSONALIZE_INTERACTIONS_DATASET_ARN was 'arn:ds-1' and is now 'arn:ds-2'"):
        ledger.bind(where("t-1", None, "arn:ds-2"))
    with pytest.raises(LedgerMismatch, match="set AWS_PERSONALIZE_DATASET_GROUP_ARN and AWS_PERSONALIZE_INTERACTIONS_DATASET_ARN as before"):
        ledger.bind(where("t-2"))
    assert ledger.conflict(where("t-1", "arn:group-2")) is not None
    assert ledger.conflict(where("t-2", "arn:group-1")) is None  # a tracker recreated in the same group
    ledger.bind(where("t-2", "arn:group-1"))
    assert ledger.conflict(where("t-1")) is not None and ledger.conflict(where("t-2")) is None  # it follows the new one


def test_the_live_push_leaves_what_an_import_in_flight_claimed_and_takes_it_back_if_it_fails(tmp_path):
    """An import job runs for many minutes; a push meanwhile must not send its rows a second way."""
    ledger = Ledger(tmp_path / "l.sqlite")
    assert ledger.claim_for_import("import-1", ["e0", "e1", "e0"], stale_before_ms=0) == ["e0", "e1"]
    assert ledger.claim_for_import("import-2", ["e0", "e1"], stale_before_ms=0) == []  # in flight: not twice
    sent: list[str] = []
    client = client_recording(sent)
    with Stubber(client) as stub:
        stub.add_response("put_events", {})
        stats = push(put_events_requests(events(["e0", "e1", "e2"]), "tid"), client, ledger, sleep=lambda s: None)
    assert sent == ["e2"] and stats.skipped_already_pushed == 2

    ledger.release_import("import-1")  # the job failed
    assert ledger.already_pushed(["e0", "e1", "e2"]) == {"e2"}
    # A claim whose import died without recording or releasing is released once stale.
    ledger.claim_for_import("import-3", ["e0"], stale_before_ms=0)
    assert ledger.claim_for_import("import-4", ["e0"], stale_before_ms=int(time.time() * 1000) + 1) == ["e0"]
    ledger.record_import("arn:import-4", "INCREMENTAL", ["e0"], job_name="import-4")
    assert ledger.already_pushed(["e0"]) == {"e0"} and ledger.claim_for_import("import-5", ["e0"], stale_before_ms=0) == []
