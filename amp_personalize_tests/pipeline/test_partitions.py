"""Where the window partitions start: where the data does, never later once seen, unless set."""

from dataclasses import replace
from datetime import datetime, timezone

import pytest

from amp_personalize.assets.partitions import PINNED_START, partitions_start, window_partitions
from amp_personalize.events.windows import window_key, window_start_ms
from amp_personalize.lake.parquet import partition_path
from amp_personalize.settings import Settings
from amp_personalize_tests.landing_fixture import write_segment

HOUR = 3_600_000
CLICK = {"event_type": "click", "user_id": "u", "event_properties": {"item_id": "d"}}
NOW = window_start_ms("20261206T0430Z")


def unset(data, **env) -> Settings:
    """Settings as `make up` reads them with AMP_PARTITIONS_START unset (the tests' own run sets it)."""
    return replace(Settings.from_env(env), data_dir=data)


def keys(settings: Settings) -> list[str]:
    at = datetime.fromtimestamp(NOW / 1000, tz=timezone.utc)
    return window_partitions(settings, partitions_start(settings, NOW)).get_partition_keys(current_time=at)


def test_partitions_begin_at_the_first_landed_window_not_years_before(tmp_path):
    """Issue 16: after `make demo` every windowed asset showed "0% filled" of 16,900 partitions
    (hourly from 2025-01-01), none of them near the data."""
    data = tmp_path / "data"
    for window in ("20261205T1600Z", "20261205T1700Z"):
        write_segment(data, window, [CLICK])
    settings = unset(data)
    start = partitions_start(settings, NOW)
    assert window_key(start.ms) == "20261205T1600Z"
    assert str(data / PINNED_START) in start.source
    first = window_partitions(settings, start).get_first_partition_window()
    assert window_key(int(first.start.timestamp() * 1000)) == "20261205T1600Z"


def test_the_start_never_moves_later_and_moves_earlier_for_older_data(tmp_path):
    """Old landing folders and lake files deleted must not hide partitions Dagster has
    materializations of; older windows turning up (a restored backup) get partitions."""
    data = tmp_path / "data"
    write_segment(data, "20261205T1600Z", [CLICK])
    partition_path(data / "lake", "raw_events", "20261205T1400Z").parent.mkdir(parents=True)
    partition_path(data / "lake", "raw_events", "20261205T1400Z").write_bytes(b"")  # built, its landing gone
    settings = unset(data)
    assert window_key(partitions_start(settings, NOW).ms) == "20261205T1400Z"

    for path in [*(data / "landing").iterdir(), *(data / "lake" / "raw_events").iterdir()]:
        path.rename(tmp_path / path.name)  # every old window moved away
    write_segment(data, "20261206T0300Z", [CLICK])
    assert window_key(partitions_start(settings, NOW).ms) == "20261205T1400Z"  # pinned

    write_segment(data, "20261201T0000Z", [CLICK])
    assert window_key(partitions_start(settings, NOW).ms) == "20261201T0000Z"
    assert (data / PINNED_START).read_text() == "2026-12-01T00:00:00+00:00\n"


def test_no_data_yet_starts_at_the_current_window_and_pins_nothing(tmp_path):
    """No landed window is ever older than the first receiver's start, which is now or later."""
    settings = unset(tmp_path / "data")
    assert keys(settings) == ["20261206T0400Z"]  # the open window: `process --all-windows` builds it
    assert not (tmp_path / "data" / PINNED_START).exists()


def test_an_explicit_start_is_kept_as_before(tmp_path):
    data = tmp_path / "data"
    write_segment(data, "20261205T1600Z", [CLICK])
    settings = unset(data, AMP_PARTITIONS_START="2026-12-06")
    start = partitions_start(settings, NOW)
    assert (window_key(start.ms), start.source) == ("20261206T0000Z", "AMP_PARTITIONS_START")
    assert not (data / PINNED_START).exists()


@pytest.mark.parametrize(("minutes", "first"), [(60, "20261205T1600Z"), (1440, "20261205T0000Z"), (15, "20261205T1615Z")])
def test_the_start_falls_on_a_window_of_the_current_width(tmp_path, minutes, first):
    """After AMP_WINDOW_MINUTES changes, the first window of the new width is still a partition."""
    data = tmp_path / "data"
    write_segment(data, "20261205T1615Z", [CLICK])  # landed with 15-minute windows
    assert keys(unset(data, AMP_WINDOW_MINUTES=str(minutes)))[0] == first
