"""raw_events: the window's landed events, typed and deduplicated; the replayable source of truth."""

import time

import dagster as dg
import orjson
import polars as pl

from amp_personalize.assets.partitions import WINDOW_POOL, WINDOWS
from amp_personalize.assets.publish import check_specs, publish
from amp_personalize.assets.tables import CODE_VERSION, OWNERS, table_metadata
from amp_personalize.checks.rules import RAW_EVENTS
from amp_personalize.events.windows import window_key, window_start_ms
from amp_personalize.lake.store import Lake
from amp_personalize.lake.store import lake as lake_store
from amp_personalize.landing.source import LandingSource, Segment, landing_source
from amp_personalize.resources import AmpResource
from amp_personalize.transforms.landing import read_landing
from amp_personalize.transforms.raw_events import lag_seconds
from amp_personalize.transforms.raw_events import raw_events as build_raw_events


def earlier_event_ids(lake: Lake, window: str, window_minutes: int, lookback_hours: int, candidates: pl.Series) -> pl.Series:
    """Which of `candidates` an earlier window within the retry horizon already holds.

    Earlier is every other window that starts before this one ends: after a change of
    AMP_WINDOW_MINUTES (QA: 15 -> 60) a 15-minute window built before can start inside this
    hour and hold the first receipt of an Amplitude retry landed here, while a window that
    starts later has deduplicated against this one itself.

    A streaming semi-join against this window's ids: memory follows this window, not the 24
    windows behind it (24 x 1M ids peaked at 2.2 GiB when loaded whole), and a hash join is
    3x faster than `is_in` here (1M earlier ids: 0.44 s vs 1.32 s). The candidates go in with
    their in-window duplicates: a semi join does not care, and deduplicating them first cost
    more than the whole join (1M landed lines, median of 6: 0.66 s -> 0.28 s).
    """
    names = _earlier_windows(lake, window, window_minutes, lookback_hours)
    if not names or candidates.len() == 0:
        return pl.Series("event_id", [], dtype=pl.String)
    return (
        lake.scan("raw_events", {"event_id": pl.String()}, names)
        .select("event_id")
        .join(candidates.to_frame("event_id").lazy(), on="event_id", how="semi")
        .collect(engine="streaming")["event_id"]
    )


def _later_windows_built(lake: Lake, window: str, lookback_hours: int) -> bool:
    """Whether a later window whose dedupe looks back over this one is in the lake already."""
    until = window_key(window_start_ms(window) + lookback_hours * 3_600_000)
    return any(window < name <= until for name in lake.partitions("raw_events"))


def _earlier_windows(lake: Lake, window: str, window_minutes: int, lookback_hours: int) -> list[str]:
    start = window_start_ms(window)
    since, end = window_key(start - lookback_hours * 3_600_000), window_key(start + window_minutes * 60_000)
    return [name for name in lake.partitions("raw_events") if since <= name < end and name != window]


# The parquet footer names the sealed segments a window was built from, so `process` can tell a
# window that gained segments since (one processed while still open, or one a volume shipped to
# late) from one that did not; and which of them its previous build had not read.
BUILT_FROM = "amp.landing_segments"
LATE = "amp.late_segments"
BUILT_AT = "amp.built_at_ms"  # a build with late segments: S3's LastModified has whole seconds


def built_from(segments: list[Segment]) -> str:
    return orjson.dumps(sorted(s.name for s in segments)).decode()


WINDOW_DATASETS = ("raw_events", "interactions", "impressions")  # one window's, in build order


def needs_rebuild(source: LandingSource, lake: Lake, window: str) -> bool:
    """Whether the window's published raw_events misses a segment sealed (or shipped) since it
    was built.

    Locally, a window untouched for an hour before its file was written is skipped on two stats;
    the footer is read only for the rest. Files written before the footer named segments count
    as current: rebuilding every old window once would cost more than it finds.
    """
    stat = lake.stat("raw_events", window)
    if stat is None or not source.changed_since(window, stat.modified):
        return False
    built = (lake.footer("raw_events", window) or {}).get(BUILT_FROM)
    if built is None:
        return False
    return not {s.name for s in source.segments(window)} <= set(orjson.loads(built))


def after_late_rebuild(lake: Lake, window: str, window_minutes: int, lookback_hours: int) -> str | None:
    """An earlier window within the dedupe horizon built with late segments after this one was
    built, or None. Its new events may include the first receipt of a retry this window kept (it
    was not there to dedupe against then): built again, this window drops its copy.

    Stats decide which earlier windows to look at (written since this one, to the second); their
    footers, which few have, decide: late segments, built after this window by the millisecond.
    """
    stat = lake.stat("raw_events", window)
    if stat is None:
        return None
    built_at = None
    for earlier in _earlier_windows(lake, window, window_minutes, lookback_hours):
        other = lake.stat("raw_events", earlier)
        if earlier > window or other is None or other.modified < stat.modified - 1:
            continue
        footer = lake.footer("raw_events", earlier) or {}
        if not orjson.loads(footer.get(LATE, "[]")):
            continue
        if built_at is None:
            built_at = int((lake.footer("raw_events", window) or {}).get(BUILT_AT) or stat.modified * 1000)
        if int(footer.get(BUILT_AT) or other.modified * 1000) > built_at:
            return earlier
    return None


def is_due(source: LandingSource, lake: Lake, window: str, built: set[str], window_minutes: int = 60, lookback_hours: int = 0,
           segments_may_have_changed: bool = True) -> bool:
    """Whether a ready window needs a (re)build: never built (`built`: raw_events' materialized
    partitions), a segment sealed or shipped since its last build, a dataset file gone from the
    lake, or an earlier window built with late segments since (see after_late_rebuild).

    `segments_may_have_changed=False` skips listing the window's segments: with the landing on
    S3, where a built window gains segments only from a late volume, which sensors.shipped tracks.
    """
    return (
        window not in built
        or (segments_may_have_changed and needs_rebuild(source, lake, window))
        or _files_missing(lake, window)
        or after_late_rebuild(lake, window, window_minutes, lookback_hours) is not None
    )


def _state(lake: Lake, dataset: str, window: str, built_since: float = 0.0) -> str:
    """"published", "rejected" (its latest build was kept out by a blocking check) or "missing".

    Every build writes raw_events first: a file older than `built_since` (the window's
    raw_events file) is an earlier build's. Such a rejection is superseded, and such a published
    file is as good as missing (its build failed after raw_events, say on a full disk, and left
    it without the events of the segments raw_events now holds). Of the latest build's two
    files, the newer decides.
    """
    def since_build(rejected: bool) -> float | None:
        stat = lake.stat(dataset, window, rejected=rejected)
        return stat.modified if stat is not None and stat.modified >= built_since else None

    published = since_build(False)
    rejected = since_build(True)
    if published is not None and (rejected is None or published >= rejected):
        return "published"
    return "missing" if rejected is None else "rejected"


def _files_missing(lake: Lake, window: str) -> bool:
    """Whether a window's dataset is neither published nor kept out by its latest build's checks.

    interactions and impressions each depend on raw_events alone: one kept out does not excuse
    the other's missing file.
    """
    raw = _state(lake, "raw_events", window)
    if raw != "published":
        return raw == "missing"  # if kept out, nothing downstream of it was meant to be built
    built = lake.stat("raw_events", window).modified
    return any(_state(lake, dataset, window, built) == "missing" for dataset in WINDOW_DATASETS[1:])


@dg.asset(
    partitions_def=WINDOWS,
    pool=WINDOW_POOL,
    check_specs=check_specs("raw_events", RAW_EVENTS),
    group_name="events",
    kinds={"polars", "parquet", "duckdb"},
    owners=OWNERS,
    code_version=CODE_VERSION,
    metadata=table_metadata("raw_events"),
)
def raw_events(context: dg.AssetExecutionContext, amp: AmpResource) -> dg.MaterializeResult:
    """Every landed event of one landing window, typed, each event_id once across windows."""
    settings = amp.settings()
    window = context.partition_key
    source, lake = landing_source(settings), lake_store(settings)
    segments = source.segments(window)
    before = lake.footer("raw_events", window) or {}
    if BUILT_FROM in before:  # its segments the last build did not read
        late = sorted({s.name for s in segments} - set(orjson.loads(before[BUILT_FROM])))
    elif _later_windows_built(lake, window, settings.dedupe_lookback_hours):
        # Built for the first time after windows that dedupe against it (its only volume
        # shipped late): all its segments are late to them (review: a retry counted twice).
        late = sorted(s.name for s in segments)
    else:
        late = []
    with source.local_files(segments) as paths:
        landed, malformed = read_landing(paths)
    earlier = earlier_event_ids(lake, window, settings.window_minutes, settings.dedupe_lookback_hours, landed["event_id"])
    df, stats = build_raw_events(landed, earlier)
    kinds = dict(df.group_by("kind").len().iter_rows()) if df.height else {}
    if late:
        context.log.info(f"window {window} is built again for {len(late)} segment(s) its last build did not read: {', '.join(late[:10])}")
    return publish(
        "raw_events",
        df,
        RAW_EVENTS,
        amp,
        partition=window,
        # The build time only on a build with late segments (after_late_rebuild compares it): any
        # other rebuild writes the same bytes as the build before it.
        file_metadata={BUILT_FROM: built_from(segments), LATE: orjson.dumps(late).decode(),
                       **({BUILT_AT: str(time.time_ns() // 1_000_000)} if late else {})},
        metadata={
            "segments": len(segments),
            "landing": str(source),
            # A rebuild for segments shipped (or sealed) after the last build: a volume that was
            # down, or a window processed while still open. Later windows follow (is_due).
            "late_segments": len(late),
            **({"late_segment_names": dg.MetadataValue.json(late[:100])} if late else {}),
            "lines_landed": stats.landed,
            "malformed_lines_dropped": malformed,
            "duplicates_in_window": stats.duplicates_in_window,
            "duplicates_of_earlier_windows": stats.duplicates_of_earlier_windows,
            # A share plots the same for a backfill and a quiet hour: retries rising shows at any volume.
            "duplicates_share": _share(stats.duplicates_in_window + stats.duplicates_of_earlier_windows, stats.landed),
            "events": kinds.get("event", 0),
            "user_payloads": kinds.get("user", 0),
            "events_without_own_time": int(df["event_time_missing"].sum()) if df.height else 0,
            **{f"lag_seconds_{k}": v for k, v in lag_seconds(df).items()},
        },
    )


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0
