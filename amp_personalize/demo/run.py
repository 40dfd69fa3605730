"""`make demo`: generated events through the real HTTP endpoint, then the whole pipeline.

It needs no `make up`: it starts a receiver of its own on a free port and stops it once the events
are in, then runs the pipeline in this process, recording the runs in the Dagster instance that
`make up`'s UI reads. Runs against AMP_DATA_DIR (default ./data); running it again rebuilds
idempotently.

The events are a site's whose receiver started `--live-hours` ago: the Amplitude export of the
weeks before arrives first, at once, as `amp-personalize replay` sends one; then the live traffic
lands at its delivery time, each hour in its own window (the demo's receiver runs on a clock the
demo moves, see receiver.py). So the UI shows a backfill window and several hourly ones after it,
as a real first day would, in seconds rather than hours. Events Amplitude would deliver after now
(late batches, retries) are not sent.
"""

from __future__ import annotations

import itertools
import os
import sys
import time

import click
import httpx

from amp_personalize.demo.generator import HOUR_MS, generate_deliveries, user_taste, write_ndjson_gz
from amp_personalize.demo.receiver import DemoReceiver
from amp_personalize.events import WeightsError, load_weights
from amp_personalize.lake.queries import DEMO_QUERIES
from amp_personalize.lake.warehouse import fetch, query
from amp_personalize.lake.store import lake as lake_store
from amp_personalize.replay import ReplaySummary, batches, post_batch, replay
from amp_personalize.serving.cache import RecommendationCache
from amp_personalize.settings import Settings, SettingsError

# Daemons post a heartbeat every 30 s; one fresher than this is a daemon running now.
DAEMON_RECENT_SECONDS = 75


def running_daemon(settings: Settings) -> float | None:
    """Seconds since the last heartbeat of a Dagster daemon on the instance this demo records
    into, if that is recent (`make up` running on the same data directory), else None."""
    import dagster as dg

    from amp_personalize.services import dagster_home

    home = os.environ.get("DAGSTER_HOME") or str(dagster_home(settings))
    if not os.path.isdir(home):
        return None
    with dg.DagsterInstance.from_config(home) as instance:
        beats = instance.get_daemon_heartbeats().values()
    age = time.time() - max((b.timestamp for b in beats), default=0)
    return age if age < DAEMON_RECENT_SECONDS else None


def stream_live(receiver: DemoReceiver, live: list[tuple[int, dict]], summary: ReplaySummary, secret: str | None) -> None:
    """Each minute's deliveries in one request, received at the last of them."""
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {secret}"} if secret else {})}
    with httpx.Client(timeout=60) as client:
        for _, minute in itertools.groupby(live, key=lambda delivery: delivery[0] // 60_000):
            minute = list(minute)
            receiver.at(minute[-1][0])
            for batch in batches((event for _, event in minute), 500):
                summary.count(len(batch), *post_batch(client, receiver.url, batch, headers, max_retries=6, backoff=0.5))


def _span(windows: list[str]) -> str:
    return f"{len(windows)} ({windows[0]} to {windows[-1]})" if len(windows) > 1 else ", ".join(windows) or "none"


@click.command()
@click.option("--users", default=300, show_default=True)
@click.option("--items", default=1500, show_default=True)
@click.option("--days", default=14, show_default=True)
@click.option("--seed", default=7, show_default=True)
@click.option("--live-hours", default=6, show_default=True, type=click.IntRange(1),
              help="How long ago the site's receiver started: what was delivered since lands hour by hour.")
def main(users: int, items: int, days: int, seed: int, live_hours: int) -> None:
    try:  # a bad setting or weight file: one line now, not a traceback after the replay
        settings = Settings.from_env()
        load_weights(settings.weights_file)
    except (SettingsError, WeightsError) as exc:
        raise click.UsageError(str(exc)) from None
    if (age := running_daemon(settings)) is not None:
        raise click.UsageError(
            f"a Dagster daemon is running on {settings.data_dir} (its last heartbeat was {age:.0f} s ago: `make up`?). "
            "Its landing sensor would process the demo's windows alongside the demo. Stop it first (the demo "
            "does not need it), or give the demo another AMP_DATA_DIR."
        )

    now = int(time.time() * 1000)
    began = now - live_hours * HOUR_MS
    click.echo(f"generating {users} users x {items} items x {days} days of events (seed {seed}) ...")
    deliveries = generate_deliveries(users, items, days, seed, end_ms=now)
    export = [event for when, event in deliveries if when < began]
    live = [(when, event) for when, event in deliveries if began <= when <= now]
    export_file = write_ndjson_gz(export, settings.data_dir / "demo" / f"export-{seed}-{users}-{items}-{days}.ndjson.gz")
    click.echo(
        f"the receiver started {live_hours} h ago: it gets the Amplitude export of the {len(export)} events "
        f"delivered before that, then the {len(live)} delivered since, each at its delivery time "
        f"({len(deliveries) - len(export) - len(live)} more, late batches and retries, would arrive after now: not sent)"
    )
    with DemoReceiver(settings, began) as receiver:
        summary = replay([export_file], receiver.url, secret=settings.webhook_secret)
        stream_live(receiver, live, summary, settings.webhook_secret)
    click.echo(
        f"replayed: sent {summary.sent}, processed {summary.processed}, skipped {summary.skipped}, "
        f"failed {summary.failed}, invalid {summary.invalid}"
    )

    # Only now: the window partitions start where the landed data does, read when the pipeline loads.
    from amp_personalize.process import dagster_instance, process_once, train_once

    with dagster_instance(settings) as instance:
        report = process_once(settings, all_windows=True, instance=instance)
    click.echo(f"materialized windows: {_span(report.windows)}; failed: {', '.join(report.failed) or 'none'}")
    for why in report.waiting:
        click.echo(f"  {why}")
    for title, sql in DEMO_QUERIES.items():
        click.echo(f"\n{title}\n{query(settings.warehouse_path, sql)}")

    with dagster_instance(settings) as instance:
        trained, meta = train_once(settings, instance)
    click.echo(
        f"\ntrained model {meta.get('version')} ({meta.get('algorithm')}): NDCG@10 {meta.get('ndcg_at_10', 0):.4f} "
        f"vs popularity {meta.get('ndcg_at_10_popularity', 0):.4f} on Personalize's split"
    )
    show_users(settings, user_taste(seed, users, items))
    click.echo(
        f"\n`make demo` needed no `make up`: it ran its own receiver (stopped now) and the pipeline in this process. "
        f"To look at the {len(report.windows)} windows' runs, partitions, checks and metadata in the Dagster UI, "
        f"run `make up` now (http://127.0.0.1:3000; the same AMP_DATA_DIR, {settings.data_dir})."
    )
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
