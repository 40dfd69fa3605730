"""user_item_scores: what each user has shown about each item, over the history window."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from amp_personalize.transforms import UTC_MS

SCORES_SCHEMA = {
    "user_id": pl.String(),
    "item_id": pl.String(),
    "net_weight": pl.Float64(),
    "n_events": pl.UInt32(),
    "last_event_time": UTC_MS,
    "negative": pl.Boolean(),
}


def user_item_scores(interactions: pl.LazyFrame, as_of: datetime, history_days: int) -> pl.DataFrame:
    """Net weight per (user, item) since `as_of - history_days`.

    `negative` marks a pair with any negative signal (downvote, hide, flag): the recommender
    must never offer that item to that user again, whatever the net weight says. Events are
    deduplicated again by event_id, so a window processed out of order can't count one twice.
    """
    since = as_of - timedelta(days=history_days)
    return (
        interactions.filter(pl.col("event_time") >= pl.lit(since).cast(UTC_MS))
        .unique(subset="event_id", keep="first")
        .group_by("user_id", "item_id")
        .agg(
            pl.col("event_value").sum().alias("net_weight"),
            pl.len().alias("n_events"),
            pl.col("event_time").max().alias("last_event_time"),
            (pl.col("event_value") < 0).any().alias("negative"),
        )
        .sort("user_id", "item_id")
        .collect()
    )
