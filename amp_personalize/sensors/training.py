"""retraining_schedule, and the cache refresh that follows every training, scheduled or manual."""

import dagster as dg

from amp_personalize.backends.personalize.resource import PersonalizeResource
from amp_personalize.jobs import caches_job, retrain_job
from amp_personalize.settings import PersonalizeSettings, Settings

# On a training run whose caches the same command refreshes right after (`amp-personalize train`):
# the sensor leaves that model version to it instead of refreshing the caches a second time.
CACHES_TAG = "amp/caches"
CACHES_INLINE = "refreshed-by-train"

retraining_schedule = dg.ScheduleDefinition(
    name="retraining_schedule",
    job=retrain_job,
    cron_schedule=Settings.from_env().retrain_cron,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Retrain the recommender (AMP_RETRAIN_CRON, daily at 03:00 UTC by default).",
)


def why_no_caches(model_backend: str | None, personalize: PersonalizeSettings) -> str | None:
    """Why a new model cannot feed the caches yet: a Personalize version with no campaign to ask.

    The first training on Personalize comes before its campaign (which needs a version), so a
    cache refresh then could only fail; `personalize setup` creates the campaign next.
    """
    if model_backend == "personalize" and not personalize.campaign_arn:
        return "no campaign yet (AWS_PERSONALIZE_CAMPAIGN_ARN unset): run `amp-personalize personalize setup` to create it"
    return None


@dg.asset_sensor(
    asset_key=dg.AssetKey("recommender_model"),
    job=caches_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def caches_after_training(
    context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry, personalize: PersonalizeResource
) -> dg.RunRequest | dg.SkipReason:
    """Every new model version, however it was trained, refreshes the caches built from it, once."""
    materialization = asset_event.asset_materialization
    version = materialization.metadata.get("version") if materialization else None
    if version is None:
        return dg.SkipReason("the latest recommender_model run trained nothing (not enough data)")
    backend = materialization.metadata.get("backend")
    why = why_no_caches(backend.value if backend else None, personalize.settings())
    if why:
        return dg.SkipReason(f"caches not refreshed from {version.value}: {why}")
    run = context.instance.get_run_by_id(asset_event.run_id) if asset_event.run_id else None
    if run is not None and run.tags.get(CACHES_TAG) == CACHES_INLINE:
        return dg.SkipReason(f"model {version.value}: `amp-personalize train` (run {run.run_id}) refreshes its caches itself")
    if run is not None and _plans(context.instance, run.run_id, dg.AssetKey("recommendations")):
        return dg.SkipReason(f"model {version.value}: run {run.run_id} refreshes its caches in the same run")
    return dg.RunRequest(run_key=f"caches-{version.value}", tags={"model_version": str(version.value)})


def _plans(instance: dg.DagsterInstance, run_id: str, asset: dg.AssetKey) -> bool:
    """Whether a run materializes `asset` too (a UI launch of the model with its caches): every
    run records the assets it plans at its start, however it was launched."""
    planned = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED).records
    return any(r.event_log_entry.dagster_event.asset_key == asset for r in planned)
