"""`amp-personalize process` with the Personalize backend: one pass of the daemon, the push included."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from amp_personalize.events.windows import window_key, window_of
from amp_personalize_tests.landing_fixture import write_segment
from amp_personalize_tests.put_events_endpoint import PutEventsEndpoint

HOUR = 3_600_000


def clicks(user: str, n: int, start: int) -> list[dict]:
    return [{"event_type": "click", "user_id": user, "session_id": 1, "time": start + i * 1000, "uuid": f"{user}-{i}",
             "event_properties": {"item_id": f"doc{i}"}} for i in range(n)]


def process(tmp_path, endpoint: PutEventsEndpoint, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMP_", "AWS_", "DAGSTER_"))}
    env.update(endpoint.env(), AMP_DATA_DIR=str(tmp_path / "data"), AWS_PERSONALIZE_TRACKING_ID="tracker-1")
    return subprocess.run([sys.executable, "-m", "amp_personalize.cli", "process", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=240)


def test_process_pushes_what_is_pending_once_and_says_what_it_pushed(tmp_path):
    now = int(time.time() * 1000)
    closed = window_key(window_of(now, 60) - 2 * HOUR)
    write_segment(tmp_path / "data", closed, clicks("ann", 3, now - 2 * HOUR), name="0000000000001-a-000001")
    write_segment(tmp_path / "data", closed, clicks("bob", 2, now - 2 * HOUR) + [{"event_type": "page_view", "user_id": "bob"}],
                  name="0000000000002-a-000001")
    with PutEventsEndpoint() as endpoint:
        first = process(tmp_path, endpoint)
        assert first.returncode == 0, first.stderr
        assert f"processed 1 window(s): {closed}" in first.stdout
        assert "pushed 5 event(s) from 2 segment(s) to Personalize in 2 PutEvents call(s)" in first.stdout
        assert sorted(endpoint.event_ids()) == sorted(set(endpoint.event_ids())) and len(endpoint.event_ids()) == 5
        assert {call["trackingId"] for call in endpoint.calls} == {"tracker-1"}

        again = process(tmp_path, endpoint)  # the ledger says every event is acknowledged
        assert again.returncode == 0, again.stderr
        assert "pushed 0 event(s) from 0 segment(s)" in again.stdout
        assert len(endpoint.event_ids()) == 5
