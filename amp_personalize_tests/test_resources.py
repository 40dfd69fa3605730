"""The Dagster resources carry the settings the code location was loaded with, every one of them."""

from __future__ import annotations

import time
from dataclasses import fields

import dagster as dg

from amp_personalize.backends.personalize.resource import PersonalizeResource
from amp_personalize.definitions import build_definitions
from amp_personalize.events.windows import window_key, window_of
from amp_personalize.resources import NOT_CARRIED, AmpResource
from amp_personalize.sensors.landing_sensor import landing_sensor
from amp_personalize.settings import PersonalizeSettings, Settings
from amp_personalize_tests.landing_fixture import write_segment

# A value other than the default for every AMP_ setting the Dagster code reads.
NOT_DEFAULT = {
    "AMP_DATA_DIR": "/srv/amp",
    "AMP_MAX_BODY_BYTES": "1000",
    "AMP_WINDOW_MINUTES": "15",
    "AMP_SEGMENT_MAX_AGE_SECONDS": "3",
    "AMP_SEGMENT_MAX_BYTES": "4096",
    "AMP_COMMIT_INTERVAL_MS": "2",
    "AMP_COMMIT_MAX_EVENTS": "7",
    "AMP_RECEIVER_HOST": "0.0.0.0",
    "AMP_RECEIVER_PORT": "9001",
    "AMP_BODY_TIMEOUT_SECONDS": "4",
    "AMP_MAX_CONNECTIONS": "50",
    "AMP_READ_TOKEN": "r3ad",
    "AMP_SERVING_HOST": "10.0.0.5",
    "AMP_SERVING_PORT": "9002",
    "AMP_LANDING_URL": "s3://landing-bucket/amp",
    "AMP_LAKE_URL": "s3://lake-bucket/amp/lake",
    "AMP_LANDING_KEEP_HOURS": "6",
    "AMP_VOLUME_DEAD_AFTER_SECONDS": "120",
    "AMP_WEIGHTS_FILE": "/srv/weights.json",
    "AMP_GRACE_SECONDS": "5",
    "AMP_HISTORY_DAYS": "30",
    "AMP_DEDUPE_LOOKBACK_HOURS": "6",
    "AMP_FUTURE_SKEW_MINUTES": "3",
    "AMP_PARTITIONS_START": "2025-06-01",
    "AMP_BACKEND": "personalize",
    "AMP_RETRAIN_CRON": "0 4 * * 1",
    "AMP_ACTIVE_DAYS": "7",
    "AMP_NUM_RESULTS": "9",
    "AMP_EXCLUDE_SEEN": "false",
    "AWS_PERSONALIZE_TRACKING_ID": "tid",
    "AWS_PERSONALIZE_CAMPAIGN_ARN": "arn:aws:personalize:us-east-1:1:campaign/amp",
    "AMP_PERSONALIZE_PUSH_TPS": "7",
    "AMP_PERSONALIZE_BATCH_USERS": "12",
    "AMP_PERSONALIZE_TRAINING_MODE": "update",
    "AMP_WEBHOOK_SECRET": "s3cret",
    "AMP_DATABASE_URL": "postgresql://amp:pa55word@db.internal:5432/amp",
}


def test_every_setting_survives_the_resources(monkeypatch):
    monkeypatch.setenv("AMP_DATABASE_URL", NOT_DEFAULT["AMP_DATABASE_URL"])
    settings = Settings.from_env(NOT_DEFAULT)
    carried = [f.name for f in fields(Settings) if f.name not in NOT_CARRIED]
    # The fixture really moves every carried setting off its default, or the test proves nothing.
    assert [name for name in carried if getattr(settings, name) == getattr(Settings(), name)] == []
    defs = build_definitions(settings)
    amp, personalize = defs.resources["amp"], defs.resources["personalize"]
    back = amp.settings(personalize)
    for name in carried:
        assert getattr(back, name) == getattr(settings, name), name
    assert back.personalize == settings.personalize
    assert [f.name for f in fields(PersonalizeSettings) if getattr(back.personalize, f.name) == getattr(PersonalizeSettings(), f.name)] \
        == [f.name for f in fields(PersonalizeSettings) if getattr(settings.personalize, f.name) == getattr(PersonalizeSettings(), f.name)]


def test_the_webhook_secret_is_not_resource_config_the_ui_shows(monkeypatch):
    monkeypatch.setenv("AMP_DATABASE_URL", NOT_DEFAULT["AMP_DATABASE_URL"])
    amp = AmpResource.from_settings(Settings.from_env(NOT_DEFAULT))
    assert "pa55word" not in str(amp.model_dump())  # the variable's name, resolved in runs
    assert "s3cret" not in str(amp.model_dump()) and "r3ad" not in str(amp.model_dump())
    assert "pa55word" not in repr(Settings.from_env(NOT_DEFAULT))
    assert amp.settings().webhook_secret is None and amp.settings().read_token is None


def test_the_landing_sensor_plans_no_window_before_the_configured_partitions_start(tmp_path):
    """AMP_PARTITIONS_START reaches the sensor through the resource: a window landed before it
    has no partition, so the sensor must not request it (it used to, from the default start)."""
    now = int(time.time() * 1000)
    before = window_key(window_of(now, 60) - 3 * 3_600_000)
    start = window_key(window_of(now, 60) - 2 * 3_600_000)
    write_segment(tmp_path, before, [{"event_type": "click", "user_id": "u", "event_properties": {"item_id": "d"}}])
    settings = Settings.from_env({"AMP_DATA_DIR": str(tmp_path), "AMP_GRACE_SECONDS": "0",
                                  "AMP_PARTITIONS_START": f"{start[:4]}-{start[4:6]}-{start[6:8]}T{start[9:11]}:00"})
    amp = build_definitions(settings).resources["amp"]
    with dg.instance_for_test() as instance:
        result = landing_sensor(dg.build_sensor_context(instance=instance, resources={"amp": amp}))
    assert result.run_requests == []
    assert f"1 landing window(s) ({before}) begin before the first partition" in result.skip_reason.skip_message
    assert "from AMP_PARTITIONS_START" in result.skip_reason.skip_message


def test_personalize_resource_round_trips_its_settings():
    settings = Settings.from_env(NOT_DEFAULT).personalize
    assert PersonalizeResource.from_settings(settings).settings() == settings


def test_a_database_url_read_from_a_secret_file_stays_out_of_the_ui(monkeypatch):
    """Review: a trailing newline (kubectl --from-file) made the URL differ from the variable's
    stripped value, and the resource showed the URL, password and all."""
    monkeypatch.setenv("AMP_DATABASE_URL", "postgresql://amp:pa55word@db:5432/amp\n")
    amp = AmpResource.from_settings(Settings.from_env())
    assert "pa55word" not in repr(amp.model_dump())
    assert amp.settings().database_url == "postgresql://amp:pa55word@db:5432/amp"
