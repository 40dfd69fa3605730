"""Jobs: the per-window job the landing sensor launches, and the aggregate refresh."""

from __future__ import annotations

import dagster as dg

window_job = dg.define_asset_job(
    "process_window",
    selection=["raw_events", "interactions", "impressions"],
    description="One landing window: raw_events, then interactions and impressions, with their checks.",
    # A window of a million events takes seconds; past two hours the run is hung (or its worker
    # died), and with run monitoring on the daemon ends it, so the next window is not held back.
    tags={"dagster/max_runtime": "7200"},
)
scores_job = dg.define_asset_job(
    "refresh_user_item_scores",
    selection=["user_item_scores"],
    description="Recompute user_item_scores from every published interactions window.",
)
retrain_job = dg.define_asset_job(
    "retrain",
    selection=["recommender_model"],
    description="Train a new model version from the history window; the caches follow it.",
)
caches_job = dg.define_asset_job(
    "refresh_recommendations",
    selection=["recommendations", "similar_items"],
    description="Recompute the cached recommendations and similar items from the latest model.",
)
push_job = dg.define_asset_job(
    "push_to_personalize",
    selection=["personalize_events"],
    description="Send the events of sealed landing segments not yet pushed to Personalize's PutEvents.",
)
