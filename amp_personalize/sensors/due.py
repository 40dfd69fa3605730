"""Which windows a pass builds: the ready ones not built yet (or changed since), and, with the
landing on S3, the built ones a late volume made stale. The landing sensor and `process` share it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import dagster as dg

from amp_personalize.assets.partitions import START
from amp_personalize.assets.raw_events import is_due
from amp_personalize.lake.store import lake as lake_store
from amp_personalize.landing.source import S3Landing, landing_source
from amp_personalize.sensors.plan import WindowPlan, plan_now, planning_start
from amp_personalize.sensors.shipped import late_candidates, plan_shipped_windows, record_checked
from amp_personalize.settings import Settings


@dataclass
class DueWindows:
    plan: WindowPlan
    due: list[str] = field(default_factory=list)  # oldest first
    stale: list[str] = field(default_factory=list)  # built, and due again (a subset of `due`)
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
    source, lake = landing_source(settings), lake_store(settings)

    def due(window: str) -> bool:
        return rebuild or is_due(source, lake, window, built, settings.window_minutes, settings.dedupe_lookback_hours)

    if not isinstance(source, S3Landing):
        plan = plan_now(settings, START, watermark=watermark, include_open=include_open)
        return DueWindows(plan, [w for w in plan.ready if due(w)])
    volumes = source.volumes()  # before the windows are listed (see sensors.shipped)
    plan = plan_shipped_windows(
        source, volumes, int(time.time() * 1000), settings.window_minutes, settings.grace_seconds,
        settings.volume_dead_after_seconds, watermark=watermark, shipped_before_ms=shipped_before_ms,
        partitions_start_ms=planning_start(settings, START).ms,
    )
    late_from, progress = late_candidates(instance, volumes, settings.window_minutes)
    ready = [w for w in plan.ready if due(w)]
    looked_at = set(plan.ready)
    stale = [w for w in sorted(built) if late_from is not None and w >= late_from and w not in looked_at and due(w)]
    return DueWindows(plan, sorted({*ready, *stale}), [w for w in sorted({*ready, *stale}) if w in built], progress)
