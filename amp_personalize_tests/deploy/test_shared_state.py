"""State shared by hosts in Postgres (AMP_DATABASE_URL), exercised by the commands as users run them:
a push killed between PutEvents and its ledger commit, a push refused while another holds the
lease, and two `process` runs at once against the same Postgres and S3."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest

from amp_personalize.backends.personalize.ledger import Ledger
from amp_personalize.events.windows import window_key, window_of
from amp_personalize.landing.shipping import Shipper
from amp_personalize.settings import Settings
from amp_personalize_tests.landing_fixture import write_segment
from amp_personalize_tests.put_events_endpoint import PutEventsEndpoint
from amp_personalize_tests.s3_server import BUCKET, S3Server

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
HOUR = 3_600_000


def clicks(users: int, per_user: int, start: int) -> list[dict]:
    return [{"event_type": "click", "user_id": f"u{u}", "session_id": 1, "time": start + i * 1000, "uuid": f"u{u}-{i}",
             "event_properties": {"item_id": f"d{i}"}} for u in range(users) for i in range(per_user)]


def clean_env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("AMP_", "AWS_", "DAGSTER_"))}, **extra}


def test_a_push_killed_between_put_events_and_its_commit_resends_only_that_call(tmp_path, database_url):
    now = int(time.time() * 1000)
    write_segment(tmp_path / "data", window_key(window_of(now, 60) - 2 * HOUR), clicks(8, 3, now - 2 * HOUR))
    with PutEventsEndpoint() as endpoint:
        env = clean_env(**endpoint.env(), AMP_DATA_DIR=str(tmp_path / "data"), AMP_DATABASE_URL=database_url,
                        AWS_PERSONALIZE_TRACKING_ID="tracker-1", AMP_PERSONALIZE_PUSH_CONCURRENCY="1")
        command = [sys.executable, "-m", "amp_personalize.cli", "process"]
        first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        endpoint.on_call = lambda number, call: os.kill(first.pid, signal.SIGKILL) if number == 3 else None
        first.communicate(timeout=240)
        assert first.returncode == -signal.SIGKILL and len(endpoint.calls) == 3
        killed_call = {e["eventId"] for e in endpoint.calls[2]["eventList"]}

        endpoint.on_call = lambda number, call: None
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "pushed 18 event(s)" in again.stdout  # the killed call's 3 again, and the 15 never sent
    sent = Counter(endpoint.event_ids())
    assert set(sent) == {e["uuid"] for e in clicks(8, 3, 0)}  # none missing
    twice = {event for event, n in sent.items() if n > 1}
    assert twice == killed_call and len(twice) <= 10 and max(sent.values()) == 2


def test_a_push_started_while_another_holds_the_lease_is_refused_naming_it(tmp_path, database_url):
    now = int(time.time() * 1000)
    write_segment(tmp_path / "data", window_key(window_of(now, 60) - 2 * HOUR), clicks(2, 2, now - 2 * HOUR))
    with PutEventsEndpoint() as endpoint:
        env = clean_env(**endpoint.env(), AMP_DATA_DIR=str(tmp_path / "data"), AMP_DATABASE_URL=database_url,
                        AWS_PERSONALIZE_TRACKING_ID="tracker-1")
        holder = Ledger(tmp_path / "unused", database_url=database_url)
        with holder.exclusive_push():  # a push run on another pod
            refused = subprocess.run([sys.executable, "-m", "amp_personalize.cli", "process"], env=env, capture_output=True, text=True, timeout=240)
        assert refused.returncode == 1 and endpoint.calls == []
        assert f"personalize_push is held by {socket.gethostname()} pid {os.getpid()}" in refused.stderr, refused.stderr


def test_two_process_runs_at_once_build_each_window_once(tmp_path, database_url, monkeypatch):
    with S3Server() as s3:
        host, port, user, db = _parts(database_url)
        dagster_home = tmp_path / "dagster_home"
        dagster_home.mkdir()
        (dagster_home / "dagster.yaml").write_text((ROOT / "deploy" / "dagster.yaml").read_text())
        env = clean_env(**s3.env(), AMP_LANDING_URL=f"s3://{BUCKET}/landing", AMP_LAKE_URL=f"s3://{BUCKET}/lake",
                        AMP_DATABASE_URL=database_url, DAGSTER_HOME=str(dagster_home), DAGSTER_PG_HOST=host, DAGSTER_PG_PORT=port,
                        DAGSTER_PG_USERNAME=user, DAGSTER_PG_PASSWORD="unused", DAGSTER_PG_DB=db, DAGSTER_COMPUTE_LOGS_BUCKET=BUCKET)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        now = int(time.time() * 1000)
        volume = Settings.from_env({"AMP_DATA_DIR": str(tmp_path / "volume"), "AMP_LANDING_URL": f"s3://{BUCKET}/landing"})
        windows = [window_key(window_of(now, 60) - k * HOUR) for k in (4, 3, 2)]
        for k, window in enumerate(windows):
            write_segment(volume.data_dir, window, clicks(5, 4, now - (4 - k) * HOUR), name=f"{now - (4 - k) * HOUR:013d}-a-{k:06d}")
        Shipper(volume).ship_once()
        with dg.DagsterInstance.get() as instance:  # its tables made once, before the two race
            pass
        command = [sys.executable, "-m", "amp_personalize.cli", "process"]
        both = [subprocess.Popen(command, env={**env, "AMP_DATA_DIR": str(tmp_path / f"host{i}")}, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for i in range(2)]
        outputs = [p.communicate(timeout=300) for p in both]
        for out, err in outputs:
            print(out, err, sep="\n")  # shown in full if the test fails
        assert [p.returncode for p in both] == [0, 0]
        assert any("another `amp-personalize process` is running" in err for _, err in outputs), outputs
        with dg.DagsterInstance.get() as instance:
            built = Counter(r.event_log_entry.dagster_event.partition for r in
                            instance.fetch_materializations(dg.AssetKey("raw_events"), limit=100).records)
        assert built == Counter(windows)  # each window once, whichever built it


def _parts(url: str) -> tuple[str, str, str, str]:
    rest = url.removeprefix("postgresql://")
    user, _, rest = rest.partition("@")
    hostport, _, db = rest.partition("/")
    host, _, port = hostport.partition(":")
    return host, port, user, db
