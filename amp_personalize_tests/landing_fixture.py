"""Landing segments written by hand, in exactly the format the receiver lands."""

from __future__ import annotations

from pathlib import Path

import orjson

from amp_personalize.events import extract
from amp_personalize.events.windows import window_start_ms
from amp_personalize.landing.segments import OPEN_SUFFIX, SEALED_SUFFIX


def landed_line(event: dict, received_at: int) -> bytes:
    return orjson.dumps(extract(event, "event"))[:-1] + b',"received_at":%d}\n' % received_at


def write_segment(
    data_dir: Path,
    window: str,
    events: list[dict],
    name: str = "0000000000001-fixture-000001",
    offset_ms: int = 1000,
    tail: bytes = b"",
    sealed: bool = True,
) -> Path:
    """Events received `offset_ms` apart from the window's start, optionally a raw tail."""
    start = window_start_ms(window)
    directory = data_dir / "landing" / window
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (name + (SEALED_SUFFIX if sealed else OPEN_SUFFIX))
    body = b"".join(landed_line(e, start + offset_ms * (i + 1)) for i, e in enumerate(events))
    path.write_bytes(body + tail)
    return path
