"""Several receivers, one lake (SPEC section 9), run as a user runs them: `serve` processes on
their own data directories shipping to S3 (moto's server on loopback), a client that resends as
Amplitude and a load balancer do, crashes, and `process` on a fourth host with only the URLs."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import polars as pl
import pytest

from amp_personalize.storage.s3 import storage_options
from amp_personalize_tests.conftest import ReceiverProcess
from amp_personalize_tests.s3_server import BUCKET

pytestmark = pytest.mark.slow
WEBHOOK = "/webhooks/amplitude/"
LANDING, LAKE = f"s3://{BUCKET}/landing", f"s3://{BUCKET}/lake"


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def shipper_of(receiver: ReceiverProcess) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for child in children(receiver.proc.pid):
            if b"ship" in Path(f"/proc/{child}/cmdline").read_bytes():
                return child
        time.sleep(0.1)
    raise AssertionError("no shipper process")


class Client:
    """Round-robin over the receivers; a refused or cut-off request goes to the next one."""

    def __init__(self, receivers: list[ReceiverProcess]) -> None:
        self.receivers = receivers
        self.turn = 0
        self.acknowledged: set[str] = set()
        self.requests = 0

    def send(self, events: list[dict], skip: int = 0) -> None:
        for attempt in range(30):
            receiver = self.receivers[(self.turn + skip + attempt) % len(self.receivers)]
            try:
                reply = httpx.post(receiver.url + WEBHOOK, json={"events": events}, timeout=10)
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            self.requests += 1
            if reply.status_code == 200:
                self.acknowledged.update(e["uuid"] for e in events)
                self.turn += 1
                return
        raise AssertionError("no receiver acknowledged a batch")


def batch(n: int) -> list[dict]:
    return [{"event_type": "click", "user_id": f"u{(n * 7 + i) % 40}", "uuid": f"e{n}-{i}", "event_properties": {"item_id": f"d{(n + i) % 25}"}}
            for i in range(8)]


def process_elsewhere(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """`process` on a host with nothing but the URLs (and S3 credentials) set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMP_", "DAGSTER_"))}
    env.update(AMP_DATA_DIR=str(tmp_path / "processing"), AMP_LANDING_URL=LANDING, AMP_LAKE_URL=LAKE)
    return subprocess.run([sys.executable, "-m", "amp_personalize.cli", "process", *args], env=env, capture_output=True, text=True, timeout=300)


def lake_ids(dataset: str = "raw_events") -> list[str]:
    return pl.scan_parquet(f"{LAKE}/{dataset}/*.parquet", storage_options=storage_options()).select("event_id").collect()["event_id"].to_list()


def test_every_acknowledged_event_reaches_the_lake_once_through_crashes_and_resends(tmp_path, s3):
    env = {"AMP_LANDING_URL": LANDING, "AMP_SEGMENT_MAX_AGE_SECONDS": "0.3"}
    receivers = [ReceiverProcess(tmp_path / f"volume{i}", env=env).start() for i in range(3)]
    client = Client(receivers)
    try:
        for n in range(240):
            client.send(batch(n))
            if n % 10 == 3:  # an Amplitude retry of a delivery already acknowledged, to another receiver
                client.send(batch(n), skip=1)
            if n == 60:  # a shipper killed mid-upload: serve starts another
                os.kill(shipper_of(receivers[0]), signal.SIGKILL)
            if n == 100:  # a receiver killed mid-load, restarted on its own volume
                receivers[1].kill()
            if n == 130:
                receivers[1] = ReceiverProcess(tmp_path / "volume1", env=env, port=receivers[1].port).start()
        assert len(client.acknowledged) == 240 * 8
    finally:
        for receiver in receivers:
            receiver.stop()  # graceful: seal, ship, mark the volume stopped

    done = process_elsewhere(tmp_path, "--all-windows")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (tmp_path / "processing" / "landing").exists() and not (tmp_path / "processing" / "lake").exists()
    ids = lake_ids()
    assert len(ids) == len(set(ids)) and set(ids) == client.acknowledged
    assert len(lake_ids("interactions")) == len(client.acknowledged)
    # No segment is in S3 under two names: every object's bytes are its own.
    landing = [k for k in s3.keys("landing/") if not k.startswith("landing/_volumes/")]
    digests = [hashlib.sha256(s3.client().get_object(Bucket=BUCKET, Key=k)["Body"].read()).hexdigest() for k in landing]
    assert len(digests) == len(set(digests)) and len({k.split("/")[2] for k in landing}) == 3
