"""HTTP in, duckdb out: events posted to a live receiver come out in interactions, each once."""

import time
from dataclasses import replace

import duckdb
import pytest
from click.testing import CliRunner

from amp_personalize.cli import main
from amp_personalize.events.windows import window_key, window_of
from amp_personalize.lake.parquet import partition_path
from amp_personalize.receiver import create_app
from amp_personalize_tests.conftest import LiveReceiver
from amp_personalize_tests.landing_fixture import write_segment

pytestmark = pytest.mark.slow


def test_posted_events_reach_interactions_once(tmp_path, monkeypatch, settings):
    settings = replace(settings, segment_max_age_seconds=0.5)
    monkeypatch.setenv("AMP_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("AMP_SEGMENT_MAX_AGE_SECONDS", "0.5")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    clicks = [
        {"event_type": "click", "user_id": f"u{i % 7}", "uuid": f"evt-{i}", "event_properties": {"item_id": f"doc_{i % 11}"}}
        for i in range(120)
    ]
    with LiveReceiver(create_app(settings)) as live:
        for start in range(0, 120, 40):
            assert live.post({"events": clicks[start : start + 40]}).status_code == 200
        assert live.post({"events": clicks[:10]}).status_code == 200  # Amplitude retries a batch
        assert live.post({"event_type": "page_view", "user_id": "u1"}).status_code == 200
        result = CliRunner().invoke(main, ["process", "--all-windows"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "processed 1 window(s)" in result.output

    with duckdb.connect(str(settings.data_dir / "warehouse.duckdb"), read_only=True) as con:
        counts = con.sql("select event_id, count(*) from interactions group by 1").fetchall()
        total = con.sql("select count(*) from raw_events").fetchall()[0][0]
        scores = con.sql("select sum(n_events) from user_item_scores").fetchall()[0][0]
    assert sorted(counts) == sorted((f"evt-{i}", 1) for i in range(120))
    assert total == 121  # every distinct landed event, the page view included
    assert scores == 120

    shown = CliRunner().invoke(main, ["sql", "select count(*) as n from interactions"])
    assert shown.exit_code == 0 and "120" in shown.output


def test_train_with_too_little_data_says_what_it_counted(tmp_path, monkeypatch):
    monkeypatch.setenv("AMP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    result = CliRunner().invoke(main, ["train"])
    assert result.exit_code == 1
    assert "no model trained: not enough training data in the last 90 days (0 interactions, 0 users, 0 items)" in result.output


def test_process_builds_a_window_again_when_it_gained_a_segment_after_its_last_build(tmp_path, monkeypatch):
    """`process --all-windows` builds the open window; events landing in it afterwards must reach
    the lake at the next `process`, even once the window has closed and settled."""
    monkeypatch.setenv("AMP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    window = window_key(window_of(int(time.time() * 1000) - 3 * 3_600_000, 60))  # closed and settled
    click = lambda i: {"event_type": "click", "user_id": "u1", "uuid": f"e{i}", "event_properties": {"item_id": f"d{i}"}}  # noqa: E731
    write_segment(tmp_path / "data", window, [click(1)], name="0000000000001-r1-000001")

    def process() -> str:
        result = CliRunner().invoke(main, ["process"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    def interactions() -> list[str]:
        with duckdb.connect(str(tmp_path / "data" / "warehouse.duckdb"), read_only=True) as con:
            return sorted(r[0] for r in con.sql("select event_id from interactions").fetchall())

    assert f"processed 1 window(s): {window}" in process()
    assert interactions() == ["e1"]
    # As if the first build had run while the window was open: a segment sealed after it.
    write_segment(tmp_path / "data", window, [click(2)], name="0000000000002-r1-000002")
    assert f"processed 1 window(s): {window}" in process()
    assert interactions() == ["e1", "e2"]
    assert "processed 0 window(s)" in process()  # nothing new: nothing rebuilt
    # A dataset file of the window gone from the lake (deleted by hand, a partial restore): rebuilt,
    # so training does not quietly use part of the data and the datasets agree again.
    partition_path(tmp_path / "data" / "lake", "interactions", window).unlink()
    assert f"processed 1 window(s): {window}" in process()
    assert interactions() == ["e1", "e2"]
    assert "processed 0 window(s)" in process()


def test_process_rebuild_applies_an_edited_weight_file_to_windows_already_built(tmp_path, monkeypatch):
    monkeypatch.setenv("AMP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    lake = tmp_path / "data" / "lake"
    now = int(time.time() * 1000)
    windows = [window_key(window_of(now - hours * 3_600_000, 60)) for hours in (5, 3)]  # closed and settled
    for i, window in enumerate(windows):
        events = [
            {"event_type": "click", "user_id": "u1", "uuid": f"c{i}", "event_properties": {"item_id": "d1"}},
            {"event_type": "share", "user_id": "u1", "uuid": f"s{i}", "event_properties": {"item_id": "d2"}},
        ]
        write_segment(tmp_path / "data", window, events, name=f"000000000000{i}-r1-000001")

    def process(*args: str) -> str:
        result = CliRunner().invoke(main, ["process", *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    def values() -> dict[str, float]:
        with duckdb.connect(str(tmp_path / "data" / "warehouse.duckdb"), read_only=True) as con:
            return dict(con.sql("select event_id, event_value from interactions").fetchall())

    assert f"processed 2 window(s): {', '.join(windows)}" in process()
    assert values() == {"c0": 1.0, "s0": 2.0, "c1": 1.0, "s1": 2.0}
    raw_before = [partition_path(lake, "raw_events", w).read_bytes() for w in windows]

    weights = tmp_path / "weights.json"
    weights.write_text(
        '{"weights": {"click": 1.25, "share": 2.0, "initial_impression": 0.3}, "impression_types": ["initial_impression"]}'
    )
    monkeypatch.setenv("AMP_WEIGHTS_FILE", str(weights))
    assert "processed 0 window(s)" in process()  # an edited weight file alone builds nothing again
    assert values()["c0"] == 1.0
    output = process("--rebuild")
    assert f"processed 2 window(s): {', '.join(windows)}" in output and "refreshed user_item_scores" in output
    assert values() == {"c0": 1.25, "s0": 2.0, "c1": 1.25, "s1": 2.0}
    assert [partition_path(lake, "raw_events", w).read_bytes() for w in windows] == raw_before
    with duckdb.connect(str(tmp_path / "data" / "warehouse.duckdb"), read_only=True) as con:
        assert con.sql("select net_weight from user_item_scores where item_id = 'd1'").fetchall() == [(2.5,)]


def test_process_names_a_segment_recovery_cannot_seal_instead_of_waiting_for_it(tmp_path, monkeypatch):
    monkeypatch.setenv("AMP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.setenv("AMP_SEGMENT_MAX_AGE_SECONDS", "1")
    (tmp_path / "dagster").mkdir()
    window = window_key(window_of(int(time.time() * 1000), 60))
    crashed = write_segment(tmp_path / "data", window, [{"event_type": "click", "user_id": "u1", "uuid": "e1"}],
                            name="0000000000001-dead-000001", sealed=False)
    with open(crashed, "ab") as f:
        f.write(b'{"torn')  # recovery must quarantine this tail first, and cannot (as on a full disk):
    (tmp_path / "data" / "quarantine").write_bytes(b"")
    result = CliRunner().invoke(main, ["process", "--all-windows"], catch_exceptions=False)
    assert result.output.count("recovery could not seal") == 1, result.output
    assert f"waiting: window {window}: recovery could not seal {crashed.name} (Not a directory)" in result.output
    assert "a receiver is writing it" not in result.output
