"""The checks every dataset must pass, and the gate that keeps failing data out of the lake.

Checks run inside the asset on the frame about to be written, so a blocking failure stops the
partition from being published at all: downstream runs read the lake, and never see it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

import polars as pl

from amp_personalize.transforms import UTC_MS


@dataclass(frozen=True)
class CheckContext:
    weights: pl.DataFrame  # transforms.weights.weights_frame
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    future_skew: timedelta = timedelta(minutes=10)


@dataclass(frozen=True)
class Outcome:
    passed: bool
    metadata: dict


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    blocking: bool
    run: Callable[[pl.DataFrame, CheckContext], Outcome]


def _count(df: pl.DataFrame, predicate: pl.Expr) -> int:
    return int(df.select(predicate.sum())[0, 0]) if df.height else 0


def _sample(df: pl.DataFrame, predicate: pl.Expr, columns: list[str]) -> str:
    """A few offending rows, as polars prints them: Python's datetime ends at year 9999, and a
    landed time past it once failed a whole window's run here."""
    return str(df.filter(predicate).select(pl.col(columns).cast(pl.String)).head(5).rows())


def no_null(columns: list[str]) -> Callable[[pl.DataFrame, CheckContext], Outcome]:
    def run(df: pl.DataFrame, ctx: CheckContext) -> Outcome:
        nulls = {c: _count(df, pl.col(c).is_null() | (pl.col(c) == "")) for c in columns}
        return Outcome(not any(nulls.values()), {f"null_{c}": n for c, n in nulls.items()})

    return run


def unique(columns: list[str]) -> Callable[[pl.DataFrame, CheckContext], Outcome]:
    def run(df: pl.DataFrame, ctx: CheckContext) -> Outcome:
        dupes = _count(df, pl.struct(columns).is_duplicated()) if df.height else 0
        meta = {"duplicate_rows": dupes}
        if dupes:
            meta["examples"] = _sample(df, pl.struct(columns).is_duplicated(), columns)
        return Outcome(dupes == 0, meta)

    return run


def not_in_future(column: str) -> Callable[[pl.DataFrame, CheckContext], Outcome]:
    def run(df: pl.DataFrame, ctx: CheckContext) -> Outcome:
        limit = pl.lit(ctx.now + ctx.future_skew).cast(UTC_MS)
        ahead = _count(df, pl.col(column) > limit)
        meta = {"rows_in_future": ahead, "allowed_skew_minutes": ctx.future_skew.total_seconds() / 60}
        if ahead:
            meta["examples"] = _sample(df, pl.col(column) > limit, ["event_id", column])
        return Outcome(ahead == 0, meta)

    return run


def value_in_weight_range(df: pl.DataFrame, ctx: CheckContext) -> Outcome:
    low, high = float(ctx.weights["event_value"].min()), float(ctx.weights["event_value"].max())
    outside = _count(df, ~pl.col("event_value").is_between(low, high) | pl.col("event_value").is_null())
    return Outcome(outside == 0, {"rows_outside": outside, "min_weight": low, "max_weight": high})


def types_known(column: str, impression: bool) -> Callable[[pl.DataFrame, CheckContext], Outcome]:
    def run(df: pl.DataFrame, ctx: CheckContext) -> Outcome:
        known = ctx.weights.filter(pl.col("is_impression") == impression)["event_type"].implode()
        unknown = df.filter(~pl.col(column).is_in(known))[column].unique().sort().to_list()
        return Outcome(not unknown, {"unknown_types": str(unknown[:20])})

    return run


RAW_EVENTS = [
    Check("event_id_unique", "Each event is counted once: no event_id appears twice.", True, unique(["event_id"])),
    Check("no_null_ids", "Every row has an event_id and a kind.", True, no_null(["event_id", "kind"])),
    Check("no_future_timestamps", "Event times are not ahead of now beyond the allowed clock skew.", False, not_in_future("event_time")),
]
INTERACTIONS = [
    Check("no_null_ids", "Every interaction names its event, user and item.", True, no_null(["event_id", "user_id", "item_id"])),
    Check("event_id_unique", "No event is counted twice.", True, unique(["event_id"])),
    Check("event_value_in_range", "Every event_value lies within the weight table's range.", True, value_in_weight_range),
    Check("event_types_known", "Every event_type is a weighted, non-impression type.", True, types_known("event_type", False)),
    Check("no_future_timestamps", "Event times are not ahead of now beyond the allowed clock skew.", False, not_in_future("event_time")),
]
IMPRESSIONS = [
    Check("no_null_ids", "Every impression names its event, user and a non-empty item.", True, no_null(["event_id", "user_id", "item_id"])),
    Check("impression_unique", "Each (event, position) appears once.", True, unique(["event_id", "position"])),
    Check("event_value_in_range", "Every event_value lies within the weight table's range.", True, value_in_weight_range),
    Check("impression_types_known", "Every impression_type is a weighted impression type.", True, types_known("impression_type", True)),
    Check("no_future_timestamps", "Event times are not ahead of now beyond the allowed clock skew.", False, not_in_future("event_time")),
]
USER_ITEM_SCORES = [
    Check("no_null_ids", "Every score names a user and an item.", True, no_null(["user_id", "item_id"])),
    Check("pair_unique", "One row per (user, item).", True, unique(["user_id", "item_id"])),
]


def evaluate(checks: list[Check], df: pl.DataFrame, ctx: CheckContext) -> list[tuple[Check, Outcome]]:
    return [(check, check.run(df, ctx)) for check in checks]


def blocking_failures(results: list[tuple[Check, Outcome]]) -> list[str]:
    return [check.name for check, outcome in results if check.blocking and not outcome.passed]
