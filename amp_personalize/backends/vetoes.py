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


def fill_empty_lists(
    backend: RecommenderBackend, model, users: list[str], recs: pl.DataFrame, num_results: int, vetoed: pl.DataFrame
) -> tuple[pl.DataFrame, list[str]]:
    """Lists for the users left with none, and the users left with nothing at all.

    A user who has seen or vetoed every item (a small catalog; QA: a reader of all six items)
    got no list, and the server then answered them with the plain popular list, vetoed items
    first among them. They get the popular items they did not veto instead, seen or not: what
    an unknown user would get, less their vetoes. Only a user who vetoed every popular item is
    left with nothing; the server answers them with an empty list, not the popular one.
    """
    listed = set(recs["user_id"].unique().to_list()) if recs.height else set()
    empty = sorted(set(users) - listed)
    if not empty:
        return recs, []
    theirs = vetoed.filter(pl.col("user_id").is_in(empty))
    room = num_results + (int(theirs.group_by("user_id").len()["len"].max()) if theirs.height else 0)
    popular = backend.popular_items(model, room).sort("rank").select("item_id", "score")
    fill = (
        pl.DataFrame({"user_id": empty}, schema={"user_id": pl.String()})
        .join(popular, how="cross", maintain_order="left_right")
        .join(theirs, on=["user_id", "item_id"], how="anti", maintain_order="left")
        .group_by("user_id", maintain_order=True)
        .head(num_results)
        .with_columns(
            pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("user_id").alias("rank"), pl.lit("popularity").alias("source")
        )
        .select(recs.columns)
    )
    nothing = sorted(set(empty) - set(fill["user_id"].to_list()))
    return pl.concat([recs, fill.cast(recs.schema)]).sort("user_id", "rank"), nothing
