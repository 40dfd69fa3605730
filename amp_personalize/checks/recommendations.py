"""Checks on the model and the caches: what an app reading recommendations relies on."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from amp_personalize.checks.rules import Check, CheckContext, Outcome, unique


def list_sizes(active_users: pl.Series, at_least: int, nothing_left: Sequence[str] = ()):
    """Every active user's list has at least `at_least` items, but for users with nothing left
    to offer (they vetoed every popular item): holding everyone's new lists back for them would
    help nobody."""

    def run(df: pl.DataFrame, ctx: CheckContext) -> Outcome:
        sizes = pl.DataFrame({"user_id": active_users}).join(df.group_by("user_id").len(), on="user_id", how="left")
        short = sizes.filter(pl.col("len").fill_null(0) < at_least, ~pl.col("user_id").is_in(pl.Series(list(nothing_left), dtype=pl.String).implode()))
        return Outcome(short.height == 0, {
            "active_users": active_users.len(), "short_lists": short.height, "examples": str(short.head(5).rows()),
            "users_with_nothing_left": len(nothing_left),
        })

    return run


def no_vetoed_items(vetoed: pl.DataFrame):
    """vetoed: (user_id, item_id) pairs the user downvoted, hid or flagged."""

    def run(df: pl.DataFrame, ctx: CheckContext) -> Outcome:
        bad = df.join(vetoed, on=["user_id", "item_id"], how="inner")
        return Outcome(bad.height == 0, {"vetoed_recommended": bad.height, "examples": str(bad.head(5).rows())})

    return run


def scores_ordered(group: str):
    def run(df: pl.DataFrame, ctx: CheckContext) -> Outcome:
        rising = df.sort(group, "rank").filter((pl.col("score").diff().over(group) > 1e-9))
        return Outcome(rising.height == 0, {"out_of_order": rising.height})

    return run


def not_self_similar(df: pl.DataFrame, ctx: CheckContext) -> Outcome:
    same = df.filter(pl.col("item_id") == pl.col("similar_item_id")).height
    return Outcome(same == 0, {"self_similar": same})


def recommendation_checks(
    active_users: pl.Series, num_results: int, vetoed: pl.DataFrame, nothing_left: Sequence[str] = ()
) -> list[Check]:
    return [
        Check("every_active_user_has_recommendations", "Each user active in the period has a list to be served "
              "(but one who vetoed every popular item).", True, list_sizes(active_users, 1, nothing_left)),
        # A warning: with a small catalog a user may have seen or vetoed all but a few items, and
        # a short list beats keeping yesterday's cache for everyone.
        Check("lists_are_full", "Each active user has num_results items (model, then popularity backfill).", False,
              list_sizes(active_users, num_results)),
        Check("no_vetoed_items", "No user is recommended an item they downvoted, hid or flagged.", True, no_vetoed_items(vetoed)),
        Check("no_duplicates_in_a_list", "No item appears twice in one user's list.", True, unique(["user_id", "item_id"])),
        Check("scores_ordered", "Scores never rise with rank.", True, scores_ordered("user_id")),
    ]


SIMILAR_ITEMS = [
    Check("no_duplicates_in_a_list", "No item appears twice among one item's neighbours.", True, unique(["item_id", "similar_item_id"])),
    Check("not_self_similar", "No item is listed as similar to itself.", True, not_self_similar),
    Check("scores_ordered", "Scores never rise with rank.", True, scores_ordered("item_id")),
]
# The same checks with no data behind them: only their names and descriptions, for the specs.
RECOMMENDATIONS_DECLARED = recommendation_checks(pl.Series([], dtype=pl.String), 1, pl.DataFrame())
