"""Closing windows across volumes: which S3-shipped windows are ready, and which built ones
turned stale when a volume shipped late (SPEC section 9).

A volume's watermark says every event it received before `complete_before_ms` is in S3. A
window is ready once it is closed, past its grace period, and every *live* volume (status
`live`, heartbeat within AMP_VOLUME_DEAD_AFTER_SECONDS) has shipped through its end. Stopped and
dead volumes are not waited for, as Flink treats idle sources: what they ship later lands in
windows already built, which makes those windows stale, and they are built again.

The volumes are read before the windows are listed: whatever a volume's watermark covers was
in S3 before the listing started, so no window can look complete without its segments.
"""

from __future__ import annotations

import json

import dagster as dg

from amp_personalize.events.windows import window_key, window_of, window_start_ms
from amp_personalize.landing.source import S3Landing, Volume
from amp_personalize.sensors.plan import WindowPlan, utc_time

# Per volume, the watermark whose windows have been looked at for late segments: in the Dagster
# instance (Postgres in production), so the sensor and `process` share it.
PROGRESS_KEY = "amp/landing/volumes_checked"


def _names(volumes: list[Volume]) -> str:
    return ", ".join(v.volume_id for v in volumes)


def plan_shipped_windows(
    source: S3Landing,
    volumes: list[Volume],
    now_ms: int,
    window_minutes: int,
    grace_seconds: float,
    dead_after_seconds: float,
    watermark: str | None = None,
    shipped_before_ms: int | None = None,
    partitions_start_ms: int | None = None,
) -> WindowPlan:
    """Windows in S3 after `watermark`, oldest first, that every live volume has shipped.

    `shipped_before_ms` (`process --all-windows`) takes the open window too, and any not yet
    past its grace, once every live volume has shipped what it received before that time.
    """
    plan = WindowPlan(watermark=watermark)
    width = window_minutes * 60_000
    live = [v for v in volumes if v.status == "live" and v.fresh(now_ms, dead_after_seconds)]
    dead = [v for v in volumes if v.status == "live" and not v.fresh(now_ms, dead_after_seconds)]
    passed_over: list[str] = []
    for window in source.windows(after=watermark):
        start = window_start_ms(window)
        if start % width or (partitions_start_ms is not None and start < partitions_start_ms):
            passed_over.append(window)  # another width, or before the first partition: never a partition here
            plan.watermark = window
            continue
        closes, settled = start + width, start + width + int(grace_seconds * 1000)
        if shipped_before_ms is None:
            if now_ms < closes:
                plan.waiting.append((window, f"window {window} is open until {utc_time(closes)}"))
                break
            if now_ms < settled:
                plan.waiting.append((window, f"window {window} closed; grace period until {utc_time(settled)}"))
                break
        needed = closes if shipped_before_ms is None else min(closes, shipped_before_ms)
        behind = [v for v in live if v.complete_before_ms < needed]
        if behind:
            plan.waiting.append((window, (
                f"window {window} waits for volume(s) {_names(behind)} to ship it "
                f"(shipped what they received before {utc_time(min(v.complete_before_ms for v in behind))})"
            )))
            break
        plan.ready.append(window)
        if now_ms >= settled:
            plan.watermark = window
    if dead:
        plan.waiting.insert(0, ("", (
            f"volume(s) {_names(dead)}: no heartbeat for over AMP_VOLUME_DEAD_AFTER_SECONDS={dead_after_seconds:g}: windows "
            "close without them, and what they ship when they return builds the windows it belongs to again"
        )))
    if passed_over:
        plan.waiting.insert(0, (passed_over[0], (
            f"{len(passed_over)} shipped window(s) ({passed_over[0]} to {passed_over[-1]}) are of another AMP_WINDOW_MINUTES "
            "or begin before the first partition: they have no partition and are not processed"
        )))
    return plan


def checked(instance: dg.DagsterInstance) -> dict[str, int]:
    raw = instance.run_storage.get_cursor_values({PROGRESS_KEY}).get(PROGRESS_KEY)
    return json.loads(raw) if raw else {}


def late_candidates(instance: dg.DagsterInstance, volumes: list[Volume], window_minutes: int) -> tuple[str | None, dict[str, int]]:
    """The oldest window that may have gained segments since it was last looked at, and the
    progress to record once everything from it on has been looked at.

    What a volume shipped since its watermark was last seen at T was received at T or later:
    the windows from T's on are the only ones it can have made stale.
    """
    # A volume never seen before: from its oldest segment (review: from 1970 every built window
    # was listed again, about 30 requests each).
    seen = {v.volume_id: v.since_ms for v in volumes} | checked(instance)
    since = [seen[v.volume_id] for v in volumes if v.complete_before_ms > seen[v.volume_id]]
    progress = {**seen, **{v.volume_id: v.complete_before_ms for v in volumes}}
    if not since:
        return None, progress
    return window_key(window_of(min(since), window_minutes)), progress


def record_checked(instance: dg.DagsterInstance, progress: dict[str, int], stale: list[str]) -> None:
    """Progress as looked at; held back to before the oldest window still stale, so that one is
    looked at again until its rebuild has read its late segments."""
    if stale:
        hold = window_start_ms(min(stale))
        progress = {volume: min(at, hold) for volume, at in progress.items()}
    instance.run_storage.set_cursor_values({PROGRESS_KEY: json.dumps(progress, sort_keys=True)})
