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


def why_no_caches(model_backend: str | None, settings: Settings) -> str | None:
    """Why a new model cannot feed the caches yet: a Personalize version with no campaign to ask.

    The first training on Personalize comes before its campaign (which needs a version), so a
    cache refresh then could only fail; `personalize setup` creates the campaign next.
    """
    if model_backend == "personalize" and not settings.personalize.campaign_arn:
        return "no campaign yet (AWS_PERSONALIZE_CAMPAIGN_ARN unset): run `amp-personalize personalize setup` to create it"
    return None


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
    backend = materialization.metadata.get("backend")
    why = why_no_caches(backend.value if backend else None, Settings.from_env())
    if why:
        return dg.SkipReason(f"caches not refreshed from {version.value}: {why}")
    return dg.RunRequest(run_key=f"caches-{version.value}", tags={"model_version": str(version.value)})
