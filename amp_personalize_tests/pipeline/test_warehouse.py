"""data/warehouse.duckdb: a long query holds up neither a run's view refresh nor other queries."""

import re
import threading
import time

import duckdb
import polars as pl

from amp_personalize.lake.parquet import partition_path, write_atomic
from amp_personalize.lake.warehouse import query, refresh_views

SLOW = "select sum(hash(range)) as s from range(400000000)"  # seconds of work on 2 cores


def test_a_long_query_delays_neither_a_refresh_nor_another_query(tmp_path):
    """QA: a 25 s `sql` query held a window's run for 20 s, and `select 1` for 17 s."""
    lake, warehouse = tmp_path / "lake", tmp_path / "warehouse.duckdb"
    write_atomic(pl.DataFrame({"event_id": ["a"]}), partition_path(lake, "interactions", "20260101T0000Z"))
    refresh_views(warehouse, lake)
    slow = threading.Thread(target=query, args=(warehouse, SLOW))
    slow.start()
    time.sleep(0.3)  # inside its query
    assert slow.is_alive(), "the long query ended before the test could overlap it: make SLOW slower"
    write_atomic(pl.DataFrame({"event_id": ["b"]}), partition_path(lake, "interactions", "20260101T0100Z"))
    assert refresh_views(warehouse, lake) == ["interactions"]
    answer = query(warehouse, "select count(*) as n from interactions")
    assert slow.is_alive(), "the refresh and the second query waited for the long query to end"
    assert re.search(r"│\s+2\s+│", answer), answer
    slow.join()


def test_a_refresh_keeps_what_else_the_file_holds(tmp_path):
    lake, warehouse = tmp_path / "lake", tmp_path / "warehouse.duckdb"
    write_atomic(pl.DataFrame({"event_id": ["a"]}), partition_path(lake, "interactions", "20260101T0000Z"))
    refresh_views(warehouse, lake)
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create view mine as select count(*) as n from interactions")
    refresh_views(warehouse, lake)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.sql("select n from mine").fetchall() == [(1,)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lake", "warehouse.duckdb", "warehouse.duckdb.lock"]
