"""landing_sensor with real Dagster machinery: requests, run keys and the cursor across ticks."""

import fcntl
import json
import os
import socket
import subprocess
import time
from dataclasses import replace

import dagster as dg
import polars as pl
import pytest
from dagster._core.events import EngineEventData
from dagster._core.test_utils import create_run_for_test

from amp_personalize.assets.interactions import impressions, interactions
from amp_personalize.assets.partitions import partitions_start, window_partitions
from amp_personalize.assets.raw_events import raw_events
from amp_personalize.definitions import defs
from amp_personalize.events.windows import window_key, window_of, window_start_ms
from amp_personalize.resources import AmpResource
from amp_personalize.sensors.landing_sensor import landing_sensor, scores_after_window
from amp_personalize.sensors.plan import plan_now, plan_windows
from amp_personalize.settings import Settings
from amp_personalize_tests.landing_fixture import write_segment

HOUR = 3_600_000
CLICK = {"event_type": "click", "user_id": "u", "event_properties": {"item_id": "d"}}


def windows_back(n: int) -> str:
    return window_key(window_of(int(time.time() * 1000), 60) - n * HOUR)


def tick(data, instance, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"amp": AmpResource(data_dir=str(data), grace_seconds=0)})
    return landing_sensor(context), context


def build(data, instance, window):
    """What the requested run does: the window's assets, materialized."""
    amp = AmpResource(data_dir=str(data), grace_seconds=0)
    assert dg.materialize([raw_events, interactions, impressions], partition_key=window, resources={"amp": amp}, instance=instance).success


def requested(result) -> list[str]:
    """The windows a tick asked runs for."""
    return [r.partition_key for r in result.run_requests]


def built_then_tick(data, instance, window, cursor):
    """The requested run done (`window` built), then the next tick from the cursor it left."""
    build(data, instance, window)
    return tick(data, instance, cursor=cursor)[0]


def state(cursor: str) -> dict:
    """What the next tick reads from a cursor: all of it but the words for people."""
    return {k: v for k, v in json.loads(cursor).items() if k != "status"}


def just_before(window: str) -> str:
    return window_key(window_start_ms(window) - 60_000)


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def mid_hour(monkeypatch):
    """The clock moved to half past this hour: the open window stays open while the test runs
    (review: a run across the top of the hour closed it, and it was requested)."""
    real = time.time
    offset = real() // 3600 * 3600 + 1800 - real()
    monkeypatch.setattr(time, "time", lambda: real() + offset)


def test_closed_windows_are_requested_once_and_the_open_one_waits(tmp_path, instance, mid_hour):
    data = tmp_path / "data"
    old, previous, current = windows_back(3), windows_back(1), windows_back(0)
    for w in (old, previous):
        write_segment(data, w, [CLICK])
    write_segment(data, current, [CLICK])

    # One window at a time, oldest first: each must dedupe against the published one before it.
    first, _ = tick(data, instance)
    assert [(r.run_key, r.partition_key) for r in first.run_requests] == [(f"window-{old}", old)]
    assert first.run_requests[0].tags["amp/host"] == socket.gethostname()  # where a pid of its means something
    assert state(first.cursor) == {"watermark": just_before(old), "v": 2}  # not past it until built
    result = built_then_tick(data, instance, old, first.cursor)
    assert [(r.run_key, r.partition_key) for r in result.run_requests] == [(f"window-{previous}", previous)]
    result = built_then_tick(data, instance, previous, result.cursor)
    assert not result.run_requests
    assert state(result.cursor) == {"watermark": previous, "v": 2}

    # A late segment lands in the still-open window: still not requested, and said why.
    write_segment(data, current, [CLICK], name="0000000000009-late-000001")
    again, _ = tick(data, instance, cursor=result.cursor)
    assert not again.run_requests
    assert f"window {current} is open until" in again.skip_reason.skip_message
    assert state(again.cursor) == {"watermark": previous, "v": 2}


def test_the_cursor_says_in_words_what_the_sensor_did_or_waits_for(tmp_path, instance, mid_hour):
    """Issue 16: why it waits ("window ... is open until 04:00 UTC") was only inside a tick; the
    cursor is what the UI shows on the sensor's page."""
    data = tmp_path / "data"
    previous, current = windows_back(1), windows_back(0)
    write_segment(data, previous, [CLICK])
    write_segment(data, current, [CLICK])
    today = time.strftime("%Y-%m-%d", time.gmtime())

    first, _ = tick(data, instance)
    assert json.loads(first.cursor)["status"].endswith(f"UTC: requested window {previous} (run key window-{previous})")
    run = create_run_for_test(instance, job_name="process_window", status=dg.DagsterRunStatus.STARTED, tags={"dagster/partition": previous})
    busy, _ = tick(data, instance, cursor=first.cursor)
    assert f"window {previous} is still being processed" in json.loads(busy.cursor)["status"]
    instance.report_run_canceled(run)
    build(data, instance, previous)
    waiting, _ = tick(data, instance, cursor=busy.cursor)
    status = json.loads(waiting.cursor)["status"]
    assert status.startswith(today) and f"window {current} is open until {today} " in status


def test_a_restart_from_the_saved_cursor_requests_nothing_twice(tmp_path, instance):
    data = tmp_path / "data"
    write_segment(data, windows_back(2), [CLICK])
    first, _ = tick(data, instance)
    assert len(first.run_requests) == 1
    build(data, instance, windows_back(2))
    saved = first.cursor
    write_segment(data, windows_back(1), [CLICK])  # a window that settles while we were down
    resumed, _ = tick(data, instance, cursor=saved)
    assert requested(resumed) == [windows_back(1)]


def test_a_window_still_being_written_holds_back_the_watermark(tmp_path, instance):
    data = tmp_path / "data"
    blocked, later = windows_back(3), windows_back(2)
    write_segment(data, blocked, [CLICK])
    live = write_segment(data, blocked, [CLICK], name="0000000000005-live-000001", sealed=False)
    write_segment(data, later, [CLICK])
    fd = os.open(live, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a receiver still holds it
        result, _ = tick(data, instance)
        assert not result.run_requests
        assert "1 segment(s) still being written" in result.skip_reason.skip_message
        assert state(result.cursor)["watermark"] is None
    finally:
        os.close(fd)
    # The holder died without sealing: the sensor seals it and both windows go, in order.
    result, _ = tick(data, instance)
    assert requested(result) == [blocked]
    assert not live.exists()
    assert requested(built_then_tick(data, instance, blocked, result.cursor)) == [later]


def test_a_segment_recovery_cannot_seal_is_named_with_the_reason(tmp_path, instance):
    data = tmp_path / "data"
    blocked = windows_back(3)
    crashed = write_segment(data, blocked, [CLICK], name="0000000000005-dead-000001", sealed=False)
    with open(crashed, "ab") as f:
        f.write(b'{"torn')  # recovery must quarantine this tail first
    (data / "quarantine").write_bytes(b"")  # and cannot: as with a full disk
    write_segment(data, "20241231T2300Z", [CLICK])  # before AMP_PARTITIONS_START: a reason said first
    result, _ = tick(data, instance)
    assert not result.run_requests
    assert json.loads(result.cursor)["watermark"] < blocked  # past the early window, not the blocked one
    message = result.skip_reason.skip_message
    assert "begin before the first partition (2025-01-01 00:00:00 UTC, from AMP_PARTITIONS_START)" in message
    assert f"recovery could not seal {crashed.name} (Not a directory)" in message
    (data / "quarantine").unlink()
    result, _ = tick(data, instance)
    assert requested(result) == [blocked]


@pytest.mark.parametrize("status", [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTED])
def test_no_window_is_requested_while_another_window_run_is_unfinished(tmp_path, instance, status):
    """Two windows processed side by side would each keep a retry that crossed their edge."""
    data = tmp_path / "data"
    first_window, second_window = windows_back(3), windows_back(2)
    write_segment(data, first_window, [CLICK])
    write_segment(data, second_window, [CLICK])
    first, _ = tick(data, instance)
    assert requested(first) == [first_window]

    run = create_run_for_test(instance, job_name="process_window", status=status, tags={"dagster/partition": first_window})
    waiting, _ = tick(data, instance, cursor=first.cursor)
    assert not waiting.run_requests
    assert f"window {first_window} is still being processed" in waiting.skip_reason.skip_message
    assert state(waiting.cursor) == state(first.cursor)

    if status == dg.DagsterRunStatus.NOT_STARTED:
        # Deleted while queued: requested again (Dagster drops a request only while a run with its key exists).
        instance.delete_run(run.run_id)
        again, _ = tick(data, instance, cursor=first.cursor)
        assert [(r.run_key, r.partition_key) for r in again.run_requests] == [(f"window-{first_window}", first_window)]
    else:
        instance.report_run_failed(run)
        after, _ = tick(data, instance, cursor=first.cursor)
        assert not after.run_requests
        assert f"window {first_window} failed" in after.skip_reason.skip_message


def test_a_failed_window_is_run_again_before_any_later_window(tmp_path, instance, monkeypatch):
    """A later window built first would keep its copies of retries that crossed the edge, and the
    failed one its originals once it is built: found by QA, the sensor had moved on for good."""
    data = tmp_path / "data"
    failing, later = windows_back(3), windows_back(2)
    write_segment(data, failing, [CLICK])
    write_segment(data, later, [CLICK])
    first, _ = tick(data, instance)
    assert [r.run_key for r in first.run_requests] == [f"window-{failing}"]
    run = create_run_for_test(instance, job_name="process_window", status=dg.DagsterRunStatus.STARTED, tags={"dagster/partition": failing})
    instance.report_run_failed(run)
    # Runs of other windows since do not hide it (review): an older one re-run from the UI, and
    # a failed run of a window that is no partition under today's settings.
    create_run_for_test(instance, job_name="process_window", status=dg.DagsterRunStatus.SUCCESS, tags={"dagster/partition": windows_back(9)})
    create_run_for_test(instance, job_name="process_window", status=dg.DagsterRunStatus.FAILURE, tags={"dagster/partition": "20261126T1630Z"})

    waiting, _ = tick(data, instance, cursor=first.cursor)
    assert not waiting.run_requests
    message = waiting.skip_reason.skip_message
    assert f"window {failing} failed (run {run.run_id}, 1 time(s) in a row); it is tried again at" in message
    assert "later windows wait for it" in message

    ended = instance.get_run_record_by_id(run.run_id).end_time
    monkeypatch.setattr(time, "time", lambda: ended + 61)  # past the first retry's minute
    retry, _ = tick(data, instance, cursor=waiting.cursor)
    assert [(r.run_key, r.partition_key) for r in retry.run_requests] == [(f"window-{failing}-after-{run.run_id}", failing)]

    # It fails again: the next try waits twice as long.
    again = create_run_for_test(instance, job_name="process_window", status=dg.DagsterRunStatus.STARTED, tags={"dagster/partition": failing})
    instance.report_run_failed(again)
    ended = instance.get_run_record_by_id(again.run_id).end_time
    monkeypatch.setattr(time, "time", lambda: ended + 61)
    assert "2 time(s) in a row" in tick(data, instance, cursor=retry.cursor)[0].skip_reason.skip_message
    monkeypatch.setattr(time, "time", lambda: ended + 121)
    assert [r.run_key for r in tick(data, instance, cursor=retry.cursor)[0].run_requests] == [f"window-{failing}-after-{again.run_id}"]

    # Built at last (here by `process`): the later window goes next.
    monkeypatch.undo()
    assert requested(built_then_tick(data, instance, failing, retry.cursor)) == [later]


def test_runs_whose_process_is_gone_are_marked_failed_and_live_ones_are_not(tmp_path, instance):
    """QA: `process` SIGKILLed mid-run left its run STARTED, and the sensor waited for it for hours."""
    data = tmp_path / "data"
    window = windows_back(3)
    write_segment(data, window, [CLICK])
    dead = subprocess.Popen(["true"])
    dead.wait()
    here = {"dagster/partition": window, "amp/host": socket.gethostname()}

    def started(pid, tags=here):
        """A STARTED run whose executing process (its first engine event says) has this pid."""
        run = create_run_for_test(instance, job_name="process_window", status=dg.DagsterRunStatus.STARTED, tags=tags)
        instance.report_engine_event(f"Started process for run (pid: {pid}).", run, EngineEventData.in_process(pid))
        return run

    killed, live = started(dead.pid), started(os.getpid())
    # Re-executed from the UI, a run copies its parent's tags (review): judged by its own pid.
    reexecuted = started(os.getpid(), tags={**here, "dagster/parent_run_id": killed.run_id})
    elsewhere = started(dead.pid, tags={**here, "amp/host": "another-host"})  # a pid there means nothing here
    # Launched from the UI, a backfill, an earlier version: under the default launcher, run here.
    untagged = started(dead.pid, tags={"dagster/partition": window})

    waiting, _ = tick(data, instance)
    assert f"window {window} is still being processed" in waiting.skip_reason.skip_message  # the live ones
    status = {name: instance.get_run_by_id(run.run_id).status.value
              for name, run in dict(killed=killed, live=live, reexecuted=reexecuted, elsewhere=elsewhere, untagged=untagged).items()}
    assert status == dict(killed="FAILURE", live="STARTED", reexecuted="STARTED", elsewhere="STARTED", untagged="FAILURE")
    [failure] = instance.all_logs(killed.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    assert f"(pid {dead.pid} on {socket.gethostname()}) is gone" in failure.dagster_event.message


def test_a_cursor_saved_before_it_kept_windows_unbuilt_is_read_from_the_start(tmp_path, instance):
    """Review: the previous version's cursor passed each window it requested, built or not; a
    window whose run failed then was never looked at again."""
    data = tmp_path / "data"
    failed, later = windows_back(3), windows_back(2)
    write_segment(data, failed, [CLICK])
    write_segment(data, later, [CLICK])
    run = create_run_for_test(instance, job_name="process_window", status=dg.DagsterRunStatus.STARTED, tags={"dagster/partition": failed})
    instance.report_run_failed(run)
    result, _ = tick(data, instance, cursor=json.dumps({"watermark": failed}))
    assert not result.run_requests
    assert f"window {failed} failed" in result.skip_reason.skip_message


def test_a_rebuild_that_failed_after_raw_events_is_run_again(tmp_path, instance):
    """Review: raw_events rebuilt with a late segment, then interactions failed: the old
    interactions file counted as built, and the window never got the late events."""
    data = tmp_path / "data"
    window = windows_back(3)
    write_segment(data, window, [CLICK])
    build(data, instance, window)
    assert not tick(data, instance)[0].run_requests
    write_segment(data, window, [CLICK], name="0000000000009-late-000001")  # sealed after the build
    amp = AmpResource(data_dir=str(data), grace_seconds=0)
    assert dg.materialize([raw_events], partition_key=window, resources={"amp": amp}, instance=instance).success
    assert requested(tick(data, instance)[0]) == [window]


def test_grace_period_and_empty_landing(tmp_path):
    data = tmp_path / "data"
    now = int(time.time() * 1000)
    assert plan_windows(data / "landing", data / "q", now, 60, 30).ready == []
    just_closed = window_key(window_of(now, 60) - HOUR)
    write_segment(data, just_closed, [CLICK])
    end = window_of(now, 60)
    in_grace = plan_windows(data / "landing", data / "q", end + 10_000, 60, 30)
    assert in_grace.ready == [] and "grace period until" in in_grace.waiting[0][1]
    settled = plan_windows(data / "landing", data / "q", end + 31_000, 60, 30)
    assert settled.ready == [just_closed] and settled.watermark == just_closed


def test_the_sensor_is_registered_running_on_the_window_job():
    sensor = defs.resolve_sensor_def("landing_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.job_name == "process_window"


def test_windows_landed_with_another_window_width_are_passed_over_with_a_reason(tmp_path):
    """After AMP_WINDOW_MINUTES changes, landed windows of the old width have no partition: running
    one failed every tick with DagsterUnknownPartitionError, and `process` with a traceback."""
    data = tmp_path / "data"
    for window in ("20250101T0000Z", "20250101T0105Z", "20250101T0110Z", "20250101T0200Z"):
        write_segment(data, window, [CLICK])
    now = window_start_ms("20250101T0200Z") + 10 * HOUR
    plan = plan_windows(data / "landing", data / "q", now, 60, 30)
    assert plan.ready == ["20250101T0000Z", "20250101T0200Z"] and plan.watermark == "20250101T0200Z"
    [(_, why)] = plan.waiting
    assert why.startswith("2 landing window(s) (20250101T0105Z to 20250101T0110Z) do not start on a 60-minute boundary")
    assert "AMP_WINDOW_MINUTES set back to that width" in why
    settings = replace(Settings.from_env({"AMP_PARTITIONS_START": "2025-01-01T00:00"}), data_dir=data)
    keys = window_partitions(settings).get_partition_keys(current_time=None)
    assert all(w in keys for w in plan.ready)
    # Set back to 5 minutes, every window is a partition again (an hour's window starts on a 5-minute boundary).
    assert plan_windows(data / "landing", data / "q", now, 5, 30).ready == ["20250101T0000Z", "20250101T0105Z", "20250101T0110Z", "20250101T0200Z"]


def test_windows_before_the_partitions_start_are_passed_over_with_a_reason(tmp_path):
    """A landed window older than AMP_PARTITIONS_START has no partition: running it would fail
    with DagsterUnknownPartitionError, so it is named and skipped, and the watermark moves on."""
    data = tmp_path / "data"
    for window in ("20250101T0000Z", "20250101T0100Z", "20250101T0200Z"):
        write_segment(data, window, [CLICK])
    start = window_start_ms("20250101T0200Z")
    plan = plan_windows(data / "landing", data / "q", start + 10 * HOUR, 60, 30, partitions_start_ms=start)
    assert plan.ready == ["20250101T0200Z"] and plan.watermark == "20250101T0200Z"
    [(_, why)] = plan.waiting
    assert why.startswith(
        "2 landing window(s) (20250101T0000Z to 20250101T0100Z) begin before the first partition "
        "(2025-01-01 02:00:00 UTC, from AMP_PARTITIONS_START)"
    )
    assert "with an earlier AMP_PARTITIONS_START, `amp-personalize process` picks them up" in why

    settings = replace(Settings.from_env({"AMP_PARTITIONS_START": "2025-01-01T02:00"}), data_dir=data)
    assert plan_now(settings, partitions_start(settings)).ready == ["20250101T0200Z"]
    assert window_partitions(settings).get_first_partition_window().start.timestamp() * 1000 == start


def test_a_processed_window_requests_one_score_refresh_unless_one_has_not_started_yet(instance):
    @dg.op
    def nothing():
        pass

    @dg.job(name="process_window")
    def window_stand_in():
        nothing()

    done = window_stand_in.execute_in_process(instance=instance)
    [success] = [e.dagster_event for e in instance.all_logs(done.run_id) if e.dagster_event and e.dagster_event.event_type_value == "PIPELINE_SUCCESS"]

    def after_window():
        context = dg.build_run_status_sensor_context(
            sensor_name="scores_after_window", dagster_event=success, dagster_instance=instance, dagster_run=done.dagster_run)
        return scores_after_window(context)

    assert after_window().run_key == f"scores-after-{done.run_id}"
    queued = create_run_for_test(instance, job_name="refresh_user_item_scores", status=dg.DagsterRunStatus.NOT_STARTED)
    assert after_window().skip_message == f"refresh {queued.run_id} has not started yet; it reads this window too"
    instance.delete_run(queued.run_id)
    create_run_for_test(instance, job_name="refresh_user_item_scores", status=dg.DagsterRunStatus.STARTED)
    assert after_window().run_key == f"scores-after-{done.run_id}"  # a running refresh may have read too early


def test_windows_already_built_by_process_are_passed_over_not_built_again(tmp_path, instance):
    """After `amp-personalize process`, a first `make up` (its sensor's cursor empty) rebuilt every window."""
    data = tmp_path / "data"
    old, previous = windows_back(3), windows_back(2)
    for window in (old, previous):
        write_segment(data, window, [CLICK])
    amp = AmpResource(data_dir=str(data), grace_seconds=0)
    assert dg.materialize([raw_events, interactions, impressions], partition_key=old, resources={"amp": amp}, instance=instance).success

    first, _ = tick(data, instance)
    assert requested(first) == [previous]
    assert dg.materialize([raw_events, interactions, impressions], partition_key=previous, resources={"amp": amp}, instance=instance).success
    again, _ = tick(data, instance)  # a cursor lost as well: everything ready is built
    assert not again.run_requests
    assert again.skip_reason.skip_message.startswith(f"2 ready window(s) ({old} to {previous}) were built already")
    assert state(again.cursor) == {"watermark": previous, "v": 2}
    write_segment(data, old, [CLICK], name="0000000000009-late-000001")  # a segment its build did not read
    assert requested(tick(data, instance)[0]) == [old]


def test_process_waits_for_a_window_run_the_daemon_has_in_flight(tmp_path, instance):
    """Review: `process` built windows while the daemon's run of an earlier one was going."""
    from amp_personalize.process import process_once

    data = tmp_path / "data"
    write_segment(data, windows_back(3), [CLICK])
    busy = create_run_for_test(instance, job_name="process_window", status=dg.DagsterRunStatus.STARTED,
                               tags={"dagster/partition": windows_back(4), "amp/host": socket.gethostname()})
    instance.report_engine_event("Started process for run", busy, EngineEventData.in_process(os.getpid()))
    report = process_once(AmpResource(data_dir=str(data), grace_seconds=0).settings(), False, instance)
    assert report.windows == [] and report.failed == []
    assert report.waiting == [
        f"window {windows_back(4)} is being processed by run {busy.run_id}; 1 window(s) ({windows_back(3)} to {windows_back(3)}) "
        "wait for it: run `process` again when it is done"
    ]


@pytest.mark.parametrize("failure", ["checks only", "an error", "checks and an error"])
def test_a_window_run_its_checks_failed_still_refreshes_the_scores(tmp_path, instance, monkeypatch, failure):
    """Review: a window whose impressions were kept out had its interactions published, and
    only a successful window run refreshed the scores."""
    import amp_personalize.assets.interactions as interactions_module
    from amp_personalize.sensors.landing_sensor import scores_after_kept_out_window

    data = tmp_path / "data"
    shown = {"event_type": "initial_impression", "user_id": "u", "uuid": "i", "event_properties": {"items_shown": ["d1", "d2"]}}
    write_segment(data, windows_back(3), [{**CLICK, "uuid": "a"}, shown])
    real = interactions_module.build_impressions
    def disk_full(raw, w):
        raise OSError(28, "No space left on device")

    if failure == "an error":
        monkeypatch.setattr(interactions_module, "build_impressions", disk_full)
    else:  # an impression without a user: kept out by no_null_ids
        monkeypatch.setattr(interactions_module, "build_impressions",
                            lambda raw, w: real(raw, w).with_columns(pl.lit(None, dtype=pl.String).alias("user_id")))
    if failure == "checks and an error":  # review: "only" must mean only
        monkeypatch.setattr(interactions_module, "build_interactions", disk_full)
    amp = AmpResource(data_dir=str(data), grace_seconds=0)
    result = defs.resolve_job_def("process_window").execute_in_process(
        partition_key=windows_back(3), resources={"amp": amp}, instance=instance, raise_on_error=False)
    assert not result.success
    [event] = [e.dagster_event for e in instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)]
    context = dg.build_run_status_sensor_context(
        sensor_name="scores_after_kept_out_window", dagster_event=event, dagster_instance=instance,
        dagster_run=result.dagster_run).for_run_failure()
    answer = scores_after_kept_out_window(context)
    if failure == "checks only":
        assert answer.run_key == f"scores-after-{result.run_id}"
    else:
        assert answer.skip_message == "the run failed, not only its blocking checks: nothing new was published"


def test_a_canceled_run_counts_as_failed_and_retries_wait_at_most_an_hour(instance):
    """docs/orchestration.md: "A canceled run counts as failed", and retries wait 1, 2, 4 ... minutes, at most hourly."""
    from amp_personalize.sensors.window_runs import (
        LONGEST_RETRY_SECONDS,
        run_time,
        window_runs,
    )

    window = windows_back(3)
    tags = {"dagster/partition": window}
    for _ in range(8):
        instance.report_run_failed(create_run_for_test(instance, job_name="process_window", status=dg.DagsterRunStatus.STARTED, tags=tags))
    canceled = create_run_for_test(instance, job_name="process_window", status=dg.DagsterRunStatus.STARTED, tags=tags)
    instance.report_run_canceled(canceled)
    runs = window_runs(instance, "process_window", window)
    assert (runs.failures, runs.latest.dagster_run.run_id) == (9, canceled.run_id)
    assert runs.retry_at == run_time(runs.latest, "end_time") + LONGEST_RETRY_SECONDS  # not 2**8 minutes
