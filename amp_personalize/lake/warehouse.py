"""data/warehouse.duckdb: views over the lake, for ad-hoc SQL.

The file holds only view definitions; the data stays in parquet. Runs open it for the moment
it takes to replace the views, under a lock file, so no duckdb file is ever written by two
processes or held open by a run.
"""

from __future__ import annotations

import fcntl
import io
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import duckdb

from amp_personalize.lake.parquet import published, table_dir

_UNLIMITED = 1 << 30  # no width limit: every column, every character

DATASETS = (
    "raw_events", "interactions", "impressions", "user_item_scores", "recommendations", "popular_items", "similar_items",
)


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def refresh_views(warehouse: Path, lake_dir: Path, datasets: tuple[str, ...] = DATASETS) -> list[str]:
    """(Re)create one view per dataset that has data; returns the views it made."""
    made = []
    with _locked(warehouse), duckdb.connect(str(warehouse)) as con:
        for name in datasets:
            if published(lake_dir, name):
                glob = str((table_dir(lake_dir, name) / "*.parquet").resolve())
                con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet({_quote(glob)})")
                made.append(name)
    return made


def query(warehouse: Path, sql: str, max_rows: int = 1_000) -> str | None:
    """SQL run read-only against the warehouse (under the lock), drawn as duckdb draws tables.

    Every column, and every row up to `max_rows` (under 10,000, duckdb's renderer's own cap);
    past that the first `max_rows` and a line saying rows were left out. None for SQL without a
    statement (only comments). The query runs once: its first max_rows + 1 rows are held and drawn.
    """
    with _locked(warehouse), duckdb.connect(str(warehouse), read_only=True) as con:
        relation = con.sql(sql)
        if relation is None:
            return None
        head = relation.limit(max_rows + 1).to_arrow_table()
        shown = con.from_arrow(head.slice(0, max_rows))
        drawn = io.StringIO()
        with redirect_stdout(drawn):  # show() is the renderer that takes limits; it prints
            shown.show(max_rows=max_rows, max_width=_UNLIMITED, max_col_width=_UNLIMITED)
        table = drawn.getvalue().rstrip("\n")
        if head.num_rows > max_rows:
            table += f"\n  more than {max_rows} rows: only the first {max_rows} are shown (see --max-rows, or add a LIMIT)"
        return table


def fetch(warehouse: Path, sql: str) -> list[tuple]:
    with _locked(warehouse), duckdb.connect(str(warehouse), read_only=True) as con:
        return con.sql(sql).fetchall()
