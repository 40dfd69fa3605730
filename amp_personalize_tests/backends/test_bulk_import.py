"""Bulk import: the CSV format through moto's S3, and the import job through every state."""

from datetime import datetime, timezone

import boto3
import polars as pl
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from amp_personalize.backends.personalize.bulk_import import (
    interactions_csv,
    run_import,
)
from amp_personalize.backends.personalize.impressions import attach_impressions
from amp_personalize.backends.personalize.jobs import JobFailed, Poll, job_name
from amp_personalize.transforms import UTC_MS

ARN = "arn:aws:personalize:us-east-1:123456789012:dataset/amp/INTERACTIONS"
ROLE = "arn:aws:iam::123456789012:role/PersonalizeS3"
JOB = "arn:aws:personalize:us-east-1:123456789012:dataset-import-job/amp-1"


def frame() -> pl.DataFrame:
    long = [f"item_{k:04d}" for k in range(200)]  # 200 x 10 characters: past the 1,000 limit
    return pl.DataFrame(
        {
            "user_id": ["u1", "u2"],
            "item_id": ["d1", "d2"],
            "event_time": [datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 1, 2, tzinfo=timezone.utc)],
            "event_type": ["click", "share"],
            "event_value": [1.0, 2.0],
            "items_shown": [["d1", "d9"], long],
            "recommendation_id": [None, "r" * 50],
        }
    )


def test_csv_is_personalizes_format_and_lands_in_s3():
    body = interactions_csv(frame())
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="amp")
        s3.put_object(Bucket="amp", Key="interactions/x.csv", Body=body)
        back = s3.get_object(Bucket="amp", Key="interactions/x.csv")["Body"].read()
    rows = pl.read_csv(back)
    assert rows.columns == ["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE", "IMPRESSION", "RECOMMENDATION_ID"]
    assert rows["TIMESTAMP"].to_list() == [1767225600, 1767312000]
    assert rows["IMPRESSION"][0] == "d1|d9"
    cut = rows["IMPRESSION"][1]
    assert len(cut) <= 1000 and cut.split("|")[-1] in {f"item_{k:04d}" for k in range(200)}
    assert rows["RECOMMENDATION_ID"][1] == "r" * 40


def test_import_impressions_are_the_ids_shown_before_and_never_a_null():
    """Landed lists keep a null where an entry was not an id; only the ids reach the CSV."""
    def at(minute):
        return datetime(2026, 1, 1, 0, minute, tzinfo=timezone.utc)

    shown = pl.DataFrame(
        {"user_id": ["u1", "u1", "u2"], "event_time": [at(0), at(1), at(0)], "items_shown": [["d1", None, "d2"], [None, None], ["d7"]]},
        schema={"user_id": pl.String(), "event_time": UTC_MS, "items_shown": pl.List(pl.String())},
    )
    interactions = pl.DataFrame(
        {
            "user_id": ["u1", "u2", "u2"],
            "item_id": ["d2", "d7", "d8"],
            "event_time": [at(2), at(3), at(4)],
            "event_type": ["click"] * 3,
            "event_value": [1.0] * 3,
            # u2's clicks carry their own lists: one of only non-ids (so the feed before counts), one with a gap.
            "items_shown": [None, [None], [None, "d5"]],
            "recommendation_id": [None] * 3,
        },
        schema_overrides={"event_time": UTC_MS, "items_shown": pl.List(pl.String()), "recommendation_id": pl.String()},
    )
    attached = attach_impressions(interactions, shown)
    # u1's later impression showed no ids: the feed before it is still the one to attach.
    assert attached["items_shown"].to_list() == [["d1", "d2"], ["d7"], ["d5"]]
    assert pl.read_csv(interactions_csv(attached))["IMPRESSION"].to_list() == ["d1|d2", "d7", "d5"]
    gaps = interactions.with_columns(pl.Series("items_shown", [["d1", None, "d9"], [None, None], None]))
    assert pl.read_csv(interactions_csv(gaps))["IMPRESSION"].to_list() == ["d1|d9", None, None]


def personalize():
    return boto3.client("personalize", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def test_an_import_walks_every_state_to_active():
    client = personalize()
    name = job_name("interactions", datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert name != job_name("interactions", datetime(2026, 1, 1, tzinfo=timezone.utc))  # names are unique per account
    with Stubber(client) as stub:
        stub.add_response("create_dataset_import_job", {"datasetImportJobArn": JOB}, {
            "jobName": name, "datasetArn": ARN, "dataSource": {"dataLocation": "s3://amp/x.csv"}, "roleArn": ROLE, "importMode": "FULL",
        })
        for status in ("CREATE PENDING", "CREATE IN_PROGRESS", "ACTIVE"):
            stub.add_response("describe_dataset_import_job", {"datasetImportJob": {"status": status}}, {"datasetImportJobArn": JOB})
        assert run_import(client, ARN, "s3://amp/x.csv", ROLE, True, name, Poll(sleep=lambda s: None)) == JOB


def test_a_failed_import_fails_with_personalizes_reason():
    client = personalize()
    with Stubber(client) as stub:
        stub.add_response("create_dataset_import_job", {"datasetImportJobArn": JOB})
        stub.add_response("describe_dataset_import_job", {"datasetImportJob": {"status": "CREATE IN_PROGRESS"}})
        stub.add_response("describe_dataset_import_job", {"datasetImportJob": {"status": "CREATE FAILED", "failureReason": "Column TIMESTAMP is not epoch seconds"}})
        with pytest.raises(JobFailed, match="Column TIMESTAMP is not epoch seconds"):
            run_import(client, ARN, "s3://amp/x.csv", ROLE, False, "amp-x", Poll(sleep=lambda s: None))


def test_a_stuck_import_times_out_clearly():
    client = personalize()
    ticks = iter(range(0, 10_000, 100))
    with Stubber(client) as stub:
        stub.add_response("create_dataset_import_job", {"datasetImportJobArn": JOB})
        for _ in range(5):
            stub.add_response("describe_dataset_import_job", {"datasetImportJob": {"status": "CREATE IN_PROGRESS"}})
        with pytest.raises(JobFailed, match="still CREATE IN_PROGRESS after 250 s"):
            run_import(client, ARN, "s3://amp/x.csv", ROLE, False, "amp-x", Poll(timeout_seconds=250, sleep=lambda s: None, clock=lambda: next(ticks)))
