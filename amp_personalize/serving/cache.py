"""The cached datasets in memory, keyed for lookup, swapped whole when a new version lands.

Reads `recommendations`, `popular_items` and `similar_items` from the lake (this machine's, or
AMP_LAKE_URL's on S3, so that every receiver host serves the same lists). A reload builds a
complete new snapshot and then replaces the reference in one assignment, so a request sees the
old snapshot or the new one, never a mixture. A file that cannot be read (damaged by hand or by
the disk) leaves the last good snapshot in service, and is named in the log once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from amp_personalize.lake.store import Lake, LocalLake

log = logging.getLogger(__name__)

# Key in the recommendations file's footer: the users with nothing left to offer (they vetoed
# every popular item), whom the popular fallback must not answer.
NOTHING_LEFT_KEY = "amp:users_with_nothing_left"
# And the model version, for when those users are all there is (no row carries it then).
MODEL_VERSION_KEY = "amp:model_version"


RETRY_DAMAGED_SECONDS = 60.0
CACHES = ("recommendations", "popular_items", "similar_items")
# How often the files are looked at for a new version: a stat locally; on S3, three HEAD requests
# (about 26,000 a day per receiver process at 10 s).
CHECK_SECONDS = {False: 2.0, True: 10.0}


class CacheUnreadable(Exception):
    """No snapshot could be loaded: a cache file is there but cannot be read."""


@dataclass(frozen=True)
class Snapshot:
    stamp: tuple  # each file's version (inode, size and mtime; an ETag on S3), to notice a new one
    model_version: str | None
    by_user: dict[str, list[tuple[str, float]]]
    user_source: dict[str, str]  # where each cached list's first item came from
    popular: list[tuple[str, float]]
    similar: dict[str, list[tuple[str, float]]]
    similar_version: str | None  # its own: similar_items can be cached while recommendations are empty
    nothing_left: frozenset[str] = frozenset()


def _grouped(df: pl.DataFrame, key: str, item: str) -> dict[str, list[tuple[str, float]]]:
    """key -> [(item, score)] in rank order, built by polars, not a Python loop over rows."""
    if df.height == 0:
        return {}
    lists = df.sort(key, "rank").group_by(key, maintain_order=True).agg(pl.col(item), pl.col("score"))
    return {k: list(zip(items, scores)) for k, items, scores in lists.iter_rows()}


class RecommendationCache:
    def __init__(self, lake: Lake | Path, check_every_seconds: float | None = None, log_errors: bool = True) -> None:
        self.log_errors = log_errors  # the CLI says it in its own one line
        self.lake = LocalLake(lake) if isinstance(lake, Path) else lake
        self.check_every = CHECK_SECONDS[self.lake.remote] if check_every_seconds is None else check_every_seconds
        self._snapshot: Snapshot | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self._bad_stamp: tuple | None = None
        self._bad_since = 0.0
        self._error = ""

    def _stamp(self) -> tuple:
        """What identifies each file's version: a file replaced or repaired in place changes it."""
        stamps = []
        for name in CACHES:
            stat = self.lake.stat(name)
            stamps.append((name, stat.version if stat else None))
        return tuple(stamps)

    def _load(self, stamp: tuple) -> Snapshot:
        recs, popular, similar = (self.lake.read(name) if version else None for name, version in stamp)
        recs, popular, similar = (df if df is not None else pl.DataFrame() for df in (recs, popular, similar))
        footer = (self.lake.footer("recommendations") or {}) if stamp[0][1] else {}
        version = recs["model_version"][0] if recs.height else footer.get(MODEL_VERSION_KEY)
        nothing_left = json.loads(footer.get(NOTHING_LEFT_KEY, "[]"))
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
            nothing_left=frozenset(nothing_left),
        )

    def snapshot(self) -> Snapshot:
        """The current snapshot, reloaded first if the files changed (checked every few seconds)."""
        now = time.monotonic()
        if self._snapshot is not None and now - self._checked < self.check_every:
            return self._snapshot
        with self._lock:
            self._checked = now
            stamp = self._stamp()
            # The same damaged files: read again once they change, or after a while (the error
            # may have been passing: out of file descriptors, a network filesystem's hiccup).
            if stamp == self._bad_stamp and now - self._bad_since < RETRY_DAMAGED_SECONDS:
                return self._last_good()
            if self._snapshot is None or stamp != self._snapshot.stamp:
                try:
                    self._snapshot = self._load(stamp)
                except Exception as error:  # QA: a truncated file answered 500 at every check
                    if stamp != self._bad_stamp and self.log_errors:
                        log.error("cannot read the cached recommendations (%s: %s); %s", type(error).__name__, error,
                                  "still serving the last good ones" if self._snapshot else "answering 503 until they can be read")
                    self._bad_stamp, self._bad_since, self._error = stamp, now, f"{type(error).__name__}: {error}"
                    return self._last_good()
        return self._snapshot

    def _last_good(self) -> Snapshot:
        if self._snapshot is None:
            raise CacheUnreadable(f"the cached recommendations under {self.lake} cannot be read ({self._error}): "
                                  "rebuild them (amp-personalize train)")
        return self._snapshot

    def recommend(self, user_id: str, n: int) -> tuple[list[tuple[str, float]], str, str | None]:
        """(items, source, model_version): the user's cached list, else popular items; no items
        with a model version for a user with nothing left to offer (see NOTHING_LEFT_KEY)."""
        snap = self.snapshot()
        if user_id in snap.nothing_left:
            return [], "none", snap.model_version
        items = snap.by_user.get(user_id)
        if items:  # a list that is all popularity backfill (a user the model barely knew) says so
            return items[:n], snap.user_source.get(user_id, "model"), snap.model_version
        return snap.popular[:n], "popularity", snap.model_version

    def similar(self, item_id: str, n: int) -> tuple[list[tuple[str, float]] | None, str | None]:
        """(items or None if the item is not cached, model_version or None if nothing is cached)."""
        snap = self.snapshot()
        items = snap.similar.get(item_id)
        return (items[:n] if items is not None else None), snap.similar_version
