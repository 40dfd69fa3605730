"""interactions and impressions: the ML-relevant events of a window, weighted (SPEC 5, 6)."""

from __future__ import annotations

import polars as pl

from amp_personalize.transforms import UTC_MS, n_shown

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


def weighted(raw: pl.DataFrame, weights: pl.DataFrame) -> pl.LazyFrame:
    """Events with a weighted type and a user, joined to their weight; event_type lower-cased.

    Lazy, so each caller's final select is pushed down and only the columns it keeps are
    carried through the filters and the join (not `properties` and the other wide columns).
    """
    return (
        raw.lazy()
        .filter(pl.col("kind") == "event", pl.col("user_id").is_not_null())
        .with_columns(_TYPE.alias("event_type"))
        .join(weights.lazy(), on="event_type", how="inner", maintain_order="left")
    )


def interactions(raw: pl.DataFrame, weights: pl.DataFrame) -> pl.DataFrame:
    return (
        weighted(raw, weights)
        .filter(~pl.col("is_impression"), pl.col("item_id").is_not_null())
        .select(list(INTERACTIONS_SCHEMA))
        .collect()
    )


def impressions(raw: pl.DataFrame, weights: pl.DataFrame) -> pl.DataFrame:
    """One row per (impression event, item shown), with the item's position in what was shown.

    Positions count every entry as sent: the nulls landed in place of entries that were not ids
    are dropped only after exploding, so they leave a gap instead of moving later items up.
    """
    shown = weighted(raw, weights).filter(pl.col("is_impression"), n_shown(pl.col("items_shown")) > 0)
    return (
        shown.select(
            "event_id",
            "user_id",
            pl.col("items_shown").alias("item_id"),
            pl.int_ranges(pl.col("items_shown").list.len(), dtype=pl.Int32).alias("position"),
            pl.col("event_type").alias("impression_type"),
            "feed_type",
            "event_time",
            "event_value",
        )
        .explode("item_id", "position")
        .filter(pl.col("item_id").is_not_null())
        .collect()
    )


# Why an event is not ML-relevant, in the order skip_reasons tests them (first reason wins).
SKIP_REASONS = ("user_payload", "unweighted_type", "no_user_id", "no_items_shown", "no_item_id")


def skip_reasons(raw: pl.DataFrame, weights: pl.DataFrame) -> dict[str, int]:
    """Why each skipped event was skipped, first reason wins; the UI's 'processed vs skipped'.

    The rule only looks at a handful of facts per event, so events are first counted per
    distinct combination of those facts (a few hundred groups) and the rule runs on the groups.
    """
    known = weights["event_type"].implode()
    impression_types = weights.filter("is_impression")["event_type"].implode()
    kind = pl.col("event_type")
    reason = (
        pl.when(pl.col("kind") != "event").then(pl.lit("user_payload"))
        .when(~kind.is_in(known)).then(pl.lit("unweighted_type"))
        .when(~pl.col("has_user")).then(pl.lit("no_user_id"))
        .when(kind.is_in(impression_types) & ~pl.col("has_items")).then(pl.lit("no_items_shown"))
        .when(~kind.is_in(impression_types) & ~pl.col("has_item")).then(pl.lit("no_item_id"))
        .otherwise(pl.lit("processed"))
    )
    counts = (
        raw.lazy()
        .group_by(
            "kind",
            _TYPE.alias("event_type"),
            pl.col("user_id").is_not_null().alias("has_user"),
            (n_shown(pl.col("items_shown")) > 0).alias("has_items"),
            pl.col("item_id").is_not_null().alias("has_item"),
        )
        .agg(pl.len().alias("count"))
        .group_by(reason.alias("reason"))
        .agg(pl.col("count").sum())
        .collect()
    )
    return dict(counts.iter_rows())
