"""Live events for Personalize: sealed landing segments not yet pushed, as PutEvents calls.

User-Personalization adapts to a session within seconds, so this path does not wait for the
hourly window: it reads sealed segments straight from landing (this machine's, or what the
volumes shipped to AMP_LANDING_URL), with the same reader, dedupe and weights as the window assets. Only the last LIVE_HOURS of windows are live; anything older that
never got pushed reaches Personalize through the bulk import at the next training.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson
import polars as pl

from amp_personalize.backends.personalize.ids import fit_id
from amp_personalize.backends.personalize.impressions import attach_impressions
from amp_personalize.backends.personalize.ledger import Ledger
from amp_personalize.backends.personalize.push import PushStats, push
from amp_personalize.backends.personalize.put_events import (
    EVENTS_SCHEMA,
    put_events_requests,
)
from amp_personalize.events.windows import window_key, window_of
from amp_personalize.landing.source import LandingSource, Segment
from amp_personalize.transforms import UTC_MS, ids_shown, n_shown
from amp_personalize.transforms.interactions import weighted
from amp_personalize.transforms.landing import read_landing
from amp_personalize.transforms.raw_events import raw_events

LIVE_HOURS = 24
MAX_SEGMENTS_PER_RUN = 500  # bounds a run's memory after an outage; the next run takes the rest
REMEMBER_MS = 4 * 3_600_000  # how long impressions wait in the ledger for the click that follows


def segment_name(segment: Segment) -> str:
    """The ledger's name for a segment: `<window>/<file>`, or `<window>/<volume>/<file>` on S3."""
    return f"{segment.window}/{segment.name}"


def pending_segments(source: LandingSource, ledger: Ledger, window_minutes: int) -> list[Segment]:
    """Sealed segments of the live windows whose events are not all in Personalize yet, oldest first."""
    since = window_key(window_of(int(time.time() * 1000) - LIVE_HOURS * 3_600_000, window_minutes))
    done = ledger.done_segments(since)
    return [
        segment
        for window in source.windows() if window >= since
        for segment in source.segments(window) if segment_name(segment) not in done
    ]


SHOWN_SCHEMA = {"user_id": pl.String(), "event_time": UTC_MS, "items_shown": pl.List(pl.String())}


def push_frame(raw: pl.DataFrame, weights: pl.DataFrame, earlier_shown: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Weighted interactions with their impressions attached (EVENTS_SCHEMA plus received_at),
    and this batch's impression events (SHOWN_SCHEMA) for the next batch to attach from."""
    events = weighted(raw, weights)
    interactions, shown = pl.collect_all([  # one plan: the lower-casing and weight join run once
        events.filter(~pl.col("is_impression"), pl.col("item_id").is_not_null()).select(*EVENTS_SCHEMA, "received_at"),
        # Only the ids: the nulls kept for positions mean nothing to Personalize, or to the ledger.
        events.filter(pl.col("is_impression"), n_shown(pl.col("items_shown")) > 0)
        .select("user_id", "event_time", ids_shown(pl.col("items_shown"))),
    ])
    candidates = pl.concat([earlier_shown, shown]) if earlier_shown is not None else shown
    return attach_impressions(interactions, candidates).select(*EVENTS_SCHEMA, "received_at"), shown


def _remembered(ledger: Ledger) -> pl.DataFrame:
    rows = ledger.recent_impressions()
    return pl.DataFrame(rows, schema={"user_id": pl.String(), "event_time": pl.Int64(), "items_shown": pl.String()}, orient="row").with_columns(
        pl.col("event_time").cast(UTC_MS), pl.col("items_shown").str.json_decode(pl.List(pl.String()))
    )


def _remember(ledger: Ledger, shown: pl.DataFrame) -> None:
    rows = [(u, int(t.timestamp() * 1000), orjson.dumps(items).decode()) for u, t, items in shown.iter_rows()]
    # Kept well past ATTACH_WITHIN of wall time: Amplitude delivers late, and event times lag.
    ledger.keep_impressions(rows, int(time.time() * 1000) - REMEMBER_MS)


@dataclass
class LiveReport:
    segments: int
    landed: int
    malformed: int
    interactions: int
    impressions_attached: int
    impression_only: int
    stats: PushStats


def push_segments(
    segments: list[Segment],
    source: LandingSource,
    weights: pl.DataFrame,
    tracking_id: str,
    client,
    ledger: Ledger,
    max_tps: float,
    concurrency: int,
) -> LiveReport:
    """Push the segments' events (the ledger drops any already sent) and mark the segments done."""
    with source.local_files(segments) as paths:
        landed, malformed = read_landing(paths)
    raw, _ = raw_events(landed)
    frame, shown = push_frame(raw, weights, _remembered(ledger))
    requests = put_events_requests(frame, tracking_id)
    # Keyed as the requests name events: a long id goes out (and is looked up) as its digest.
    received = dict(zip(map(fit_id, frame["event_id"].to_list()), (frame["received_at"].dt.epoch("ms") / 1000).to_list()))
    stats = push(requests, client, ledger, max_tps=max_tps, concurrency=concurrency, received_at=received)
    _remember(ledger, shown)
    ledger.mark_segments([segment_name(s) for s in segments])
    return LiveReport(
        segments=len(segments),
        landed=landed.height,
        malformed=malformed,
        interactions=frame.height,
        impressions_attached=int((frame["items_shown"].list.len().fill_null(0) > 0).sum()),
        impression_only=shown.height,  # the impression events themselves: PutEvents takes none
        stats=stats,
    )
