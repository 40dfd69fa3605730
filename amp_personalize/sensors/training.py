"""retraining_schedule, and the cache refresh that follows every training, scheduled or manual."""

import dagster as dg

from amp_personalize.jobs import caches_job, retrain_job
from amp_personalize.settings import Settings

retraining_schedule = dg.ScheduleDefinition(
    name="retraining_schedule",
    job=retrain_job,
    cron_schedule=Settings.from_env().retrain_cron,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Retrain the recommender (AMP_RETRAIN_CRON, daily at 03:00 UTC by default).",
)


@dg.asset_sensor(
    asset_key=dg.AssetKey("recommender_model"),
    job=caches_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def caches_after_training(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry) -> dg.RunRequest | dg.SkipReason:
    """Every new model version, however it was trained, refreshes the caches built from it."""
    materialization = asset_event.asset_materialization
    version = materialization.metadata.get("version") if materialization else None
    if version is None:
        return dg.SkipReason("the latest recommender_model run trained nothing (not enough data)")
    return dg.RunRequest(run_key=f"caches-{version.value}", tags={"model_version": str(version.value)})
