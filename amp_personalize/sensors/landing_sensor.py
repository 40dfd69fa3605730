"""landing_sensor: one run per closed, sealed landing window; a watermark as its cursor.

Window runs go one at a time, oldest first. raw_events of a window drops the ids that earlier
*published* windows hold, so two windows processed side by side would each miss the other's
copies of an Amplitude retry that crossed the window edge, and both would keep it.
"""

import json
import time

import dagster as dg

from amp_personalize.events.windows import window_key, window_start_ms
from amp_personalize.jobs import scores_job, window_job
from amp_personalize.resources import AmpResource
from amp_personalize.sensors.due import windows_due
from amp_personalize.sensors.plan import utc_time
from amp_personalize.sensors.window_runs import (
    NOT_YET_STARTED,
    WindowRuns,
    host_tags,
    only_checks_failed,
    run_in_flight,
    window_runs,
)

__all__ = ["landing_sensor", "run_in_flight", "scores_after_kept_out_window", "scores_after_window"]


def run_key(window: str, runs: WindowRuns) -> str:
    """`window-<W>` the first time; after a run, `window-<W>-after-<its run id>`: one request per
    run of the window, so a retry is never taken for a repeat of the request before it."""
    return f"window-{window}" if runs.latest is None else f"window-{window}-after-{runs.latest.dagster_run.run_id}"


# Cursors of this version never pass a window not built; an older one passed each window it
# requested, built or not, and is read from the start once (built windows are passed over).
CURSOR_VERSION = 2


def cursor(watermark: str | None, status: str) -> str:
    """The sensor's state, as the UI shows it on the sensor's page without opening a tick:
    `status` says in words what it did or waits for, and when; the watermark is the window the
    next tick lists landing folders after."""
    now = utc_time(int(time.time() * 1000))
    return json.dumps({"status": f"{now}: {status}", "watermark": watermark, "v": CURSOR_VERSION})


@dg.sensor(
    job=window_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "One process_window run per closed, sealed landing window, oldest first. What it waits for "
        "(a window still open, one being processed, a failed one's retry time) is its cursor's status."
    ),
)
def landing_sensor(context: dg.SensorEvaluationContext, amp: AmpResource) -> dg.SensorResult | dg.SkipReason:
    """Requests the window job for the oldest landing window that is closed, sealed, past grace
    and not built yet (or built before a segment it did not read, or missing a file).

    Its cursor's `status` says what it waits for (a window open until when, one still being
    processed, a failed one's retry time) or which window it requested, as of its last tick.
    """
    previous = json.loads(context.cursor) if context.cursor else {}
    watermark = previous.get("watermark") if previous.get("v") == CURSOR_VERSION else None
    busy = run_in_flight(context.instance, window_job.name)
    if busy is not None:  # the watermark stays: what is ready now is still ready next tick
        why = f"window {busy.tags.get('dagster/partition', '?')} is still being processed; windows run one at a time, oldest first"
        return dg.SensorResult(skip_reason=dg.SkipReason(why), cursor=cursor(watermark, why))
    settings = amp.settings()
    # Windows `amp-personalize process` (or an earlier daemon, with the cursor lost) already built
    # and that nothing has changed since are passed over, not built again; with the landing on
    # S3, built windows a late volume shipped to come first.
    due = windows_due(settings, context.instance, _built(context), watermark=watermark)
    plan, ready = due.plan, due.due
    for _, why in plan.waiting:
        context.log.info(why)
    due.record(context.instance)
    if not ready:
        why = "; ".join(reason for _, reason in plan.waiting) or "no new landing windows"
        if plan.ready:
            why = f"{len(plan.ready)} ready window(s) ({plan.ready[0]} to {plan.ready[-1]}) were built already; {why}"
        return dg.SensorResult(skip_reason=dg.SkipReason(why), cursor=cursor(plan.watermark or watermark, why))
    oldest = ready[0]
    # The watermark never passes a window that is not built: one whose run fails is the oldest
    # ready window again next tick, and no later one is requested before it is built (a later
    # window built first would keep its copies of the Amplitude retries that crossed the edge,
    # and the failed one its originals).
    just_before = window_key(window_start_ms(oldest) - 60_000)
    kept = max(filter(None, [watermark, just_before]))
    runs = window_runs(context.instance, window_job.name, oldest)
    if time.time() < runs.retry_at:
        why = (
            f"window {oldest} failed (run {runs.latest.dagster_run.run_id}, {runs.failures} time(s) in a row); "
            f"it is tried again at {utc_time(int(runs.retry_at * 1000))}, and later windows wait for it (windows run oldest first)"
        )
        return dg.SensorResult(skip_reason=dg.SkipReason(why), cursor=cursor(kept, why))
    key = run_key(oldest, runs)
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=key, partition_key=oldest, tags=host_tags())],
        cursor=cursor(kept, f"requested window {oldest} (run key {key})"),
    )


def _built(context: dg.SensorEvaluationContext) -> set[str]:
    return context.instance.get_materialized_partitions(dg.AssetKey("raw_events"))


def _refresh_scores(context: dg.RunStatusSensorContext) -> dg.RunRequest | dg.SkipReason:
    """Once: a refresh still waiting to start will read this window too, so another would only
    queue behind it (with short windows they piled up, each reading every window)."""
    waiting = context.instance.get_run_records(dg.RunsFilter(job_name=scores_job.name, statuses=NOT_YET_STARTED), limit=1)
    if waiting:
        return dg.SkipReason(f"refresh {waiting[0].dagster_run.run_id} has not started yet; it reads this window too")
    return dg.RunRequest(run_key=f"scores-after-{context.dagster_run.run_id}")


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[window_job],
    request_job=scores_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def scores_after_window(context: dg.RunStatusSensorContext) -> dg.RunRequest | dg.SkipReason:
    """Every processed window refreshes the aggregate that reads all windows."""
    return _refresh_scores(context)


@dg.run_failure_sensor(monitored_jobs=[window_job], request_job=scores_job, default_status=dg.DefaultSensorStatus.RUNNING)
def scores_after_kept_out_window(context: dg.RunFailureSensorContext) -> dg.RunRequest | dg.SkipReason:
    """A window run that failed only because blocking checks kept part of it out published the
    rest (say its interactions, with its impressions kept out): the aggregate reads that too."""
    if not only_checks_failed(context.get_step_failure_events()):
        return dg.SkipReason("the run failed, not only its blocking checks: nothing new was published")
    return _refresh_scores(context)
