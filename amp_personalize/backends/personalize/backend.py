"""The personalize backend: the interface of backends/base.py over Amazon Personalize.

A version folder under data/models/ records what a training made (the solution version, the
campaign it went to, Personalize's metrics beside the local model's on the same data), so the
Dagster UI, `LATEST` and the caches work the same whichever backend trained.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from amp_personalize.backends.base import (
    POPULAR_ITEMS_SCHEMA,
    SIMILAR_ITEMS_SCHEMA,
    TrainedModel,
    TrainingData,
)
from amp_personalize.backends.local.backend import LocalBackend
from amp_personalize.backends.personalize import recommend, training
from amp_personalize.backends.personalize.clients import Clients
from amp_personalize.backends.personalize.ids import CATALOG, catalog_items, restore
from amp_personalize.backends.personalize.jobs import Poll
from amp_personalize.backends.personalize.ledger import open_ledger
from amp_personalize.backends.versions import load_version, publish_version
from amp_personalize.events import WeightTable
from amp_personalize.settings import PersonalizeSettings, Settings

# A user id no one has: Personalize answers it with what it recommends to newcomers.
COLD_USER = "amp-personalize:cold-start"


class PersonalizeBackend:
    name = "personalize"

    def __init__(self, settings: PersonalizeSettings, clients: Clients, amp_settings: Settings, weights: WeightTable, poll: Poll | None = None) -> None:
        self.settings = settings
        self.clients = clients
        self.amp_settings = amp_settings  # where the ledger is (ledger.open_ledger)
        self.weights = weights
        self.poll = poll or Poll(settings.job_timeout_seconds, settings.poll_seconds)

    def minimums(self, interactions: pl.DataFrame) -> dict[str, int | bool]:
        return training.minimums(interactions)

    def train(self, data: TrainingData, models_dir: Path) -> TrainedModel:
        """Import what Personalize lacks, sync the weights, train a version, move the campaign to it."""
        s = self.settings
        s.require("solution_arn")
        ledger = open_ledger(self.amp_settings)
        try:
            ledger.bind(s.destination())
            imported = training.import_missing(self.clients, s, ledger, data, self.poll)
        finally:
            ledger.close()
        events = training.events_config(self.weights)
        weights_updated = training.sync_events_config(self.clients, s.solution_arn, events.config, self.poll)
        version_arn, mode = training.train_version(self.clients, s.solution_arn, s.training_mode, self.poll)
        personalize_metrics = training.solution_metrics(self.clients, version_arn)
        if s.campaign_arn:  # the first training comes before `personalize setup` can make a campaign
            training.deploy(self.clients, s.campaign_arn, version_arn, self.poll)
        # The local model on the same data, for a number to hold Personalize's against.
        local = LocalBackend().evaluate(data)
        metrics = {"model": personalize_metrics, "local": local.get("model", {}), "popularity": local.get("popularity", {})}
        info = {
            "algorithm": "personalize",
            "solution_version_arn": version_arn,
            "training_mode": mode,
            "campaign_arn": s.campaign_arn,
            "deployed": bool(s.campaign_arn),
            "import_job_arn": imported.job_arn,
            "import_mode": imported.mode,
            "imported_rows": imported.rows,
            "events_config": events.config,
            "event_types_dropped": events.dropped,
            "events_config_updated": weights_updated,
            "filter_arn": s.filter_arn,
        }
        catalog = data.interactions.select(pl.col("item_id").unique().sort())
        return publish_version(models_dir, data.as_of, self.name, metrics, info, lambda d: catalog.write_parquet(d / CATALOG))

    def load(self, path: Path) -> TrainedModel:
        return load_version(path)

    def recommend(self, model: TrainedModel, user_ids: list[str], num_results: int) -> pl.DataFrame:
        s = self.settings
        num_results = min(num_results, recommend.MAX_RESULTS)
        if len(user_ids) > s.batch_users:
            s.require("s3_url", "role_arn")
            recs = recommend.batch(
                self.clients, model.info["solution_version_arn"], user_ids, num_results, s.filter_arn, s.s3_url, s.role_arn, self.poll
            )
        else:
            s.require("campaign_arn")
            recs = recommend.realtime(self.clients, s.campaign_arn, user_ids, num_results, s.filter_arn, s.recommend_tps, s.recommend_concurrency)
        return restore(recs, "item_id", _catalog(model))

    def popular_items(self, model: TrainedModel, num_results: int) -> pl.DataFrame:
        s = self.settings
        num_results = min(num_results, recommend.MAX_RESULTS)  # GetRecommendations refuses more
        recs = restore(recommend.realtime(self.clients, s.campaign_arn, [COLD_USER], num_results, None, s.recommend_tps, 1), "item_id", _catalog(model))
        return recs.drop("user_id").with_columns(pl.lit("popular").alias("source")).select(list(POPULAR_ITEMS_SCHEMA))

    def similar_items(self, model: TrainedModel, item_ids: list[str] | None, num_results: int) -> pl.DataFrame:
        """From the SIMS campaign when there is one; without it, no rows (docs/personalize.md: setup does not
        create a SIMS campaign, and a cache of nothing beats a failed run)."""
        s = self.settings
        if not s.sims_campaign_arn:
            return pl.DataFrame(schema=SIMILAR_ITEMS_SCHEMA)
        catalog = _catalog(model)
        items = item_ids if item_ids is not None else catalog
        similar = recommend.similar(self.clients, s.sims_campaign_arn, items, num_results, s.recommend_tps, s.recommend_concurrency)
        return restore(similar, "similar_item_id", catalog)


def _catalog(model: TrainedModel) -> list[str]:
    return catalog_items(model.path)
