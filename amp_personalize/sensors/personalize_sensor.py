"""personalize_events_sensor: a push run whenever sealed segments hold events not yet pushed."""

import dagster as dg

from amp_personalize.backends.personalize.ledger import Ledger
from amp_personalize.backends.personalize.realtime import pending_segments, segment_name
from amp_personalize.jobs import push_job
from amp_personalize.resources import AmpResource
from amp_personalize.settings import Settings

ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


@dg.sensor(
    job=push_job,
    minimum_interval_seconds=Settings.from_env().personalize.push_interval_seconds,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def personalize_events_sensor(context: dg.SensorEvaluationContext, amp: AmpResource) -> dg.RunRequest | dg.SkipReason:
    """Lists sealed segments against the ledger (no event is read here); one push run at a time."""
    settings = amp.settings()
    in_flight = context.instance.get_run_records(dg.RunsFilter(job_name=push_job.name, statuses=ACTIVE), limit=1)
    if in_flight:
        return dg.SkipReason(f"push run {in_flight[0].dagster_run.run_id} is still going; it or the next takes the new segments")
    ledger = Ledger(settings.ledger_path)
    try:
        pending = pending_segments(settings.landing_dir, ledger, settings.window_minutes)
    finally:
        ledger.close()
    if not pending:
        return dg.SkipReason("every sealed segment of the live windows is pushed")
    # No run key: a failed push is retried at the next tick, not only once newer segments land.
    newest = segment_name(settings.landing_dir, pending[-1])
    return dg.RunRequest(tags={"segments": str(len(pending)), "newest_segment": newest})
