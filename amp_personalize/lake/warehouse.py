"""data/warehouse.duckdb: views over the lake, for ad-hoc SQL.

The file holds only view definitions; the data stays in parquet. A run replaces the views in a
copy of the file and renames the copy into place, one writer at a time under a lock file, so
no duckdb file is ever written by two processes or held open by a run. Queries take no lock:
each opens, read-only, whichever complete file is in place when it starts, so a long query
delays neither a run nor another query (QA: a 25 s query held a window's run for 20 s).
"""

from __future__ import annotations

import difflib
import fcntl
import io
import os
import re
import shutil
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import duckdb

from amp_personalize.lake.store import Lake, LocalLake
from amp_personalize.landing.segments import fsync_dir, fsync_file

_UNLIMITED = 1 << 30  # no width limit: every column, every character

_BY_PROCESSING = "processing a landing window (`amp-personalize process`, or the landing_sensor's runs)"
_BY_TRAINING = "training (`amp-personalize train`, or the retraining schedule)"
# Each dataset (a view once it has data) and what first gives it data, for a query that comes too early.
MADE_BY = {
    "raw_events": _BY_PROCESSING,
    "interactions": _BY_PROCESSING,
    "impressions": _BY_PROCESSING,
    "user_item_scores": "`amp-personalize process` after its windows, or the scores_after_window sensor's runs",
    "recommendations": _BY_TRAINING,
    "popular_items": _BY_TRAINING,
    "similar_items": _BY_TRAINING,
}
DATASETS = tuple(MADE_BY)


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


def _as_lake(lake: Lake | Path) -> Lake:
    return LocalLake(lake) if isinstance(lake, Path) else lake


def httpfs_loads(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether this duckdb has its httpfs extension already (it downloads extensions at run time,
    which a host without internet cannot; a view over s3:// cannot even be created without it)."""
    try:
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("LOAD httpfs")
        return True
    except duckdb.Error:
        return False


def refresh_views(warehouse: Path, lake: Lake | Path, datasets: tuple[str, ...] = DATASETS) -> list[str]:
    """(Re)create one view per dataset that has data; returns the views it made.

    With the lake on S3 the views name s3:// paths, for a duckdb that can load httpfs (and has
    S3 credentials configured); where it cannot, none are made, and `amp-personalize sql` reads
    the lake through polars instead (tables_for).
    """
    lake = _as_lake(lake)
    made = []
    if lake.remote:
        with duckdb.connect() as probe:
            if not httpfs_loads(probe):
                return made
    with _locked(warehouse):
        for stale in warehouse.parent.glob(f".{warehouse.name}.tmp-*"):  # killed writers': under the lock, no one else's
            stale.unlink(missing_ok=True)
        copy = warehouse.with_name(f".{warehouse.name}.tmp-{os.getpid()}")
        if warehouse.exists():
            shutil.copy2(warehouse, copy)  # what else the file holds is kept, and its mode
        with duckdb.connect(str(copy)) as con:
            if lake.remote:
                httpfs_loads(con)
            for name in datasets:
                if lake.partitions(name):
                    con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet({_quote(lake.glob(name))})")
                    made.append(name)
            con.execute("CHECKPOINT")  # everything in the file itself, no write-ahead log beside it
        fsync_file(copy)
        warehouse.with_name(warehouse.name + ".wal").unlink(missing_ok=True)  # only a crash before this design left one
        os.replace(copy, warehouse)
        fsync_dir(warehouse.parent)
    return made


def tables_for(sql: str, lake: Lake) -> dict:
    """The datasets a query names, read from the lake (through polars' S3 reader) as Arrow tables."""
    named = {word.lower() for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", sql)}
    return {name: lake.scan(name, {}).collect().to_arrow() for name in DATASETS if name in named and lake.partitions(name)}


def missing_dataset(error: duckdb.Error, lake: Lake | Path) -> str | None:
    """For a query naming a table that has no view: which datasets there are (the nearest name
    to a misspelt one first), or, for a dataset with no view yet, why it has none."""
    found = re.search(r"Table with name (\S+) does not exist", str(error)) if isinstance(error, duckdb.CatalogException) else None
    if not found:
        return None
    name = found.group(1).strip('"').lower()
    lake = _as_lake(lake)
    if name not in MADE_BY:
        nearest = difflib.get_close_matches(name, DATASETS, n=1, cutoff=0.6)
        with_data = [d for d in DATASETS if lake.partitions(d)]
        without = [d for d in DATASETS if d not in with_data]
        return (
            f"there is no dataset {found.group(1)}" + (f": did you mean {nearest[0]}?" if nearest else ".")
            + f" Datasets with data: {', '.join(with_data) or 'none yet'}"
            + (f"; not made yet: {', '.join(without)}" if without else "")
        )
    if lake.partitions(name, rejected=True):
        return (f"{name} has no published data: what was made of it failed a blocking check and was kept "
                f"apart in {lake.uri(name, rejected=True)} (the check's result is in the Dagster UI)")
    return f"{name} has no data yet: it is made by {MADE_BY[name]}"


def query(warehouse: Path | None, sql: str, max_rows: int = 1_000, tables: dict | None = None) -> str | None:
    """SQL run read-only against the warehouse, drawn as duckdb draws tables.

    Every column, and every row up to `max_rows` (under 10,000, duckdb's renderer's own cap);
    past that the first `max_rows` and a line saying rows were left out. None for SQL without a
    statement (only comments). The query runs once: its first max_rows + 1 rows are held and drawn.
    Without a warehouse file, over `tables` (name -> Arrow table) in memory.
    """
    with duckdb.connect(str(warehouse), read_only=True) if warehouse is not None else duckdb.connect() as con:
        for name, table in (tables or {}).items():
            con.register(name, table)
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
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.sql(sql).fetchall()
