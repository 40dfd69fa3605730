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
