"""landing_sensor: one run per closed, sealed landing window; a watermark as its cursor.

Window runs go one at a time, oldest first. raw_events of a window drops the ids that earlier
*published* windows hold, so two windows processed side by side would each miss the other's
copies of an Amplitude retry that crossed the window edge, and both would keep it.
"""

import json
import time
from datetime import datetime, timezone

import dagster as dg

from amp_personalize.assets.raw_events import is_due
from amp_personalize.jobs import scores_job, window_job
from amp_personalize.resources import AmpResource
from amp_personalize.sensors.plan import plan_now
from amp_personalize.sensors.window_runs import (
    NOT_YET_STARTED,
    last_failed_window,
    run_in_flight,
)

__all__ = ["landing_sensor", "run_in_flight", "scores_after_window"]


def run_key(window: str) -> str:
    return f"window-{window}"


@dg.sensor(job=window_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def landing_sensor(context: dg.SensorEvaluationContext, amp: AmpResource) -> dg.SensorResult | dg.SkipReason:
    """Requests the window job for the oldest landing window that is closed, sealed and past grace."""
    busy = run_in_flight(context.instance, window_job.name)
    if busy is not None:  # the cursor stays: what is ready now is still ready next tick
        why = f"window {busy.tags.get('dagster/partition', '?')} is still being processed; windows run one at a time, oldest first"
        return dg.SensorResult(skip_reason=dg.SkipReason(why), cursor=context.cursor)
    settings = amp.settings()
    failed = last_failed_window(context.instance, window_job.name)
    if failed is not None and is_due(settings.landing_dir, settings.lake_dir, failed.window, _built(context)):
        # Before anything newer: a later window built first would keep its copies of the
        # Amplitude retries that crossed the edge, and the failed one its originals.
        if time.time() < failed.retry_at:
            at = datetime.fromtimestamp(failed.retry_at, tz=timezone.utc).strftime("%H:%M:%S UTC")
            why = (
                f"window {failed.window} failed (run {failed.run_id}, {failed.failures} time(s) in a row); "
                f"it is tried again at {at}, and later windows wait for it (windows run oldest first)"
            )
            return dg.SensorResult(skip_reason=dg.SkipReason(why), cursor=context.cursor)
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=failed.run_key(), partition_key=failed.window)], cursor=context.cursor
        )
    cursor = json.loads(context.cursor) if context.cursor else {}
    plan = plan_now(settings, watermark=cursor.get("watermark"))
    for _, why in plan.waiting:
        context.log.info(why)
    # Windows `amp-personalize process` (or an earlier daemon, with the cursor lost) already built
    # and that nothing has changed since are passed over, not built again.
    ready = list(plan.ready)
    built = _built(context) if ready else set()
    while ready and not is_due(settings.landing_dir, settings.lake_dir, ready[0], built):
        ready.pop(0)
    if not ready:
        why = "; ".join(reason for _, reason in plan.waiting) or "no new landing windows"
        if plan.ready:
            why = f"{len(plan.ready)} ready window(s) ({plan.ready[0]} to {plan.ready[-1]}) were built already; {why}"
        new_cursor = json.dumps({"watermark": plan.watermark}) if plan.watermark else context.cursor
        return dg.SensorResult(skip_reason=dg.SkipReason(why), cursor=new_cursor)
    oldest = ready[0]
    # Past the oldest only if nothing else is ready: the rest are requested on later ticks.
    watermark = plan.watermark if len(ready) == 1 else oldest
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=run_key(oldest), partition_key=oldest)],
        cursor=json.dumps({"watermark": watermark}),
    )


def _built(context: dg.SensorEvaluationContext) -> set[str]:
    return context.instance.get_materialized_partitions(dg.AssetKey("raw_events"))


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[window_job],
    request_job=scores_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def scores_after_window(context: dg.RunStatusSensorContext) -> dg.RunRequest | dg.SkipReason:
    """Every processed window refreshes the aggregate that reads all windows.

    Once: a refresh still waiting to start will read this window too, so another would only
    queue behind it (with short windows they piled up, each reading every window).
    """
    waiting = context.instance.get_run_records(dg.RunsFilter(job_name=scores_job.name, statuses=NOT_YET_STARTED), limit=1)
    if waiting:
        return dg.SkipReason(f"refresh {waiting[0].dagster_run.run_id} has not started yet; it reads this window too")
    return dg.RunRequest(run_key=f"scores-after-{context.dagster_run.run_id}")
