"""boto3 clients for Personalize, configured from the SDK's standard chain.

Credentials, region and endpoints (AWS_ENDPOINT_URL_PERSONALIZE_EVENTS and friends) are boto3's
own; only retries and pool sizes are set here. PutEvents gets no botocore retries at all: the
push retries by itself behind the ledger, and a retry botocore made on its own would resend
events the ledger has no record of.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config


@dataclass
class Clients:
    personalize: Any  # control plane: imports, solutions, campaigns, batch jobs
    events: Any  # personalize-events: PutEvents
    runtime: Any  # personalize-runtime: GetRecommendations
    s3: Any


def make_clients(s3, push_concurrency: int = 4, recommend_concurrency: int = 8) -> Clients:
    session = boto3.session.Session()
    standard = Config(retries={"mode": "standard", "max_attempts": 5})
    return Clients(
        personalize=session.client("personalize", config=standard),
        events=session.client(
            "personalize-events", config=Config(retries={"total_max_attempts": 1}, max_pool_connections=max(10, push_concurrency))
        ),
        runtime=session.client(
            "personalize-runtime",
            config=standard.merge(Config(max_pool_connections=max(10, recommend_concurrency))),
        ),
        s3=s3,
    )
