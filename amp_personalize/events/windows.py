"""Landing windows: the time partitions every landed event belongs to, by receive time.

Windows are aligned to UTC midnight so that their keys match Dagster's time-window partitions.
The key format has no ':' or '-' so it is safe as a directory name on any filesystem and on S3.
"""

from __future__ import annotations

from datetime import datetime, timezone

WINDOW_KEY_FORMAT = "%Y%m%dT%H%MZ"


def window_of(ts_ms: int, window_minutes: int) -> int:
    """Start (epoch ms) of the window holding ts_ms."""
    width = window_minutes * 60_000
    return ts_ms - ts_ms % width


def window_key(start_ms: int) -> str:
    return datetime.fromtimestamp(start_ms / 1000, tz=timezone.utc).strftime(WINDOW_KEY_FORMAT)


def window_start_ms(key: str) -> int:
    parsed = datetime.strptime(key, WINDOW_KEY_FORMAT).replace(tzinfo=timezone.utc)
    return int(parsed.timestamp() * 1000)
