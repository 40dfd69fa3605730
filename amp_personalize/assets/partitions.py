"""Time-window partitions on landing (receive) time, keyed exactly like landing directories."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg

from amp_personalize.events.windows import WINDOW_KEY_FORMAT, window_of, window_start_ms
from amp_personalize.lake.store import lake
from amp_personalize.landing.source import landing_source
from amp_personalize.settings import Settings, parse_partitions_start

# Beside the data it describes, like volume_id: the earliest window this data directory ever had.
PINNED_START = "partitions_start"


@dataclass(frozen=True)
class PartitionsStart:
    ms: int  # the first window partition's start, epoch ms UTC
    source: str  # what set it, for the reason a window before it is passed over


def window_cron(window_minutes: int) -> str:
    if window_minutes < 60:
        return f"*/{window_minutes} * * * *"
    return f"0 */{window_minutes // 60} * * *"


def _earliest_window(settings: Settings) -> int | None:
    """The start of the oldest window landed (here or, with AMP_LANDING_URL, on S3) or built
    into the lake (here or AMP_LAKE_URL), if any."""
    keys = landing_source(settings).windows()[:1] + lake(settings).partitions("raw_events")[:1]
    starts = []
    for key in keys:
        try:
            starts.append(window_start_ms(key))
        except ValueError:  # a folder or file that is not a window
            pass
    return min(starts, default=None)


def _read_pin(path: Path) -> int | None:
    try:
        return parse_partitions_start(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _write_pin(path: Path, start_ms: int) -> None:
    """Best effort: a data directory the code location cannot write (say, read-only) keeps
    working, with the start found again from the data at each load."""
    text = datetime.fromtimestamp(start_ms / 1000, tz=timezone.utc).isoformat() + "\n"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def partitions_start(settings: Settings, now_ms: int | None = None) -> PartitionsStart:
    """AMP_PARTITIONS_START if set; else where this data directory's data begins.

    That is the oldest window landed or built, pinned in <data>/partitions_start so the start
    never moves later (deleting old landing folders or lake files must not hide partitions
    Dagster has materializations of), and moved earlier when older windows turn up (a restored
    backup, `make demo`). Receive times are never in the past, so with no data yet the current
    window is the first any receiver can land in. Rounded down to the window width, so a width
    change keeps every window of the new width inside.
    """
    width = settings.window_minutes
    if settings.partitions_start_ms is not None:
        return PartitionsStart(settings.partitions_start_ms, "AMP_PARTITIONS_START")
    pin_path = settings.data_dir / PINNED_START
    pinned = _read_pin(pin_path)
    found = [ms for ms in (pinned, _earliest_window(settings)) if ms is not None]
    if not found:
        now_ms = int(datetime.now(timezone.utc).timestamp() * 1000) if now_ms is None else now_ms
        return PartitionsStart(window_of(now_ms, width), "the current window (no data landed yet when the code location loaded)")
    earliest = min(found)
    if earliest != pinned:
        _write_pin(pin_path, earliest)
    return PartitionsStart(window_of(earliest, width), f"the earliest landed window ({pin_path})")


def window_partitions(settings: Settings, start: PartitionsStart | None = None) -> dg.TimeWindowPartitionsDefinition:
    start = start or partitions_start(settings)
    # end_offset=1 makes the open window a partition too, for `process --all-windows`.
    return dg.TimeWindowPartitionsDefinition(
        cron_schedule=window_cron(settings.window_minutes),
        start=datetime.fromtimestamp(start.ms / 1000, tz=timezone.utc),
        fmt=WINDOW_KEY_FORMAT,
        timezone="UTC",
        end_offset=1,
    )


# Read once, when the code location loads: the sensor and `process` plan against this start, so
# what they request is always a partition of the definition they run with.
_SETTINGS = Settings.from_env()
START = partitions_start(_SETTINGS)
WINDOWS = window_partitions(_SETTINGS, START)


def reads_every_window(asset: str) -> dg.AssetDep:
    """The lineage edge from a windowed dataset to an unpartitioned asset that reads the lake itself.

    Not Dagster's default AllPartitionMapping: with it every run lists every window since
    the partitions' start to look up its inputs' data versions, and past 100 partitions uses only
    the latest materialization anyway. With 5-minute windows that listing alone took 7 s of a
    user_item_scores refresh (200,000 keys), and it grows with every window. The last window's
    mapping keeps the edge in the UI and costs one key.
    """
    return dg.AssetDep(asset, partition_mapping=dg.LastPartitionMapping())


# The window assets' concurrency pool: with deploy/dagster.yaml's pools (run granularity, limit 1)
# one window run at a time, whoever starts it (the landing sensor, the UI, a backfill).
WINDOW_POOL = "amp_windows"
