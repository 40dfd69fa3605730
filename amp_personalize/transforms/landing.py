"""Reading landed segments with an explicit schema (no inference, no surprises across windows)."""

from __future__ import annotations

from pathlib import Path

import orjson
import polars as pl

# The receiver's extracted fields (amp_personalize.events.fields.extract) plus `received_at`.
# The raw `event` is left out on purpose: parsing it doubles read time, and `properties` keeps
# what the datasets need of it. A test holds this in step with `extract`.
LANDED_SCHEMA: dict[str, pl.DataType] = {
    "kind": pl.String(),
    "event_id": pl.String(),
    "event_type": pl.String(),
    "user_id": pl.String(),
    "device_id": pl.String(),
    "session_id": pl.Int64(),
    "event_time": pl.Int64(),
    "item_id": pl.String(),
    "items_shown": pl.List(pl.String()),
    "feed_type": pl.String(),
    "recommendation_id": pl.String(),
    "properties": pl.String(),
    "received_at": pl.Int64(),
}


def empty_landing() -> pl.DataFrame:
    return pl.DataFrame(schema=LANDED_SCHEMA)


def _valid_lines(data: bytes) -> tuple[bytes, int]:
    """Drop lines that are not JSON objects; the slow path, taken only for a damaged segment."""
    good, bad = [], 0
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            ok = isinstance(orjson.loads(line), dict)
        except orjson.JSONDecodeError:
            ok = False
        if ok:
            good.append(line)
        else:
            bad += 1
    return b"\n".join(good) + b"\n" if good else b"", bad


def read_landing(paths: list[Path]) -> tuple[pl.DataFrame, int]:
    """All lines of the given sealed segments, and how many malformed lines were dropped.

    Sealed segments end in a newline by construction (recovery quarantines torn tails), so the
    fast path reads them all at once; a segment damaged some other way (a disk error, a file
    copied by hand) is read line by line and its bad lines are counted, never fatal.
    """
    paths = [p for p in paths if p.stat().st_size]
    if not paths:
        return empty_landing(), 0
    try:
        return pl.read_ndjson(paths, schema=LANDED_SCHEMA), 0
    except pl.exceptions.PolarsError:
        pass
    frames, malformed = [], 0
    for path in paths:
        data, bad = _valid_lines(path.read_bytes())
        malformed += bad
        if data:
            frames.append(pl.read_ndjson(data, schema=LANDED_SCHEMA))
    return (pl.concat(frames) if frames else empty_landing()), malformed
