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

import click
import httpx

from amp_personalize.demo.generator import generate_events, user_taste, write_ndjson_gz
from amp_personalize.events import WeightsError, load_weights
from amp_personalize.lake.queries import DEMO_QUERIES
from amp_personalize.lake.warehouse import fetch, query
from amp_personalize.receiver.app import WEBHOOK_PATH
from amp_personalize.replay import replay
from amp_personalize.lake.store import lake as lake_store
from amp_personalize.serving.cache import RecommendationCache
from amp_personalize.settings import Settings, SettingsError


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
    try:  # a bad setting or weight file: one line now, not a traceback after the replay
        settings = Settings.from_env()
        load_weights(settings.weights_file)
    except (SettingsError, WeightsError) as exc:
        raise click.UsageError(str(exc)) from None
    # Only now: importing the pipeline loads modules that read the settings at import.
    from amp_personalize.process import dagster_instance, process_once, train_once

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

    with dagster_instance(settings) as instance:
        trained, meta = train_once(settings, instance)
    click.echo(
        f"\ntrained model {meta.get('version')} ({meta.get('algorithm')}): NDCG@10 {meta.get('ndcg_at_10', 0):.4f} "
        f"vs popularity {meta.get('ndcg_at_10_popularity', 0):.4f} on Personalize's split"
    )
    show_users(settings, user_taste(seed, users, items))
    click.echo("\nOpen the Dagster UI with `make up` (http://127.0.0.1:3000) to see the runs, checks and metadata.")
    if report.failed or summary.failed or not trained:
        sys.exit(1)


def show_users(settings: Settings, taste, count: int = 3) -> None:
    """A few users' history beside their recommendations, each item tagged with its topic."""
    cache = RecommendationCache(lake_store(settings))
    busiest = fetch(
        settings.warehouse_path,
        "SELECT user_id FROM interactions WHERE event_value > 0 GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 40",
    )
    for (user_id,) in busiest[::13][:count]:
        liked = fetch(
            settings.warehouse_path,
            "SELECT item_id, round(sum(event_value), 1) FROM interactions WHERE user_id = ? AND event_value > 0 "
            "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 6".replace("?", "'" + user_id.replace("'", "''") + "'"),
        )
        items, source, _ = cache.recommend(user_id, 6)
        topics = ", ".join(taste.user_topics.get(user_id, ()))
        click.echo(f"\nuser {user_id} (likes {topics})")
        click.echo(f"  {'interacted with':<34} recommended ({source})")
        for (done, weight), (rec, score) in zip(liked + [("", "")] * 6, items):
            left = f"{done} [{taste.item_topic.get(done, '')}] {weight}" if done else ""
            click.echo(f"  {left:<34} {rec} [{taste.item_topic.get(rec, '')}] {score:.3f}")


if __name__ == "__main__":
    main()
