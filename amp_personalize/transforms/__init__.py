"""The pipeline's data logic: plain polars functions from frame to frame.

The Dagster assets call these, the benchmark calls these, and the tests call them on tiny
frames; none of them knows about Dagster or files beyond what it is handed.
"""

import polars as pl

# Every timestamp in the lake: epoch milliseconds, UTC (one definition; duckdb reads it as TIMESTAMPTZ).
UTC_MS = pl.Datetime("ms", "UTC")


# A landed `items_shown` keeps a null in place of each entry that was not an id
# (events.fields._items), so that an item's index is its position in what was shown. Only the
# ids are items shown: every consumer counts and passes on these, never the raw list.
def ids_shown(items: pl.Expr) -> pl.Expr:
    """The list's ids in display order, nulls dropped (null stays null)."""
    return items.list.eval(pl.element().drop_nulls())


def n_shown(items: pl.Expr) -> pl.Expr:
    """How many ids the list holds; 0 for no list. A list of only nulls is nothing shown."""
    return items.list.agg(pl.element().count()).fill_null(0)
