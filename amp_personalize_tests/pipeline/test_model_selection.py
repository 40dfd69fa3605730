"""The model's selection through the real assets: what it records, and what is served when no
model beats popularity."""

import json
from datetime import datetime, timedelta, timezone

import dagster as dg
import numpy as np
import polars as pl
import pytest

from amp_personalize.assets.interactions import impressions, interactions
from amp_personalize.assets.raw_events import raw_events
from amp_personalize.assets.recommender import recommendations, recommender_model
from amp_personalize.backends.personalize.resource import PersonalizeResource
from amp_personalize.backends.versions import latest_version
from amp_personalize.events.windows import window_key, window_of
from amp_personalize.lake.parquet import partition_path
from amp_personalize.resources import AmpResource
from amp_personalize.settings import PersonalizeSettings
from amp_personalize_tests.landing_fixture import write_segment

pytestmark = pytest.mark.slow
LOCAL_ONLY = PersonalizeResource.from_settings(PersonalizeSettings())
NOW = datetime.now(timezone.utc)
WINDOW = window_key(window_of(int(NOW.timestamp() * 1000), 60) - 2 * 3_600_000)


def click(user: str, item: str, when: datetime, n: int) -> dict:
    return {"event_type": "click", "user_id": user, "time": int(when.timestamp() * 1000), "uuid": f"e{n}",
            "event_properties": {"item_id": item}}


def trending(seed: int = 0, users: int = 300, days: int = 40, per_day: int = 4, life: int = 4) -> list[dict]:
    """Whatever is new is what everyone reads: a few items a day, each read for `life` days by
    whoever comes by. Nobody has a taste, so no model of tastes beats the recent popular items."""
    rng = np.random.default_rng(seed)
    events = []
    for day in range(days):
        live = np.arange(max(0, day - life + 1) * per_day, (day + 1) * per_day)
        for u in rng.choice(users, 40, replace=False):
            for item in rng.choice(live, 2, replace=False):
                when = NOW - timedelta(days=days - day - rng.uniform(0, 1), hours=3)
                events.append(click(f"u{u}", f"d{item}", when, len(events)))
    return events


def tastes(seed: int = 0, users: int = 120, clusters: int = 4, per_cluster: int = 30) -> list[dict]:
    """Readers who each stick to one cluster of items: a model of tastes clearly beats popularity."""
    rng = np.random.default_rng(seed)
    events = []
    for u in range(users):
        cluster = u % clusters
        for age in np.sort(rng.uniform(0, 40, 25))[::-1]:
            item = f"c{cluster}-{rng.integers(per_cluster)}"
            events.append(click(f"u{u}", item, NOW - timedelta(days=float(age), hours=3), len(events)))
    return events


def train(data, events):
    write_segment(data, WINDOW, events)
    amp = AmpResource(data_dir=str(data), num_results=5)
    resources = {"amp": amp, "personalize": LOCAL_ONLY}
    with dg.instance_for_test() as instance:
        assert dg.materialize([raw_events, interactions, impressions], partition_key=WINDOW, resources=resources, instance=instance).success
        result = dg.materialize([recommender_model, recommendations], resources=resources, instance=instance)
    assert result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations() if e.asset_key.to_user_string() == "recommender_model"}
    meta = result.asset_materializations_for_node("recommender_model")[0].metadata
    return meta, checks


def test_a_model_that_does_not_beat_popularity_is_not_served(tmp_path):
    meta, checks = train(tmp_path / "data", trending())
    check = checks["beats_popularity"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "does not beat popularity, so the popular list is served" in check.metadata["reason"].value
    assert meta["served"].value is False and meta["algorithm"].value == "popularity"
    recs = pl.read_parquet(partition_path(tmp_path / "data" / "lake", "recommendations"))
    assert recs.height and set(recs["source"]) == {"popularity"}


def test_the_chosen_settings_and_the_validation_table_are_recorded(tmp_path):
    data = tmp_path / "data"
    meta, checks = train(data, tastes())
    assert checks["beats_popularity"].passed
    assert meta["served"].value is True and meta["algorithm"].value in ("dlae", "ease")
    chosen = meta["selection"].value
    assert chosen["algorithm"] == meta["algorithm"].value
    assert "| algorithm |" in meta["selection_table"].value and "| history_half_life |" in meta["selection_table"].value
    saved = json.loads((data / "models" / latest_version(data / "models") / "meta.json").read_text())
    assert saved["info"]["selection"]["chosen"] == chosen
    assert saved["info"]["params"]["algorithm"] == chosen["algorithm"]
    assert {row["step"] for row in saved["info"]["selection"]["table"]} >= {"algorithm", "weighting", "history_half_life"}
