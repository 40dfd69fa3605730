"""interactions and impressions: the window's ML-relevant events, weighted by the weight file."""

import dagster as dg
import polars as pl

from amp_personalize.assets.partitions import WINDOW_POOL, WINDOWS
from amp_personalize.assets.publish import check_specs, markdown_table, publish
from amp_personalize.assets.tables import CODE_VERSION, OWNERS, table_metadata
from amp_personalize.checks.rules import IMPRESSIONS, INTERACTIONS
from amp_personalize.lake.store import lake as lake_store
from amp_personalize.resources import AmpResource
from amp_personalize.transforms.interactions import impressions as build_impressions
from amp_personalize.transforms.interactions import interactions as build_interactions
from amp_personalize.transforms.interactions import SKIP_REASONS, skip_reasons
from amp_personalize.transforms.weights import weights_frame


def read_raw_events(amp: AmpResource, window: str) -> pl.DataFrame:
    df = lake_store(amp.settings()).read("raw_events", window)
    if df is None:
        raise dg.Failure(
            f"raw_events for window {window} is not in the lake: it was never materialized, "
            "or a blocking check kept it out. Materialize raw_events for this window first."
        )
    return df


def weight_summary(df: pl.DataFrame, type_column: str) -> pl.DataFrame:
    return (
        df.group_by(type_column)
        .agg(pl.len().alias("rows"), pl.col("event_value").first().alias("weight"), pl.col("event_value").sum().alias("total_weight"))
        .sort(type_column)
    )


def weight_distribution(summary: pl.DataFrame) -> dg.MetadataValue:
    return dg.MetadataValue.md(markdown_table(summary))


@dg.asset(
    partitions_def=WINDOWS,
    pool=WINDOW_POOL,
    deps=["raw_events"],
    check_specs=check_specs("interactions", INTERACTIONS),
    group_name="events",
    kinds={"polars", "parquet", "duckdb"},
    owners=OWNERS,
    code_version=CODE_VERSION,
    metadata=table_metadata("interactions"),
)
def interactions(context: dg.AssetExecutionContext, amp: AmpResource) -> dg.MaterializeResult:
    """Weighted user-item events (clicks, upvotes, flags, ...): what the recommender learns from."""
    raw = read_raw_events(amp, context.partition_key)
    weights = weights_frame(amp.weights())
    df = build_interactions(raw, weights)
    reasons = skip_reasons(raw, weights)
    skipped = sum(n for r, n in reasons.items() if r != "processed")
    by_type = weight_summary(df, "event_type")
    return publish(
        "interactions",
        df,
        INTERACTIONS,
        amp,
        partition=context.partition_key,
        metadata={
            "processed": reasons.get("processed", 0),
            "skipped": skipped,
            # Volume-free, so it plots the same for a backfill and a quiet hour: a tracking change shows.
            "skipped_share": round(skipped / (skipped + reasons.get("processed", 0)), 4) if skipped else 0.0,
            # Numbers, one per reason and per weighted type, every time: each plots over the windows.
            **{f"skipped_{reason}": reasons.get(reason, 0) for reason in SKIP_REASONS},
            **{f"events_{t}": n for t, n in _per_type(weights, by_type).items()},
            "weight_distribution": weight_distribution(by_type),
            "users": df["user_id"].n_unique(),
            "items": df["item_id"].n_unique(),
        },
    )


def _per_type(weights: pl.DataFrame, by_type: pl.DataFrame) -> dict[str, int]:
    """Rows per weighted (non-impression) type of the weight table, 0 for those absent."""
    rows = dict(by_type.select("event_type", "rows").iter_rows())
    return {t: rows.get(t, 0) for t in weights.filter(~pl.col("is_impression"))["event_type"].sort()}


@dg.asset(
    partitions_def=WINDOWS,
    pool=WINDOW_POOL,
    deps=["raw_events"],
    check_specs=check_specs("impressions", IMPRESSIONS),
    group_name="events",
    kinds={"polars", "parquet", "duckdb"},
    owners=OWNERS,
    code_version=CODE_VERSION,
    metadata=table_metadata("impressions"),
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
            "by_feed_type": dg.MetadataValue.md(markdown_table(df.group_by("feed_type").agg(pl.len().alias("items_shown")).sort("feed_type"))),
            "weight_distribution": weight_distribution(weight_summary(df, "impression_type")),
        },
    )
