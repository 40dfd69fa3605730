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


def down_then_up(tmp_path, a_events: dict[str, list[dict]], b_events: dict[str, list[dict]]):
    """Volume B ships its windows; volume A held its segments (a live writer's lock) when it went
    down, past the dead-after time. Returns (a, processing settings); `Shipper(a).ship_once()`
    brings A back."""
    now = int(time.time() * 1000)
    a, b = settings_for(tmp_path / "a", volume_dead_after_seconds=1.0), settings_for(tmp_path / "b", volume_dead_after_seconds=1.0)
    for k, (window, events) in enumerate(sorted(b_events.items())):
        write_segment(b.data_dir, window, events, name=f"{window_start(window) + 1000:013d}-b-{k:06d}")
    held = [write_segment(a.data_dir, window, events, name=f"{window_start(window) + 2000:013d}-a-{k:06d}", sealed=False)
            for k, (window, events) in enumerate(sorted(a_events.items()))]
    locks = [os.open(path, os.O_RDWR) for path in held]
    for fd in locks:
        fcntl.flock(fd, fcntl.LOCK_EX)
    Shipper(a).ship_once()
    for fd in locks:
        os.close(fd)
    time.sleep(1.5)
    Shipper(b).ship_once()
    return a, b, settings_for(tmp_path / "processing", volume_dead_after_seconds=1.0), now


def window_start(window: str) -> int:
    from amp_personalize.events.windows import window_start_ms

    return window_start_ms(window)


def windows_back(now: int, *hours: int) -> list[str]:
    return [window_key(window_of(now, 60) - h * HOUR) for h in hours]


@pytest.mark.slow
def test_the_sensor_builds_a_window_that_only_a_late_volume_had(tmp_path, s3):
    """Review: the sensor's watermark had passed it, and it was never built, so never found stale."""
    from amp_personalize.assets.interactions import impressions, interactions
    from amp_personalize.assets.raw_events import raw_events
    from amp_personalize.resources import AmpResource
    from amp_personalize.sensors.landing_sensor import landing_sensor

    w1, w2 = windows_back(int(time.time() * 1000), 3, 2)
    a, b, processing, _ = down_then_up(tmp_path, {w1: [click("only-on-a")]}, {w2: [click("on-b")]})
    amp = AmpResource.from_settings(processing)
    with dg.instance_for_test() as instance:
        cursor, requested = None, []
        for back in (False, True, True, True):
            if back:
                Shipper(a).ship_once()  # A is back: it ships w1 late
                Shipper(b).ship_once()
            result = landing_sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources={"amp": amp}))
            for request in result.run_requests:
                requested.append(request.partition_key)
                assert dg.materialize([raw_events, interactions, impressions], partition_key=request.partition_key,
                                      resources={"amp": amp}, instance=instance).success
            cursor = result.cursor
        assert requested == [w2, w1, w2]  # w2 again: it dedupes against w1, built after it
        assert (lake_rows(w1), lake_rows(w2)) == (["only-on-a"], ["on-b"])


@pytest.mark.slow
def test_a_window_built_first_after_later_ones_makes_them_drop_its_retries(tmp_path, s3):
    """Review: built for the first time, its late segments had no earlier build to differ from."""
    w1, w2 = windows_back(int(time.time() * 1000), 3, 2)
    a, b, processing, _ = down_then_up(tmp_path, {w1: [click("dup")]}, {w2: [click("dup")]})
    with dg.instance_for_test() as instance:
        assert process_once(processing, all_windows=False, instance=instance).windows == [w2]
        Shipper(a).ship_once()
        Shipper(b).ship_once()
        assert process_once(processing, all_windows=False, instance=instance).windows == [w1, w2]
        assert (lake_rows(w1), lake_rows(w2)) == (["dup"], [])


@pytest.mark.slow
def test_a_process_stopped_after_its_first_pass_leaves_the_rest_to_the_sensor(tmp_path, s3, monkeypatch):
    """Review: it had recorded the late volume as looked at past the windows its rebuild made due."""
    import amp_personalize.process as process_module
    from amp_personalize.assets.interactions import impressions, interactions
    from amp_personalize.assets.raw_events import raw_events
    from amp_personalize.resources import AmpResource
    from amp_personalize.sensors.landing_sensor import landing_sensor

    w1, w2 = windows_back(int(time.time() * 1000), 3, 2)
    a, b, processing, _ = down_then_up(tmp_path, {w1: [click("dup")]}, {w1: [click("x1")], w2: [click("dup")]})
    amp = AmpResource.from_settings(processing)
    with dg.instance_for_test() as instance:
        assert process_once(processing, all_windows=False, instance=instance).windows == [w1, w2]
        cursor = landing_sensor(dg.build_sensor_context(instance=instance, resources={"amp": amp})).cursor
        Shipper(a).ship_once()
        Shipper(b).ship_once()
        monkeypatch.setattr(process_module, "MAX_PASSES", 1)  # stopped (Ctrl-C, a pod killed) after one pass
        assert process_once(processing, all_windows=False, instance=instance).windows == [w1]
        for _ in range(3):
            result = landing_sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources={"amp": amp}))
            for request in result.run_requests:
                assert dg.materialize([raw_events, interactions, impressions], partition_key=request.partition_key,
                                      resources={"amp": amp}, instance=instance).success
            cursor = result.cursor
        assert (lake_rows(w1), lake_rows(w2)) == (["dup", "x1"], [])


def test_a_tick_over_many_built_windows_costs_a_few_requests_when_a_volume_appears(tmp_path, s3, monkeypatch):
    """Review: a volume first seen made every built window be looked at again, about 30 requests each."""
    from amp_personalize.assets.raw_events import BUILT_FROM, LATE
    from amp_personalize.lake.store import S3Lake
    from amp_personalize.sensors.due import windows_due
    from amp_personalize.storage import s3 as s3store

    settings = settings_for(tmp_path)
    now = int(time.time() * 1000)
    windows = windows_back(now, *range(62, 2, -1))
    client = s3.client()
    lake = S3Lake(settings.lake_url, client)
    for window in windows:
        name = "v-aaaaaaaaaaaaaaaa/0000000000001-x-000001.ndjson"
        client.put_object(Bucket=BUCKET, Key=f"landing/{window}/{name}", Body=b"{}\n")
        for dataset in ("raw_events", "interactions", "impressions"):
            lake.write(pl.DataFrame({"event_id": [window]}), dataset, window, {BUILT_FROM: f'["{name}"]', LATE: "[]"})
    # A new receiver's first watermark, as its shipper publishes it (since_ms: its oldest segment).
    client.put_object(Bucket=BUCKET, Key="landing/_volumes/v-bbbbbbbbbbbbbbbb.json",
                      Body=b'{"volume_id":"v-bbbbbbbbbbbbbbbb","status":"live","heartbeat_ms":%d,"complete_before_ms":%d,"since_ms":%d}' % (now, now, now - 60_000))
    calls = []
    real = s3store.client

    def counting():
        counted = real()
        counted.meta.events.register("before-call.s3.*", lambda model, **_: calls.append(model.name))
        return counted

    monkeypatch.setattr(s3store, "client", counting)
    with dg.instance_for_test() as instance:
        found = windows_due(settings, instance, set(windows), watermark=windows[-1])
    assert found.due == [] and len(calls) < 15, calls
