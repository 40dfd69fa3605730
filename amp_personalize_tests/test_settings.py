import re
from pathlib import Path

import pytest

from amp_personalize.settings import Settings, SettingsError


def test_defaults_match_the_spec():
    s = Settings.from_env({})
    assert s.data_dir == Path("data")
    assert s.webhook_secret is None
    assert s.max_body_bytes == 20 * 1024 * 1024
    assert s.window_minutes == 60
    assert s.segment_max_age_seconds == 15
    assert (s.receiver_host, s.receiver_port) == ("127.0.0.1", 8000)
    assert s.landing_dir == Path("data/landing")


def test_values_are_read_from_the_environment():
    s = Settings.from_env(
        {"AMP_DATA_DIR": "/srv/amp", "AMP_WINDOW_MINUTES": "15", "AMP_WEBHOOK_SECRET": "s3cret", "AMP_RECEIVER_PORT": "9000"}
    )
    assert s.data_dir == Path("/srv/amp")
    assert s.window_minutes == 15
    assert s.receiver_port == 9000
    assert "s3cret" not in repr(s)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"AMP_WINDOW_MINUTES": "7"}, "AMP_WINDOW_MINUTES=7 must divide an hour"),
        ({"AMP_WINDOW_MINUTES": "90"}, "AMP_WINDOW_MINUTES=90 must divide an hour"),
        ({"AMP_WINDOW_MINUTES": "hour"}, "AMP_WINDOW_MINUTES='hour' is not an integer"),
        ({"AMP_MAX_BODY_BYTES": "0"}, "AMP_MAX_BODY_BYTES=0 must be at least 1"),
        ({"AMP_SEGMENT_MAX_AGE_SECONDS": "-1"}, "AMP_SEGMENT_MAX_AGE_SECONDS=-1.0 must be at least"),
    ],
)
def test_bad_settings_name_the_variable(env, message):
    with pytest.raises(SettingsError, match=message.replace("[", r"\[")):
        Settings.from_env(env)


ROOT = Path(__file__).resolve().parents[1]
SETTINGS_DOC = ROOT / "docs" / "settings.md"


def first_table(section: str) -> tuple[list[str], str]:
    """The first markdown table in `section`, and the text after it."""
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end], "\n".join(lines[end:])


def settings_table() -> tuple[list[str], str]:
    """The first table under docs/settings.md's "## Environment variables", and the rest of that section."""
    section = SETTINGS_DOC.read_text().split("\n## Environment variables\n", 1)[1].split("\n## ", 1)[0]
    return first_table(section)


def defaults(table: list[str]) -> dict[str, str]:
    """Each row's variables (a row may name two, `A` / `B`) and its default column."""
    rows = {}
    for line in table[2:]:
        name, default = (cell.strip() for cell in line.split("|")[1:3])
        for variable in re.findall(r"`([A-Z0-9_]+)`", name):
            rows[variable] = default
    return rows


def test_every_setting_the_docs_list_is_a_row_of_its_table():
    table, after = settings_table()
    assert not [line for line in after.splitlines() if line.startswith("|")], "a row outside the table does not render as one"
    assert "| `DAGSTER_HOME` |" in "\n".join(table)


def test_the_front_pages_settings_are_in_the_full_table_with_the_same_defaults():
    """README.md shows a few settings; docs/settings.md is the reference, and they must agree."""
    front = (ROOT / "README.md").read_text().split("\n## The settings most people set\n", 1)[1].split("\n## ", 1)[0]
    full = defaults(settings_table()[0])
    table, _ = first_table(front)
    for line in table[2:]:
        name, default = (cell.strip() for cell in line.split("|")[1:3])
        variables = re.findall(r"`([A-Z0-9_]+)`", name)
        values = [v.strip() for v in default.split(" / ")] if len(variables) > 1 else [default]
        assert variables and len(values) == len(variables), line
        for variable, value in zip(variables, values):
            assert variable in full, f"{variable} is on the front page but not in docs/settings.md"
            assert value == full[variable], (variable, value, full[variable])


def test_every_variable_settings_reads_is_in_the_docs_table():
    read = set(re.findall(r'"((?:AMP|AWS)_[A-Z0-9_]+)"', (ROOT / "amp_personalize" / "settings.py").read_text()))
    assert "AMP_PERSONALIZE_S3_URL" in read and len(read) > 30
    missing = read - set(defaults(settings_table()[0]))
    assert not missing, f"read by settings.py, not in docs/settings.md: {sorted(missing)}"


def test_the_docs_list_exactly_the_window_widths_settings_accept():
    table, _ = settings_table()
    [row] = [line for line in table if line.startswith("| `AMP_WINDOW_MINUTES` |")]
    meaning = row.split("|")[3]
    accepted = set()
    for minutes in range(1, 1441):
        try:
            Settings.from_env({"AMP_WINDOW_MINUTES": str(minutes)})
        except SettingsError:
            continue
        accepted.add(minutes)
    assert {int(n) for n in re.findall(r"\d+", meaning)} == accepted


@pytest.mark.parametrize(
    "env, message",
    [
        # inf and nan parse as floats; as durations they hang a wait or overflow a sum
        ({"AMP_SEGMENT_MAX_AGE_SECONDS": "inf"}, "AMP_SEGMENT_MAX_AGE_SECONDS='inf' is not a finite number"),
        ({"AMP_GRACE_SECONDS": "inf"}, "AMP_GRACE_SECONDS='inf' is not a finite number"),
        ({"AMP_GRACE_SECONDS": "nan"}, "AMP_GRACE_SECONDS='nan' is not a finite number"),
        ({"AMP_COMMIT_INTERVAL_MS": "-inf"}, "AMP_COMMIT_INTERVAL_MS='-inf' is not a finite number"),
        ({"AMP_PERSONALIZE_PUSH_TPS": "NaN"}, "AMP_PERSONALIZE_PUSH_TPS='NaN' is not a finite number"),
        ({"AMP_PERSONALIZE_POLL_SECONDS": "1e300"}, "AMP_PERSONALIZE_POLL_SECONDS=1e\\+300 must be at most"),
        ({"AMP_RECEIVER_PORT": "70000"}, "AMP_RECEIVER_PORT=70000 must be at most 65535"),
        ({"AMP_RECEIVER_PORT": "0"}, "AMP_RECEIVER_PORT=0 must be at least 1"),
        ({"AMP_NUM_RESULTS": "501"}, "AMP_NUM_RESULTS=501 must be at most 500"),
        ({"AMP_PARTITIONS_START": "0001-01-01T00:00+01:00"}, "is before 1970"),
        ({"AMP_PERSONALIZE_PUSH_INTERVAL_SECONDS": "99999999999999"}, "must be at most"),
        ({"AMP_PARTITIONS_START": "garbage"}, "AMP_PARTITIONS_START='garbage' is not an ISO date"),
        ({"AMP_PARTITIONS_START": "2999-01-01"}, "AMP_PARTITIONS_START='2999-01-01' is in the future"),
        ({"AMP_RETRAIN_CRON": "0 3 * *"}, "AMP_RETRAIN_CRON='0 3 \\* \\*' is not a cron schedule"),
        ({"AMP_RETRAIN_CRON": "61 3 * * *"}, "AMP_RETRAIN_CRON='61 3 \\* \\* \\*' is not a cron schedule"),
        ({"AMP_HISTORY_DAYS": "100000000"}, "AMP_HISTORY_DAYS=100000000 must be at most 36500"),
        ({"AMP_ACTIVE_DAYS": "100000000"}, "AMP_ACTIVE_DAYS=100000000 must be at most 36500"),
        ({"AMP_DEDUPE_LOOKBACK_HOURS": "10000000000"}, "AMP_DEDUPE_LOOKBACK_HOURS=10000000000 must be at most"),
    ],
)
def test_unusable_values_fail_at_start_up_naming_the_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_usable_edge_values_are_accepted():
    s = Settings.from_env({
        "AMP_RECEIVER_PORT": "65535", "AMP_HISTORY_DAYS": "36500", "AMP_RETRAIN_CRON": "@daily",
        "AMP_PARTITIONS_START": "2024-06-01T12:00", "AMP_GRACE_SECONDS": "1e5",
    })
    assert (s.receiver_port, s.history_days, s.retrain_cron, s.grace_seconds) == (65535, 36500, "@daily", 1e5)
    assert s.partitions_start_ms == 1717243200000  # 2024-06-01 12:00 UTC


@pytest.mark.parametrize(
    "args, message",
    [
        (["serve", "--port", "83036"], "83036 is not in the range 1<=x<=65535"),
        (["serve", "--port", "0"], "0 is not in the range 1<=x<=65535"),
        (["serve", "--workers", "0"], "0 is not in the range x>=1"),
        (["up", "--ui-port", "70000"], "70000 is not in the range 1<=x<=65535"),
    ],
)
def test_cli_port_and_worker_options_are_checked(args, message, monkeypatch):
    from click.testing import CliRunner

    import amp_personalize.services
    from amp_personalize.cli import main

    monkeypatch.setattr("uvicorn.run", lambda *a, **k: pytest.fail("the receiver started"))
    monkeypatch.setattr(amp_personalize.services, "up", lambda *a, **k: pytest.fail("up started"))
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and message in result.output, result.output


def test_a_bad_setting_is_one_line_even_for_commands_that_load_the_pipeline(tmp_path, monkeypatch):
    """process and train import modules that read the settings at import time (the schedule's cron)."""
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "AMP_DATA_DIR": str(tmp_path / "data"), "AMP_RETRAIN_CRON": "0 3 * *"}
    for command in ("process", "train"):
        done = subprocess.run([sys.executable, "-m", "amp_personalize.cli", command], env=env, capture_output=True, text=True)
        assert done.returncode == 2, done.stderr
        # One line (QA: it came after click's "Usage: ... Try --help", which says nothing of settings).
        assert done.stderr.startswith("Error: AMP_RETRAIN_CRON='0 3 * *' is not a cron schedule"), done.stderr
        assert len(done.stderr.splitlines()) == 1, done.stderr
