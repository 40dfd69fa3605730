"""Crash safety with a real receiver process: SIGKILL under load, restart, nothing acknowledged lost."""

import contextlib
import os
import resource
import signal
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest

from amp_personalize_tests.conftest import (
    WEBHOOK,
    ReceiverProcess,
    gone,
    landed_lines,
    sync_processes,
)

pytestmark = pytest.mark.slow


def _load(url: str, stop: threading.Event, acked: list, worker: int) -> None:
    with httpx.Client(timeout=5) as client:
        n = 0
        while not stop.is_set():
            ids = [f"w{worker}-{n}-{k}" for k in range(5)]
            n += 1
            body = orjson.dumps({"events": [{"event_type": "click", "user_id": "u", "uuid": i, "event_properties": {"item_id": "d"}} for i in ids]})
            try:
                r = client.post(url + WEBHOOK, content=body)
            except httpx.TransportError:
                return  # the receiver died under us: this request was never acknowledged
            if r.status_code == 200:
                acked.extend(ids)


def test_sigkill_mid_load_loses_no_acknowledged_event(tmp_path):
    data = tmp_path / "data"
    first = ReceiverProcess(data).start()
    stop, acked = threading.Event(), []
    threads = [threading.Thread(target=_load, args=(first.url, stop, acked, w)) for w in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    [sync_process] = sync_processes(first.proc.pid)
    first.kill()  # SIGKILL: no shutdown hook runs, the open segment stays open
    assert gone(sync_process), "the receiver's sync process outlived it"
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) > 100, "the load never got going"
    [left_open] = list((data / "landing").glob("*/*.ndjson.open"))
    with open(left_open, "ab") as f:  # as if the kill had cut a write in half
        f.write(b'{"kind":"event","event_id":"torn","ev')

    second = ReceiverProcess(data).start()
    try:
        metrics = httpx.get(second.url + "/metrics").text
        assert "amp_landing_quarantined_lines_total 1.0" in metrics
        assert "amp_landing_segments_recovered_total 1.0" in metrics
        assert not left_open.exists()
        landed = {line["event_id"] for line in landed_lines(data, include_open=False)}
        missing = set(acked) - landed
        assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:3]}"
        assert "torn" not in landed
        assert [p.read_bytes() for p in (data / "quarantine").glob("*/*.torn")] == [b'{"kind":"event","event_id":"torn","ev\n']
        r = httpx.post(second.url + WEBHOOK, content=orjson.dumps({"event_type": "click", "user_id": "u", "uuid": "after"}))
        assert r.status_code == 200
    finally:
        second.stop()
    assert "after" in {line["event_id"] for line in landed_lines(data, include_open=False)}


def test_serve_workers_stop_cleanly_when_their_supervisor_is_sigkilled(tmp_path):
    """They would go on serving the port with nobody to restart them, and a new `serve` on it
    would fail with "Address already in use"."""
    data = tmp_path / "data"
    first = ReceiverProcess(data, args=("--workers", "2")).start()
    stop, acked = threading.Event(), []
    threads = [threading.Thread(target=_load, args=(first.url, stop, acked, w)) for w in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    workers = {int(pid) for pid in Path(f"/proc/{first.proc.pid}/task/{first.proc.pid}/children").read_text().split()
               if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()}
    assert len(workers) == 2
    first.kill()
    try:
        assert all(gone(pid, timeout=20) for pid in workers), "a worker outlived its supervisor"
    finally:
        for pid in workers:  # not to leave one serving after a failure
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) > 100, "the load never got going"
    assert not list((data / "landing").glob("*/*.ndjson.open")), "a worker did not seal its segment"
    assert set(acked) <= {line["event_id"] for line in landed_lines(data, include_open=False)}

    second = ReceiverProcess(data, port=first.port).start()  # the port is free again
    second.stop()


def _small_file_limit() -> None:
    # Writes past 16 KiB fail with EFBIG, as a full disk fails with ENOSPC: a real I/O error.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (16_384, 16_384))


def test_write_failure_is_a_503_and_lands_nothing_from_that_request(tmp_path):
    data = tmp_path / "data"
    proc = ReceiverProcess(data, env={"AMP_SEGMENT_MAX_BYTES": str(1 << 30)}, preexec=_small_file_limit).start()
    statuses, acked, refused = [], [], []
    try:
        for n in range(12):  # ~3 KiB a request: the 6th crosses 16 KiB
            ids = [f"r{n}-{k}" for k in range(20)]
            body = {"events": [{"event_type": "click", "user_id": "u", "uuid": i, "event_properties": {"item_id": "x" * 80}} for i in ids]}
            r = httpx.post(proc.url + WEBHOOK, content=orjson.dumps(body), timeout=10)
            statuses.append(r.status_code)
            (acked if r.status_code == 200 else refused).extend(ids)
            if r.status_code == 503:
                assert r.json()["code"] == 503
                assert "File too large" in r.json()["error"] and "retry" in r.json()["error"]
        assert httpx.get(proc.url + "/healthz").status_code == 200
    finally:
        proc.stop()
    assert 503 in statuses and statuses[0] == 200
    assert statuses[statuses.index(503) + 1] == 200, "landing resumes in a fresh segment after a failed write"
    landed = [line["event_id"] for line in landed_lines(data, include_open=False)]
    assert sorted(landed) == sorted(acked), "every acknowledged event once, nothing from a refused request"
    assert not set(refused) & set(landed)
