"""Training and caching through the real assets, the schedule and sensor wiring, and serving
the caches over HTTP from a live app (including a reload on a new model version)."""

import shutil
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import dagster as dg
import httpx
import polars as pl
import pytest
from click.testing import CliRunner

import amp_personalize.assets.recommender as recommender
from amp_personalize.assets.interactions import impressions, interactions
from amp_personalize.assets.raw_events import raw_events
from amp_personalize.assets.recommender import (
    latest_model,
    recommendations,
    recommender_model,
    similar_items,
)
from amp_personalize.backends.base import RECOMMENDATIONS_SCHEMA
from amp_personalize.backends.local.backend import LocalBackend
from amp_personalize.backends.personalize.resource import PersonalizeResource
from amp_personalize.backends.versions import latest_version
from amp_personalize.cli import main
from amp_personalize.definitions import defs
from amp_personalize.events.windows import window_key, window_of
from amp_personalize.lake.parquet import partition_path
from amp_personalize.process import train_once
from amp_personalize.receiver import create_app
from amp_personalize.resources import AmpResource
from amp_personalize.sensors.training import caches_after_training
from amp_personalize.settings import PersonalizeSettings
from amp_personalize_tests.conftest import LiveReceiver
from amp_personalize_tests.landing_fixture import write_segment

pytestmark = pytest.mark.slow
LOCAL_ONLY = PersonalizeResource.from_settings(PersonalizeSettings())
NOW = datetime.now(timezone.utc)
WINDOW = window_key(window_of(int(NOW.timestamp() * 1000), 60) - 2 * 3_600_000)
MODEL_ASSETS = [recommender_model, recommendations, similar_items]


def event(user, item, kind="click", n=0):
    t = int((NOW - timedelta(days=1, minutes=n)).timestamp() * 1000)
    return {"event_type": kind, "user_id": user, "time": t, "uuid": f"{user}-{item}-{kind}", "event_properties": {"item_id": item}}


EVENTS = [
    *[event(f"reader{i}", item) for i in range(6) for item in ("p1", "p2", "p3")],
    *[event(f"reader{i}", "p4") for i in range(2)],
    *[event(f"poster{i}", item) for i in range(8) for item in ("q1", "q2", "q3", "q4")],
    event("alice", "p1"),
    event("alice", "p2", "upvote"),
    event("bob", "q1"),
    event("bob", "q2", "flag"),  # bob must never be offered q2
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    data = tmp_path_factory.mktemp("recs") / "data"
    write_segment(data, WINDOW, EVENTS)
    amp = AmpResource(data_dir=str(data), num_results=3)
    with dg.instance_for_test() as instance:
        assert dg.materialize([raw_events, interactions, impressions], partition_key=WINDOW, resources={"amp": amp, "personalize": LOCAL_ONLY}, instance=instance).success
        result = dg.materialize(MODEL_ASSETS, resources={"amp": amp, "personalize": LOCAL_ONLY}, instance=instance)
        assert result.success
        yield data, amp, instance, result


def test_the_columns_the_ui_shows_are_the_cache_views(trained):
    from amp_personalize_tests.pipeline.test_datasets import declared_columns, view_columns

    data = trained[0]
    for dataset in ("recommendations", "similar_items"):
        assert declared_columns(dataset) == view_columns(data, dataset), dataset


def test_a_versioned_model_with_offline_metrics_side_by_side(trained):
    data, _, _, result = trained
    version = latest_version(data / "models")
    assert version and (data / "models" / version / "model.npz").exists()
    meta = result.asset_materializations_for_node("recommender_model")[0].metadata
    assert meta["version"].value == version
    assert "| normalized_discounted_cumulative_gain_at_10 |" in meta["offline_metrics"].value
    # Each metric on its own as well, a number that plots across model versions.
    assert isinstance(meta["normalized_discounted_cumulative_gain_at_10"], dg.FloatMetadataValue)
    assert meta["dagster/uri"].value == str((data / "models" / version).resolve())
    evaluations = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in result.get_asset_check_evaluations()}
    assert evaluations[("recommender_model", "enough_training_data")]
    assert all(passed for (asset, _), passed in evaluations.items() if asset in ("recommendations", "similar_items"))


def test_cached_recommendations_honour_vetoes_and_fill_every_list(trained):
    data, *_ = trained
    recs = pl.read_parquet(partition_path(data / "lake", "recommendations"))
    assert recs.group_by("user_id").len()["len"].unique().to_list() == [3]
    assert recs["user_id"].n_unique() == 16  # every active user
    assert recs.filter(pl.col("user_id") == "alice")["item_id"].to_list()[0] == "p3"
    assert "q2" not in recs.filter(pl.col("user_id") == "bob")["item_id"].to_list()
    assert set(recs.columns) >= {"user_id", "rank", "item_id", "score", "source", "model_version", "generated_at"}
    similar = pl.read_parquet(partition_path(data / "lake", "similar_items"))
    assert set(similar.filter(pl.col("item_id") == "q1")["similar_item_id"]) >= {"q3", "q4"}


def test_the_schedule_and_the_refresh_are_wired(trained):
    _, _, instance, _ = trained
    schedule = defs.resolve_schedule_def("retraining_schedule")
    assert (schedule.cron_schedule, schedule.job_name) == ("0 3 * * *", "retrain")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert defs.resolve_job_def("retrain").asset_layer.selected_asset_keys == {dg.AssetKey("recommender_model")}
    assert defs.resolve_sensor_def("caches_after_training").job_name == "refresh_recommendations"


def caches_tick(instance) -> dg.SensorResult:
    with dg.build_sensor_context(instance=instance, resources={"personalize": LOCAL_ONLY}) as context:
        return caches_after_training.evaluate_tick(context)


def test_each_model_version_refreshes_the_caches_once(trained, settings):
    data, amp, instance, _ = trained
    # The fixture's run materialized the model and its caches together: nothing more to do.
    same_run = caches_tick(instance)
    assert same_run.run_requests == [] and "refreshes its caches in the same run" in same_run.skip_message
    # A model materialized alone (the schedule's run, or the UI): the sensor refreshes its caches.
    assert dg.materialize([recommender_model], resources={"amp": amp, "personalize": LOCAL_ONLY}, instance=instance).success
    [run] = caches_tick(instance).run_requests
    assert run.run_key == f"caches-{latest_version(data / 'models')}" and run.tags["model_version"] == latest_version(data / "models")
    # `amp-personalize train` refreshes its own model's caches: the daemon must not do it again.
    trained_now, meta = train_once(replace(settings, data_dir=data, num_results=3), instance)
    assert trained_now and meta["version"] == latest_version(data / "models")
    after_train = caches_tick(instance)
    assert after_train.run_requests == [] and "`amp-personalize train`" in after_train.skip_message
    refreshes = instance.get_run_records(dg.RunsFilter(job_name="refresh_recommendations"))
    assert len(refreshes) == 1  # train's own


def test_serving_over_http_with_fallback_validation_and_reload(trained, settings):
    data, amp, instance, _ = trained
    app = create_app(replace(settings, data_dir=data))
    with LiveReceiver(app) as live:
        alice = httpx.get(f"{live.url}/recommendations/alice?num_results=2").json()
        assert alice["source"] == "model" and alice["items"][0]["item_id"] == "p3"
        assert len(alice["items"]) == 2 and set(alice["items"][0]) == {"item_id", "score"}
        stranger = httpx.get(f"{live.url}/recommendations/nobody-knows-me").json()
        assert stranger["source"] == "popularity" and stranger["items"]
        assert httpx.get(f"{live.url}/recommendations/alice?num_results=abc").status_code == 400
        missing = httpx.get(f"{live.url}/similar-items/no-such-item")
        assert missing.status_code == 404 and "no-such-item" in missing.json()["error"]
        similar = httpx.get(f"{live.url}/similar-items/q1?num_results=2").json()
        assert len(similar["items"]) == 2
        old = alice["model_version"]

        assert dg.materialize(MODEL_ASSETS, resources={"amp": amp, "personalize": LOCAL_ONLY}, instance=instance).success  # a new version lands
        new = latest_version(data / "models")
        assert new != old
        deadline = time.monotonic() + 10
        while httpx.get(f"{live.url}/recommendations/alice").json()["model_version"] != new:
            assert time.monotonic() < deadline, "the app never picked up the new model version"
            time.sleep(0.25)


def train_and_cache(data, events, num_results):
    """One window of `events`, then the model and its caches: (run result, recommendations checks)."""
    write_segment(data, WINDOW, events)
    resources = {"amp": AmpResource(data_dir=str(data), num_results=num_results), "personalize": LOCAL_ONLY}
    with dg.instance_for_test() as instance:
        assert dg.materialize([raw_events, interactions, impressions], partition_key=WINDOW, resources=resources, instance=instance).success
        result = dg.materialize(MODEL_ASSETS, resources=resources, instance=instance, raise_on_error=False)
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations() if e.asset_key.to_user_string() == "recommendations"}
    return result, checks


def with_an_old_flag(*others: dict) -> list[dict]:
    """Six readers make `pop` popular; u1 read `a` and flagged `pop` 120 days ago, before AMP_HISTORY_DAYS."""
    old_flag = event("u1", "pop", "flag")
    old_flag["time"] = int((NOW - timedelta(days=120)).timestamp() * 1000)
    return [*[event(f"reader{i}", item) for i in range(6) for item in ("a", "pop", "b")], *others, event("u1", "a"), old_flag]


def test_a_flag_older_than_the_training_history_still_keeps_the_item_out(tmp_path):
    """The model forgets a flag from before AMP_HISTORY_DAYS; the cache (and its check) must not."""
    data = tmp_path / "data"
    result, checks = train_and_cache(data, with_an_old_flag(
        *[event(f"reader{i}", "c") for i in range(2)],
        *[event(f"other{i}", item) for i in range(4) for item in ("d", "e", "f")],
    ), num_results=2)
    assert result.success and checks["no_vetoed_items"]
    recs = pl.read_parquet(partition_path(data / "lake", "recommendations"))
    u1 = recs.filter(pl.col("user_id") == "u1").sort("rank")
    assert u1["rank"].to_list() == [1, 2] and u1["item_id"][0] == "b" and "pop" not in u1["item_id"]


def test_a_user_inactive_for_weeks_is_not_offered_the_popular_item_they_hid(tmp_path):
    """Users outside AMP_ACTIVE_DAYS get no model list of their own; the popular fallback must
    still leave out what they vetoed."""
    data = tmp_path / "data"
    away = []
    for kind, item in (("click", "a"), ("hide", "pop")):
        e = event("away", item, kind)
        e["time"] = int((NOW - timedelta(days=60)).timestamp() * 1000)  # in the history, not active
        away.append(e)
    result, checks = train_and_cache(data, [
        *[event(f"reader{i}", item) for i in range(6) for item in ("pop", "a", "b")],
        *[event(f"other{i}", item) for i in range(4) for item in ("pop", "c", "d")],
        *away,
    ], num_results=2)
    assert result.success and checks["no_vetoed_items"]
    meta = result.asset_materializations_for_node("recommendations")[0].metadata
    assert (meta["active_users"].value, meta["inactive_users_with_vetoes"].value) == (10, 1)
    recs = pl.read_parquet(partition_path(data / "lake", "recommendations"))
    assert "pop" in pl.read_parquet(partition_path(data / "lake", "popular_items"))["item_id"].to_list()
    offered = recs.filter(pl.col("user_id") == "away")["item_id"].to_list()
    assert len(offered) == 2 and "pop" not in offered


def test_a_rejected_cache_publishes_no_new_fallback_list_either(tmp_path, monkeypatch):
    """popular_items (what strangers get) moves only together with the lists it backs."""
    data = tmp_path / "data"
    # A fault: the vetoes are not applied, so the flag older than the history is recommended.
    monkeypatch.setattr(recommender, "recommend_without_vetoed", lambda backend, model, users, n, vetoed: backend.recommend(model, users, n))
    result, checks = train_and_cache(data, with_an_old_flag(), num_results=2)
    assert not result.success and checks["no_vetoed_items"] is False
    assert not partition_path(data / "lake", "recommendations").exists()
    assert not partition_path(data / "lake", "popular_items").exists()


def test_users_with_every_item_seen_or_vetoed_are_never_offered_a_vetoed_one(tmp_path, settings):
    """QA: `old` flagged the most popular item and read the other two. With nothing unseen left
    they got no list, and the server answered with the popular one, the flagged item first; a
    reader of every item blocked everyone's new lists (every_active_user_has_recommendations)."""
    data = tmp_path / "data"
    result, checks = train_and_cache(data, [
        *[event(f"reader{i}", "doc_1") for i in range(10)],  # doc_1 is the most popular, then 2, then 3
        *[event(f"reader{i}", "doc_2") for i in range(6)],
        *[event(f"reader{i}", "doc_3") for i in range(3)],
        event("old", "doc_1", "flag"), event("old", "doc_2"), event("old", "doc_3"),
        event("all", "doc_1"), event("all", "doc_2"), event("all", "doc_3"),
        event("hater", "doc_1", "flag"), event("hater", "doc_2", "hide"), event("hater", "doc_3", "downvote"),
    ], num_results=2)
    assert result.success and checks["every_active_user_has_recommendations"] and checks["no_vetoed_items"]
    recs = pl.read_parquet(partition_path(data / "lake", "recommendations"))
    lists = {u: recs.filter(pl.col("user_id") == u).sort("rank")["item_id"].to_list() for u in ("old", "all", "hater")}
    # Seen items rather than none, the popular first; never a vetoed one; nothing at all for a
    # user who vetoed every item.
    assert lists == {"old": ["doc_2", "doc_3"], "all": ["doc_1", "doc_2"], "hater": []}
    meta = result.asset_materializations_for_node("recommendations")[0].metadata
    assert meta["users_with_nothing_left"].value == 1

    with LiveReceiver(create_app(replace(settings, data_dir=data))) as live:
        old = httpx.get(f"{live.url}/recommendations/old").json()
        assert [i["item_id"] for i in old["items"]] == ["doc_2", "doc_3"] and old["source"] == "popularity"
        hater = httpx.get(f"{live.url}/recommendations/hater")
        assert hater.status_code == 200 and hater.json() == {"items": [], "source": "none", "model_version": meta["model_version"].value}
        assert httpx.get(f"{live.url}/recommendations/stranger").json()["items"][0]["item_id"] == "doc_1"
    said = CliRunner().invoke(main, ["recommend", "hater"], env={"AMP_DATA_DIR": str(data)})
    assert said.exit_code == 0 and said.output.startswith("nothing left to recommend to hater: they vetoed every popular item")


def test_a_backend_that_answers_nothing_still_fails_the_check(tmp_path, monkeypatch):
    """Review: filling every user without a list hid a backend that answered nobody (a broken
    model, a batch job whose lines all errored): only users the catalog leaves nothing are filled."""
    data = tmp_path / "data"
    monkeypatch.setattr(LocalBackend, "recommend", lambda self, model, users, n: pl.DataFrame(schema=RECOMMENDATIONS_SCHEMA))
    result, checks = train_and_cache(data, [event(f"reader{i}", item) for i in range(6) for item in ("a", "b", "c", "d")][:-1],
                                     num_results=2)
    assert not result.success and checks["every_active_user_has_recommendations"] is False
    assert not partition_path(data / "lake", "recommendations").exists()


def test_a_latest_naming_no_loadable_version_fails_naming_it(trained, tmp_path):
    """QA: a hand-edited LATEST, or a version whose model file was deleted, failed the caches
    with a bare FileNotFoundError."""
    data, *_ = trained
    copy = tmp_path / "data"
    shutil.copytree(data / "models", copy / "models")
    amp = AmpResource(data_dir=str(copy))
    version = latest_version(copy / "models")
    (copy / "models" / version / "model.npz").unlink()
    with pytest.raises(dg.Failure, match=f"names model version '{version}', which cannot be loaded .*FileNotFoundError.*amp-personalize train"):
        latest_model(amp, LocalBackend())
    (copy / "models" / "LATEST").write_text("garbage\n")
    with pytest.raises(dg.Failure, match="names model version 'garbage', which cannot be loaded"):
        latest_model(amp, LocalBackend())


def test_a_small_catalog_publishes_short_lists_with_a_warning(tmp_path):
    """Seen and vetoed items leave fewer than num_results: serve what there is, do not block."""
    data = tmp_path / "data"
    result, checks = train_and_cache(data, [
        *[event(f"reader{i}", item) for i in range(6) for item in ("a", "b", "c")],
        *[event(f"other{i}", item) for i in range(3) for item in ("d", "e")],
    ], num_results=4)
    assert result.success
    assert checks["every_active_user_has_recommendations"] and checks["lists_are_full"] is False
    recs = pl.read_parquet(partition_path(data / "lake", "recommendations"))
    assert recs.filter(pl.col("user_id") == "reader0")["item_id"].sort().to_list() == ["d", "e"]
    assert partition_path(data / "lake", "popular_items").exists()


def test_num_results_takes_ascii_digits_only(trained, settings):
    data, *_ = trained
    with LiveReceiver(create_app(replace(settings, data_dir=data))) as live:
        for route in ("/recommendations/alice", "/similar-items/q1"):
            for accepted in ("2", "002", "0" * 5000 + "2"):
                r = httpx.get(f"{live.url}{route}?num_results={accepted}")
                assert r.status_code == 200 and len(r.json()["items"]) == 2, (route, accepted, r.text)
            # '²' (int() refuses it), Arabic-Indic and fullwidth 3 (int() takes them), 5,000 digits
            # (int() refuses past 4,300), then the values refused all along.
            for refused in ("%C2%B2", "%D9%A3", "%EF%BC%93", "1" * 5000, "0", "501", "-2", "2.0", "%202", ""):
                r = httpx.get(f"{live.url}{route}?num_results={refused}")
                assert r.status_code == 400, (route, refused[:20], r.status_code)
                assert r.json()["code"] == 400
                assert r.json()["error"].startswith("num_results must be an integer from 1 to 500, got ")
