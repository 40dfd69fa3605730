"""HTTP in, duckdb out: events posted to a live receiver come out in interactions, each once."""

from dataclasses import replace

import duckdb
import pytest
from click.testing import CliRunner

from amp_personalize.cli import main
from amp_personalize.receiver import create_app
from amp_personalize_tests.conftest import LiveReceiver

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
