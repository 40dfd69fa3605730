"""Time-window partitions on landing (receive) time, keyed exactly like landing directories."""

from __future__ import annotations

from datetime import datetime, timezone

import dagster as dg

from amp_personalize.events.windows import WINDOW_KEY_FORMAT
from amp_personalize.settings import Settings


def window_cron(window_minutes: int) -> str:
    if window_minutes < 60:
        return f"*/{window_minutes} * * * *"
    return f"0 */{window_minutes // 60} * * *"


def window_partitions(settings: Settings) -> dg.TimeWindowPartitionsDefinition:
    # end_offset=1 makes the open window a partition too, for `process --all-windows`.
    return dg.TimeWindowPartitionsDefinition(
        cron_schedule=window_cron(settings.window_minutes),
        start=datetime.fromtimestamp(settings.partitions_start_ms / 1000, tz=timezone.utc),
        fmt=WINDOW_KEY_FORMAT,
        timezone="UTC",
        end_offset=1,
    )


WINDOWS = window_partitions(Settings.from_env())


def reads_every_window(asset: str) -> dg.AssetDep:
    """The lineage edge from a windowed dataset to an unpartitioned asset that reads the lake itself.

    Not Dagster's default AllPartitionMapping: with it every run lists every window since
    AMP_PARTITIONS_START to look up its inputs' data versions, and past 100 partitions uses only
    the latest materialization anyway. With 5-minute windows that listing alone took 7 s of a
    user_item_scores refresh (200,000 keys), and it grows with every window. The last window's
    mapping keeps the edge in the UI and costs one key.
    """
    return dg.AssetDep(asset, partition_mapping=dg.LastPartitionMapping())
