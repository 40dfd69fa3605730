"""The recommender interface both backends implement (SPEC section 7).

The assets only speak this interface, so the local recommender and AWS Personalize are
interchangeable by configuration: training yields a versioned model, the model answers
recommendations and similar items in bulk (to fill the caches), and offline metrics come out
in Personalize's own names. Live events are not part of it: the personalize_events asset pushes
them (with its ledger, TPS limit and lag metadata), and the local model learns from the lake.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import polars as pl

RECOMMENDATIONS_SCHEMA = {
    "user_id": pl.String(),
    "rank": pl.Int32(),
    "item_id": pl.String(),
    "score": pl.Float64(),
    "source": pl.String(),
}
POPULAR_ITEMS_SCHEMA = {"rank": pl.Int32(), "item_id": pl.String(), "score": pl.Float64(), "source": pl.String()}
SIMILAR_ITEMS_SCHEMA = {
    "item_id": pl.String(),
    "rank": pl.Int32(),
    "similar_item_id": pl.String(),
    "score": pl.Float64(),
}


@dataclass(frozen=True)
class TrainingData:
    """What a backend learns from: weighted interactions and what users were shown."""

    interactions: pl.DataFrame  # user_id, item_id, event_type, event_value, event_time
    impressions: pl.DataFrame  # user_id, item_id, event_time
    as_of: datetime


@dataclass
class TrainedModel:
    version: str
    backend: str
    path: Path
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # {"model": {...}, "popularity": {...}}
    info: dict[str, object] = field(default_factory=dict)


class RecommenderBackend(Protocol):
    name: str

    def train(self, data: TrainingData, models_dir: Path) -> TrainedModel: ...

    def load(self, path: Path) -> TrainedModel: ...

    def recommend(self, model: TrainedModel, user_ids: list[str], num_results: int) -> pl.DataFrame:
        """RECOMMENDATIONS_SCHEMA rows, `num_results` per user, popularity for unknown users."""
        ...

    def popular_items(self, model: TrainedModel, num_results: int) -> pl.DataFrame:
        """POPULAR_ITEMS_SCHEMA rows: the fallback for users the model does not know."""
        ...

    def similar_items(self, model: TrainedModel, item_ids: list[str], num_results: int) -> pl.DataFrame:
        """SIMILAR_ITEMS_SCHEMA rows."""
        ...

    def minimums(self, interactions: pl.DataFrame) -> dict[str, int | bool]:
        """Counts against what the backend needs before it can train, and `enough`."""
        ...
