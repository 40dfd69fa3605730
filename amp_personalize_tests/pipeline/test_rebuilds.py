"""Rebuilding a window: byte-identical output, weight edits apply, bad data never published,
and a write killed half-way leaves the previous partition readable."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import dagster as dg
import polars as pl
import pytest

import amp_personalize.assets.interactions as interactions_module
from amp_personalize.assets.interactions import impressions, interactions
from amp_personalize.assets.raw_events import is_due, raw_events
from amp_personalize.lake.store import LocalLake
from amp_personalize.landing.source import LocalLanding
from amp_personalize.assets.user_item_scores import user_item_scores
from amp_personalize.events import load_weights
from amp_personalize.lake.parquet import partition_path, rejected_path, write_atomic
from amp_personalize.resources import AmpResource
from amp_personalize_tests.landing_fixture import write_segment

W = "20260101T1000Z"
EVENTS = [
    {"event_type": "click", "user_id": "u1", "uuid": "e1", "event_properties": {"item_id": "d1"}},
    {"event_type": "upvote", "user_id": "u1", "uuid": "e2", "event_properties": {"item_id": "d2"}},
    {"event_type": "click", "user_id": "u2", "uuid": "e3", "event_properties": {"item_id": "d1"}},
    {"event_type": "initial_impression", "user_id": "u2", "uuid": "e4", "event_properties": {"items_shown": ["d1", "d2"]}},
]
DATASETS = ["raw_events", "interactions", "impressions"]


@pytest.fixture
def setup(tmp_path):
    data = tmp_path / "data"
    write_segment(data, W, EVENTS)
    with dg.instance_for_test() as instance:
        yield data, instance


def materialize(data, instance, weights_file=None, assets=(raw_events, interactions, impressions)):
    amp = AmpResource(data_dir=str(data), weights_file=str(weights_file) if weights_file else None, history_days=36500)
    return dg.materialize(list(assets), partition_key=W, resources={"amp": amp}, instance=instance, raise_on_error=False)


def test_rematerializing_a_window_is_byte_identical(setup):
    data, instance = setup
    assert materialize(data, instance).success
    first = {d: partition_path(data / "lake", d, W).read_bytes() for d in DATASETS}
    assert materialize(data, instance).success
    assert {d: partition_path(data / "lake", d, W).read_bytes() for d in DATASETS} == first


def test_an_edited_weight_file_changes_event_values_and_nothing_else(setup, tmp_path):
    data, instance = setup
    assert materialize(data, instance).success
    before = pl.read_parquet(partition_path(data / "lake", "interactions", W))
    table = load_weights()
    edited = {"weights": {**table.weights, "click": 1.25}, "impression_types": sorted(table.impression_types)}
    weights_file = tmp_path / "weights.json"
    weights_file.write_text(json.dumps(edited))
    assert materialize(data, instance, weights_file).success
    after = pl.read_parquet(partition_path(data / "lake", "interactions", W))
    assert after.drop("event_value").equals(before.drop("event_value"))
    changed = before.with_columns(after["event_value"].alias("new"))
    assert changed.filter(pl.col("event_value") != pl.col("new"))["event_type"].unique().to_list() == ["click"]
    assert changed.filter(pl.col("event_type") == "click")["new"].to_list() == [1.25, 1.25]


def test_a_failing_blocking_check_keeps_the_partition_out_of_the_lake(setup, monkeypatch):
    data, instance = setup
    assert materialize(data, instance).success
    good = partition_path(data / "lake", "interactions", W).read_bytes()

    real = interactions_module.build_interactions

    def broken(raw, weights):  # a transform bug: an interaction without a user
        return real(raw, weights).with_columns(pl.lit(None, dtype=pl.String).alias("user_id"))

    monkeypatch.setattr(interactions_module, "build_interactions", broken)
    result = materialize(data, instance, assets=(raw_events, interactions, impressions))
    evaluations = {e.check_name: e.passed for e in result.get_asset_check_evaluations() if e.asset_key.path == ["interactions"]}
    assert evaluations["no_null_ids"] is False
    assert partition_path(data / "lake", "interactions", W).read_bytes() == good, "bad data replaced good data"
    rejected = pl.read_parquet(rejected_path(data / "lake", "interactions", W))
    assert rejected["user_id"].null_count() == rejected.height
    scores = dg.materialize(
        [user_item_scores], resources={"amp": AmpResource(data_dir=str(data), history_days=36500)}, instance=instance
    )
    assert scores.success
    users = pl.read_parquet(partition_path(data / "lake", "user_item_scores"))["user_id"]
    assert users.null_count() == 0 and set(users) == {"u1", "u2"}


def test_a_rejection_a_later_good_build_replaced_does_not_stop_later_rebuilds(setup, monkeypatch):
    """QA: the rejected file outlived the good build after it, and then a dataset file deleted by
    hand was never built again (the window counted as kept out)."""
    data, instance = setup
    real = interactions_module.build_interactions
    monkeypatch.setattr(interactions_module, "build_interactions",
                        lambda raw, weights: real(raw, weights).with_columns(pl.lit(None, dtype=pl.String).alias("user_id")))
    assert not materialize(data, instance).success
    assert not is_due(LocalLanding(data / "landing"), LocalLake(data / "lake"), W, {W}), "a window kept out by its checks is not rebuilt on every pass"
    monkeypatch.undo()
    assert materialize(data, instance).success
    assert not rejected_path(data / "lake", "interactions", W).exists()
    assert not is_due(LocalLanding(data / "landing"), LocalLake(data / "lake"), W, {W})
    partition_path(data / "lake", "interactions", W).unlink()
    assert is_due(LocalLanding(data / "landing"), LocalLake(data / "lake"), W, {W})


def test_which_rejections_excuse_a_missing_file(setup):
    """Review: interactions kept out excused a missing impressions file (it depends on raw_events
    alone), and a rejection older than the published file (left before publish removed them)
    still counted."""
    data, instance = setup
    assert materialize(data, instance).success
    lake = data / "lake"
    rejected = rejected_path(lake, "interactions", W)
    rejected.parent.mkdir(parents=True)
    rejected.write_bytes(partition_path(lake, "interactions", W).read_bytes())
    os.utime(rejected, (1, 1))  # older than the published file: superseded
    assert not is_due(LocalLanding(data / "landing"), LocalLake(lake), W, {W})
    partition_path(lake, "interactions", W).unlink()
    assert is_due(LocalLanding(data / "landing"), LocalLake(lake), W, {W}), "a missing file with only a superseded rejection"
    rejected.touch()  # interactions' latest build was kept out: that file is not missing
    assert not is_due(LocalLanding(data / "landing"), LocalLake(lake), W, {W})
    partition_path(lake, "impressions", W).unlink()
    assert is_due(LocalLanding(data / "landing"), LocalLake(lake), W, {W}), "impressions does not depend on interactions"


WRITER = """
import sys, polars as pl
from pathlib import Path
from amp_personalize.lake.parquet import write_atomic
df = pl.DataFrame({"x": range(20_000_000)}).with_columns(pl.col("x").cast(pl.String).alias("s"))
print("ready", flush=True)
while True:
    write_atomic(df, Path(sys.argv[1]))
"""


@pytest.mark.slow
def test_a_write_killed_half_way_leaves_the_previous_partition_readable(tmp_path):
    path = partition_path(tmp_path / "lake", "interactions", W)
    good = pl.DataFrame({"x": [1, 2, 3]})
    write_atomic(good, path)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        while not list(path.parent.glob(".*.tmp-*")):  # mid-write: the temp file exists
            assert time.monotonic() < deadline, "the writer never started writing"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert pl.read_parquet(path).equals(good) or pl.read_parquet(path).height == 20_000_000
    assert [p.name for p in path.parent.glob("*.parquet")] == [path.name], "a temp file is visible to readers"
    assert list(path.parent.glob(".*.tmp-*")), "the killed writer's temp file"
    live = path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getppid()}")  # a live writer's (review)
    live.write_bytes(b"being written")
    write_atomic(good, path)  # the next write of the partition clears what a dead writer left
    assert [p.name for p in path.parent.glob(".*.tmp-*")] == [live.name]
