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
