"""The Dagster code location (`dagster dev -w workspace.yaml`, `dg dev`)."""

import dagster as dg

from amp_personalize.assets.interactions import impressions, interactions
from amp_personalize.assets.raw_events import raw_events
from amp_personalize.assets.recommender import (
    recommendations,
    recommender_model,
    similar_items,
)
from amp_personalize.assets.user_item_scores import user_item_scores
from amp_personalize.jobs import caches_job, retrain_job, scores_job, window_job
from amp_personalize.resources import AmpResource
from amp_personalize.sensors.landing_sensor import landing_sensor, scores_after_window
from amp_personalize.sensors.training import caches_after_training, retraining_schedule
from amp_personalize.settings import Settings

defs = dg.Definitions(
    assets=[raw_events, interactions, impressions, user_item_scores, recommender_model, recommendations, similar_items],
    jobs=[window_job, scores_job, retrain_job, caches_job],
    schedules=[retraining_schedule],
    sensors=[landing_sensor, scores_after_window, caches_after_training],
    resources={"amp": AmpResource.from_settings(Settings.from_env())},
)
