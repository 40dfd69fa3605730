"""Running the receiver and the Dagster UI together, and stopping both on Ctrl-C.

Children are started from Python, not from a shell with `&`: a non-interactive shell starts
background jobs with SIGINT ignored, and `dagster dev` started that way outlives Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from amp_personalize.settings import Settings

# Window runs go one at a time (see landing_sensor), so a run whose worker died must not stay
# STARTED for ever: with monitoring on, the daemon ends a run past its `dagster/max_runtime`.
# The pools (amp_windows, amp_personalize_push) keep one run of each going at a time, from the
# sensors, the UI or a backfill alike, as deploy/dagster.yaml does. Telemetry is off: this
# instance is the product's own, and with it on every first command
# (`train`, `process`) opens with Dagster's telemetry notice.
DEFAULT_INSTANCE_YAML = """\
run_monitoring:
  enabled: true
  poll_interval_seconds: 60
concurrency:
  pools:
    granularity: run
    default_limit: 1
telemetry:
  enabled: false
"""


def dagster_home(settings: Settings) -> Path:
    """The instance `make up` and `process` share when DAGSTER_HOME is unset, under <data>/dagster."""
    home = (settings.data_dir / "dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or not config.read_text().strip():  # a user's own file is left alone
        config.write_text(DEFAULT_INSTANCE_YAML)
    return home


def service_commands(settings: Settings, ui_host: str, ui_port: int, workspace: Path) -> list[list[str]]:
    bin_dir = Path(sys.executable).parent
    return [
        [str(bin_dir / "amp-personalize"), "serve"],
        [str(bin_dir / "dg"), "dev", "-w", str(workspace), "-h", ui_host, "-p", str(ui_port)],
    ]


def run_together(commands: list[list[str]], env: dict[str, str]) -> int:
    """Start every command; when one exits or we get SIGINT/SIGTERM, stop them all, then return.

    The handlers go in before the children start: a signal this process catches is reset to
    the default in a child at exec, while one it ignores (as in a background job) stays ignored
    there too. Each child leads its own process group, so a stop reaches the helpers `dagster
    dev` starts as Ctrl-C in a terminal would, and a child that will not stop is killed with
    its whole group instead of leaving them orphaned.
    """
    stopping = False

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    children = [subprocess.Popen(cmd, env=env, process_group=0) for cmd in commands]
    try:
        while not stopping and all(c.poll() is None for c in children):
            time.sleep(0.2)
    finally:
        for child in children:
            _signal_group(child, signal.SIGINT)  # both shut down cleanly on SIGINT
        deadline = time.monotonic() + 30
        for child in children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(child, signal.SIGKILL)
                child.wait()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0 if stopping else max(c.returncode or 0 for c in children)


def _signal_group(child: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(child.pid, signum)
    except ProcessLookupError:  # the group is gone already
        pass


def up(settings: Settings, ui_host: str = "127.0.0.1", ui_port: int = 3000, workspace: Path = Path("workspace.yaml")) -> int:
    env = {**os.environ, "DAGSTER_HOME": os.environ.get("DAGSTER_HOME") or str(dagster_home(settings))}
    return run_together(service_commands(settings, ui_host, ui_port, workspace), env)
