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


def dagster_home(settings: Settings) -> Path:
    home = (settings.data_dir / "dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").touch()
    return home


def service_commands(settings: Settings, ui_host: str, ui_port: int, workspace: Path) -> list[list[str]]:
    bin_dir = Path(sys.executable).parent
    return [
        [str(bin_dir / "amp-personalize"), "serve"],
        [str(bin_dir / "dagster"), "dev", "-w", str(workspace), "-h", ui_host, "-p", str(ui_port)],
    ]


def run_together(commands: list[list[str]], env: dict[str, str]) -> int:
    """Start every command; when one exits or we get SIGINT/SIGTERM, stop them all, then return."""
    children = [subprocess.Popen(cmd, env=env) for cmd in commands]
    stopping = False

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stopping and all(c.poll() is None for c in children):
            time.sleep(0.2)
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)  # both shut down cleanly on SIGINT
        deadline = time.monotonic() + 30
        for child in children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0 if stopping else max(c.returncode or 0 for c in children)


def up(settings: Settings, ui_host: str = "127.0.0.1", ui_port: int = 3000, workspace: Path = Path("workspace.yaml")) -> int:
    env = {**os.environ, "DAGSTER_HOME": os.environ.get("DAGSTER_HOME") or str(dagster_home(settings))}
    return run_together(service_commands(settings, ui_host, ui_port, workspace), env)
