"""Which windows a pass builds: the ready ones not built yet (or changed since), and, with the
landing on S3, the built ones a late volume made stale. The landing sensor and `process` share it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import dagster as dg

from amp_personalize.assets.partitions import START
from amp_personalize.assets.raw_events import is_due
from amp_personalize.events.windows import window_key, window_start_ms
from amp_personalize.lake.store import LakeIndex
from amp_personalize.lake.store import lake as lake_store
from amp_personalize.landing.source import S3Landing, landing_source
from amp_personalize.sensors.plan import WindowPlan, plan_now, planning_start
from amp_personalize.sensors.shipped import late_candidates, plan_shipped_windows, record_checked
from amp_personalize.settings import Settings


@dataclass
class DueWindows:
    plan: WindowPlan
    due: list[str] = field(default_factory=list)  # oldest first
    stale: list[str] = field(default_factory=list)  # due for what a late volume shipped (a subset of `due`)
    progress: dict[str, int] | None = None  # S3: the volumes' watermarks looked at (see record)

    def record(self, instance: dg.DagsterInstance, still_stale: list[str] | None = None) -> None:
        """What this pass looked at for late segments, held back to before what is still stale."""
        if self.progress is not None:
            record_checked(instance, self.progress, self.stale if still_stale is None else still_stale)


def windows_due(
    settings: Settings,
    instance: dg.DagsterInstance,
    built: set[str],
    watermark: str | None = None,
    include_open: bool = False,
    shipped_before_ms: int | None = None,
    rebuild: bool = False,
) -> DueWindows:
    source, lake = landing_source(settings), LakeIndex(lake_store(settings))

    def due(window: str, segments_may_have_changed: bool = True) -> bool:
        return rebuild or is_due(source, lake, window, built, settings.window_minutes, settings.dedupe_lookback_hours,
                                 segments_may_have_changed)

    if not isinstance(source, S3Landing):
        plan = plan_now(settings, START, watermark=watermark, include_open=include_open)
        return DueWindows(plan, [w for w in plan.ready if due(w)])
    volumes = source.volumes()  # before the windows are listed (see sensors.shipped)
    start_ms = planning_start(settings, START).ms
    plan = plan_shipped_windows(
        source, volumes, int(time.time() * 1000), settings.window_minutes, settings.grace_seconds,
        settings.volume_dead_after_seconds, watermark=watermark, shipped_before_ms=shipped_before_ms,
        partitions_start_ms=start_ms,
    )
    late_from, progress = late_candidates(instance, volumes, settings.window_minutes)

    def late(window: str) -> bool:
        return late_from is not None and window >= late_from

    # A built window gains segments only from a late volume: its segments are listed only then.
    ready = [w for w in plan.ready if due(w, segments_may_have_changed=late(w) or w not in built)]
    # Behind the watermark, what a late volume shipped since it was last looked at: windows built
    # before it shipped, and windows it alone had, never built (review: the sensor had passed them).
    behind = set()
    if late_from is not None:
        width = settings.window_minutes * 60_000
        listed = source.windows(after=window_key(window_start_ms(late_from) - 60_000))
        behind = {w for w in listed if plan.watermark is not None and w <= plan.watermark
                  and not window_start_ms(w) % width and (start_ms is None or window_start_ms(w) >= start_ms)}
        behind |= {w for w in built if late(w)}
    stale = [w for w in sorted(behind - set(plan.ready)) if due(w)]
    # Rebuilt with late segments, a window makes the ones after it due (raw_events.after_late_rebuild);
    # those behind the watermark are found here as long as the progress is held (DueWindows.record).
    due_windows = sorted({*ready, *stale})
    return DueWindows(plan, due_windows, [w for w in due_windows if w in built or w in behind], progress)
