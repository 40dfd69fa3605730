"""user_item_scores: each user's net signal about each item over the history window."""

from datetime import datetime, timezone

import dagster as dg

from amp_personalize.assets.partitions import reads_every_window
from amp_personalize.assets.publish import check_specs, publish
from amp_personalize.assets.tables import CODE_VERSION, OWNERS, table_metadata
from amp_personalize.checks.rules import USER_ITEM_SCORES
from amp_personalize.lake.store import lake as lake_store
from amp_personalize.resources import AmpResource
from amp_personalize.transforms.interactions import INTERACTIONS_SCHEMA
from amp_personalize.transforms.scores import user_item_scores as build_scores


@dg.asset(
    deps=[reads_every_window("interactions")],
    check_specs=check_specs("user_item_scores", USER_ITEM_SCORES),
    group_name="events",
    kinds={"polars", "parquet", "duckdb"},
    owners=OWNERS,
    code_version=CODE_VERSION,
    metadata=table_metadata("user_item_scores"),
)
def user_item_scores(context: dg.AssetExecutionContext, amp: AmpResource) -> dg.MaterializeResult:
    """Net weight, event count, last time and any-negative per (user, item): the model's input."""
    settings = amp.settings()
    interactions = lake_store(settings).scan("interactions", INTERACTIONS_SCHEMA)
    df = build_scores(interactions, datetime.now(timezone.utc), settings.history_days)
    return publish(
        "user_item_scores",
        df,
        USER_ITEM_SCORES,
        amp,
        metadata={
            "users": df["user_id"].n_unique(),
            "items": df["item_id"].n_unique(),
            "negative_pairs": int(df["negative"].sum()) if df.height else 0,
            "history_days": settings.history_days,
        },
    )
