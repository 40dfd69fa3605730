"""Retraining on Personalize through the real recommender_model asset: every job state, the
weights as eventsConfig, a failed import that fails the run and records nothing, the minimums."""

import dagster as dg
import polars as pl
import pytest
from botocore.stub import ANY, Stubber
from dagster_aws.s3 import S3Resource

from amp_personalize.assets.recommender import recommender_model
from amp_personalize.backends.personalize.ledger import Ledger
from amp_personalize.backends.personalize.training import (
    events_config,
    exclusion_filter,
)
from amp_personalize.backends.versions import latest_version, read_meta
from amp_personalize.events import load_weights
from amp_personalize.lake.parquet import partition_path, write_atomic
from amp_personalize.resources import AmpResource
from amp_personalize_tests.backends.personalize_fakes import (
    CAMPAIGN,
    DATASET,
    ROLE,
    SOLUTION,
    clients_with_bucket,
    fake_resource,
    make_clients,
    write_history,
)

VERSION = f"{SOLUTION}/version-1"
METRICS = {"normalized_discounted_cumulative_gain_at_10": 0.31, "precision_at_5": 0.12, "coverage": 0.4}


def resources(data_dir, clients, **settings):
    amp = AmpResource(data_dir=str(data_dir), backend="personalize")
    return {"amp": amp, "personalize": fake_resource(clients, key=str(data_dir), **settings)}


def expect_training(stub: Stubber, import_mode: str | None, weights_in_sync: bool, import_arn: str = f"{DATASET}-import-1") -> None:
    """Every call of one training, each job passing through its intermediate states."""
    if import_mode:
        stub.add_response(
            "create_dataset_import_job", {"datasetImportJobArn": import_arn},
            {"jobName": ANY, "datasetArn": DATASET, "dataSource": {"dataLocation": ANY}, "roleArn": ROLE, "importMode": import_mode},
        )
        for status in ("CREATE PENDING", "CREATE IN_PROGRESS", "ACTIVE"):
            stub.add_response("describe_dataset_import_job", {"datasetImportJob": {"status": status}})
    wanted = events_config(load_weights()).config
    stub.add_response("describe_solution", {"solution": {"status": "ACTIVE", "solutionConfig": {"eventsConfig": wanted} if weights_in_sync else {}}})
    if not weights_in_sync:
        stub.add_response("update_solution", {"solutionArn": SOLUTION}, {"solutionArn": SOLUTION, "solutionUpdateConfig": {"eventsConfig": wanted}})
        for status in ("CREATE IN_PROGRESS", "ACTIVE"):
            stub.add_response("describe_solution", {"solution": {"status": "ACTIVE", "latestSolutionUpdate": {"status": status}}})
    stub.add_response("create_solution_version", {"solutionVersionArn": VERSION}, {"solutionArn": SOLUTION, "trainingMode": "FULL", "name": ANY})
    for status in ("CREATE PENDING", "CREATE IN_PROGRESS", "ACTIVE"):
        stub.add_response("describe_solution_version", {"solutionVersion": {"status": status}})
    stub.add_response("get_solution_metrics", {"solutionVersionArn": VERSION, "metrics": METRICS})
    stub.add_response("update_campaign", {"campaignArn": CAMPAIGN}, {"campaignArn": CAMPAIGN, "solutionVersionArn": VERSION})
    stub.add_response("describe_campaign", {"campaign": {"status": "ACTIVE", "latestCampaignUpdate": {"solutionVersionArn": "older", "status": "ACTIVE"}}})
    for status in ("CREATE PENDING", "CREATE IN_PROGRESS", "ACTIVE"):
        stub.add_response("describe_campaign", {"campaign": {"status": "ACTIVE", "latestCampaignUpdate": {"solutionVersionArn": VERSION, "status": status}}})


def test_weights_map_to_events_config_and_negative_types_to_the_exclusion_filter():
    weights = load_weights()
    config = events_config(weights)
    params = config.config["eventParametersList"]
    assert params[:2] == [{"eventType": "donate", "weight": 1.0}, {"eventType": "fundraise", "weight": 1.0}]
    assert {p["eventType"]: p["weight"] for p in params}["click"] == pytest.approx(1 / 3)
    assert not {"downvote", "hide", "flag", "initial_impression", "scroll_impression"} & {p["eventType"] for p in params}
    assert exclusion_filter(weights) == 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("downvote", "flag", "hide")'


def test_training_imports_updates_weights_trains_and_moves_the_campaign(tmp_path):
    rows = write_history(tmp_path, users=40, per_user=30)
    with clients_with_bucket() as (s3, clients):
        with Stubber(clients.personalize) as stub:
            expect_training(stub, import_mode="FULL", weights_in_sync=False)
            result = dg.materialize([recommender_model], resources=resources(tmp_path, clients))
            stub.assert_no_pending_responses()
        assert result.success
        [key] = [o["Key"] for o in s3.list_objects_v2(Bucket="amp-bucket")["Contents"]]
        assert key.startswith("personalize/imports/amp-interactions-") and key.endswith(".csv")
        csv = pl.read_csv(s3.get_object(Bucket="amp-bucket", Key=key)["Body"].read())
        assert csv.columns == ["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE", "IMPRESSION", "RECOMMENDATION_ID"]
        assert csv.height == rows  # negative events go in too: the exclusion filter reads them
        first_click = csv.filter(pl.col("USER_ID") == "u3").sort("TIMESTAMP").row(0, named=True)
        assert first_click["IMPRESSION"] == "i0|i1|i2"  # the feed shown just before it

        # A second training: nothing new to import, weights already in sync, a new version deployed.
        with Stubber(clients.personalize) as stub:
            expect_training(stub, import_mode=None, weights_in_sync=True)
            again = dg.materialize([recommender_model], resources=resources(tmp_path, clients))
            stub.assert_no_pending_responses()
        assert again.success
        meta = read_meta(tmp_path / "models" / latest_version(tmp_path / "models"))
        assert meta["info"]["import_mode"] is None

        # A window lands with new events: only they go in, INCREMENTAL (FULL would replace the rest).
        new = pl.read_parquet(partition_path(tmp_path / "lake", "interactions", "20260101T0000Z")).head(5).with_columns(
            pl.format("new-{}", pl.col("event_id")).alias("event_id"))
        write_atomic(new, partition_path(tmp_path / "lake", "interactions", "20260101T0100Z"))
        with Stubber(clients.personalize) as stub:
            expect_training(stub, import_mode="INCREMENTAL", weights_in_sync=True, import_arn=f"{DATASET}-import-2")
            third = dg.materialize([recommender_model], resources=resources(tmp_path, clients))
            stub.assert_no_pending_responses()
        assert third.success
        [latest] = [o["Key"] for o in s3.list_objects_v2(Bucket="amp-bucket")["Contents"] if o["Key"] != key]
        assert pl.read_csv(s3.get_object(Bucket="amp-bucket", Key=latest)["Body"].read()).height == 5

    ledger = Ledger(tmp_path / "personalize" / "ledger.sqlite")
    assert ledger.imports() == 2 and ledger.count() == rows + 5
    meta = read_meta(tmp_path / "models" / latest_version(tmp_path / "models"))
    assert meta["backend"] == "personalize"
    assert meta["info"]["solution_version_arn"] == VERSION and meta["info"]["import_mode"] == "INCREMENTAL"
    assert meta["metrics"]["model"] == METRICS
    assert meta["metrics"]["local"]["normalized_discounted_cumulative_gain_at_10"] >= 0  # the local model beside it
    materialization = result.asset_materializations_for_node("recommender_model")[0]
    assert "0.3100" in materialization.metadata["offline_metrics"].value


def test_a_failed_import_fails_the_run_clearly_and_marks_nothing_done(tmp_path):
    write_history(tmp_path, users=40, per_user=30)
    with clients_with_bucket() as (s3, clients):
        with Stubber(clients.personalize) as stub:
            stub.add_response("create_dataset_import_job", {"datasetImportJobArn": f"{DATASET}-import-1"})
            stub.add_response("describe_dataset_import_job", {"datasetImportJob": {"status": "CREATE IN_PROGRESS"}})
            stub.add_response(
                "describe_dataset_import_job",
                {"datasetImportJob": {"status": "CREATE FAILED", "failureReason": "Input CSV is missing the column EVENT_TYPE"}},
            )
            result = dg.materialize([recommender_model], resources=resources(tmp_path, clients), raise_on_error=False)
            stub.assert_no_pending_responses()  # and no training call after the failure (the stub would refuse it)
    assert not result.success
    failure = result.get_step_failure_events()[0].event_specific_data.user_failure_data.description
    assert failure.startswith("training on personalize failed: import amp-interactions-")
    assert "is CREATE FAILED: Input CSV is missing the column EVENT_TYPE" in failure
    ledger = Ledger(tmp_path / "personalize" / "ledger.sqlite")
    assert ledger.imports() == 0 and ledger.count() == 0
    some = pl.read_parquet(next((tmp_path / "lake" / "interactions").glob("*.parquet")))["event_id"].head(5).to_list()
    assert ledger.already_pushed(some) == set()  # released: the live push or the next import takes them
    assert latest_version(tmp_path / "models") is None


def test_training_for_another_interactions_dataset_stops_before_any_call_naming_both(tmp_path):
    write_history(tmp_path, users=40, per_user=30)
    with clients_with_bucket() as (s3, clients):
        with Stubber(clients.personalize) as stub:
            expect_training(stub, import_mode="FULL", weights_in_sync=False)
            assert dg.materialize([recommender_model], resources=resources(tmp_path, clients)).success
        first = latest_version(tmp_path / "models")
        other = DATASET.replace("/amp/", "/amp-2/")
        with Stubber(clients.personalize):  # no responses queued: any call would fail the test
            result = dg.materialize([recommender_model], resources=resources(tmp_path, clients, interactions_dataset_arn=other),
                                    raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert f"AWS_PERSONALIZE_INTERACTIONS_DATASET_ARN was '{DATASET}' and is now '{other}'" in failure.event_specific_data.error.message
    assert latest_version(tmp_path / "models") == first


def test_training_is_refused_below_personalizes_minimums(tmp_path):
    write_history(tmp_path, users=24, per_user=30)  # 720 clicks, 24 users: below both floors
    clients = make_clients()
    with Stubber(clients.personalize):  # no responses queued: any call would fail the test
        result = dg.materialize([recommender_model], resources=resources(tmp_path, clients), raise_on_error=False)
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["enough_training_data"].passed is False
    assert checks["enough_training_data"].metadata["interactions"].value == 720
    assert checks["enough_training_data"].metadata["users_with_two_or_more"].value == 24
    assert latest_version(tmp_path / "models") is None


def test_a_first_version_without_a_campaign_does_not_start_a_cache_refresh_bound_to_fail():
    """docs/personalize.md step 3 trains before the campaign exists: the caches wait for it, said so."""
    from amp_personalize.backends.personalize.resource import PersonalizeResource
    from amp_personalize.sensors.training import caches_after_training

    with dg.instance_for_test() as instance:
        def tick(version: str, backend: str, campaign: str | None):
            instance.report_runless_asset_event(
                dg.AssetMaterialization("recommender_model", metadata={"version": version, "backend": backend})
            )
            personalize = PersonalizeResource(campaign_arn=campaign, s3=S3Resource())
            with dg.build_sensor_context(instance=instance, resources={"personalize": personalize}) as context:
                return caches_after_training.evaluate_tick(context)

        waiting = tick("v1", "personalize", None)
        assert not waiting.run_requests and "no campaign yet" in waiting.skip_message
        campaign = "arn:aws:personalize:us-east-1:1:campaign/amp"
        assert [r.run_key for r in tick("v2", "personalize", campaign).run_requests] == ["caches-v2"]
        assert [r.run_key for r in tick("v3", "local", None).run_requests] == ["caches-v3"]
