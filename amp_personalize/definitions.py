"""The Dagster code location (`dagster dev -w workspace.yaml`, `dg dev`)."""

import dagster as dg

from amp_personalize.assets.interactions import impressions, interactions
from amp_personalize.assets.raw_events import raw_events
from amp_personalize.assets.user_item_scores import user_item_scores
from amp_personalize.jobs import scores_job, window_job
from amp_personalize.resources import AmpResource
from amp_personalize.sensors.landing_sensor import landing_sensor, scores_after_window
from amp_personalize.settings import Settings

defs = dg.Definitions(
    assets=[raw_events, interactions, impressions, user_item_scores],
    jobs=[window_job, scores_job],
    sensors=[landing_sensor, scores_after_window],
    resources={"amp": AmpResource.from_settings(Settings.from_env())},
)
