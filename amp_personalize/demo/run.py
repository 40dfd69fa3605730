"""`make demo`: generated events through the real HTTP endpoint, then the whole pipeline.

Starts a receiver, replays a seeded, realistic event set ending now, stops the receiver (which
seals its segments), processes every window including the open one, and prints answers from
duckdb. Runs against AMP_DATA_DIR (default ./data); running it again rebuilds idempotently.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import click
import httpx

from amp_personalize.demo.generator import generate_events, write_ndjson_gz
from amp_personalize.lake.queries import DEMO_QUERIES
from amp_personalize.lake.warehouse import query
from amp_personalize.process import dagster_instance, process_once
from amp_personalize.receiver.app import WEBHOOK_PATH
from amp_personalize.replay import replay
from amp_personalize.settings import Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_receiver(env: dict[str, str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "amp_personalize.cli", "serve", "--port", str(port)], env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the receiver did not start")


@click.command()
@click.option("--users", default=300, show_default=True)
@click.option("--items", default=1500, show_default=True)
@click.option("--days", default=14, show_default=True)
@click.option("--seed", default=7, show_default=True)
def main(users: int, items: int, days: int, seed: int) -> None:
    settings = Settings.from_env()
    events_file = settings.data_dir / "demo" / f"events-{seed}-{users}-{items}-{days}.ndjson.gz"
    click.echo(f"generating {users} users x {items} items x {days} days of events (seed {seed}) ...")
    write_ndjson_gz(generate_events(users, items, days, seed, end_ms=int(time.time() * 1000)), events_file)

    port = _free_port()
    env = {**os.environ, "AMP_DATA_DIR": str(settings.data_dir)}
    receiver = start_receiver(env, port)
    try:
        summary = replay([events_file], f"http://127.0.0.1:{port}{WEBHOOK_PATH}", secret=settings.webhook_secret)
    finally:
        receiver.send_signal(signal.SIGINT)  # a clean stop seals the open segment
        receiver.wait(30)
    click.echo(
        f"replayed: sent {summary.sent}, processed {summary.processed}, skipped {summary.skipped}, "
        f"failed {summary.failed}, invalid {summary.invalid}"
    )

    with dagster_instance(settings) as instance:
        report = process_once(settings, all_windows=True, instance=instance)
    click.echo(f"materialized windows: {', '.join(report.windows) or '-'}; failed: {', '.join(report.failed) or 'none'}")
    for title, sql in DEMO_QUERIES.items():
        click.echo(f"\n{title}\n{query(settings.warehouse_path, sql)}")
    click.echo(f"\nOpen the Dagster UI with `make up` (http://127.0.0.1:3000) to see the runs, checks and metadata.")
    if report.failed or summary.failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
