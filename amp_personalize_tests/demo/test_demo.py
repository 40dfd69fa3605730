"""`make demo` as a user runs it, and the Dagster UI afterwards as a user looks at it (in Chromium)."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import orjson
import pytest
from click.testing import CliRunner

from amp_personalize.demo.run import main as demo
from amp_personalize.events.windows import window_start_ms
from amp_personalize.services import dagster_home
from amp_personalize.settings import Settings
from amp_personalize_tests.conftest import free_port
from amp_personalize_tests.test_services import wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--users", "60", "--items", "300", "--days", "3"]  # and its default 6 live hours
HOUR = 3_600_000


def as_a_user_runs_it(data: Path) -> dict[str, str]:
    """The environment of `make demo` / `make up` on a data directory: no test-pinned partitions start."""
    env = {**os.environ, "AMP_DATA_DIR": str(data)}
    for name in ("AMP_PARTITIONS_START", "DAGSTER_HOME"):
        env.pop(name, None)
    return env


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    data = tmp_path_factory.mktemp("demo") / "data"
    started = int(time.time() * 1000)
    result = subprocess.run(
        [sys.executable, "-m", "amp_personalize.demo.run", *SMALL],
        cwd=ROOT, env=as_a_user_runs_it(data), capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return data, result.stdout, started


def built_windows(data: Path) -> set[str]:
    with dg.DagsterInstance.from_config(str(data / "dagster")) as instance:
        return instance.get_materialized_partitions(dg.AssetKey("raw_events"))


def test_the_demo_lands_a_backfill_then_an_hour_per_window_and_builds_them_all(demo_run):
    """Issue 16: the demo's 14 days of events all sat in one hourly window (one dot per plot)."""
    data, said, started = demo_run
    windows = sorted(p.name for p in (data / "landing").iterdir())
    assert len(windows) >= 6  # the export's window, then an hour's each (the current one's too, if any yet)
    began = (started - 6 * HOUR) // HOUR * HOUR
    assert window_start_ms(windows[0]) in (began, began + HOUR)  # the hour may turn as the demo starts
    assert built_windows(data) == set(windows)
    assert (data / "partitions_start").read_text().startswith(
        time.strftime("%Y-%m-%dT%H:00:00", time.gmtime(window_start_ms(windows[0]) / 1000))
    )
    # Received as a receiver running all along would have: the live events within a minute or
    # so of their delivery, the export's days after the events (lag from event time to landing).
    with dg.DagsterInstance.from_config(str(data / "dagster")) as instance:
        records = instance.fetch_materializations(dg.AssetKey("raw_events"), limit=100).records
    lag = {r.asset_materialization.partition: r.asset_materialization.metadata.get("lag_seconds_p50") for r in records}
    assert lag[windows[0]].value > 86_400
    live = sorted(lag[w].value for w in windows[1:] if lag[w] is not None)
    assert live[len(live) // 2] < 120  # a window of only late batches lags hours, as it should
    for window in windows:
        for segment in (data / "landing" / window).glob("*.ndjson"):
            received = [orjson.loads(line)["received_at"] for line in segment.read_bytes().splitlines()]
            assert all(window_start_ms(window) <= t < window_start_ms(window) + HOUR for t in received)
    assert f"materialized windows: {len(windows)} ({windows[0]} to {windows[-1]})" in said


def test_the_demo_says_it_needed_no_make_up_and_how_to_see_the_result(demo_run):
    """Issue 16: it ended telling the user to run `make up`, which read as if it needed it."""
    _, said, _ = demo_run
    assert "`make demo` needed no `make up`: it ran its own receiver (stopped now)" in said
    assert "run `make up` now (http://127.0.0.1:3000" in said


def test_the_demo_will_not_run_beside_a_daemon_on_the_same_data(tmp_path, monkeypatch):
    """The daemon's landing sensor would build the demo's windows alongside the demo's own runs."""
    from dagster._daemon.types import DaemonHeartbeat

    data = tmp_path / "data"
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = dagster_home(Settings.from_env({"AMP_DATA_DIR": str(data)}))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_daemon_heartbeat(DaemonHeartbeat(time.time(), "SENSOR", "make-up", None))
    result = CliRunner().invoke(demo, SMALL, env={"AMP_DATA_DIR": str(data)})
    assert result.exit_code == 2
    assert f"a Dagster daemon is running on {data}" in result.output and "Stop it first" in result.output
    assert not (data / "landing").exists()


def chromium() -> str:
    path = shutil.which("chromium")
    assert path, "Debian's chromium is not installed: `make test` installs it (apt-get install chromium)"
    return path


@pytest.fixture
def ui(demo_run):
    """`make up` on the demo's data, as the demo tells the user to run it (on free ports)."""
    data = demo_run[0]
    port, receiver = free_port(), free_port()
    up = subprocess.Popen(
        [sys.executable, "-m", "amp_personalize.cli", "up", "--ui-port", str(port)],
        cwd=ROOT, env={**as_a_user_runs_it(data), "AMP_RECEIVER_PORT": str(receiver)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for(f"http://127.0.0.1:{port}/server_info", 120)
        yield f"http://127.0.0.1:{port}", data
    finally:
        up.send_signal(signal.SIGINT)  # stops the receiver and dg dev, as Ctrl-C does
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()


BROWSER_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


def dismiss_first_visit_modal(page) -> None:
    for label in ("Skip", "Dismiss", "Close", "Got it", "No thanks"):
        button = page.get_by_role("dialog").get_by_role("button", name=label)
        if button.count():
            button.first.click()


def test_the_ui_after_the_demo_shows_several_filled_windows_and_plots_over_them(ui):
    """What issue 16 saw: "0% filled" of 16,900 partitions, and one dot per plot."""
    from playwright.sync_api import expect, sync_playwright

    url, data = ui
    windows = sorted(p.name for p in (data / "landing").iterdir())
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.goto(f"{url}/assets/raw_events?view=partitions")
            page.wait_for_load_state("networkidle")
            dismiss_first_visit_modal(page)
            # Every landed window a partition, each materialized; at most the open hour missing.
            expect(page.get_by_text(f"Materialized ({len(windows)})")).to_be_visible(timeout=60_000)
            missing = page.get_by_text("Missing (")
            assert missing.inner_text() in ("Missing (0)", "Missing (1)")
            for window in windows:
                expect(page.get_by_text(window, exact=True).first).to_be_visible()

            page.goto(f"{url}/assets/interactions")
            page.wait_for_load_state("networkidle")
            dismiss_first_visit_modal(page)
            expect(page.get_by_text("warehouse.main.interactions").first).to_be_visible(timeout=60_000)  # its duckdb view
            page.get_by_text("Plots", exact=True).first.click()  # the metadata's plots, over the partitions
            for series in ("dagster/partition_row_count", "skipped_share", "skipped_unweighted_type", "events_click"):
                expect(page.get_by_text(series, exact=True).first).to_be_visible()

            # Why the landing sensor waits, on its page, without opening a tick (its first tick
            # comes as the daemon starts).
            year = time.strftime("%Y", time.gmtime())
            page.goto(f"{url}/locations/amp_personalize.definitions/sensors/landing_sensor")
            page.wait_for_load_state("networkidle")
            dismiss_first_visit_modal(page)
            expect(page.get_by_text(f'{{"status": "{year}-', exact=False).first).to_be_visible(timeout=90_000)
        finally:
            browser.close()
