"""personalize_events_sensor: a push run whenever sealed segments hold events not yet pushed."""

import dagster as dg

from amp_personalize.backends.personalize.ledger import open_ledger
from amp_personalize.backends.personalize.realtime import pending_segments, segment_name
from amp_personalize.backends.personalize.resource import PersonalizeResource
from amp_personalize.jobs import push_job
from amp_personalize.landing.source import landing_source
from amp_personalize.resources import AmpResource
from amp_personalize.sensors.window_runs import run_in_flight
from amp_personalize.settings import Settings


@dg.sensor(
    job=push_job,
    minimum_interval_seconds=Settings.from_env().personalize.push_interval_seconds,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def personalize_events_sensor(
    context: dg.SensorEvaluationContext, amp: AmpResource, personalize: PersonalizeResource
) -> dg.RunRequest | dg.SkipReason:
    """Lists sealed segments against the ledger (no event is read here); one push run at a time."""
    settings = amp.settings()
    in_flight = run_in_flight(context.instance, push_job.name)
    if in_flight is not None:
        return dg.SkipReason(f"push run {in_flight.run_id} is still going; it or the next takes the new segments")
    ledger = open_ledger(settings)
    try:
        # A ledger kept for another destination fails every push: say so here, once a tick, rather
        # than start a run every tick that is bound to fail.
        conflict = ledger.conflict(personalize.settings().destination())
        if conflict:
            return dg.SkipReason(f"not pushing: {conflict}")
        pending = pending_segments(landing_source(settings), ledger, settings.window_minutes)
    finally:
        ledger.close()
    if not pending:
        return dg.SkipReason("every sealed segment of the live windows is pushed")
    # No run key: a failed push is retried at the next tick, not only once newer segments land.
    newest = segment_name(pending[-1])
    return dg.RunRequest(tags={"segments": str(len(pending)), "newest_segment": newest})
