"""Model versions under data/models/: one folder per version, LATEST names the live one.

LATEST is replaced atomically, so a reader (the receiver's cache, the caching assets) sees the
old version or the new one, never a half-written folder.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Callable

from amp_personalize.backends.base import TrainedModel
from amp_personalize.landing.segments import fsync_dir, fsync_file

LATEST = "LATEST"
# Versions kept on disk, the live one always among them: enough to look back or roll back by
# hand (point LATEST at one), without a daily retraining filling the disk (QA: 11 MB each for
# the demo, up to 64 MB of dense EASE weights at 4,000 items, never deleted).
KEEP_VERSIONS = 5
_VERSION = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")


def new_version(as_of: datetime) -> str:
    return f"{as_of:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def write_meta(directory: Path, meta: dict) -> None:
    (directory / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))


def read_meta(directory: Path) -> dict:
    return json.loads((directory / "meta.json").read_text())


def publish_latest(models_dir: Path, version: str) -> None:
    tmp = models_dir / f".{LATEST}.tmp-{os.getpid()}"
    tmp.write_text(version + "\n")
    fsync_file(tmp)
    os.replace(tmp, models_dir / LATEST)
    fsync_dir(models_dir)


def _fsync_folder(directory: Path) -> None:
    """Every file of a version on disk before LATEST names it: after a power cut LATEST must not
    name a folder of empty files (only the folder entries were synced before)."""
    for path in directory.iterdir():
        if path.is_file():
            fsync_file(path)
    fsync_dir(directory)


# A folder without meta.json younger than this is a training still writing it (another `train`,
# the schedule); older, one that was killed.
UNFINISHED_GRACE_SECONDS = 3600


def prune_versions(models_dir: Path, keep: int = KEEP_VERSIONS) -> list[str]:
    """Delete all but the newest `keep` finished versions (names sort by time) and the live one;
    the folders of killed trainings too, but not one a training may still be writing."""
    live = latest_version(models_dir)
    folders = sorted(p for p in models_dir.iterdir() if p.is_dir() and _VERSION.match(p.name))
    finished = [p.name for p in folders if (p / "meta.json").exists()]
    kept = {*finished[-keep:], live} if keep > 0 else {live}
    now = time.time()
    doomed = [p.name for p in folders if p.name not in kept
              and (p.name in finished or now - p.stat().st_mtime > UNFINISHED_GRACE_SECONDS)]
    for version in doomed:
        shutil.rmtree(models_dir / version, ignore_errors=True)
    return doomed


def publish_version(
    models_dir: Path, as_of: datetime, backend: str, metrics: dict, info: dict, write_files: Callable[[Path], None]
) -> TrainedModel:
    """A new version folder (the backend's files, then meta.json), then LATEST pointed at it."""
    version = new_version(as_of)
    directory = models_dir / version
    directory.mkdir(parents=True)
    write_files(directory)
    write_meta(directory, {"version": version, "backend": backend, "metrics": metrics, "info": info, "as_of": as_of})
    _fsync_folder(directory)
    publish_latest(models_dir, version)
    prune_versions(models_dir)
    return TrainedModel(version, backend, directory, metrics, info)


def load_version(path: Path) -> TrainedModel:
    meta = read_meta(path)
    return TrainedModel(meta["version"], meta["backend"], path, meta.get("metrics", {}), meta.get("info", {}))


def latest_version(models_dir: Path) -> str | None:
    try:
        return (models_dir / LATEST).read_text().strip() or None
    except FileNotFoundError:
        return None
