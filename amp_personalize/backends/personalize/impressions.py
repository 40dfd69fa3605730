"""Impressions as Personalize takes them: the items a user saw when they interacted with one.

Personalize records impressions only on an interaction with an item (PutEvents `impression`,
the CSV's IMPRESSION column); a feed shown with nothing clicked has no item to hang on. So an
impression-only event (SPEC 5: `initial_impression`, `scroll_impression`) is attached to the
same user's next interaction within ATTACH_WITHIN, and an interaction that carries its own
`items_shown` keeps them. Both the real-time push and the bulk import use this one rule.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from amp_personalize.transforms import ids_shown

ATTACH_WITHIN = timedelta(minutes=30)


def attach_impressions(interactions: pl.DataFrame, shown: pl.DataFrame) -> pl.DataFrame:
    """`interactions` plus `items_shown`: their own, else the user's latest impression before them.

    `shown` has one row per impression event: user_id, event_time, items_shown (in display order).
    Only ids count, on either side: a list's nulls (entries that were not ids, kept as landed for
    their positions) are dropped, and a list left empty is no impression. The result has none.
    """
    own = interactions.select(ids_shown(pl.col("items_shown")))["items_shown"] if "items_shown" in interactions.columns else None
    base = interactions.drop("items_shown", strict=False).with_row_index("_row")
    latest = (
        shown.select("user_id", pl.col("event_time").alias("_shown_at"), ids_shown(pl.col("items_shown")).alias("_attached"))
        .filter(pl.col("_attached").list.len() > 0)
    )
    joined = (
        base.sort("user_id", "event_time")
        .join_asof(
            latest.sort("user_id", "_shown_at"), left_on="event_time", right_on="_shown_at", by="user_id",
            strategy="backward", tolerance=ATTACH_WITHIN, check_sortedness=False,  # sorted by (user, time) just above
        )
        .sort("_row")
    )
    if own is not None:
        joined = joined.with_columns(
            pl.when(own.list.len().fill_null(0) > 0).then(own).otherwise(pl.col("_attached")).alias("_attached")
        )
    return joined.drop("_row", "_shown_at").rename({"_attached": "items_shown"})


def impression_lists(impressions: pl.DataFrame) -> pl.DataFrame:
    """The lake's `impressions` (a row per item shown) back to a row per impression event."""
    return (
        impressions.sort("event_id", "position")
        .group_by("event_id", maintain_order=True)
        .agg(pl.col("user_id").first(), pl.col("event_time").first(), pl.col("item_id").alias("items_shown"))
    )
