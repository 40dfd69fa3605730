"""`amp-personalize process`: one pass of what the daemon does, without the daemon.

Runs the same jobs as the landing sensor would, through a real Dagster instance, so every run,
materialization and check shows up in the Dagster UI afterwards.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import dagster as dg

from amp_personalize.landing.segments import open_segments, recover
from amp_personalize.landing.source import S3Landing
from amp_personalize.sensors.due import windows_due
from amp_personalize.sensors.plan import utc_time
from amp_personalize.sensors.training import CACHES_INLINE, CACHES_TAG, why_no_caches
from amp_personalize.sensors.window_runs import (
    INTERRUPTED,
    fail_dead_runs,
    in_process_tags,
    only_checks_failed,
    run_in_flight,
    run_time,
    step_errors,
)
from amp_personalize.services import dagster_home
from amp_personalize.settings import Settings, SettingsError


def dagster_instance(settings: Settings) -> dg.DagsterInstance:
    """$DAGSTER_HOME's instance if set, else a persistent one under <data>/dagster (sqlite).

    SettingsError names the variable when neither can be used.
    """
    home = os.environ.get("DAGSTER_HOME")
    if home:
        if not Path(home).is_dir():
            raise SettingsError(f"DAGSTER_HOME={home} is not a directory: create it, or unset DAGSTER_HOME to use {settings.data_dir / 'dagster'}")
    else:
        try:
            os.environ["DAGSTER_HOME"] = str(dagster_home(settings))  # the instance `make up`'s UI reads
        except OSError as exc:
            raise SettingsError(f"AMP_DATA_DIR={settings.data_dir}: cannot create the Dagster instance's directory there: {exc.strerror}") from None
    # Its runs' events and logs are recorded as any run's, but not a raw copy of stdout/stderr:
    # the local compute-log manager mirrors those through `tail` and a Python watcher per step,
    # and Ctrl-C in a terminal reaches those too, which printed two tracebacks (QA). Another
    # manager (say, to S3) is the user's choice, and kept.
    from dagster._core.instance.ref import InstanceRef

    ref = InstanceRef.from_dir(os.environ["DAGSTER_HOME"])
    if ref.compute_logs_data.class_name == "LocalComputeLogManager":
        ref = InstanceRef.from_dir(os.environ["DAGSTER_HOME"], overrides=_NO_COMPUTE_LOGS)
    return dg.DagsterInstance.from_ref(ref)


_NO_COMPUTE_LOGS = {"compute_logs": {"module": "dagster._core.storage.noop_compute_log_manager", "class": "NoOpComputeLogManager"}}


# The longest `process --all-windows` waits for receivers to seal by age: with a segment age
# of an hour or a century it waited that long, silently (QA). What is still open is named.
LONGEST_SEAL_WAIT_SECONDS = 120


def wait_for_sealed(settings: Settings, timeout: float, say: Callable[[str], None] = lambda _: None) -> list[Path]:
    """Give live receivers time to seal their open segments by age; returns any still open.

    Not those recovery could not seal (a full disk): no waiting fixes that, and the plan that
    follows names them with the reason.
    """
    deadline = time.monotonic() + timeout
    said = False
    while True:
        unsealable = {path for path, _ in recover(settings.landing_dir, settings.quarantine_dir).left_open}
        still_open = [p for p in open_segments(settings.landing_dir) if p not in unsealable]
        if not still_open or time.monotonic() > deadline:
            return still_open
        if not said:
            say(f"waiting up to {timeout:.0f} s for receivers to seal {len(still_open)} open segment(s) "
                f"(they do every AMP_SEGMENT_MAX_AGE_SECONDS={settings.segment_max_age_seconds:.15g})")
            said = True
        time.sleep(0.2)


# Passes over the windows one `process` makes: the second and later build what a rebuild for
# late segments made due after it (each pass stops when nothing was built).
MAX_PASSES = 5


def wait_for_volumes(settings: Settings, before_ms: int, timeout: float, say: Callable[[str], None] = lambda _: None) -> list[str]:
    """With the landing on S3: give every live volume time to ship what it received before
    `before_ms` (they seal by age and ship within a second or two); returns those still behind."""
    source = S3Landing(settings.landing_url)
    deadline = time.monotonic() + timeout
    said = False
    while True:
        now = int(time.time() * 1000)
        behind = [v.volume_id for v in source.volumes() if v.status == "live"
                  and v.fresh(now, settings.volume_dead_after_seconds) and v.complete_before_ms < before_ms]
        if not behind or time.monotonic() > deadline:
            return behind
        if not said:
            say(f"waiting up to {timeout:.0f} s for volume(s) {', '.join(behind)} to ship what they received before {utc_time(before_ms)}")
            said = True
        time.sleep(0.5)


@dataclass
class ProcessReport:
    windows: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    scores_refreshed: bool = False
    pushed: dict[str, int] | None = None  # with the Personalize backend: what reached PutEvents


def _run_options(settings: Settings, instance: dg.DagsterInstance) -> dict:
    from amp_personalize.backends.personalize.resource import PersonalizeResource
    from amp_personalize.resources import AmpResource

    # Nothing on the console: a run's failure is reported by the command (a blocking check on
    # too little data as its own one-line message, anything else naming the run), and the
    # Dagster UI has the full logs. Dagster's console logger would print each failure's stack.
    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    resources = {"amp": AmpResource.from_settings(settings), "personalize": PersonalizeResource.from_settings(settings.personalize)}
    return {"instance": instance, "raise_on_error": False, "run_config": quiet, "resources": resources}


def train_once(settings: Settings, instance: dg.DagsterInstance) -> tuple[bool, dict]:
    """The retrain job, then the cache refresh, as the schedule and its sensor would run them."""
    from amp_personalize.definitions import defs

    run = _run_options(settings, instance)
    for job in ("retrain", "refresh_recommendations"):  # QA: a killed `train` left its runs STARTED for good
        fail_dead_runs(instance, job)
    trained = _execute(
        defs.resolve_job_def("retrain"), "while training: the caches still serve the previous model",
        tags={CACHES_TAG: CACHES_INLINE}, **run,
    )
    # Too little data still materializes (with the counts) before its blocking check fails the
    # run: those counts are what the user needs to hear, so look before testing success.
    materialized = trained.asset_materializations_for_node("recommender_model")
    meta = materialized[0].metadata if materialized else {}
    if meta and not meta["trained"].value:
        return False, {k: v.value for k, v in meta.items()}
    if not trained.success:
        return False, {}
    trained_meta = {k: v.value for k, v in meta.items() if not hasattr(v.value, "md_str")}
    warnings = _failed_warnings(trained)
    why = why_no_caches(trained_meta.get("backend"), settings.personalize)
    if why:
        return True, {**trained_meta, "caches_skipped": why, "warnings": warnings}
    cached = _execute(
        defs.resolve_job_def("refresh_recommendations"),
        f"while caching model {trained_meta.get('version')}: some caches may hold the previous model until the next training",
        **run,
    )
    return cached.success, {**trained_meta, "warnings": warnings + _failed_warnings(cached)}


def _failed_warnings(result: dg.ExecuteInProcessResult) -> list[str]:
    return [f"{e.asset_key.to_user_string()}.{e.check_name}" for e in result.get_asset_check_evaluations()
            if not e.passed and e.severity == dg.AssetCheckSeverity.WARN]


def _execute(job: dg.JobDefinition, stopped: str, tags: dict[str, str] | None = None, **options) -> dg.ExecuteInProcessResult:
    """The job run in this process, tagged with this host. Ctrl-C, which Dagster turns into a
    failed step before returning, is raised again as KeyboardInterrupt(`stopped`), saying what
    it stopped, for the command to end on."""
    result = job.execute_in_process(tags={**in_process_tags(), **(tags or {})}, **options)
    if INTERRUPTED in step_errors(result.get_step_failure_events()):
        raise KeyboardInterrupt(stopped)
    return result


def _scores_behind(instance: dg.DagsterInstance, window_job: str, history_days: int) -> bool:
    """Whether no successful user_item_scores refresh started after the latest window was built
    (one interrupted or failed after its windows: the next pass has no new window to trigger it),
    or the latest was built over another AMP_HISTORY_DAYS (QA: a change waited for new data)."""
    success = [dg.DagsterRunStatus.SUCCESS]
    window = instance.get_run_records(dg.RunsFilter(job_name=window_job, statuses=success), limit=1)
    scores = instance.get_run_records(dg.RunsFilter(job_name="refresh_user_item_scores", statuses=success), limit=1)
    if not window:
        return False
    if not scores or run_time(scores[0], "start_time") < run_time(window[0], "end_time"):
        return True
    latest = instance.get_latest_materialization_event(dg.AssetKey("user_item_scores"))
    built_over = latest.asset_materialization.metadata.get("history_days") if latest and latest.asset_materialization else None
    return built_over is not None and built_over.value != history_days


PASS_LOCK = "amp-personalize process"  # the advisory lock's key with AMP_DATABASE_URL


@contextmanager
def one_pass_at_a_time(settings: Settings, say: Callable[[str], None] = lambda _: None) -> Iterator[None]:
    """One `process` pass at a time per lake: two started at once would each plan the same due
    windows before either had built one, and build them twice. With AMP_DATABASE_URL a Postgres
    advisory lock (every host), else a file lock in the data directory; either is let go when its
    holder ends, however it ends. The daemon's window runs are told apart by run_in_flight."""
    if settings.database_url:
        from amp_personalize.storage.postgres import advisory_lock

        with advisory_lock(settings.database_url, PASS_LOCK, wait=False) as mine:
            if mine:
                yield
                return
        say("another `amp-personalize process` is running against this lake; waiting for it to finish")
        with advisory_lock(settings.database_url, PASS_LOCK):
            yield
        return
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.data_dir / ".process.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("another `amp-personalize process` is running on this data directory; waiting for it to finish")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def process_once(
    settings: Settings, all_windows: bool, instance: dg.DagsterInstance, rebuild: bool = False,
    say: Callable[[str], None] = lambda _: None,
) -> ProcessReport:
    """`rebuild` builds every ready window again, not only those due: how a changed weight file
    reaches windows already built (each build is idempotent, so only `event_value` changes)."""
    with one_pass_at_a_time(settings, say):
        return _process_once(settings, all_windows, instance, rebuild, say)


def _process_once(
    settings: Settings, all_windows: bool, instance: dg.DagsterInstance, rebuild: bool, say: Callable[[str], None]
) -> ProcessReport:
    from amp_personalize.definitions import defs

    report = ProcessReport()
    shipped_before = None
    if all_windows and settings.landing_url:
        shipped_before = int(time.time() * 1000)
        behind = wait_for_volumes(settings, shipped_before, LONGEST_SEAL_WAIT_SECONDS, say)
        report.waiting += [f"volume {v} has not shipped everything it received before now; its late segments build their windows again later" for v in behind]
    elif all_windows:
        still_open = wait_for_sealed(settings, min(settings.segment_max_age_seconds + 5, LONGEST_SEAL_WAIT_SECONDS), say)
        report.waiting += [f"{p.parent.name}/{p.name} is still open (a receiver is writing it)" for p in still_open]
    window_job = defs.resolve_job_def("process_window")
    run = _run_options(settings, instance)
    fail_dead_runs(instance, "refresh_user_item_scores")
    touched = False  # a window published something: built, or kept partly out by its checks
    # A window rebuilt for late segments makes the windows after it, within the dedupe lookback,
    # due again (raw_events.after_late_rebuild): a further pass builds them. What late volumes
    # shipped is recorded as looked at once, after the passes, held back to the oldest window left
    # for it: a run killed before its last pass must leave those windows findable.
    first_found, late_built, left = None, [], []
    for attempt in range(MAX_PASSES):
        done = instance.get_materialized_partitions(dg.AssetKey("raw_events"))
        # Never built, or built again idempotently (see is_due): e.g. processed while still open
        # with --all-windows and sealed more events afterwards, or a file deleted from the lake.
        found = windows_due(settings, instance, done, include_open=all_windows, shipped_before_ms=shipped_before,
                            rebuild=rebuild and attempt == 0)
        if attempt == 0:
            report.waiting += [why for _, why in found.plan.waiting]
            first_found = found
        left = list(found.stale)
        due = found.due
        busy = run_in_flight(instance, window_job.name)  # fails this host's dead window runs first
        if busy is not None and due:
            # The daemon's: windows run one at a time, oldest first, whoever runs them.
            report.waiting.append(
                f"window {busy.tags.get('dagster/partition', '?')} is being processed by run {busy.run_id}; "
                f"{len(due)} window(s) ({due[0]} to {due[-1]}) wait for it: run `process` again when it is done"
            )
            break
        built: list[str] = []
        stopped = False
        for i, window in enumerate(due):
            result = _execute(window_job, f"while building {window}", partition_key=window, **run)
            if result.success:
                report.windows.append(window)
                built.append(window)
                touched = True
                continue
            report.failed.append(window)
            if only_checks_failed(result.get_step_failure_events()):  # done: its checks decided what to keep out
                touched = True
                built.append(window)
            else:
                # Oldest first, as the sensor does: a later window built now would keep its copies of
                # the Amplitude retries that crossed the edge, and this one its originals once fixed.
                if later := due[i + 1 :]:
                    report.waiting.append(
                        f"{len(later)} later window(s) ({later[0]} to {later[-1]}) wait until {window} is built: windows run oldest first"
                    )
                stopped = True
                break
        late_built += [w for w in built if w in found.stale]
        left = [w for w in found.stale if w not in built]
        if stopped or not built:
            break
    else:
        left = left or late_built  # passes ran out with more perhaps due after what they built
    if first_found is not None:
        first_found.record(instance, still_stale=left)
    if touched or _scores_behind(instance, window_job.name, settings.history_days):
        scores = _execute(defs.resolve_job_def("refresh_user_item_scores"), "while building user_item_scores", **run)
        report.scores_refreshed = scores.success
        if not scores.success:
            report.failed.append("user_item_scores")
    if settings.backend == "personalize" and settings.personalize.tracking_id:
        _push_pending(settings, instance, run, report)
    return report


PUSH_TOTALS = ("segments", "events", "calls", "refused", "already_pushed")


def _push_pending(settings: Settings, instance: dg.DagsterInstance, run: dict, report: ProcessReport) -> None:
    """What the daemon's personalize_events_sensor does, until nothing sealed is left to push.

    The same job and the same ledger, so an event the daemon pushed is not pushed again, and a
    push run of the daemon's in flight is waited for (named) instead of racing its lease.
    """
    from amp_personalize.definitions import build_definitions

    push_job = build_definitions(settings).resolve_job_def("push_to_personalize")
    fail_dead_runs(instance, push_job.name)
    busy = run_in_flight(instance, push_job.name)
    if busy is not None:
        report.waiting.append(f"push run {busy.run_id} is sending events to Personalize; run `process` again to push what it leaves")
        return
    totals = dict.fromkeys(PUSH_TOTALS, 0)
    while True:
        result = _execute(push_job, "while pushing to Personalize: the events not yet acknowledged go with the next push", **run)
        materialized = result.asset_materializations_for_node("personalize_events")
        meta = {k: v.value for k, v in materialized[0].metadata.items()} if materialized else {}
        for name in PUSH_TOTALS:
            totals[name] += int(meta.get(name) or 0)
        if not result.success:
            report.failed.append("personalize_events")
            break
        if not meta.get("segments_left_for_next_run") or not meta.get("segments"):
            break
    report.pushed = totals
