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
    # Defaults are the settings' own, so the two cannot drift apart.
    tracking_id: str | None = PersonalizeSettings.tracking_id
    campaign_arn: str | None = PersonalizeSettings.campaign_arn
    sims_campaign_arn: str | None = PersonalizeSettings.sims_campaign_arn
    dataset_group_arn: str | None = PersonalizeSettings.dataset_group_arn
    interactions_dataset_arn: str | None = PersonalizeSettings.interactions_dataset_arn
    solution_arn: str | None = PersonalizeSettings.solution_arn
    filter_arn: str | None = PersonalizeSettings.filter_arn
    role_arn: str | None = PersonalizeSettings.role_arn
    s3_url: str | None = PersonalizeSettings.s3_url
    push_tps: float = PersonalizeSettings.push_tps
    push_concurrency: int = PersonalizeSettings.push_concurrency
    push_interval_seconds: int = PersonalizeSettings.push_interval_seconds
    recommend_tps: float = PersonalizeSettings.recommend_tps
    recommend_concurrency: int = PersonalizeSettings.recommend_concurrency
    batch_users: int = PersonalizeSettings.batch_users
    training_mode: str = PersonalizeSettings.training_mode
    job_timeout_seconds: float = PersonalizeSettings.job_timeout_seconds
    poll_seconds: float = PersonalizeSettings.poll_seconds

    @classmethod
    def from_settings(cls, settings: PersonalizeSettings, s3: S3Resource | None = None) -> "PersonalizeResource":
        return cls(s3=s3 or S3Resource(), **{f.name: getattr(settings, f.name) for f in fields(PersonalizeSettings)})

    def settings(self) -> PersonalizeSettings:
        return PersonalizeSettings(**{f.name: getattr(self, f.name) for f in fields(PersonalizeSettings)})

    def clients(self) -> Clients:
        return make_clients(self.s3.get_client(), self.push_concurrency, self.recommend_concurrency)
