"""data/warehouse.duckdb: views over the lake, for ad-hoc SQL.

The file holds only view definitions; the data stays in parquet. Runs open it for the moment
it takes to replace the views, under a lock file, so no duckdb file is ever written by two
processes or held open by a run.
"""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path

import duckdb

from amp_personalize.lake.parquet import published, table_dir

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


def query(warehouse: Path, sql: str) -> str:
    """duckdb's own table rendering of SQL run read-only against the warehouse, under the lock."""
    with _locked(warehouse), duckdb.connect(str(warehouse), read_only=True) as con:
        relation = con.sql(sql)
        return "" if relation is None else str(relation)


def fetch(warehouse: Path, sql: str) -> list[tuple]:
    with _locked(warehouse), duckdb.connect(str(warehouse), read_only=True) as con:
        return con.sql(sql).fetchall()
