"""personalize_events: live events to Personalize's PutEvents, seconds after they land."""

import time

import dagster as dg
import numpy as np

from amp_personalize.assets.tables import CODE_VERSION, OWNERS
from amp_personalize.backends.personalize.ledger import (
    Ledger,
    LedgerMismatch,
    PushInProgress,
    open_ledger,
)
from amp_personalize.backends.personalize.push import PushFailed
from amp_personalize.backends.personalize.realtime import (
    MAX_SEGMENTS_PER_RUN,
    pending_segments,
    push_segments,
    segment_name,
)
from amp_personalize.backends.personalize.resource import PersonalizeResource
from amp_personalize.landing.source import landing_source
from amp_personalize.resources import AmpResource
from amp_personalize.settings import PersonalizeSettings, Settings
from amp_personalize.transforms.weights import weights_frame

PRUNE_MARGIN_DAYS = 2
# SPEC 2: live events reach PutEvents within about a minute of the receiver's acknowledgment.
# Segments seal within 15 s and the sensor ticks every 30 s, so a p95 past two minutes means the
# push is falling behind (or catching up after an outage), which is worth a look.
LAG_TARGET_SECONDS = 120
REFUSED_SHOWN = 10

CHECKS = [
    dg.AssetCheckSpec(
        "every_event_accepted", asset="personalize_events",
        description="PutEvents accepted every event sent; refused ones are set aside (named in the metadata) "
        "and reach Personalize only through the next bulk import.",
    ),
    dg.AssetCheckSpec(
        "pushed_within_two_minutes", asset="personalize_events",
        description=f"95% of the events pushed reached PutEvents within {LAG_TARGET_SECONDS} s of the receiver's acknowledgment.",
    ),
]


def _quantiles(values: list[float], scale: float, qs: dict[str, float]) -> dict[str, float]:
    if not values:
        return {}
    return {name: round(float(np.quantile(values, q)) * scale, 3) for name, q in qs.items()}


def _check_results(refused: list[tuple[str, str]], lag_p95: float | None) -> list[dg.AssetCheckResult]:
    warn = dg.AssetCheckSeverity.WARN
    return [
        dg.AssetCheckResult(
            check_name="every_event_accepted", passed=not refused, severity=warn,
            metadata={"refused": len(refused), "first_refused": dg.MetadataValue.json(dict(refused[:REFUSED_SHOWN]))},
        ),
        dg.AssetCheckResult(
            check_name="pushed_within_two_minutes", passed=lag_p95 is None or lag_p95 <= LAG_TARGET_SECONDS, severity=warn,
            metadata={"ack_to_push_p95_s": lag_p95 if lag_p95 is not None else "no events pushed", "target_s": LAG_TARGET_SECONDS},
        ),
    ]


# One push at a time across hosts: the ledger's lease refuses a second, and the pool (with
# deploy/dagster.yaml's pools) keeps one from being started.
@dg.asset(group_name="personalize", kinds={"personalize"}, check_specs=CHECKS, owners=OWNERS, code_version=CODE_VERSION,
          pool="amp_personalize_push")
def personalize_events(context: dg.AssetExecutionContext, amp: AmpResource, personalize: PersonalizeResource) -> dg.MaterializeResult:
    """The weighted interactions of every sealed segment not yet pushed, sent with PutEvents once each.

    Not window-partitioned: the personalize_events_sensor requests it whenever sealed segments
    hold events Personalize has not acknowledged, so a session's clicks reach it within a minute.
    """
    settings = amp.settings()
    live = personalize.settings()
    live.require("tracking_id")
    try:
        ledger = open_ledger(settings)
        try:
            with ledger.exclusive_push():
                return _push(amp, settings, live, personalize.clients().events, ledger)
        finally:
            ledger.close()
    except PushInProgress as busy:
        raise dg.Failure(description=str(busy)) from None


def _push(amp: AmpResource, settings: Settings, live: PersonalizeSettings, events_client, ledger: Ledger) -> dg.MaterializeResult:
    try:
        ledger.bind(live.destination())
    except LedgerMismatch as mismatch:
        raise dg.Failure(description=str(mismatch)) from None
    source = landing_source(settings)
    segments = pending_segments(source, ledger, settings.window_minutes)
    left = max(0, len(segments) - MAX_SEGMENTS_PER_RUN)
    segments = segments[:MAX_SEGMENTS_PER_RUN]
    if not segments:
        return dg.MaterializeResult(metadata={"segments": 0, "calls": 0, "events": 0}, check_results=_check_results([], None))
    try:
        report = push_segments(
            segments, source, weights_frame(amp.weights()), live.tracking_id, events_client,
            ledger, live.push_tps, live.push_concurrency,
        )
    except PushFailed as failure:
        raise dg.Failure(description=str(failure)) from None
    # Ids older than the history window (plus a margin for late events) are asked for by
    # no import, and Amplitude stopped retrying them long ago: the ledger need not keep them.
    pruned = ledger.prune(int(time.time() * 1000) - (settings.history_days + PRUNE_MARGIN_DAYS) * 86_400_000)
    stats = report.stats
    lags = _quantiles(stats.lags, 1, {"p50": 0.5, "p95": 0.95})
    return dg.MaterializeResult(
        metadata={
            "segments": report.segments,
            "segments_left_for_next_run": left,
            "first_segment": segment_name(segments[0]),
            "last_segment": segment_name(segments[-1]),
            "landed_lines": report.landed,
            "malformed_lines": report.malformed,
            "interactions": report.interactions,
            "with_impressions": report.impressions_attached,
            "impression_only_events_not_sent": report.impression_only,
            "calls": stats.calls,
            "events": stats.events,
            "already_pushed": stats.skipped_already_pushed,
            "retries": stats.retries,
            "refused": len(stats.refused),
            "ledger_ids_pruned": pruned,
            **{f"api_latency_{k}_ms": v for k, v in _quantiles(stats.latencies, 1000, {"p50": 0.5, "p99": 0.99}).items()},
            **{f"ack_to_push_{k}_s": v for k, v in lags.items()},
        },
        check_results=_check_results(stats.refused, lags.get("p95")),
    )
