"""One event is one event and one user one user, whichever path takes them to Personalize.

Ids past Personalize's 256 characters: an event pushed live under a digest must not go in again
through the import (the ledger knows it by the id PutEvents sent), a long user id must be the
same user in the CSV as in PutEvents, and answers naming digests come back as the app's own ids.
Events older than what the ledger has pruned are left out of an import: they may be in already.
"""

from datetime import datetime, timedelta, timezone

import polars as pl
from botocore.stub import ANY, Stubber

from amp_personalize.backends.base import TrainedModel, TrainingData
from amp_personalize.backends.personalize import ledger as ledger_module
from amp_personalize.backends.personalize.backend import CATALOG, PersonalizeBackend
from amp_personalize.backends.personalize.ids import fit_id
from amp_personalize.backends.personalize.jobs import Poll
from amp_personalize.backends.personalize.ledger import Ledger
from amp_personalize.backends.personalize.push import push
from amp_personalize.backends.personalize.put_events import (
    EVENTS_SCHEMA,
    put_events_requests,
)
from amp_personalize.backends.personalize.training import ImportResult, import_missing
from amp_personalize.events import load_weights
from amp_personalize.transforms.interactions import (
    IMPRESSIONS_SCHEMA,
    INTERACTIONS_SCHEMA,
)
from amp_personalize.settings import Settings
from amp_personalize_tests.backends.personalize_fakes import (
    CAMPAIGN,
    DATASET,
    Service,
    client,
    clients_with_bucket,
    fake_resource,
    make_clients,
)

LONG_USER = "user:" + "u" * 300
LONG_ITEM = "item:" + "i" * 300
LONG_EVENT = "event:" + "e" * 300
T0 = datetime.now(timezone.utc) - timedelta(hours=1)


def interaction(event_id: str, item_id: str, seconds: int) -> dict:
    return {"event_id": event_id, "user_id": LONG_USER, "item_id": item_id, "event_type": "click", "event_value": 1.0,
            "event_time": T0 + timedelta(seconds=seconds), "session_id": 7, "recommendation_id": None}


def run_import(ledger: Ledger, history: pl.DataFrame, shown: pl.DataFrame) -> tuple[ImportResult, pl.DataFrame]:
    """import_missing through moto's S3 and a stubbed job that goes ACTIVE: its result and its CSV."""
    with clients_with_bucket() as (s3, clients):
        with Stubber(clients.personalize) as stub:
            stub.add_response("create_dataset_import_job", {"datasetImportJobArn": f"{DATASET}-import-1"})
            stub.add_response("describe_dataset_import_job", {"datasetImportJob": {"status": "ACTIVE"}})
            result = import_missing(clients, fake_resource(clients).settings(), ledger, TrainingData(history, shown, T0),
                                    Poll(timeout_seconds=5, poll_seconds=0, sleep=lambda s: None))
        [key] = [o["Key"] for o in s3.list_objects_v2(Bucket="amp-bucket")["Contents"]]
        return result, pl.read_csv(s3.get_object(Bucket="amp-bucket", Key=key)["Body"].read())


def test_a_long_event_pushed_live_is_not_imported_again_and_a_long_user_is_one_user_on_both_paths(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    pushed = pl.DataFrame([{**interaction(LONG_EVENT, LONG_ITEM, 0), "items_shown": None, "properties": None}], schema=EVENTS_SCHEMA)
    events = client("personalize-events", retries={"total_max_attempts": 1})
    with Stubber(events) as stub:
        stub.add_response("put_events", {}, {"trackingId": "tid", "userId": fit_id(LONG_USER), "sessionId": "7", "eventList": ANY})
        push(put_events_requests(pushed, "tid"), events, ledger, sleep=lambda s: None)

    history = pl.DataFrame([interaction(LONG_EVENT, LONG_ITEM, 0), interaction("short-1", LONG_ITEM, 10)], schema=INTERACTIONS_SCHEMA)
    shown = pl.DataFrame([{"event_id": "imp-1", "user_id": LONG_USER, "item_id": item, "position": k, "impression_type": "initial_impression",
                           "feed_type": "popular", "event_time": T0 + timedelta(seconds=5), "event_value": 0.3}
                          for k, item in enumerate(["d1", LONG_ITEM])], schema=IMPRESSIONS_SCHEMA)
    result, csv = run_import(ledger, history, shown)
    assert result.rows == 1  # short-1 only: the long event went in by PutEvents
    assert csv.select("USER_ID", "ITEM_ID", "IMPRESSION").rows() == [(fit_id(LONG_USER), fit_id(LONG_ITEM), f"d1|{fit_id(LONG_ITEM)}")]
    assert ledger.already_pushed([fit_id(LONG_EVENT), "short-1"]) == {fit_id(LONG_EVENT), "short-1"}


def test_recommendations_and_similar_items_come_back_under_the_apps_own_ids(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    pl.DataFrame({"item_id": ["d1", LONG_ITEM]}).write_parquet(model_dir / CATALOG)
    model = TrainedModel("v1", "personalize", model_dir, {}, {"solution_version_arn": "arn:version"})
    clients = make_clients()
    asked: list[dict] = []

    def answer(params):
        asked.append(params)
        return {"itemList": [{"itemId": fit_id(LONG_ITEM), "score": 0.9}, {"itemId": "d1", "score": 0.5}]}

    Service(clients.runtime, "GetRecommendations", answer)
    settings = fake_resource(clients, sims_campaign_arn=f"{CAMPAIGN}-sims").settings()
    backend = PersonalizeBackend(settings, clients, Settings(data_dir=tmp_path), load_weights())
    recs = backend.recommend(model, [LONG_USER, "u2"], 5)
    assert [p["userId"] for p in asked] == [fit_id(LONG_USER), "u2"] and all(len(p["userId"]) <= 256 for p in asked)
    assert recs.filter(pl.col("user_id") == LONG_USER)["item_id"].to_list() == [LONG_ITEM, "d1"]
    assert set(recs["user_id"]) == {LONG_USER, "u2"}

    asked.clear()
    similar = backend.similar_items(model, [LONG_ITEM], 5)
    assert [p["itemId"] for p in asked] == [fit_id(LONG_ITEM)]
    assert similar.rows() == [(LONG_ITEM, 1, LONG_ITEM, 0.9), (LONG_ITEM, 2, "d1", 0.5)]


class Clock:
    """Stands in for the ledger module's `time`, to acknowledge events months ago."""

    def __init__(self, at: datetime) -> None:
        self.now = at.timestamp()

    def time(self) -> float:
        return self.now


def test_events_older_than_what_the_ledger_forgot_are_not_imported_again(tmp_path, monkeypatch):
    """AMP_HISTORY_DAYS raised from 90 to 180: the ledger forgot ids acknowledged before day 92,
    and the import's window now reaches back past them. Those events may be in Personalize."""
    ledger = Ledger(tmp_path / "ledger.sqlite")
    monkeypatch.setattr(ledger_module, "time", Clock(T0 - timedelta(days=120)))
    ledger.record(["old-1"])  # pushed live 120 days ago
    monkeypatch.undo()
    now_ms = int(T0.timestamp() * 1000)
    assert ledger.prune(now_ms - 92 * 86_400_000) == 1
    forgotten = ledger.forgotten_before()
    assert forgotten == int((T0 - timedelta(days=120)).timestamp() * 1000) + 1  # the newest forgotten ack
    ledger.prune(now_ms - 200 * 86_400_000)  # a later prune with a smaller window moves nothing back
    assert ledger.forgotten_before() == forgotten
    old_event = {**interaction("old-1", "d1", 0), "event_time": T0 - timedelta(days=120, minutes=1)}
    # An event from just after that is left out too: a device clock running ahead could have
    # stamped it after the acknowledgment.
    edge = {**interaction("edge-1", "d3", 0), "event_time": T0 - timedelta(days=119, hours=12)}
    history = pl.DataFrame([old_event, edge, interaction("new-1", "d2", 10)], schema=INTERACTIONS_SCHEMA)
    result, csv = run_import(ledger, history, pl.DataFrame(schema=IMPRESSIONS_SCHEMA))
    assert result.rows == 1 and csv["ITEM_ID"].to_list() == ["d2"]


def test_a_prune_that_forgets_nothing_leaves_old_history_importable(tmp_path):
    """History from before Personalize was set up was never pushed: a prune of an empty ledger
    (every push run prunes) must not hide it from the import."""
    ledger = Ledger(tmp_path / "ledger.sqlite")
    assert ledger.prune(int(T0.timestamp() * 1000) - 92 * 86_400_000) == 0
    assert ledger.forgotten_before() == 0
    old = {**interaction("old-1", "d1", 0), "event_time": T0 - timedelta(days=200)}
    result, csv = run_import(ledger, pl.DataFrame([old], schema=INTERACTIONS_SCHEMA), pl.DataFrame(schema=IMPRESSIONS_SCHEMA))
    assert result.rows == 1 and csv["ITEM_ID"].to_list() == ["d1"]
