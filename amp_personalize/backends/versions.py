"""Model versions under data/models/: one folder per version, LATEST names the live one.

LATEST is replaced atomically, so a reader (the receiver's cache, the caching assets) sees the
old version or the new one, never a half-written folder.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import Callable

from amp_personalize.backends.base import TrainedModel
from amp_personalize.landing.segments import fsync_dir

LATEST = "LATEST"


def new_version(as_of: datetime) -> str:
    return f"{as_of:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def write_meta(directory: Path, meta: dict) -> None:
    (directory / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))


def read_meta(directory: Path) -> dict:
    return json.loads((directory / "meta.json").read_text())


def publish_latest(models_dir: Path, version: str) -> None:
    tmp = models_dir / f".{LATEST}.tmp-{os.getpid()}"
    tmp.write_text(version + "\n")
    os.replace(tmp, models_dir / LATEST)
    fsync_dir(models_dir)


def publish_version(
    models_dir: Path, as_of: datetime, backend: str, metrics: dict, info: dict, write_files: Callable[[Path], None]
) -> TrainedModel:
    """A new version folder (the backend's files, then meta.json), then LATEST pointed at it."""
    version = new_version(as_of)
    directory = models_dir / version
    directory.mkdir(parents=True)
    write_files(directory)
    write_meta(directory, {"version": version, "backend": backend, "metrics": metrics, "info": info, "as_of": as_of})
    publish_latest(models_dir, version)
    return TrainedModel(version, backend, directory, metrics, info)


def load_version(path: Path) -> TrainedModel:
    meta = read_meta(path)
    return TrainedModel(meta["version"], meta["backend"], path, meta.get("metrics", {}), meta.get("info", {}))


def latest_version(models_dir: Path) -> str | None:
    try:
        return (models_dir / LATEST).read_text().strip() or None
    except FileNotFoundError:
        return None
