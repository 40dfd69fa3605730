"""A handcrafted landing fixture through the real assets, with every expected row spelled out."""

from datetime import datetime, timezone

import dagster as dg
import polars as pl
import pytest

from amp_personalize.assets.interactions import impressions, interactions
from amp_personalize.assets.raw_events import raw_events
from amp_personalize.assets.user_item_scores import user_item_scores
from amp_personalize.events import extract
from amp_personalize.lake.parquet import partition_path
from amp_personalize.resources import AmpResource
from amp_personalize.transforms.landing import LANDED_SCHEMA
from amp_personalize_tests.landing_fixture import write_segment

W1, W2 = "20260101T1000Z", "20260101T1100Z"
WINDOW_ASSETS = [raw_events, interactions, impressions]


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() * 1000)


def dt(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def ev(kind, user, item=None, uuid=None, t="2026-01-01 09:59:00", **props):
    event = {"event_type": kind, "time": ms(t)}
    if user is not None:
        event["user_id"] = user
    if uuid is not None:
        event["uuid"] = uuid
    if item is not None:
        props["item_id"] = item
    if props:
        event["event_properties"] = props
    return event


W1_SEGMENT_A = [
    ev("click", "u1", "doc_1", "a1", t="2026-01-01 09:59:00"),
    ev("click", "u1", "doc_1", "a1", t="2026-01-01 09:59:00"),  # Amplitude retry: same uuid
    ev("Upvote", "u1", "doc_1", "a2", t="2026-01-01 09:59:30"),  # case variant
    ev("initial_impression", "u1", uuid="a3", items_shown=["doc_1", "doc_2", "論文_3"], feed_type="popular"),
    ev("scroll_impression", "u2", uuid="a4", items_shown=[]),  # nothing shown: skipped
    ev("page_view", "u1", "doc_9", "a5"),  # not weighted: skipped
    ev("click", None, "doc_1", "a6"),  # no user id: skipped
    ev("download", "u2", None, "a7"),  # no item: skipped
    # Entries that are not ids are no items, but they were shown in their place: doc_1 was fifth.
    ev("scroll_impression", "u2", uuid="a8", items_shown=["doc_2", None, {"id": "doc_9"}, "", "doc_1"], feed_type="for_you"),
    ev("initial_impression", "u1", uuid="a9", items_shown=[None, "", {}, True]),  # no ids shown: skipped
]
W1_SEGMENT_B = [
    ev("flag", "usuário_7", "doc_2", "b1", t="2026-01-01 09:58:00"),
    {"user_id": "u1", "user_properties": {"plan": "pro"}},  # a "Send Users" payload
]
W2_SEGMENT = [
    ev("click", "u1", "doc_1", "a1"),  # a late retry of an event landed in W1
    ev("hide", "u2", "論文_3", "c1", t="2026-01-01 10:30:00"),
    ev("SHARE", "usuário_7", "doc_1", "c2", t="2026-01-01 10:31:00"),
]


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    data = tmp_path_factory.mktemp("fixture") / "data"
    write_segment(data, W1, W1_SEGMENT_A, name="0000000000001-r1-000001")
    write_segment(data, W1, W1_SEGMENT_B, name="0000000000002-r2-000001", offset_ms=1500, tail=b'{"kind":"event","event_id":"torn","ev')
    write_segment(data, W2, W2_SEGMENT)
    amp = AmpResource(data_dir=str(data), history_days=36500)  # fixture times are fixed, not recent
    with dg.instance_for_test() as instance:
        for window in (W1, W2):
            result = dg.materialize(WINDOW_ASSETS, partition_key=window, resources={"amp": amp}, instance=instance)
            assert result.success
        assert dg.materialize([user_item_scores], resources={"amp": amp}, instance=instance).success
        yield data, instance


def read(data, dataset, partition="all"):
    return pl.read_parquet(partition_path(data / "lake", dataset, partition))


def test_landed_schema_matches_what_the_receiver_extracts():
    assert set(extract({"event_type": "click"}, "e")) - {"event"} | {"received_at"} == set(LANDED_SCHEMA)


def test_interactions_rows(lake):
    data, _ = lake
    w1 = read(data, "interactions", W1).select("event_id", "user_id", "item_id", "event_type", "event_value", "event_time")
    assert w1.rows() == [  # in receive order: a1 at +1.0 s, b1 at +1.5 s, a2 at +3.0 s
        ("a1", "u1", "doc_1", "click", 1.0, dt("2026-01-01 09:59:00")),
        ("b1", "usuário_7", "doc_2", "flag", -2.5, dt("2026-01-01 09:58:00")),
        ("a2", "u1", "doc_1", "upvote", 2.0, dt("2026-01-01 09:59:30")),
    ]
    w2 = read(data, "interactions", W2).select("event_id", "user_id", "item_id", "event_type", "event_value")
    assert sorted(w2.rows()) == [
        ("c1", "u2", "論文_3", "hide", -1.5),
        ("c2", "usuário_7", "doc_1", "share", 2.0),
    ]


def test_impressions_rows(lake):
    data, _ = lake
    rows = read(data, "impressions", W1).select("event_id", "user_id", "item_id", "position", "impression_type", "feed_type", "event_value")
    assert rows.rows() == [
        ("a3", "u1", "doc_1", 0, "initial_impression", "popular", 0.3),
        ("a3", "u1", "doc_2", 1, "initial_impression", "popular", 0.3),
        ("a3", "u1", "論文_3", 2, "initial_impression", "popular", 0.3),
        ("a8", "u2", "doc_2", 0, "scroll_impression", "for_you", 0.5),
        ("a8", "u2", "doc_1", 4, "scroll_impression", "for_you", 0.5),
    ]
    assert read(data, "impressions", W2).height == 0


def test_user_item_scores_rows(lake):
    data, _ = lake
    scores = read(data, "user_item_scores").select("user_id", "item_id", "net_weight", "n_events", "negative")
    assert scores.rows() == [
        ("u1", "doc_1", 3.0, 2, False),
        ("u2", "論文_3", -1.5, 1, True),
        ("usuário_7", "doc_1", 2.0, 1, False),
        ("usuário_7", "doc_2", -2.5, 1, True),
    ]


def test_raw_events_dedupes_within_and_across_windows(lake):
    data, instance = lake
    w1 = read(data, "raw_events", W1)
    assert w1["event_id"].is_duplicated().sum() == 0
    assert w1.height == 11  # 12 landed lines, one retry dropped; the torn line never counted
    assert "a1" not in read(data, "raw_events", W2)["event_id"].to_list()
    meta = instance.get_latest_materialization_event(dg.AssetKey("raw_events")).asset_materialization.metadata
    assert meta["duplicates_of_earlier_windows"].value == 1
    w1_meta = [
        e.asset_materialization.metadata
        for e in instance.fetch_materializations(dg.AssetKey("raw_events"), limit=10).records
        if e.asset_materialization.partition == W1
    ][0]
    assert w1_meta["malformed_lines_dropped"].value == 1
    assert w1_meta["duplicates_in_window"].value == 1
    assert w1_meta["user_payloads"].value == 1
    assert w1_meta["duplicates_share"].value == round(1 / 12, 4)  # one retry of 12 landed lines


def window_metadata(instance, asset: str, window: str) -> dict:
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=10).records
    return next(r.asset_materialization.metadata for r in records if r.asset_materialization.partition == window)


def test_interactions_metadata_explains_what_was_skipped_in_numbers_that_plot(lake):
    """Issue 16: the skip reasons were one JSON blob, which the UI cannot plot over windows."""
    _, instance = lake
    meta = window_metadata(instance, "interactions", W1)
    assert meta["processed"].value == 5  # a1, a2, b1 and the impressions a3, a8
    assert meta["skipped_share"].value == round(6 / 11, 4)  # volume-free: plots the same at any traffic
    skipped = {k: v for k, v in meta.items() if k.startswith("skipped_") and k != "skipped_share"}
    assert {k: v.value for k, v in skipped.items()} == {
        "skipped_no_item_id": 1, "skipped_no_items_shown": 2, "skipped_no_user_id": 1, "skipped_unweighted_type": 1, "skipped_user_payload": 1,
    }
    assert all(isinstance(v, dg.IntMetadataValue) for v in skipped.values())
    assert meta["events_flag"].value == 1 and meta["events_click"].value == 1 and meta["events_upvote"].value == 1
    # Every reason and every weighted type in every window, 0 when absent, so each series has a point per window.
    w2 = window_metadata(instance, "interactions", W2)
    assert w2["skipped_no_user_id"].value == 0 and w2["events_flag"].value == 0 and w2["events_hide"].value == 1
    assert "| event_type | rows | weight | total_weight |" in meta["weight_distribution"].value


def test_window_assets_say_their_partitions_rows_where_they_are_and_show_a_table(lake):
    """Issue 16: each window reported dagster/row_count (the UI's whole-table count) and a preview
    that polars had wrapped to a terminal's width (the header as several lines of fragments)."""
    data, instance = lake
    meta = window_metadata(instance, "raw_events", W1)
    assert meta["dagster/partition_row_count"].value == 11 and "dagster/row_count" not in meta
    assert meta["dagster/uri"].value == str(partition_path(data / "lake", "raw_events", W1).resolve())
    lines = meta["preview"].value.splitlines()
    assert lines[0] == "| " + " | ".join(read(data, "raw_events", W1).columns) + " |"  # one header row
    assert lines[1] == "|" + "---|" * 14
    assert len(lines) == 2 + 5 and all(line.startswith("| ") and line.count(" | ") == 13 for line in lines[2:])
    scores = instance.get_latest_materialization_event(dg.AssetKey("user_item_scores")).asset_materialization.metadata
    assert scores["dagster/row_count"].value == 4


def declared_columns(dataset: str) -> list[tuple[str, str]]:
    """The columns the Dagster UI shows for a dataset (its definition's dagster/column_schema)."""
    from amp_personalize.definitions import defs

    key = dg.AssetKey(dataset)
    schema = defs.resolve_assets_def(key).metadata_by_key[key]["dagster/column_schema"]
    return [(c.name, c.type) for c in schema.columns]


def view_columns(data, dataset: str) -> list[tuple[str, str]]:
    """The columns of the duckdb view the definition names in dagster/table_name, as duckdb describes them."""
    from amp_personalize.definitions import defs

    key = dg.AssetKey(dataset)
    catalog, schema, view = defs.resolve_assets_def(key).metadata_by_key[key]["dagster/table_name"].split(".")
    assert (data / f"{catalog}.duckdb").exists() and schema == "main"
    import duckdb

    with duckdb.connect(str(data / f"{catalog}.duckdb"), read_only=True) as con:
        return [(row[0], row[1]) for row in con.sql(f"DESCRIBE {catalog}.{schema}.{view}").fetchall()]


def test_the_columns_the_ui_shows_are_the_duckdb_views(lake):
    """Issue 16: no dataset had a dagster/column_schema or dagster/table_name."""
    data, _ = lake
    for dataset in ("raw_events", "interactions", "impressions", "user_item_scores"):
        assert declared_columns(dataset) == view_columns(data, dataset), dataset


def test_readme_queries_answer_from_the_warehouse(lake):
    data, _ = lake
    from amp_personalize.lake.queries import (
        CLICK_RATE_BY_FEED,
        EVENTS_PER_HOUR,
        TOP_ITEMS_BY_NET_WEIGHT,
    )
    from amp_personalize.lake.warehouse import fetch

    warehouse = data / "warehouse.duckdb"
    per_hour = fetch(warehouse, EVENTS_PER_HOUR)
    assert sum(row[1] for row in per_hour) == 13  # 11 distinct events in W1, 2 new in W2
    # 10:00 (W2): c1, c2. 09:00: a1, a2, a3, a5, a6, a8, b1; not a4, a7, a9 or the user payload.
    assert [row[2] for row in per_hour] == [2, 7]
    top = fetch(warehouse, TOP_ITEMS_BY_NET_WEIGHT)
    assert top[0][:2] == ("doc_1", 5.0)
    # u1 was shown doc_1 in a popular feed at 09:59 and had clicked it at 09:59: one click.
    assert fetch(warehouse, CLICK_RATE_BY_FEED) == [("popular", 3, 1, round(1 / 3, 4)), ("for_you", 2, 0, 0.0)]


def printed_docs() -> dict[str, str]:
    """README.md and docs/*.md by name: the pages whose commands a user copies."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    return {str(page.relative_to(root)): page.read_text() for page in pages}


def test_the_printed_sql_runs_as_printed(lake):
    """The queries in README.md and docs/ are the ones a user copies: each must run on a real warehouse."""
    import re

    from amp_personalize.lake.warehouse import fetch

    data, _ = lake
    statements = [
        (name, s.strip())
        for name, text in printed_docs().items()
        for block in re.findall(r"```sql\n(.*?)```", text, re.S)
        for s in block.split(";")
        if "SELECT" in s
    ]
    assert len(statements) >= 3
    for name, sql in statements:
        assert fetch(data / "warehouse.duckdb", sql), f"no rows from the query in {name}:\n{sql}"


def test_the_printed_sql_commands_run_as_printed(lake):
    """Every `amp-personalize sql "..."` in a shell block: the fixture's datasets answer it; the
    recommendation caches, which the fixture does not build, must at least parse and name real columns."""
    import re
    import shlex

    import duckdb

    from amp_personalize.lake.warehouse import fetch

    data, _ = lake
    commands = [
        (name, line)
        for name, text in printed_docs().items()
        for block in re.findall(r"```bash\n(.*?)```", text, re.S)
        for line in block.splitlines()
        if "amp-personalize sql " in line
    ]
    assert len(commands) >= 2
    cached = {"recommendations": "user_id, rank, item_id, score, source, model_version, generated_at"}  # as docs/datasets.md
    for name, line in commands:
        words = shlex.split(line, comments=True)
        query = words[-1]  # after `sql` and any `--max-rows N`
        tables = set(re.findall(r"\bfrom (\w+)", query, re.I))
        if tables <= {"raw_events", "interactions", "impressions", "user_item_scores"}:
            assert fetch(data / "warehouse.duckdb", query), f"no rows from the command in {name}:\n{line}"
            continue
        assert tables <= set(cached), f"{name}: no fixture for {tables - set(cached)}:\n{line}"
        with duckdb.connect() as con:
            for table in tables:
                con.sql(f"create table {table} as select " + ", ".join(f"null as {c}" for c in cached[table].split(", ")))
            con.sql(query).fetchall()


def test_implausible_times_landed_before_the_receiver_checked_them_read_as_missing():
    """Review: the bounds applied at the door only; a rebuilt old window kept year 10000."""
    from amp_personalize.transforms.landing import LANDED_SCHEMA
    from amp_personalize.transforms.raw_events import raw_events as build

    landed = pl.DataFrame(
        {"kind": ["event"] * 3, "event_id": ["a", "b", "c"], "event_type": ["click"] * 3,
         "event_time": [253402300800000, 1795727000, 1767225600000], "received_at": [1767229200000] * 3},
    ).with_columns(*(pl.lit(None).cast(t).alias(c) for c, t in LANDED_SCHEMA.items()
                     if c not in ("kind", "event_id", "event_type", "event_time", "received_at"))).cast(LANDED_SCHEMA)
    raw, _ = build(landed.select(list(LANDED_SCHEMA)))
    as_ms = raw.select(pl.col("event_time").dt.epoch("ms"), "event_time_missing").rows()
    assert as_ms == [(1767229200000, True), (1767229200000, True), (1767225600000, False)]


def test_dedupe_looks_at_windows_of_another_width_that_start_inside_this_one(tmp_path):
    """QA: after AMP_WINDOW_MINUTES went 15 -> 60, a retry landed in the hour 23:00 kept its copy,
    although the 15-minute window 23:15 (its key sorts after 23:00) held the first receipt."""
    from amp_personalize.assets.raw_events import earlier_event_ids
    from amp_personalize.lake.store import LocalLake
    from amp_personalize.lake.parquet import write_atomic

    lake = tmp_path / "lake"
    for window, ids in (("20261126T2200Z", ["old"]), ("20261126T2300Z", ["mine"]), ("20261126T2315Z", ["retried"]),
                        ("20261127T0000Z", ["later"])):
        write_atomic(pl.DataFrame({"event_id": ids}), partition_path(lake, "raw_events", window))
    candidates = pl.Series(["old", "mine", "retried", "later", "new"])
    found = earlier_event_ids(LocalLake(lake), "20261126T2300Z", 60, 24, candidates)
    # Not its own file (a rebuild), nor a window starting after it ends (that one deduped against this).
    assert sorted(found.to_list()) == ["old", "retried"]
    assert sorted(earlier_event_ids(LocalLake(lake), "20261126T2300Z", 15, 24, candidates).to_list()) == ["old"]
