"""landing_sensor: one run per closed, sealed landing window; a watermark as its cursor."""

import json

import dagster as dg

from amp_personalize.jobs import scores_job, window_job
from amp_personalize.resources import AmpResource
from amp_personalize.sensors.plan import plan_now


def run_key(window: str) -> str:
    return f"window-{window}"


@dg.sensor(job=window_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def landing_sensor(context: dg.SensorEvaluationContext, amp: AmpResource) -> dg.SensorResult | dg.SkipReason:
    """Requests the window job for each landing window that is closed, sealed and past grace."""
    settings = amp.settings()
    cursor = json.loads(context.cursor) if context.cursor else {}
    plan = plan_now(settings, watermark=cursor.get("watermark"))
    for _, why in plan.waiting:
        context.log.info(why)
    new_cursor = json.dumps({"watermark": plan.watermark}) if plan.watermark else context.cursor
    if not plan.ready:
        why = plan.waiting[0][1] if plan.waiting else "no new landing windows"
        return dg.SensorResult(skip_reason=dg.SkipReason(why), cursor=new_cursor)
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=run_key(w), partition_key=w) for w in plan.ready],
        cursor=new_cursor,
    )


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[window_job],
    request_job=scores_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def scores_after_window(context: dg.RunStatusSensorContext) -> dg.RunRequest:
    """Every processed window refreshes the aggregate that reads all windows."""
    return dg.RunRequest(run_key=f"scores-after-{context.dagster_run.run_id}")
