"""Which landing windows are ready to process: the landing sensor's logic, and `process`'s.

Pure bookkeeping over directory listings (plus sealing segments a crashed receiver left open):
no event is read here, the reading happens in runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from amp_personalize.assets.partitions import PartitionsStart
from amp_personalize.events.windows import window_start_ms
from amp_personalize.landing.segments import (
    landing_windows,
    open_segments,
    recover,
    sealed_segments,
)
from amp_personalize.settings import Settings


@dataclass
class WindowPlan:
    ready: list[str] = field(default_factory=list)
    waiting: list[tuple[str, str]] = field(default_factory=list)  # (window, why it is not ready)
    watermark: str | None = None  # the newest window that needs no further look


def utc_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def plan_windows(
    landing_dir: Path,
    quarantine_dir: Path,
    now_ms: int,
    window_minutes: int,
    grace_seconds: float,
    watermark: str | None = None,
    include_open: bool = False,
    partitions_start_ms: int | None = None,
    partitions_start_source: str = "AMP_PARTITIONS_START",
) -> WindowPlan:
    """Windows after `watermark`, oldest first, that are closed, past the grace period and sealed.

    Stops at the first window that is not ready, so the watermark only ever moves over a
    contiguous run of settled windows and a restart from a saved cursor misses nothing.
    With include_open the still-open window counts as ready once its segments are sealed.
    Windows starting before `partitions_start_ms` have no partition to run: they are passed
    over, with one line in `waiting` saying so.
    """
    plan = WindowPlan(watermark=watermark)
    width = window_minutes * 60_000
    before_start: list[str] = []
    other_width: list[str] = []  # landed while AMP_WINDOW_MINUTES was another width
    for window in landing_windows(landing_dir):
        if watermark is not None and window <= watermark:
            continue
        if window_start_ms(window) % width:
            other_width.append(window)
            plan.watermark = window  # never a partition under these settings: nothing to wait for
            continue
        if partitions_start_ms is not None and window_start_ms(window) < partitions_start_ms:
            before_start.append(window)
            plan.watermark = window
            continue
        closes = window_start_ms(window) + width
        settled = closes + int(grace_seconds * 1000)
        if now_ms < closes and not include_open:
            plan.waiting.append((window, f"window {window} is open until {utc_time(closes)}"))
            break
        if now_ms < settled and not include_open:
            plan.waiting.append((window, f"window {window} closed; grace period until {utc_time(settled)}"))
            break
        left_open = []
        if open_segments(landing_dir, window):
            left_open = recover(landing_dir, quarantine_dir, window).left_open  # seals only what no live receiver holds
        still_open = open_segments(landing_dir, window)
        if left_open:
            path, why = left_open[0]
            plan.waiting.append((window, f"window {window}: recovery could not seal {path.name} ({why})"))
            break
        if still_open:
            plan.waiting.append((window, f"window {window} has {len(still_open)} segment(s) still being written"))
            break
        if sealed_segments(landing_dir, window):
            plan.ready.append(window)
        if now_ms >= settled:
            plan.watermark = window
    if before_start:
        if partitions_start_source == "AMP_PARTITIONS_START":
            fix = "with an earlier AMP_PARTITIONS_START"
        else:  # older windows turned up after the code location loaded: its next load starts with them
            fix = "after the code location is reloaded (Deployment > Reload in the UI, or restart `make up`)"
        plan.waiting.insert(0, (before_start[0], (
            f"{len(before_start)} landing window(s) ({_span(before_start)}) begin before the first partition "
            f"({utc_time(partitions_start_ms)}, from {partitions_start_source}), so they have no partition and are not "
            f"processed; {fix}, `amp-personalize process` picks them up (the sensor has moved past them)"
        )))
    if other_width:
        plan.waiting.insert(0, (other_width[0], (
            f"{len(other_width)} landing window(s) ({_span(other_width)}) do not start on a {window_minutes}-minute "
            "boundary: they were landed while AMP_WINDOW_MINUTES was another width, so they have no partition "
            "and are not processed; with AMP_WINDOW_MINUTES set back to that width, `amp-personalize process` "
            "picks them up (the sensor has moved past them)"
        )))
    return plan


def _span(windows: list[str]) -> str:
    return windows[0] if len(windows) == 1 else f"{windows[0]} to {windows[-1]}"


def planning_start(settings: Settings, start: PartitionsStart) -> PartitionsStart:
    """`start`, the loaded definition's (assets/partitions.py START), so every window planned is
    one of its partitions; or the settings' AMP_PARTITIONS_START where that is later (a resource
    configured apart from the environment the definition was loaded from)."""
    configured = settings.partitions_start_ms
    return PartitionsStart(configured, "AMP_PARTITIONS_START") if configured is not None and configured > start.ms else start


def plan_now(
    settings: Settings, start: PartitionsStart, watermark: str | None = None, include_open: bool = False
) -> WindowPlan:
    """plan_windows for these settings at the current time, for partitions from `start` (see planning_start)."""
    start = planning_start(settings, start)
    return plan_windows(
        settings.landing_dir,
        settings.quarantine_dir,
        now_ms=int(time.time() * 1000),
        window_minutes=settings.window_minutes,
        grace_seconds=settings.grace_seconds,
        watermark=watermark,
        include_open=include_open,
        partitions_start_ms=start.ms,
        partitions_start_source=start.source,
    )
