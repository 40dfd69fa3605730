"""The production topology rehearsed on one machine (deploy/local/rehearse.py), as a user starts it:
Postgres, moto's S3, the code server, the daemon, the webserver and two receivers shipping to S3."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import polars as pl
import psycopg2
import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
WEBHOOK = "/webhooks/amplitude/"


@pytest.fixture(scope="module")
def rehearsal():
    where_dir = Path(tempfile.mkdtemp(prefix="amp-rehearsal-test-"))
    where_dir.chmod(0o755)  # PostgreSQL runs as the postgres user under it
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "deploy" / "local" / "rehearse.py"), "--dir", str(where_dir),
         "--window-minutes", "1", "--grace-seconds", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, process_group=0,
    )
    deadline = time.monotonic() + 180
    while not (where_dir / "rehearsal.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the rehearsal did not start:\n{proc.stdout.read().decode()[-3000:]}")
        time.sleep(0.5)
    where = json.loads((where_dir / "rehearsal.json").read_text())
    yield where
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0 and out.decode().rstrip().endswith("stopped"), out.decode()[-2000:]
    for name, pid in where["pids"].items():
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2], f"{name} still runs"
    shutil.rmtree(where_dir, ignore_errors=True)


def runs(where: dict) -> list[tuple]:
    with psycopg2.connect(where["postgres"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT run_id, pipeline_name, status, run_body FROM runs ORDER BY create_timestamp")
        return [(run_id, job, status, json.loads(body).get("tags", {}).get("dagster/partition")) for run_id, job, status, body in cur.fetchall()]


def run_workers(code_server: int) -> list[int]:
    """The run worker processes the code server started (multiprocessing's spawn children)."""
    found = []
    for task in Path(f"/proc/{code_server}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(int(child))
            except FileNotFoundError:
                pass
    return found


def lake(where: dict, dataset: str) -> pl.DataFrame:
    env = where["env"]
    options = {"aws_endpoint_url": env["AWS_ENDPOINT_URL_S3"], "aws_access_key_id": "rehearsal", "aws_secret_access_key": "rehearsal",
               "aws_region": "us-east-1", "aws_allow_http": "true"}
    return pl.read_parquet(f"s3://{where['bucket']}/lake/{dataset}/*.parquet", storage_options=options)


def test_the_daemon_builds_both_receivers_events_into_the_s3_lake_through_a_killed_run(rehearsal):
    where = rehearsal
    sent: set[str] = set()
    for k, receiver in enumerate(where["receivers"]):
        for batch in range(6):
            events = [{"event_type": "click", "user_id": f"u{i % 40}", "uuid": f"r{k}-{batch}-{i}", "event_properties": {"item_id": f"d{i % 60}"}}
                      for i in range(400)]
            assert httpx.post(receiver + WEBHOOK, json={"events": events}, timeout=30).status_code == 200
            sent.update(e["uuid"] for e in events)

    # The first window run, once started, loses its worker to SIGKILL.
    killed = None
    deadline = time.monotonic() + 240
    while killed is None and time.monotonic() < deadline:
        if any(job == "process_window" and status == "STARTED" for _, job, status, _ in runs(where)):
            for worker in run_workers(where["pids"]["code-server"]):
                os.kill(worker, signal.SIGKILL)
                killed = worker
        time.sleep(0.05)
    assert killed is not None, runs(where)

    # The run is marked failed, and a retry builds the window: every event once, in S3.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        window_runs = [(status, window) for _, job, status, window in runs(where) if job == "process_window"]
        built = {window for status, window in window_runs if status == "SUCCESS"}
        if any(status == "FAILURE" for status, _ in window_runs) and built:
            ids = lake(where, "raw_events")["event_id"].to_list()
            if set(ids) >= sent:
                break
        time.sleep(2)
    assert any(status == "FAILURE" for status, _ in window_runs), window_runs
    failed = {window for status, window in window_runs if status == "FAILURE"}
    assert failed <= built, window_runs
    ids = lake(where, "raw_events")["event_id"].to_list()
    assert set(ids) == sent and len(ids) == len(sent)
    print(f"window runs: {window_runs}")

    # The runs are Dagster's, in Postgres, and the webserver shows them.
    query = '{ runsOrError(filter: {pipelineName: "process_window"}) { ... on Runs { results { runId status } } } }'
    shown = httpx.post(where["graphql"], json={"query": query}, timeout=30).json()["data"]["runsOrError"]["results"]
    assert {r["runId"] for r in shown} == {run_id for run_id, job, _, _ in runs(where) if job == "process_window"}
    assert {"SUCCESS", "FAILURE"} <= {r["status"] for r in shown}

    # Nothing on a local disk holds state: no sqlite file under DAGSTER_HOME or a data directory.
    for top in [Path(where["env"]["DAGSTER_HOME"]), *Path(where["dir"]).glob("volume-*"), Path(where["dir"]) / "processing"]:
        for path in top.rglob("*") if top.exists() else []:
            if path.is_file():
                with open(path, "rb") as f:
                    assert f.read(16) != b"SQLite format 3\x00", path


def test_a_second_rehearsal_in_the_same_directory_is_refused_and_leaves_the_first_running(rehearsal):
    done = subprocess.run([sys.executable, str(ROOT / "deploy" / "local" / "rehearse.py"), "--dir", rehearsal["dir"]],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr == f"rehearse.py: a rehearsal is already running in {rehearsal['dir']}; stop it (Ctrl-C) or pass another --dir\n"
    with psycopg2.connect(rehearsal["postgres"]) as conn, conn.cursor() as cur:  # the first one's Postgres still answers
        cur.execute("SELECT 1")
    # The CLI against the rehearsal: env.sh exports what its processes were given.
    sourced = subprocess.run(["bash", "-c", f"source {shlex.quote(str(Path(rehearsal['dir']) / 'env.sh'))} && env -0"],
                             env={}, capture_output=True, text=True, check=True).stdout
    exported = dict(line.split("=", 1) for line in sourced.split("\0") if "=" in line)
    for name in ("DAGSTER_HOME", "DAGSTER_PG_PORT", "AMP_DATABASE_URL", "AMP_LANDING_URL", "AMP_LAKE_URL", "AWS_ENDPOINT_URL_S3"):
        assert exported[name] == rehearsal["env"][name], name
    assert exported["AMP_DATA_DIR"] == str(Path(rehearsal["dir"]) / "processing")
