"""A volume that stays down past AMP_VOLUME_DEAD_AFTER_SECONDS: windows close without it, and
what it ships when it returns builds its windows again, and the later windows whose dedupe it
changes, so every event stays counted once."""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import replace

import dagster as dg
import polars as pl
import pytest

from amp_personalize.events.windows import window_key, window_of
from amp_personalize.landing.shipping import Shipper
from amp_personalize.process import process_once
from amp_personalize.sensors.shipped import plan_shipped_windows
from amp_personalize.landing.source import Volume
from amp_personalize.settings import Settings
from amp_personalize.storage.s3 import storage_options
from amp_personalize_tests.landing_fixture import write_segment
from amp_personalize_tests.s3_server import BUCKET

HOUR = 3_600_000
LANDING, LAKE = f"s3://{BUCKET}/landing", f"s3://{BUCKET}/lake"


def click(uuid: str, user: str = "u1") -> dict:
    return {"event_type": "click", "user_id": user, "uuid": uuid, "event_properties": {"item_id": f"doc-{uuid}"}}


def settings_for(data_dir, **changes) -> Settings:
    env = {"AMP_DATA_DIR": str(data_dir), "AMP_LANDING_URL": LANDING, "AMP_LAKE_URL": LAKE, "AMP_GRACE_SECONDS": "0"}
    return replace(Settings.from_env(env), **changes)


def lake_rows(window: str) -> list[str]:
    return sorted(pl.read_parquet(f"{LAKE}/raw_events/{window}.parquet", storage_options=storage_options())["event_id"].to_list())


@pytest.mark.slow
def test_a_late_volume_rebuilds_its_window_and_the_retry_after_it_is_counted_once(tmp_path, s3):
    now = int(time.time() * 1000)
    w1, w2 = window_key(window_of(now, 60) - 3 * HOUR), window_key(window_of(now, 60) - 2 * HOUR)
    a, b = settings_for(tmp_path / "a", volume_dead_after_seconds=1.0), settings_for(tmp_path / "b", volume_dead_after_seconds=1.0)
    # B lands x1 in w1 and Amplitude's retry of "dup" in w2; A landed the first receipt of "dup"
    # in w1, in a segment its receiver still held when the volume went down.
    write_segment(b.data_dir, w1, [click("x1")], name=f"{now - 3 * HOUR + 1000:013d}-b-000001")
    write_segment(b.data_dir, w2, [click("dup")], name=f"{now - 2 * HOUR + 1000:013d}-b-000002")
    held = write_segment(a.data_dir, w1, [click("dup")], name=f"{now - 3 * HOUR + 2000:013d}-a-000001", sealed=False)
    fd = os.open(held, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    Shipper(a).ship_once()  # its last heartbeat: everything before the held segment is shipped
    os.close(fd)
    time.sleep(1.5)  # A is dead now
    Shipper(b).ship_once()

    processing = settings_for(tmp_path / "processing", volume_dead_after_seconds=1.0)
    with dg.instance_for_test() as instance:
        first = process_once(processing, all_windows=True, instance=instance)
        assert first.windows == [w1, w2] and not first.failed
        assert any("v-" in why and "no heartbeat" in why for why in first.waiting), first.waiting
        assert (lake_rows(w1), lake_rows(w2)) == (["x1"], ["dup"])

        Shipper(a).ship_once()  # A is back: recovery seals the segment, and it is shipped late
        Shipper(b).ship_once()
        second = process_once(processing, all_windows=True, instance=instance)
        assert second.windows == [w1, w2] and second.scores_refreshed and not second.failed
        assert (lake_rows(w1), lake_rows(w2)) == (["dup", "x1"], [])  # "dup" once, where it first landed
        event = instance.get_latest_materialization_event(dg.AssetKey("raw_events"))
        rebuilt = [e for e in instance.fetch_materializations(dg.AssetKey("raw_events"), limit=10).records
                   if e.event_log_entry.dagster_event.partition == w1][0]
        metadata = rebuilt.asset_materialization.metadata
        assert metadata["late_segments"].value == 1 and metadata["late_segment_names"].value[0].endswith(held.name.removesuffix(".open"))
        assert event is not None

        third = process_once(processing, all_windows=True, instance=instance)
        assert third.windows == []  # nothing stale is left, nothing is built twice


def test_windows_wait_for_live_volumes_only():
    class Landing:
        def windows(self, after=None):
            return ["20261206T0100Z", "20261206T0200Z"]

    now = 1796526000000 + 600_000  # 03:10 UTC: both windows closed
    fresh, behind, dead = (
        Volume("v-fresh", "live", now, now),
        Volume("v-behind", "live", now, 1796522400000 + 60_000),  # shipped through 02:01 only
        Volume("v-dead", "live", now - 700_000, 0),
    )
    plan = plan_shipped_windows(Landing(), [fresh, behind, dead], now, 60, 30, 600)
    assert plan.ready == ["20261206T0100Z"] and plan.watermark == "20261206T0100Z"
    assert "window 20261206T0200Z waits for volume(s) v-behind" in plan.waiting[-1][1]
    assert "v-dead" in plan.waiting[0][1] and "no heartbeat" in plan.waiting[0][1]
    stopped = Volume("v-behind", "stopped", now, 1796522400000 + 60_000)
    assert plan_shipped_windows(Landing(), [fresh, stopped, dead], now, 60, 30, 600).ready == ["20261206T0100Z", "20261206T0200Z"]
