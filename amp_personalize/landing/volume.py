"""A data directory's stable id: what names its segments and its watermark in S3.

Host names and pids change when a receiver restarts or moves; the volume (an EBS volume, a
Kubernetes PersistentVolume) and what it holds do not. Created once, never changed.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from amp_personalize.landing.segments import ensure_dir, fsync_dir, fsync_file

VOLUME_ID_FILE = "volume_id"
_VALID = re.compile(r"^[a-z0-9][a-z0-9-]{3,62}$")


class VolumeIdError(Exception):
    pass


def volume_id(data_dir: Path) -> str:
    """This data directory's id, created (durably, once, whoever comes first) if it has none."""
    path = data_dir / VOLUME_ID_FILE
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    ensure_dir(data_dir)
    tmp = data_dir / f".{VOLUME_ID_FILE}.tmp-{os.getpid()}"
    tmp.write_text(f"v-{secrets.token_hex(8)}\n")
    fsync_file(tmp)
    try:
        os.link(tmp, path)  # never replaces an id another process created first
        fsync_dir(data_dir)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return _read(path)


def _read(path: Path) -> str:
    value = path.read_text().strip()
    if not _VALID.match(value):
        raise VolumeIdError(f"{path} holds {value[:80]!r}, not a volume id (lowercase letters, digits and '-'): restore it, or delete it for a new id")
    return value
