"""Personalize without an AWS account: real botocore clients, answered locally.

Control-plane calls go through botocore's Stubber (ordered, with expected parameters). The
data-plane clients (PutEvents, GetRecommendations) are called from worker threads in parallel,
which a Stubber's single queue cannot follow, so they get a `before-send` handler instead: the
request is still built, validated and serialised by botocore from its service model, and the
handler answers it as the service would, counting what arrived.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Callable

import boto3
import orjson
import polars as pl
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from moto import mock_aws

from amp_personalize.backends.personalize.clients import Clients
from amp_personalize.backends.personalize.resource import PersonalizeResource
from amp_personalize.lake.parquet import partition_path, write_atomic
from amp_personalize.transforms.interactions import (
    IMPRESSIONS_SCHEMA,
    INTERACTIONS_SCHEMA,
)

REGION = "us-east-1"
ACCOUNT = "123456789012"
DATASET_GROUP = f"arn:aws:personalize:{REGION}:{ACCOUNT}:dataset-group/amp"
DATASET = f"arn:aws:personalize:{REGION}:{ACCOUNT}:dataset/amp/INTERACTIONS"
SOLUTION = f"arn:aws:personalize:{REGION}:{ACCOUNT}:solution/amp-user-personalization"
CAMPAIGN = f"arn:aws:personalize:{REGION}:{ACCOUNT}:campaign/amp"
SIMS = f"arn:aws:personalize:{REGION}:{ACCOUNT}:campaign/amp-sims"
FILTER = f"arn:aws:personalize:{REGION}:{ACCOUNT}:filter/amp-exclude-negative"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/PersonalizeS3"
NOW = datetime.now(timezone.utc)


def client(service: str, **config):
    return boto3.client(
        service, region_name=REGION, aws_access_key_id="test", aws_secret_access_key="test", config=Config(**config) if config else None
    )


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_):
        yield self._body


class Service:
    """Answers one operation of a real client from a handler; thread-safe, counts concurrency."""

    def __init__(self, boto_client, operation: str, answer: Callable[[dict], dict], latency: float = 0.0) -> None:
        self.requests: list[dict] = []
        self.times: list[float] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._answer, self._latency = answer, latency
        service = boto_client.meta.service_model.endpoint_prefix
        boto_client.meta.events.register(f"before-send.{service}.{operation}", self._send)

    def _send(self, request, **_):
        params = orjson.loads(request.body)
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.requests.append(params)
            self.times.append(time.time())
        try:
            if self._latency:
                time.sleep(self._latency)
            reply = self._answer(params)  # a body, or (HTTP status, body) for an error
        finally:
            with self._lock:
                self.in_flight -= 1
        status, body = reply if isinstance(reply, tuple) else (200, reply)
        return AWSResponse(request.url, status, {"Content-Type": "application/json"}, _Raw(orjson.dumps(body)))


_CLIENTS: dict[str, Clients] = {}


class FakePersonalize(PersonalizeResource):
    """The real resource with its clients swapped for the ones a test registered under `key`."""

    key: str = "default"

    def clients(self) -> Clients:
        return _CLIENTS[self.key]


def fake_resource(clients: Clients, key: str = "default", **settings) -> FakePersonalize:
    from dagster_aws.s3 import S3Resource

    _CLIENTS[key] = clients
    base = {
        "tracking_id": "tracking-1",
        "campaign_arn": CAMPAIGN,
        "dataset_group_arn": DATASET_GROUP,
        "interactions_dataset_arn": DATASET,
        "solution_arn": SOLUTION,
        "filter_arn": FILTER,
        "role_arn": ROLE,
        "s3_url": "s3://amp-bucket/personalize",
        "poll_seconds": 0.001,
        "job_timeout_seconds": 60,
    }
    return FakePersonalize(s3=S3Resource(region_name=REGION), key=key, **{**base, **settings})


@contextmanager
def clients_with_bucket() -> Iterator[tuple[object, Clients]]:
    """Inside moto: an S3 client with the settings' bucket made, and clients that use it."""
    with mock_aws():
        s3 = client("s3")
        s3.create_bucket(Bucket="amp-bucket")
        yield s3, make_clients(s3)


def make_clients(s3=None) -> Clients:
    return Clients(
        personalize=client("personalize"),
        events=client("personalize-events", retries={"total_max_attempts": 1}, max_pool_connections=16),
        runtime=client("personalize-runtime", max_pool_connections=16),
        s3=s3,
    )


def write_history(data_dir, users: int, per_user: int) -> int:
    """Clicks for every user, a downvote for some, and one feed impression before each user's first click."""
    rows, shown = [], []
    for u in range(users):
        start = NOW - timedelta(days=2, minutes=u)
        shown.extend(
            {"event_id": f"imp-{u}", "user_id": f"u{u}", "item_id": f"i{k}", "position": k, "impression_type": "initial_impression",
             "feed_type": "popular", "event_time": start - timedelta(seconds=5), "event_value": 0.3}
            for k in range(3)
        )
        for k in range(per_user):
            rows.append({"event_id": f"e-{u}-{k}", "user_id": f"u{u}", "item_id": f"i{(u + k) % 50}", "event_type": "click",
                         "event_value": 1.0, "event_time": start + timedelta(seconds=k), "session_id": 7, "recommendation_id": None})
        if u % 5 == 0:
            rows.append({"event_id": f"d-{u}", "user_id": f"u{u}", "item_id": "i49", "event_type": "downvote", "event_value": -1.0,
                         "event_time": start + timedelta(hours=1), "session_id": 7, "recommendation_id": None})
    write_atomic(pl.DataFrame(rows, schema=INTERACTIONS_SCHEMA), partition_path(data_dir / "lake", "interactions", "20260101T0000Z"))
    write_atomic(pl.DataFrame(shown, schema=IMPRESSIONS_SCHEMA), partition_path(data_dir / "lake", "impressions", "20260101T0000Z"))
    return len(rows)
