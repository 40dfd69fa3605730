"""`amp-personalize personalize setup`: create the Personalize resources the settings lack.

Nothing is ever created implicitly by a run; this command is the one place that creates, and
only what is not already named by a setting, so running it twice makes nothing twice. The
campaign needs a trained solution version, so a first run stops before it and says so; after
the first training, running it again creates the campaign.
"""

from __future__ import annotations

from typing import Callable

import orjson

from amp_personalize.backends.personalize.clients import Clients
from amp_personalize.backends.personalize.jobs import Poll, wait_for
from amp_personalize.backends.personalize.training import (
    events_config,
    exclusion_filter,
)
from amp_personalize.backends.personalize.validation import validate
from amp_personalize.events import WeightTable
from amp_personalize.settings import PersonalizeSettings

RECIPE = "arn:aws:personalize:::recipe/aws-user-personalization-v2"
# The CSV columns of bulk_import, as Personalize's Avro schema for an Interactions dataset.
INTERACTIONS_SCHEMA = {
    "type": "record",
    "name": "Interactions",
    "namespace": "com.amazonaws.personalize.schema",
    "fields": [
        {"name": "USER_ID", "type": "string"},
        {"name": "ITEM_ID", "type": "string"},
        {"name": "TIMESTAMP", "type": "long"},
        {"name": "EVENT_TYPE", "type": "string"},
        {"name": "EVENT_VALUE", "type": ["null", "float"]},
        {"name": "IMPRESSION", "type": ["null", "string"]},
        {"name": "RECOMMENDATION_ID", "type": ["null", "string"]},
    ],
    "version": "1.0",
}


def _call(client, operation: str, service: str = "personalize", **params) -> dict:
    validate(service, "".join(part.capitalize() for part in operation.split("_")), params)
    return getattr(client, operation)(**params)


def setup(
    clients: Clients, settings: PersonalizeSettings, weights: WeightTable, name: str, poll: Poll, echo: Callable[[str], None] = print
) -> dict[str, str]:
    """Create what is missing, wait for each to be ACTIVE, return the settings to export."""
    pc = clients.personalize
    env: dict[str, str] = {}

    group = settings.dataset_group_arn
    if not group:
        group = _call(pc, "create_dataset_group", name=name)["datasetGroupArn"]
        wait_for(lambda: pc.describe_dataset_group(datasetGroupArn=group)["datasetGroup"], f"dataset group {group}", poll)
        echo(f"created dataset group {group}")
    env["AWS_PERSONALIZE_DATASET_GROUP_ARN"] = group

    dataset = settings.interactions_dataset_arn
    if not dataset:
        schema = _call(pc, "create_schema", name=f"{name}-interactions", schema=orjson.dumps(INTERACTIONS_SCHEMA).decode())["schemaArn"]
        echo(f"created schema {schema}")
        dataset = _call(pc, "create_dataset", name=f"{name}-interactions", schemaArn=schema, datasetGroupArn=group, datasetType="Interactions")[
            "datasetArn"
        ]
        wait_for(lambda: pc.describe_dataset(datasetArn=dataset)["dataset"], f"dataset {dataset}", poll)
        echo(f"created interactions dataset {dataset}")
    env["AWS_PERSONALIZE_INTERACTIONS_DATASET_ARN"] = dataset

    tracking_id = settings.tracking_id
    if not tracking_id:
        tracker = _call(pc, "create_event_tracker", name=f"{name}-events", datasetGroupArn=group)
        wait_for(lambda: pc.describe_event_tracker(eventTrackerArn=tracker["eventTrackerArn"])["eventTracker"], "event tracker", poll)
        tracking_id = tracker["trackingId"]
        echo(f"created event tracker {tracker['eventTrackerArn']}")
    env["AWS_PERSONALIZE_TRACKING_ID"] = tracking_id

    solution = settings.solution_arn
    if not solution:
        # Training follows AMP_RETRAIN_CRON, so Personalize's own weekly auto-training stays off.
        solution = _call(
            pc, "create_solution", name=f"{name}-user-personalization", datasetGroupArn=group, recipeArn=RECIPE,
            performAutoTraining=False, solutionConfig={"eventsConfig": events_config(weights).config},
        )["solutionArn"]
        wait_for(lambda: pc.describe_solution(solutionArn=solution)["solution"], f"solution {solution}", poll)
        echo(f"created solution {solution} ({RECIPE})")
    env["AWS_PERSONALIZE_SOLUTION_ARN"] = solution

    expression = exclusion_filter(weights)
    filter_arn = settings.filter_arn
    if not filter_arn and expression:
        filter_arn = _call(pc, "create_filter", name=f"{name}-exclude-negative", datasetGroupArn=group, filterExpression=expression)["filterArn"]
        wait_for(lambda: pc.describe_filter(filterArn=filter_arn)["filter"], f"filter {filter_arn}", poll)
        echo(f"created filter {filter_arn}: {expression}")
    if filter_arn:
        env["AWS_PERSONALIZE_FILTER_ARN"] = filter_arn

    campaign = settings.campaign_arn
    if not campaign:
        latest = (pc.describe_solution(solutionArn=solution)["solution"].get("latestSolutionVersion") or {})
        if latest.get("status") == "ACTIVE":
            campaign = _call(pc, "create_campaign", name=name, solutionVersionArn=latest["solutionVersionArn"], minProvisionedTPS=1)["campaignArn"]
            wait_for(lambda: pc.describe_campaign(campaignArn=campaign)["campaign"], f"campaign {campaign}", poll)
            echo(f"created campaign {campaign}")
        else:
            echo("no campaign yet: it needs a trained solution version. Export the settings below, import and train "
                 "(`amp-personalize train`), then run `amp-personalize personalize setup` again.")
    if campaign:
        env["AWS_PERSONALIZE_CAMPAIGN_ARN"] = campaign
    return env
