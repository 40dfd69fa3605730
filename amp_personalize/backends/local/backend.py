"""The local backend: trains on this machine and evaluates itself the way Personalize does."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl

from amp_personalize.backends.base import TrainedModel, TrainingData
from amp_personalize.backends.local.model import LocalModel, LocalParams, fit
from amp_personalize.backends.local.selection import Selection, select
from amp_personalize.backends.metrics import (
    offline_metrics,
    personalize_split,
    relevant_items,
)
from amp_personalize.backends.versions import load_version, publish_version

EVAL_DEPTH = 25  # Personalize's metrics go to rank 25
# Below these the model has nothing to learn from.
MIN_INTERACTIONS, MIN_USERS, MIN_ITEMS = 10, 2, 2


class LocalBackend:
    name = "local"

    def __init__(
        self, params: LocalParams | None = None, seed: int = 42, selection: bool = True, selection_budget: float | None = None
    ) -> None:
        """`selection=False` trains with `params` as given (tests, experiments); otherwise every
        training chooses its settings on its own data first (selection.py), starting from them."""
        self.params = params or LocalParams()
        self.seed = seed
        self.selection = selection
        self.selection_budget = selection_budget
        self._loaded: dict[Path, LocalModel] = {}

    def minimums(self, interactions: pl.DataFrame) -> dict[str, int | bool]:
        counts = {
            "interactions": interactions.height,
            "users": interactions["user_id"].n_unique(),
            "items": interactions["item_id"].n_unique(),
        }
        enough = counts["interactions"] >= MIN_INTERACTIONS and counts["users"] >= MIN_USERS and counts["items"] >= MIN_ITEMS
        return {**counts, "enough": enough}

    def evaluate(self, data: TrainingData, params: LocalParams | None = None) -> dict[str, dict[str, float]]:
        """Model and popularity on Personalize's split, metric for metric."""
        split = personalize_split(data.interactions, seed=self.seed)
        relevant = relevant_items(split.holdout.filter(pl.col("event_value") > 0))
        if not relevant or split.train.height == 0:
            return {}
        model = fit(split.train, None, data.as_of, params or self.params, with_similar=False)
        index = {u: i for i, u in enumerate(model.matrices.users)}
        users = [u for u in relevant if u in index]
        if not users:
            return {}
        rows = np.array([index[u] for u in users], dtype=np.int64)
        # In batches, as recommend() does: all test users at once is a users x items float32
        # matrix (5,000 x 20,000 = 400 MB, plus copies), the peak RSS of the whole training run.
        batches = [rows[start : start + 2048] for start in range(0, len(rows), 2048)]
        ranked = [model.recommend_rows(batch, EVAL_DEPTH) for batch in batches]
        top, scores = np.concatenate([t for t, _, _ in ranked]), np.concatenate([s for _, s, _ in ranked])
        items = model.matrices.items
        recommended = {u: [items[j] for j, s in zip(t, sc) if np.isfinite(s)] for u, t, sc in zip(users, top, scores)}
        baseline = np.concatenate([model.popular_for_rows(batch, EVAL_DEPTH) for batch in batches])
        popular = {u: list(items[t]) for u, t in zip(users, baseline)}
        catalog = data.interactions["item_id"].n_unique()
        return {
            "model": offline_metrics(recommended, relevant, catalog),
            "popularity": offline_metrics(popular, relevant, catalog),
            "split": {"test_users": len(users), "holdout_interactions": split.holdout.height},
        }

    def choose(self, data: TrainingData) -> Selection | None:
        if not self.selection:
            return None
        return select(data.interactions, data.impressions, data.as_of, self.params, self.selection_budget)

    def train(self, data: TrainingData, models_dir: Path) -> TrainedModel:
        selection = self.choose(data)
        params = selection.params if selection else self.params
        metrics = self.evaluate(data, params)
        model = fit(data.interactions, data.impressions, data.as_of, params)
        return self.publish(model, metrics, data.as_of, models_dir, selection)

    def publish(self, model: LocalModel, metrics: dict, as_of, models_dir: Path, selection: Selection | None = None) -> TrainedModel:
        """A new version folder (model, meta.json with the selection's choice and table), then LATEST pointed at it."""
        info = {**model.info, "algorithm": model.algorithm, "params": asdict(model.params)}
        if selection is not None:
            info["selection"] = selection.summary()
        trained = publish_version(models_dir, as_of, self.name, metrics, info, model.save)
        self._loaded[trained.path] = model
        return trained

    def load(self, path: Path) -> TrainedModel:
        """The version's metadata, its model file loaded now: a missing or damaged one fails here,
        naming the version, not at the first recommendation."""
        trained = load_version(path)
        self._model(trained)
        return trained

    def _model(self, trained: TrainedModel) -> LocalModel:
        if trained.path not in self._loaded:
            self._loaded = {trained.path: LocalModel.load(trained.path)}  # keep one model in memory
        return self._loaded[trained.path]

    def recommend(self, model: TrainedModel, user_ids: list[str], num_results: int) -> pl.DataFrame:
        return self._model(model).recommend(user_ids, num_results)

    def popular_items(self, model: TrainedModel, num_results: int) -> pl.DataFrame:
        return self._model(model).popular([""], num_results).drop("user_id")

    def similar_items(self, model: TrainedModel, item_ids: list[str] | None, num_results: int) -> pl.DataFrame:
        return self._model(model).similar_items(item_ids, num_results)
