"""The Dagster code location (`dagster dev -w workspace.yaml`, `dg dev`)."""

import dagster as dg

from amp_personalize.assets.interactions import impressions, interactions
from amp_personalize.assets.personalize_events import personalize_events
from amp_personalize.assets.raw_events import raw_events
from amp_personalize.assets.recommender import (
    recommendations,
    recommender_model,
    similar_items,
)
from amp_personalize.assets.user_item_scores import user_item_scores
from amp_personalize.backends.personalize.resource import PersonalizeResource
from amp_personalize.jobs import (
    caches_job,
    push_job,
    retrain_job,
    scores_job,
    window_job,
)
from amp_personalize.resources import AmpResource
from amp_personalize.sensors.landing_sensor import (
    landing_sensor,
    scores_after_kept_out_window,
    scores_after_window,
)
from amp_personalize.sensors.personalize_sensor import personalize_events_sensor
from amp_personalize.sensors.training import caches_after_training, retraining_schedule
from amp_personalize.settings import Settings


def build_definitions(settings: Settings) -> dg.Definitions:
    """The local backend's pipeline; with Personalize, also the live push and its sensor.

    The push needs an event tracker: with only a campaign set (reading recommendations from a
    campaign fed some other way) a push sensor would start a run that fails every 30 seconds.
    """
    live = settings.backend == "personalize" and bool(settings.personalize.tracking_id)
    return dg.Definitions(
        assets=[raw_events, interactions, impressions, user_item_scores, recommender_model, recommendations, similar_items]
        + ([personalize_events] if live else []),
        jobs=[window_job, scores_job, retrain_job, caches_job] + ([push_job] if live else []),
        schedules=[retraining_schedule],
        sensors=[landing_sensor, scores_after_window, scores_after_kept_out_window, caches_after_training] + ([personalize_events_sensor] if live else []),
        resources={
            "amp": AmpResource.from_settings(settings),
            "personalize": PersonalizeResource.from_settings(settings.personalize),
        },
    )


defs = build_definitions(Settings.from_env())
