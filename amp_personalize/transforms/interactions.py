"""interactions and impressions: the ML-relevant events of a window, weighted (SPEC 5, 6)."""

from __future__ import annotations

import polars as pl

UTC_MS = pl.Datetime("ms", "UTC")
_TYPE = pl.col("event_type").str.to_lowercase()

INTERACTIONS_SCHEMA = {
    "event_id": pl.String(),
    "user_id": pl.String(),
    "item_id": pl.String(),
    "event_type": pl.String(),
    "event_value": pl.Float64(),
    "event_time": UTC_MS,
    "session_id": pl.Int64(),
    "recommendation_id": pl.String(),
}
IMPRESSIONS_SCHEMA = {
    "event_id": pl.String(),
    "user_id": pl.String(),
    "item_id": pl.String(),
    "position": pl.Int32(),
    "impression_type": pl.String(),
    "feed_type": pl.String(),
    "event_time": UTC_MS,
    "event_value": pl.Float64(),
}


def _weighted(raw: pl.DataFrame, weights: pl.DataFrame) -> pl.DataFrame:
    """Events with a weighted type and a user, joined to their weight; event_type lower-cased."""
    return (
        raw.filter(pl.col("kind") == "event", pl.col("user_id").is_not_null())
        .with_columns(_TYPE.alias("event_type"))
        .join(weights, on="event_type", how="inner", maintain_order="left")
    )


def interactions(raw: pl.DataFrame, weights: pl.DataFrame) -> pl.DataFrame:
    return (
        _weighted(raw, weights)
        .filter(~pl.col("is_impression"), pl.col("item_id").is_not_null())
        .select(list(INTERACTIONS_SCHEMA))
    )


def impressions(raw: pl.DataFrame, weights: pl.DataFrame) -> pl.DataFrame:
    """One row per (impression event, item shown), with the item's position in what was shown."""
    shown = _weighted(raw, weights).filter(pl.col("is_impression"), pl.col("items_shown").list.len() > 0)
    return (
        shown.with_columns(pl.int_ranges(pl.col("items_shown").list.len(), dtype=pl.Int32).alias("position"))
        .explode("items_shown", "position")
        .select(
            "event_id",
            "user_id",
            pl.col("items_shown").alias("item_id"),
            "position",
            pl.col("event_type").alias("impression_type"),
            "feed_type",
            "event_time",
            "event_value",
        )
    )


def skip_reasons(raw: pl.DataFrame, weights: pl.DataFrame) -> dict[str, int]:
    """Why each skipped event was skipped, first reason wins; the UI's 'processed vs skipped'."""
    known = weights["event_type"].implode()
    impression_types = weights.filter("is_impression")["event_type"].implode()
    reason = (
        pl.when(pl.col("kind") != "event").then(pl.lit("user_payload"))
        .when(~_TYPE.is_in(known)).then(pl.lit("unweighted_type"))
        .when(pl.col("user_id").is_null()).then(pl.lit("no_user_id"))
        .when(_TYPE.is_in(impression_types) & (pl.col("items_shown").list.len().fill_null(0) == 0))
        .then(pl.lit("no_items_shown"))
        .when(~_TYPE.is_in(impression_types) & pl.col("item_id").is_null()).then(pl.lit("no_item_id"))
        .otherwise(pl.lit("processed"))
    )
    counts = raw.select(reason.alias("reason"))["reason"].value_counts()
    return {row["reason"]: row["count"] for row in counts.iter_rows(named=True)}
