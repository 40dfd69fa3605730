"""What the window runs so far say about the next one: in flight, dead, failed and due again.

Window runs go one at a time, oldest first (see landing_sensor), so a window whose run failed
must be run again before any later one, and a run whose process died must not stay STARTED.
"""

import os
import socket
from dataclasses import dataclass

import dagster as dg

from amp_personalize.pids import alive

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

# Runs that `amp-personalize process` executes in its own process carry where they run, so that
# a later command or sensor tick can tell one whose process was killed from one still going.
HOST_TAG, PID_TAG = "amp/host", "amp/pid"


def local_run_tags() -> dict[str, str]:
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def _gone(instance: dg.DagsterInstance, run: dg.DagsterRun, host: str) -> str | None:
    """Why the process running `run` is known to be gone, or None (alive, elsewhere, or unknown)."""
    pid = run.tags.get(PID_TAG)
    if pid is not None:  # run by `amp-personalize process`
        if run.tags.get(HOST_TAG) == host and pid.isdigit() and not alive(int(pid)):
            return f"the `amp-personalize process` that ran it (pid {pid} on {host}) is gone: it was killed mid-run"
        return None
    # Launched by the daemon: with the default launcher, its run worker is a process on this
    # host, and the worker's first engine event names its pid. Other launchers (ECS, k8s) have
    # run monitoring of their own.
    if run.status != dg.DagsterRunStatus.STARTED or not isinstance(instance.run_launcher, dg.DefaultRunLauncher):
        return None
    for record in instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=5).records:
        data = record.event_log_entry.dagster_event.engine_event_data
        worker = data.metadata.get("pid") if data else None
        if worker is not None and str(worker.value).isdigit():
            return None if alive(int(worker.value)) else f"its run worker (pid {worker.value}) is gone: it was killed mid-run"
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
        why = _gone(instance, record.dagster_run, host)
        if why is not None:
            instance.report_run_failed(record.dagster_run, why)
            ended.append(record.dagster_run.run_id)
    return ended


def run_in_flight(instance: dg.DagsterInstance, job_name: str) -> dg.DagsterRun | None:
    """A run of that job that has not finished, if any (after failing those whose process died)."""
    fail_dead_runs(instance, job_name)
    records = instance.get_run_records(dg.RunsFilter(job_name=job_name, statuses=IN_FLIGHT), limit=1)
    return records[0].dagster_run if records else None


@dataclass(frozen=True)
class FailedWindow:
    window: str
    run_id: str
    failures: int  # in a row, the latest included
    runs: int  # of this window so far, all statuses: numbers the retry's run key
    retry_at: float  # epoch seconds

    def run_key(self) -> str:
        return f"window-{self.window}-run-{self.runs + 1}"


def last_failed_window(instance: dg.DagsterInstance, job_name: str) -> FailedWindow | None:
    """The window of the job's latest run, if that run failed or was canceled."""
    latest = instance.get_run_records(dg.RunsFilter(job_name=job_name), limit=1)
    if not latest or latest[0].dagster_run.status not in ENDED_BADLY:
        return None
    window = latest[0].dagster_run.tags.get("dagster/partition")
    if window is None:
        return None
    of_window = dg.RunsFilter(job_name=job_name, tags={"dagster/partition": window})
    history = instance.get_run_records(of_window, limit=20)
    failures = 0
    for record in history:
        if record.dagster_run.status not in ENDED_BADLY:
            break
        failures += 1
    ended = latest[0].end_time or latest[0].update_timestamp.timestamp()
    wait = min(FIRST_RETRY_SECONDS * 2 ** (failures - 1), LONGEST_RETRY_SECONDS)
    return FailedWindow(window, latest[0].dagster_run.run_id, failures, instance.get_runs_count(of_window), ended + wait)
