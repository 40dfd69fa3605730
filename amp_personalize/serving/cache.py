"""The cached datasets in memory, keyed for lookup, swapped whole when a new version lands.

Reads `recommendations`, `popular_items` and `similar_items` from the lake. A reload builds a
complete new snapshot and then replaces the reference in one assignment, so a request sees the
old snapshot or the new one, never a mixture.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from amp_personalize.lake.parquet import partition_path


@dataclass(frozen=True)
class Snapshot:
    stamp: tuple  # (path, mtime_ns) of each file, to notice a new version
    model_version: str | None
    by_user: dict[str, list[tuple[str, float]]]
    user_source: dict[str, str]  # where each cached list's first item came from
    popular: list[tuple[str, float]]
    similar: dict[str, list[tuple[str, float]]]
    similar_version: str | None  # its own: similar_items can be cached while recommendations are empty


def _grouped(df: pl.DataFrame, key: str, item: str) -> dict[str, list[tuple[str, float]]]:
    """key -> [(item, score)] in rank order, built by polars, not a Python loop over rows."""
    if df.height == 0:
        return {}
    lists = df.sort(key, "rank").group_by(key, maintain_order=True).agg(pl.col(item), pl.col("score"))
    return {k: list(zip(items, scores)) for k, items, scores in lists.iter_rows()}


class RecommendationCache:
    def __init__(self, lake_dir: Path, check_every_seconds: float = 2.0) -> None:
        self.lake_dir = lake_dir
        self.check_every = check_every_seconds
        self._snapshot: Snapshot | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def _paths(self) -> list[Path]:
        return [partition_path(self.lake_dir, name) for name in ("recommendations", "popular_items", "similar_items")]

    def _stamp(self) -> tuple:
        return tuple((str(p), p.stat().st_mtime_ns if p.exists() else None) for p in self._paths())

    def _load(self, stamp: tuple) -> Snapshot:
        recs_path, popular_path, similar_path = self._paths()
        recs = pl.read_parquet(recs_path) if recs_path.exists() else pl.DataFrame()
        popular = pl.read_parquet(popular_path) if popular_path.exists() else pl.DataFrame()
        similar = pl.read_parquet(similar_path) if similar_path.exists() else pl.DataFrame()
        version = recs["model_version"][0] if recs.height else None
        return Snapshot(
            stamp=stamp,
            model_version=version,
            by_user=_grouped(recs, "user_id", "item_id"),
            user_source=dict(
                recs.sort("user_id", "rank").group_by("user_id", maintain_order=True).agg(pl.col("source").first()).iter_rows()
            ) if recs.height else {},
            popular=list(zip(popular["item_id"], popular["score"])) if popular.height else [],
            similar=_grouped(similar, "item_id", "similar_item_id"),
            similar_version=similar["model_version"][0] if similar.height else None,
        )

    def snapshot(self) -> Snapshot:
        """The current snapshot, reloaded first if the files changed (checked every few seconds)."""
        now = time.monotonic()
        if self._snapshot is not None and now - self._checked < self.check_every:
            return self._snapshot
        with self._lock:
            self._checked = now
            stamp = self._stamp()
            if self._snapshot is None or stamp != self._snapshot.stamp:
                self._snapshot = self._load(stamp)
        return self._snapshot

    def recommend(self, user_id: str, n: int) -> tuple[list[tuple[str, float]], str, str | None]:
        """(items, source, model_version): the user's cached list, else popular items."""
        snap = self.snapshot()
        items = snap.by_user.get(user_id)
        if items:  # a list that is all popularity backfill (a user the model barely knew) says so
            return items[:n], snap.user_source.get(user_id, "model"), snap.model_version
        return snap.popular[:n], "popularity", snap.model_version

    def similar(self, item_id: str, n: int) -> tuple[list[tuple[str, float]] | None, str | None]:
        """(items or None if the item is not cached, model_version or None if nothing is cached)."""
        snap = self.snapshot()
        items = snap.similar.get(item_id)
        return (items[:n] if items is not None else None), snap.similar_version
