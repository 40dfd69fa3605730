"""The request checker reads botocore's service model and enforces what botocore skips."""

from datetime import datetime, timezone

import boto3
import pytest
from botocore.stub import Stubber

from amp_personalize.backends.personalize.validation import RequestInvalid, validate

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def event(i: int, **extra) -> dict:
    return {"eventId": f"e{i}", "eventType": "click", "itemId": f"doc_{i}", "sentAt": NOW, **extra}


def put_events(events: list[dict]) -> dict:
    return {"trackingId": "tid", "userId": "u1", "sessionId": "s1", "eventList": events}


def test_a_valid_request_passes():
    validate("personalize-events", "PutEvents", put_events([event(i) for i in range(10)]))


def test_eleven_events_are_rejected_though_botocore_would_send_them():
    request = put_events([event(i) for i in range(11)])
    with pytest.raises(RequestInvalid, match=r"PutEvents.eventList: 11 items, at most 10 allowed"):
        validate("personalize-events", "PutEvents", request)
    # botocore itself lets it through to the network: proof the checker is needed.
    client = boto3.client("personalize-events", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub:
        stub.add_response("put_events", {}, request)
        client.put_events(**request)


def test_a_26_item_impression_and_other_limits_are_rejected():
    with pytest.raises(RequestInvalid, match=r"eventList\[0\].impression: 26 items, at most 25 allowed"):
        validate("personalize-events", "PutEvents", put_events([event(0, impression=[f"i{k}" for k in range(26)])]))
    with pytest.raises(RequestInvalid, match=r"recommendationId: 41 characters, at most 40"):
        validate("personalize-events", "PutEvents", put_events([event(0, recommendationId="r" * 41)]))
    with pytest.raises(RequestInvalid, match=r"properties: 1025 characters, at most 1024"):
        validate("personalize-events", "PutEvents", put_events([event(0, properties="x" * 1025)]))
    with pytest.raises(RequestInvalid, match=r"PutEvents.sessionId: required"):
        validate("personalize-events", "PutEvents", {"trackingId": "t", "eventList": [event(0)]})


def test_patterns_from_the_model_are_enforced():
    with pytest.raises(RequestInvalid, match="does not match"):
        validate("personalize", "CreateDatasetImportJob", {
            "jobName": "has spaces!", "datasetArn": "arn:aws:personalize:us-east-1:1:dataset/x/INTERACTIONS",
            "dataSource": {"dataLocation": "s3://b/k.csv"}, "roleArn": "arn:aws:iam::123456789012:role/r",
        })
