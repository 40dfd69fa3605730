"""Keeping every item a user ever flagged, hid or downvoted out of their cached list.

A model knows only the vetoes inside its training window (`AMP_HISTORY_DAYS`), and popularity
fills for users it has not seen know none, but the promise (and the blocking `no_vetoed_items`
check) is for all time: a flag from last year still means "never show me this".
"""

from __future__ import annotations

import polars as pl

from amp_personalize.backends.base import RecommenderBackend


def recommend_without_vetoed(
    backend: RecommenderBackend, model, users: list[str], num_results: int, vetoed: pl.DataFrame
) -> pl.DataFrame:
    """The backend's top `num_results` per user, less every vetoed (user_id, item_id) pair.

    Users whose list holds a vetoed item are asked again with room for all their vetoes, so
    their lists stay full; the rest keep the first answer untouched.
    """
    recs = backend.recommend(model, users, num_results)
    if recs.is_empty() or vetoed.is_empty():
        return recs
    hit = recs.join(vetoed, on=["user_id", "item_id"], how="semi")["user_id"].unique()
    if hit.is_empty():
        return recs
    per_user = vetoed.filter(pl.col("user_id").is_in(hit.implode())).group_by("user_id").len()
    room = num_results + int(per_user["len"].max())  # a backend with a ceiling applies it
    again = (
        backend.recommend(model, hit.sort().to_list(), room)
        .join(vetoed, on=["user_id", "item_id"], how="anti")
        .sort("user_id", "rank")
        .group_by("user_id", maintain_order=True)
        .head(num_results)
        .with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("user_id").alias("rank"))
        .select(recs.columns)
    )
    return pl.concat([recs.filter(~pl.col("user_id").is_in(hit.implode())), again]).sort("user_id", "rank")


def exhausted_users(users: pl.Series, history: pl.LazyFrame, vetoed: pl.DataFrame, exclude_seen: bool) -> pl.Series:
    """Those of `users` with nothing left to offer: every item of the catalog (the items of the
    training history) is one they vetoed or, with AMP_EXCLUDE_SEEN, already interacted with."""
    catalog = history.select(pl.col("item_id").unique()).collect()
    taken = vetoed.filter(pl.col("user_id").is_in(users.implode())).select("user_id", "item_id")
    if exclude_seen:
        seen = history.filter(pl.col("event_value") > 0, pl.col("user_id").is_in(users.implode())).select("user_id", "item_id")
        taken = pl.concat([taken, seen.collect()])
    counts = taken.unique().join(catalog, on="item_id", how="semi").group_by("user_id").len()
    return counts.filter(pl.col("len") >= catalog.height)["user_id"].sort()


def fill_empty_lists(
    backend: RecommenderBackend, model, users: list[str], recs: pl.DataFrame, num_results: int, vetoed: pl.DataFrame,
    history: pl.LazyFrame, exclude_seen: bool,
) -> tuple[pl.DataFrame, list[str]]:
    """Lists for the users with nothing left to offer, and those left with nothing at all.

    A user who has seen or vetoed every item (a small catalog; QA: a reader of all six items)
    got no list, and the server then answered them with the plain popular list, vetoed items
    first among them; an active one failed every_active_user_has_recommendations for everyone.
    They get the popular items they did not veto instead, seen or not: what an unknown user
    would get, less their vetoes. Only a user who vetoed every popular item is left with
    nothing; the server answers them with an empty list, not the popular one. Any other user
    without a list stays without one, for the check to catch (a backend that answered nothing).
    """
    listed = recs.select(pl.col("user_id").unique())
    empty = pl.DataFrame({"user_id": users}, schema={"user_id": pl.String()}).join(listed, on="user_id", how="anti")["user_id"]
    if empty.is_empty():
        return recs, []
    exhausted = exhausted_users(empty, history, vetoed, exclude_seen)
    if exhausted.is_empty():
        return recs, []
    theirs = vetoed.filter(pl.col("user_id").is_in(exhausted.implode()))
    room = num_results + (int(theirs.group_by("user_id").len()["len"].max()) if theirs.height else 0)
    popular = backend.popular_items(model, room).sort("rank").select("item_id", "score")
    fill = (
        exhausted.to_frame()
        .join(popular, how="cross", maintain_order="left_right")
        .join(theirs, on=["user_id", "item_id"], how="anti", maintain_order="left")
        .group_by("user_id", maintain_order=True)
        .head(num_results)
        .with_columns(
            pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("user_id").alias("rank"), pl.lit("popularity").alias("source")
        )
        .select(recs.columns)
    )
    nothing = exhausted.filter(~exhausted.is_in(fill["user_id"].unique().implode())).to_list()
    return pl.concat([recs, fill.cast(recs.schema)]), nothing
