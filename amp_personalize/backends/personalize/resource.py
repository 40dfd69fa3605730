"""The Dagster resource for the Personalize backend: its settings, shown in the UI, and clients.

S3 goes through dagster-aws's S3Resource so that a deployment configures it the Dagster way;
tests swap `clients()` for stubbed ones.
"""

from __future__ import annotations

from dataclasses import fields

import dagster as dg
from dagster_aws.s3 import S3Resource

from amp_personalize.backends.personalize.clients import Clients, make_clients
from amp_personalize.settings import PersonalizeSettings


class PersonalizeResource(dg.ConfigurableResource):
    s3: S3Resource
    tracking_id: str | None = None
    campaign_arn: str | None = None
    sims_campaign_arn: str | None = None
    dataset_group_arn: str | None = None
    interactions_dataset_arn: str | None = None
    solution_arn: str | None = None
    filter_arn: str | None = None
    role_arn: str | None = None
    s3_url: str | None = None
    push_tps: float = 50.0
    push_concurrency: int = 4
    push_interval_seconds: int = 30
    recommend_tps: float = 20.0
    recommend_concurrency: int = 8
    batch_users: int = 20_000
    training_mode: str = "FULL"
    job_timeout_seconds: float = 4 * 3600
    poll_seconds: float = 30.0

    @classmethod
    def from_settings(cls, settings: PersonalizeSettings, s3: S3Resource | None = None) -> "PersonalizeResource":
        return cls(s3=s3 or S3Resource(), **{f.name: getattr(settings, f.name) for f in fields(PersonalizeSettings)})

    def settings(self) -> PersonalizeSettings:
        return PersonalizeSettings(**{f.name: getattr(self, f.name) for f in fields(PersonalizeSettings)})

    def clients(self) -> Clients:
        return make_clients(self.s3.get_client(), self.push_concurrency, self.recommend_concurrency)
