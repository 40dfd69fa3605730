"""Retraining on Personalize: import what it lacks, apply the weights, train, deploy.

The weight table maps to Personalize as far as it allows. Positive interaction types become
the solution's `eventsConfig`, scaled so the heaviest is 1 (the API takes 0..1 and at most 10
types). Negative types are never given a training weight; they still reach the interactions
dataset, where the exclusion filter reads them on every recommendation call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import polars as pl

from amp_personalize.backends.base import TrainingData
from amp_personalize.backends.personalize.bulk_import import (
    interactions_csv,
    run_import,
)
from amp_personalize.backends.personalize.clients import Clients
from amp_personalize.backends.personalize.ids import fit_columns
from amp_personalize.backends.personalize.impressions import (
    attach_impressions,
    impression_lists,
)
from amp_personalize.backends.personalize.jobs import Poll, job_name, wait_for
from amp_personalize.backends.personalize.ledger import Ledger
from amp_personalize.backends.personalize.validation import validate
from amp_personalize.events import WeightTable
from amp_personalize.settings import PersonalizeSettings

MAX_EVENT_TYPES = 10  # EventsConfig.eventParametersList, from the service model
# Personalize refuses to train below these (its documented minimums for User-Personalization).
MIN_INTERACTIONS = 1000
MIN_USERS_WITH_TWO = 25


@dataclass(frozen=True)
class EventsConfig:
    config: dict
    dropped: list[str] = field(default_factory=list)  # positive types past the 10 heaviest


def events_config(weights: WeightTable) -> EventsConfig:
    positive = sorted(
        ((t, w) for t, w in weights.weights.items() if w > 0 and t not in weights.impression_types),
        key=lambda tw: (-tw[1], tw[0]),
    )
    if not positive:
        raise ValueError("the weight table has no positive interaction type for Personalize to train on")
    top = positive[0][1]
    kept = positive[:MAX_EVENT_TYPES]
    config = {"eventParametersList": [{"eventType": t, "weight": round(w / top, 6)} for t, w in kept]}
    return EventsConfig(config, [t for t, _ in positive[MAX_EVENT_TYPES:]])


def exclusion_filter(weights: WeightTable) -> str | None:
    """The filter expression that keeps items a user reacted to negatively out of their results."""
    negative = sorted(t for t, w in weights.weights.items() if w < 0)
    if not negative:
        return None
    return "EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN (" + ", ".join(f'"{t}"' for t in negative) + ")"


def minimums(interactions: pl.DataFrame) -> dict[str, int | bool]:
    """What Personalize will train on (positive interactions) against its minimums."""
    positive = interactions.filter(pl.col("event_value") > 0)
    per_user = positive.group_by("user_id").len()
    counts = {
        "interactions": positive.height,
        "users_with_two_or_more": int((per_user["len"] >= 2).sum()) if per_user.height else 0,
    }
    return {**counts, "enough": counts["interactions"] >= MIN_INTERACTIONS and counts["users_with_two_or_more"] >= MIN_USERS_WITH_TWO}


@dataclass
class ImportResult:
    job_arn: str | None
    mode: str | None
    rows: int


def import_missing(clients: Clients, settings: PersonalizeSettings, ledger: Ledger, data: TrainingData, poll: Poll) -> ImportResult:
    """Import the interactions Personalize does not have yet: FULL the first time, INCREMENTAL after.

    "Has" means pushed live or imported before (the ledger), so a re-run or an overlap with the
    real-time push never puts an event in twice. Nothing is recorded unless the job is ACTIVE.
    """
    settings.require("interactions_dataset_arn", "role_arn", "s3_url")
    name = job_name("interactions")
    # Claimed under the push lock: a push run after this leaves the claimed ids to the import,
    # and one before it has recorded what it sent. Asked per candidate id (indexed lookups), so
    # memory follows the history window's rows, not everything the ledger holds.
    stale = int((time.time() - poll.timeout_seconds - 3600) * 1000)
    # The ledger knows events by the id PutEvents sent; it has forgotten those acknowledged before
    # its last prune, so events older than that (and a day more, for device clocks that run
    # ahead) are left out rather than maybe sent twice.
    history, forgotten_ms = data.interactions, ledger.forgotten_before()
    if forgotten_ms:
        history = history.filter(pl.col("event_time") >= datetime.fromtimestamp(forgotten_ms / 1000, timezone.utc) + timedelta(days=1))
    interactions = fit_columns(history, ["event_id"])
    with ledger.exclusive_push(wait_seconds=600):
        claimed = ledger.claim_for_import(name, interactions["event_id"].to_list(), stale_before_ms=stale)
    if not claimed:
        return ImportResult(None, None, 0)
    # Impressions are attached to the claimed rows only: after the first import that is a few.
    missing = attach_impressions(
        interactions.filter(pl.col("event_id").is_in(pl.Series(claimed, dtype=pl.String).implode())), impression_lists(data.impressions)
    )
    full = ledger.imports() == 0
    bucket, _, prefix = settings.s3_url.removeprefix("s3://").partition("/")
    key = f"{prefix}/imports/{name}.csv".lstrip("/")
    try:
        clients.s3.put_object(Bucket=bucket, Key=key, Body=interactions_csv(fit_columns(missing, ["user_id", "item_id"], ("items_shown",))))
        arn = run_import(clients.personalize, settings.interactions_dataset_arn, f"s3://{bucket}/{key}", settings.role_arn, full, name, poll)
    except BaseException:
        ledger.release_import(name)
        raise
    mode = "FULL" if full else "INCREMENTAL"
    ledger.record_import(arn, mode, missing["event_id"].to_list(), job_name=name)
    return ImportResult(arn, mode, missing.height)


def sync_events_config(clients: Clients, solution_arn: str, wanted: dict, poll: Poll) -> bool:
    """Update the solution's event weights when the weight table changed; True if it did."""
    solution = clients.personalize.describe_solution(solutionArn=solution_arn)["solution"]
    current = (solution.get("solutionConfig") or {}).get("eventsConfig")
    if current == wanted:
        return False
    request = {"solutionArn": solution_arn, "solutionUpdateConfig": {"eventsConfig": wanted}}
    validate("personalize", "UpdateSolution", request)
    clients.personalize.update_solution(**request)

    def update() -> dict:
        solution = clients.personalize.describe_solution(solutionArn=solution_arn)["solution"]
        return solution.get("latestSolutionUpdate") or solution

    wait_for(update, f"solution update of {solution_arn}", poll)
    return True


def train_version(clients: Clients, solution_arn: str, mode: str, poll: Poll) -> tuple[str, str]:
    """A new solution version, polled to ACTIVE. UPDATE needs a version to update: FULL otherwise."""
    if mode == "UPDATE":
        solution = clients.personalize.describe_solution(solutionArn=solution_arn)["solution"]
        if not solution.get("latestSolutionVersion"):
            mode = "FULL"
    request = {"solutionArn": solution_arn, "trainingMode": mode, "name": job_name("version")}
    validate("personalize", "CreateSolutionVersion", request)
    arn = clients.personalize.create_solution_version(**request)["solutionVersionArn"]
    wait_for(
        lambda: clients.personalize.describe_solution_version(solutionVersionArn=arn)["solutionVersion"],
        f"solution version {arn} ({mode})",
        poll,
    )
    return arn, mode


def solution_metrics(clients: Clients, version_arn: str) -> dict[str, float]:
    return {k: float(v) for k, v in clients.personalize.get_solution_metrics(solutionVersionArn=version_arn)["metrics"].items()}


def deploy(clients: Clients, campaign_arn: str, version_arn: str, poll: Poll) -> None:
    """Point the campaign at the new version and wait until it serves it."""
    clients.personalize.update_campaign(campaignArn=campaign_arn, solutionVersionArn=version_arn)

    def update() -> dict:
        campaign = clients.personalize.describe_campaign(campaignArn=campaign_arn)["campaign"]
        latest = campaign.get("latestCampaignUpdate") or {}
        if latest.get("solutionVersionArn") == version_arn:
            return latest
        if campaign.get("solutionVersionArn") == version_arn and not latest:
            return campaign
        return {"status": "UPDATE PENDING"}

    wait_for(update, f"campaign {campaign_arn} update to {version_arn}", poll)
