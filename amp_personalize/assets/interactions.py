"""interactions and impressions: the window's ML-relevant events, weighted by the weight file."""

import dagster as dg
import polars as pl

from amp_personalize.assets.partitions import WINDOWS
from amp_personalize.assets.publish import check_specs, publish
from amp_personalize.checks.rules import IMPRESSIONS, INTERACTIONS
from amp_personalize.lake.store import lake as lake_store
from amp_personalize.resources import AmpResource
from amp_personalize.transforms.interactions import impressions as build_impressions
from amp_personalize.transforms.interactions import interactions as build_interactions
from amp_personalize.transforms.interactions import skip_reasons
from amp_personalize.transforms.weights import weights_frame


def read_raw_events(amp: AmpResource, window: str) -> pl.DataFrame:
    df = lake_store(amp.settings()).read("raw_events", window)
    if df is None:
        raise dg.Failure(
            f"raw_events for window {window} is not in the lake: it was never materialized, "
            "or a blocking check kept it out. Materialize raw_events for this window first."
        )
    return df


def weight_distribution(df: pl.DataFrame, type_column: str) -> dg.MetadataValue:
    summary = (
        df.group_by(type_column)
        .agg(pl.len().alias("rows"), pl.col("event_value").first().alias("weight"), pl.col("event_value").sum().alias("total_weight"))
        .sort(type_column)
    )
    return dg.MetadataValue.json({row[type_column]: {k: v for k, v in row.items() if k != type_column} for row in summary.iter_rows(named=True)})


@dg.asset(
    partitions_def=WINDOWS,
    deps=["raw_events"],
    check_specs=check_specs("interactions", INTERACTIONS),
    group_name="events",
    kinds={"polars", "parquet"},
)
def interactions(context: dg.AssetExecutionContext, amp: AmpResource) -> dg.MaterializeResult:
    """Weighted user-item events (clicks, upvotes, flags, ...): what the recommender learns from."""
    raw = read_raw_events(amp, context.partition_key)
    weights = weights_frame(amp.weights())
    df = build_interactions(raw, weights)
    reasons = skip_reasons(raw, weights)
    return publish(
        "interactions",
        df,
        INTERACTIONS,
        amp,
        partition=context.partition_key,
        metadata={
            "processed": reasons.get("processed", 0),
            "skipped": sum(n for r, n in reasons.items() if r != "processed"),
            "skipped_by_reason": dg.MetadataValue.json({r: n for r, n in sorted(reasons.items()) if r != "processed"}),
            "weight_distribution": weight_distribution(df, "event_type"),
            "users": df["user_id"].n_unique(),
            "items": df["item_id"].n_unique(),
        },
    )


@dg.asset(
    partitions_def=WINDOWS,
    deps=["raw_events"],
    check_specs=check_specs("impressions", IMPRESSIONS),
    group_name="events",
    kinds={"polars", "parquet"},
)
def impressions(context: dg.AssetExecutionContext, amp: AmpResource) -> dg.MaterializeResult:
    """What each user was shown, item by item with its position: the denominator of every click."""
    raw = read_raw_events(amp, context.partition_key)
    df = build_impressions(raw, weights_frame(amp.weights()))
    return publish(
        "impressions",
        df,
        IMPRESSIONS,
        amp,
        partition=context.partition_key,
        metadata={
            "impression_events": df["event_id"].n_unique(),
            "items_shown": df.height,
            "by_feed_type": dg.MetadataValue.json(dict(df.group_by("feed_type").len().sort("feed_type").iter_rows())) if df.height else {},
            "weight_distribution": weight_distribution(df, "impression_type"),
        },
    )
