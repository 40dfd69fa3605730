"""What the runs so far say about the next window run: in flight, dead, failed and when to retry.

Window runs go one at a time, oldest first (see landing_sensor), so a window whose run failed
must be run again before any later one, and a run whose process died must not stay STARTED.
"""

import socket
from collections.abc import Iterable
from dataclasses import dataclass

import dagster as dg

from amp_personalize.pids import alive, started_at

NOT_YET_STARTED = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED]
IN_FLIGHT = [
    *NOT_YET_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
ENDED_BADLY = [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
# A failed window is tried again after 1, 2, 4 ... minutes, at most hourly: a passing cause (a
# weight file being edited, a full disk) clears by itself, a lasting one is not retried in a loop.
FIRST_RETRY_SECONDS = 60
LONGEST_RETRY_SECONDS = 3600

# Where a run executes: `amp-personalize process` runs its own, the sensor's run on the code
# server's host under the default launcher. A process id means something only there.
HOST_TAG = "amp/host"
# On the runs `process` and `train` execute in their own process, which no run launcher knows of.
IN_PROCESS_TAG = "amp/in_process"


# Why a step failed, by the class of its error, for what comes after the run.
CHECKS_FAILED = "DagsterAssetCheckFailedError"  # blocking checks kept its data out (in _rejected)
INTERRUPTED = "DagsterExecutionInterruptedError"  # Ctrl-C


def step_errors(step_failures: Iterable[dg.DagsterEvent]) -> set[str]:
    """The classes of the errors that failed a run's steps (the STEP_FAILURE events)."""
    return {e.step_failure_data.error.cls_name if e.step_failure_data.error else "" for e in step_failures}


def only_checks_failed(step_failures: Iterable[dg.DagsterEvent]) -> bool:
    """Whether blocking checks alone failed the run: the window is done, what passed them published."""
    return step_errors(step_failures) == {CHECKS_FAILED}


def host_tags() -> dict[str, str]:
    return {HOST_TAG: socket.gethostname()}


def in_process_tags() -> dict[str, str]:
    return {**host_tags(), IN_PROCESS_TAG: "true"}


def _worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid of the process executing the run: the first engine event that names one (the run
    worker's "Started process for run", or the in-process executor's)."""
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=5).records:
        data = record.event_log_entry.dagster_event.engine_event_data
        pid = data.metadata.get("pid") if data else None
        if pid is not None and str(pid.value).isdigit():
            return int(pid.value)
    return None


def _gone(instance: dg.DagsterInstance, record: dg.RunRecord, host: str) -> str | None:
    """Why the process executing this run is known to be gone, or None (alive, elsewhere, unknown).

    Only where Dagster cannot tell: a run `process` or `train` executed in their own process,
    and, under the default launcher, a run whose code server went down with it. A launcher that
    checks its run workers' health (ECS, Kubernetes) has run monitoring end a dead worker's run,
    and run retries start it again: a pid and a host name mean nothing across tasks and pods.
    """
    run = record.dagster_run
    if run.tags.get(IN_PROCESS_TAG) != "true" and instance.run_launcher.supports_check_run_worker_health:
        return None
    # Untagged (launched from the UI, a backfill, an earlier version): under the default
    # launcher it ran on the code server's host, which is where sensors run too.
    default_host = host if isinstance(instance.run_launcher, dg.DefaultRunLauncher) else None
    if run.status != dg.DagsterRunStatus.STARTED or run.tags.get(HOST_TAG, default_host) != host:
        return None
    pid = _worker_pid(instance, run.run_id)
    if pid is None:
        return None
    if not alive(pid):
        return f"the process executing it (pid {pid} on {host}) is gone: it was killed mid-run"
    began = started_at(pid)  # a minute's margin: the wall clock may be stepped (NTP, a VM resumed)
    if began is not None and record.start_time is not None and began > record.start_time + 60:
        return f"the process executing it (pid {pid} on {host}) is gone: that pid is another process's now"
    return None


def fail_dead_runs(instance: dg.DagsterInstance, job_name: str) -> list[str]:
    """Mark failed the unfinished runs of the job whose process on this host is gone.

    Dagster's code server fails a run whose worker it sees killed, but not a run of
    `amp-personalize process`, nor one whose code server went down with it (`make up` killed,
    a reboot): those stayed STARTED and held every later window until run monitoring ended
    them at their max runtime (2 h). Tried live: `dagster dev` SIGKILLed mid-run and started
    again, the next tick failed the run and its retry ran a minute later.
    """
    host = socket.gethostname()
    ended = []
    for record in instance.get_run_records(dg.RunsFilter(job_name=job_name, statuses=IN_FLIGHT)):
        why = _gone(instance, record, host)
        # Read again just before: a run that finished meanwhile must not be turned into a failure.
        if why is not None and instance.get_run_by_id(record.dagster_run.run_id).status in IN_FLIGHT:
            instance.report_run_failed(record.dagster_run, why)
            ended.append(record.dagster_run.run_id)
    return ended


def run_time(record: dg.RunRecord, moment: str) -> float:
    """The run's `start_time` or `end_time`, epoch seconds; its last update where that is unset."""
    at = getattr(record, moment)
    return at if at is not None else record.update_timestamp.timestamp()


def run_in_flight(instance: dg.DagsterInstance, job_name: str) -> dg.DagsterRun | None:
    """A run of that job that has not finished, if any (after failing those whose process died)."""
    fail_dead_runs(instance, job_name)
    records = instance.get_run_records(dg.RunsFilter(job_name=job_name, statuses=IN_FLIGHT), limit=1)
    return records[0].dagster_run if records else None


@dataclass(frozen=True)
class WindowRuns:
    """The runs of one window so far, as far as the next request for it is concerned."""

    latest: dg.RunRecord | None
    failures: int  # how many of the latest runs, in a row, ended badly

    @property
    def retry_at(self) -> float:
        """Epoch seconds before which a window whose runs failed is not requested again."""
        if not self.failures or self.latest is None:
            return 0.0
        return run_time(self.latest, "end_time") + min(FIRST_RETRY_SECONDS * 2 ** (self.failures - 1), LONGEST_RETRY_SECONDS)


def window_runs(instance: dg.DagsterInstance, job_name: str, window: str) -> WindowRuns:
    history = instance.get_run_records(dg.RunsFilter(job_name=job_name, tags={"dagster/partition": window}), limit=20)
    failures = 0
    for record in history:
        if record.dagster_run.status not in ENDED_BADLY:
            break
        failures += 1
    return WindowRuns(history[0] if history else None, failures)
