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


README = Path(__file__).resolve().parents[1] / "README.md"


def settings_table() -> tuple[list[str], str]:
    """The first table under README's "## Settings", and the rest of that section before "###"."""
    section = README.read_text().split("\n## Settings\n", 1)[1].split("\n### ", 1)[0]
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end], "\n".join(lines[end:])


def test_every_setting_the_readme_lists_is_a_row_of_its_table():
    table, after = settings_table()
    assert not [line for line in after.splitlines() if line.startswith("|")], "a row outside the table does not render as one"
    assert "| `DAGSTER_HOME` |" in "\n".join(table)


def test_the_readme_lists_exactly_the_window_widths_settings_accept():
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
