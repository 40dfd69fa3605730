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


def latest_version(models_dir: Path) -> str | None:
    try:
        return (models_dir / LATEST).read_text().strip() or None
    except FileNotFoundError:
        return None
