"""`make up` (amp-personalize up): receiver and Dagster UI come up together and Ctrl-C stops both."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from amp_personalize_tests.conftest import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def wait_for(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    return False


def refused(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
    except httpx.TransportError:
        return True
    return False


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what a shell does to a background job (`make up &`)


@pytest.mark.parametrize("started_as", ["foreground", "background job"])
def test_up_starts_both_and_ctrl_c_stops_both(tmp_path, started_as):
    receiver_port, ui_port = free_port(), free_port()
    env = {**os.environ, "AMP_DATA_DIR": str(tmp_path / "data"), "AMP_RECEIVER_PORT": str(receiver_port)}
    env.pop("DAGSTER_HOME", None)
    output = tmp_path / "up.log"
    with open(output, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "amp_personalize.cli", "up", "--ui-port", str(ui_port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=ignore_sigint if started_as == "background job" else None,
        )
    try:
        assert wait_for(f"http://127.0.0.1:{receiver_port}/healthz", 60)
        assert wait_for(f"http://127.0.0.1:{ui_port}/server_info", 120)
        assert (tmp_path / "data" / "dagster" / "dagster.yaml").exists()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    # Issue 16: every `make up` opened with `dagster dev`'s SupersessionWarning ("use 'dg dev'").
    said = output.read_text(errors="replace")
    assert "Serving dagster-webserver on" in said
    assert "Warning" not in said and "WARNING" not in said, said
    assert refused(f"http://127.0.0.1:{receiver_port}/healthz")
    assert refused(f"http://127.0.0.1:{ui_port}/server_info")
    # Nothing of dagster dev's left behind: its webserver, daemon and code servers all name the instance.
    deadline = time.monotonic() + 10
    while (left := subprocess.run(["pgrep", "-f", str(tmp_path / "data" / "dagster")], capture_output=True, text=True).stdout.split()):
        assert time.monotonic() < deadline, f"processes left running: {left}"
        time.sleep(0.25)


def test_the_default_instance_ends_hung_window_runs_and_a_users_own_config_is_kept(tmp_path):
    """One window run at a time: a run whose worker died must not hold the others back for ever."""
    import dagster as dg

    from amp_personalize.definitions import defs
    from amp_personalize.services import dagster_home
    from amp_personalize.settings import Settings

    home = dagster_home(Settings.from_env({"AMP_DATA_DIR": str(tmp_path / "data")}))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.run_monitoring_enabled
    assert defs.resolve_job_def("process_window").tags["dagster/max_runtime"] == "7200"

    own = tmp_path / "own" / "data"
    (own / "dagster").mkdir(parents=True)
    (own / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    dagster_home(Settings.from_env({"AMP_DATA_DIR": str(own)}))
    assert (own / "dagster" / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"


def test_a_second_make_up_names_the_port_in_one_line_and_starts_nothing(tmp_path):
    receiver_port, ui_port = free_port(), free_port()
    env = {**os.environ, "AMP_DATA_DIR": str(tmp_path / "data"), "AMP_RECEIVER_PORT": str(receiver_port)}
    env.pop("DAGSTER_HOME", None)
    first = subprocess.Popen([sys.executable, "-m", "amp_personalize.cli", "up", "--ui-port", str(ui_port)],
                             cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(f"http://127.0.0.1:{receiver_port}/healthz", 60)
        # As typed in a shell: under `make test` the outer make's MAKELEVEL made it "make[1]: ***".
        shell = {k: v for k, v in env.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
        second = subprocess.run(["make", "--no-print-directory", "up"], cwd=ROOT, env=shell, capture_output=True, text=True, timeout=120)
        assert second.returncode != 0
        ours = [line for line in (second.stdout + second.stderr).splitlines() if not line.startswith("make: ***")]
        assert ours == [f"Error: port {receiver_port} on 127.0.0.1 (the receiver, AMP_RECEIVER_PORT) is in use: is `make up` already running?"]
        assert first.poll() is None and httpx.get(f"http://127.0.0.1:{receiver_port}/healthz").status_code == 200
    finally:
        first.send_signal(signal.SIGINT)
        try:
            first.wait(60)
        except subprocess.TimeoutExpired:
            first.kill()


def test_serve_on_a_taken_port_says_so_in_one_line(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "AMP_DATA_DIR": str(tmp_path / "data")}
        done = subprocess.run([sys.executable, "-m", "amp_personalize.cli", "serve", "--port", str(port)],
                              env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [
        f"Error: port {port} on 127.0.0.1 (AMP_RECEIVER_PORT / --port) is in use: is `make up` or another `amp-personalize serve` already running?"
    ]
