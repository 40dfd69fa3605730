"""The `amp-personalize` command (SPEC section 8)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Iterator, NoReturn

import click

from amp_personalize.settings import MAX_NUM_RESULTS, Settings, SettingsError

PORT = click.IntRange(1, 65535)
# `sql` prints every row up to --max-rows; duckdb's table renderer draws fewer than 10,000 (at
# 10,000 it adds a stray "? rows" line).
DEFAULT_MAX_ROWS, MAX_ROWS_LIMIT = 1_000, 9_999


class SettingsProblem(click.ClickException):
    """A bad setting, weight file or data directory: one line naming it (exit status 2, as a
    usage error), without the usage text, which says nothing about the environment (QA)."""

    exit_code = 2


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise SettingsProblem(str(exc)) from None


def _check_weights(settings: Settings) -> None:
    """Read the weight file now, before anything starts, so a bad one is one clear line."""
    from amp_personalize.events import WeightsError, load_weights

    try:
        load_weights(settings.weights_file)
    except WeightsError as exc:
        raise SettingsProblem(str(exc)) from None


def _check_landing_dir(settings: Settings) -> None:
    """Fail at start with the path, not with a 503 on every request (which cannot name it)."""
    from amp_personalize.landing.segments import ensure_dir

    try:
        ensure_dir(settings.landing_dir)
    except OSError as exc:
        raise SettingsProblem(f"AMP_DATA_DIR={settings.data_dir}: cannot create {settings.landing_dir}: {exc.strerror}") from None
    if not os.access(settings.landing_dir, os.W_OK | os.X_OK):
        raise SettingsProblem(f"AMP_DATA_DIR={settings.data_dir}: {settings.landing_dir} is not writable by this user")


def _check_landing_bucket(settings: Settings) -> None:
    """A missing bucket stops `serve` and `ship` at start; an S3 out of reach does not (s3.check_bucket)."""
    if not settings.landing_url:
        return
    from amp_personalize.storage.s3 import MissingBucket, S3Url, check_bucket

    try:
        check_bucket(S3Url.parse(settings.landing_url), "AMP_LANDING_URL")
    except MissingBucket as exc:
        raise SettingsProblem(str(exc)) from None


def _instance(settings: Settings):
    """The Dagster instance `process` and `train` record their runs in, or one clear line why not."""
    from amp_personalize.process import dagster_instance

    try:
        return dagster_instance(settings)
    except SettingsError as exc:
        raise SettingsProblem(str(exc)) from None


@contextlib.contextmanager
def _shared_parts() -> Iterator[None]:
    """A database or S3 that cannot be reached is one line naming it, not a driver's traceback
    (QA: a wrong AMP_DATABASE_URL printed 44 lines ending in psycopg2's "Connection refused")."""
    from botocore.exceptions import BotoCoreError, ClientError
    from psycopg2 import OperationalError as PgOperationalError
    from sqlalchemy.exc import OperationalError as SqlOperationalError

    try:
        yield
    except (SqlOperationalError, PgOperationalError) as exc:
        said = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise click.ClickException(
            f"cannot reach the database: {said[0] if said else type(exc).__name__} "
            "(AMP_DATABASE_URL, or the run storage in $DAGSTER_HOME/dagster.yaml)"
        ) from None
    except (BotoCoreError, ClientError) as exc:
        raise click.ClickException(f"S3 (AMP_LANDING_URL / AMP_LAKE_URL): {type(exc).__name__}: {exc}") from None


def _exit_gracefully(signum, frame) -> NoReturn:
    raise SystemExit(0)


def _interrupted(stopped: KeyboardInterrupt, then: str) -> NoReturn:
    """Ctrl-C: one line saying what it stopped (see process._execute) and what to do, exit 130."""
    click.echo(f"interrupted {stopped.args[0]}; {then}" if stopped.args else f"interrupted; {then}", err=True)
    sys.exit(130)


def _failed_run(instance, job_name: str, partition: str | None = None) -> str:
    """`run <id>` of the latest failed run of the job (for that partition), with what failed.

    In-process runs log nothing to the console (the expected failures have their own message);
    an unexpected one is named here so that its full logs can be found in the Dagster UI.
    """
    import dagster as dg

    from amp_personalize.sensors.window_runs import CHECKS_FAILED

    tags = {"dagster/partition": partition} if partition else None
    records = instance.get_run_records(
        dg.RunsFilter(job_name=job_name, statuses=[dg.DagsterRunStatus.FAILURE], tags=tags), limit=1
    )
    if not records:
        return f"a {job_name} run"
    run_id = records[0].dagster_run.run_id
    failures, checks = [], ""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        error = entry.dagster_event.step_failure_data.error
        while error is not None and error.cause is not None:  # the user code's own exception
            error = error.cause
        if error is not None and error.cls_name == CHECKS_FAILED:
            checks = checks or _blocking_checks_failed(instance, run_id, partition)  # the run's, once
            continue
        message = error.message.strip().splitlines()[0] if error is not None and error.message.strip() else "failed"
        failures.append(f"{entry.dagster_event.step_key}: {message}")
    failures += [checks] if checks else []
    return f"run {run_id}" + (f" ({'; '.join(failures)})" if failures else "")


def _blocking_checks_failed(instance, run_id: str, partition: str | None) -> str:
    """Which blocking checks kept what out of the lake, and where the rows they refused are."""
    import dagster as dg

    from amp_personalize.lake.parquet import UNPARTITIONED
    from amp_personalize.lake.store import lake as lake_store

    lake = lake_store(_settings())
    failed = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        check = entry.dagster_event.event_specific_data
        if not check.passed and check.severity == dg.AssetCheckSeverity.ERROR:
            dataset = check.asset_key.to_user_string()
            kept = partition or UNPARTITIONED
            kept = f", its rows kept in {lake.uri(dataset, kept, rejected=True)}" if lake.stat(dataset, kept, rejected=True) else ""
            failed.append(f"{dataset} failed its blocking check {check.check_name}{kept}")
    return "; ".join(failed) or "a blocking asset check failed"


@click.group()
def main() -> None:
    """Amplitude events in, personalized recommendations out."""


@main.command()
@click.option("--host", default=None, help="Interface to bind [AMP_RECEIVER_HOST, 127.0.0.1].")
@click.option("--port", type=PORT, default=None, help="Port [AMP_RECEIVER_PORT, 8000].")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Receiver processes.")
def serve(host: str | None, port: int | None, workers: int) -> None:
    """Run the webhook receiver alone."""
    from dataclasses import replace

    from amp_personalize.receiver import serve as receiver

    settings = _settings()
    settings = replace(settings, receiver_host=host or settings.receiver_host, receiver_port=settings.receiver_port if port is None else port)
    if settings.serving_port == settings.receiver_port:
        raise SettingsProblem(f"AMP_SERVING_PORT={settings.serving_port} is the webhook's port (--port): give serving a port of its own")
    _check_weights(settings)  # fail here, not in every worker
    _check_landing_dir(settings)
    _check_landing_bucket(settings)
    try:
        sockets = receiver.listeners(settings)
    except receiver.PortUnavailable as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # 14 "setup plugin" lines when Dagster's storage loads
    receiver.export(settings)
    if workers > 1:  # they stop with this process however it ends (receiver.app.end_with_supervisor)
        from amp_personalize.receiver.app import SUPERVISOR_PID_ENV

        os.environ[SUPERVISOR_PID_ENV] = str(os.getpid())
    shipper = receiver.start_shipper(settings)
    # uvicorn stops gracefully on SIGTERM, then raises it again under the handler it found: this
    # one, so that the shipper still ships what the receivers sealed as they stopped.
    signal.signal(signal.SIGTERM, _exit_gracefully)
    try:
        receiver.run(settings, sockets, workers)
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop_shipper(shipper)


@main.command()
@click.option("--once", is_flag=True, help="One pass (upload, watermark, prune), then exit.")
@click.option("--until-stdin-closes", is_flag=True, hidden=True)  # how `serve` runs it (receiver.serve.start_shipper)
def ship(once: bool, until_stdin_closes: bool) -> None:
    """Ship sealed landing segments to AMP_LANDING_URL (a sidecar beside `serve`).

    `serve` runs the same shipper itself when AMP_LANDING_URL is set; run this instead for a
    sidecar. SIGTERM or Ctrl-C ships what is left (at most 20 s) and marks the volume stopped.
    """
    import threading

    from amp_personalize.landing.shipping import Shipper
    from amp_personalize.landing.volume import VolumeIdError

    settings = _settings()
    if not settings.landing_url:
        raise SettingsProblem("AMP_LANDING_URL is not set: nothing to ship to (s3://bucket/prefix)")
    _check_landing_dir(settings)
    if not until_stdin_closes:  # `serve` checked before starting it, and restarts it if it exits
        _check_landing_bucket(settings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)  # "Found credentials in environment variables"
    try:
        shipper = Shipper(settings)
    except VolumeIdError as exc:
        raise SettingsProblem(str(exc)) from None
    if once:
        try:
            left = shipper.ship_alone()
        except Exception as exc:
            raise click.ClickException(f"shipping to {settings.landing_url} failed: {exc}") from None
        if left is None:
            raise click.ClickException(f"another shipper of volume {shipper.volume} is running (`serve`'s, or a sidecar): it ships this volume")
        click.echo(f"volume {shipper.volume}: shipped {shipper.state.shipped_segments} segment(s); {len(left.segments)} waiting")
        return
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    if until_stdin_closes:
        threading.Thread(target=lambda: (sys.stdin.buffer.read(), stopping.set()), daemon=True).start()
    logging.getLogger(__name__).info("shipping volume %s to %s", shipper.volume, settings.landing_url)
    left = shipper.run(stopping)
    sys.exit(1 if left.segments else 0)


@main.command()
@click.option("--ui-host", default="127.0.0.1", show_default=True, help="Dagster UI interface.")
@click.option("--ui-port", type=PORT, default=3000, show_default=True, help="Dagster UI port.")
@click.option("--workspace", type=click.Path(exists=True, dir_okay=False, path_type=Path), default="workspace.yaml", show_default=True)
def up(ui_host: str, ui_port: int, workspace: Path) -> None:
    """The receiver and the Dagster UI (with the landing sensor running); Ctrl-C stops both."""
    from amp_personalize.receiver.serve import PortUnavailable, listen
    from amp_personalize.services import up as run_up

    settings = _settings()
    _check_weights(settings)
    wanted = [(settings.receiver_host, settings.receiver_port, "the receiver, AMP_RECEIVER_PORT"), (ui_host, ui_port, "the Dagster UI, --ui-port")]
    if settings.serving_port is not None:
        wanted.append((settings.serving_host, settings.serving_port, "serving, AMP_SERVING_PORT"))
    try:  # before anything starts: a second `make up` is one line, not two services' tracebacks
        for host, port, what in wanted:
            listen(host, port, what, likely="is `make up` already running?").close()
    except PortUnavailable as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    sys.exit(run_up(settings, ui_host, ui_port, workspace))


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--url", default=None, help="Webhook URL [http://AMP_RECEIVER_HOST:AMP_RECEIVER_PORT/webhooks/amplitude/].")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=500, show_default=True)
@click.option("--concurrency", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--max-retries", type=click.IntRange(0, 20), default=6, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def replay(files: tuple[Path, ...], url: str | None, batch_size: int, concurrency: int, max_retries: int, quiet: bool) -> None:
    """Post Amplitude export files (.json, .json.gz, .zip) or NDJSON to the webhook."""
    from amp_personalize.receiver.app import WEBHOOK_PATH
    from amp_personalize.replay import replay as run_replay

    settings = _settings()
    url = url or f"http://{settings.receiver_host}:{settings.receiver_port}{WEBHOOK_PATH}"
    summary = run_replay(
        list(files),
        url,
        batch_size=batch_size,
        secret=settings.webhook_secret,
        concurrency=concurrency,
        max_retries=max_retries,
        progress=not quiet,
        max_body_bytes=settings.max_body_bytes,
    )
    click.echo(
        f"sent {summary.sent}  processed {summary.processed}  skipped {summary.skipped}  "
        f"failed {summary.failed}  invalid {summary.invalid}  unreadable files {len(summary.unreadable)}  "
        f"({summary.requests} requests, {summary.retries} retries)"
    )
    for unreadable in summary.unreadable:  # every one: these are the files to fetch again
        click.echo(f"  unreadable: {unreadable}", err=True)
    for error in summary.errors[:10]:
        click.echo(f"  {error}", err=True)
    if len(summary.errors) > 10:
        click.echo(f"  ... and {len(summary.errors) - 10} more", err=True)
    if summary.failed or summary.unreadable:
        sys.exit(1)


@main.command()
@click.option("--all-windows", is_flag=True, help="Also seal and process the window still open (demos, tests).")
@click.option("--rebuild", is_flag=True, help="Build every window again, not only new ones (after editing the weight file).")
def process(all_windows: bool, rebuild: bool) -> None:
    """Process closed landing windows now, without the Dagster daemon."""
    settings = _settings()  # before the import: it loads modules that read the settings themselves
    _check_weights(settings)
    # _instance imports amp_personalize.process under _shared_parts: the import reads where the
    # partitions start (S3 with AMP_LANDING_URL).
    with _shared_parts(), _instance(settings) as instance:
        from amp_personalize.process import process_once

        try:
            report = process_once(settings, all_windows, instance, rebuild=rebuild, say=lambda text: click.echo(text, err=True))
        except KeyboardInterrupt as stopped:
            _interrupted(stopped, "the same command again finishes the job")
        # report.failed holds window keys, and the asset names of the scores and push runs
        by_asset = {"user_item_scores": "refresh_user_item_scores", "personalize_events": "push_to_personalize"}
        runs = {
            name: _failed_run(instance, by_asset[name]) if name in by_asset else _failed_run(instance, "process_window", partition=name)
            for name in report.failed
        }
    for why in report.waiting:
        click.echo(f"waiting: {why}")
    click.echo(f"processed {len(report.windows)} window(s): {', '.join(report.windows) or '-'}")
    if report.scores_refreshed:
        click.echo("refreshed user_item_scores")
    if report.pushed is not None:
        pushed = report.pushed
        click.echo(
            f"pushed {pushed['events']} event(s) from {pushed['segments']} segment(s) to Personalize in {pushed['calls']} "
            f"PutEvents call(s); {pushed['already_pushed']} already pushed, {pushed['refused']} refused (set aside)"
        )
    if report.failed:
        click.echo(f"failed: {', '.join(report.failed)} (see the Dagster UI for the run logs)", err=True)
        for name, run in runs.items():
            click.echo(f"  {name}: {run}", err=True)
        sys.exit(1)


@main.command()
def train() -> None:
    """Run the retraining job now: the model, then the recommendation caches."""
    settings = _settings()  # before the import: it loads modules that read the settings themselves
    _check_weights(settings)
    # _instance imports amp_personalize.process under _shared_parts: the import reads where the
    # partitions start (S3 with AMP_LANDING_URL).
    with _shared_parts(), _instance(settings) as instance:
        from amp_personalize.process import train_once

        try:
            ok, meta = train_once(settings, instance)
        except KeyboardInterrupt as stopped:
            _interrupted(stopped, "`amp-personalize train` again trains a new one")
        if not meta:
            failed = _failed_run(instance, "retrain")
        elif not ok:
            failed = _failed_run(instance, "refresh_recommendations")
    if not meta:
        raise click.ClickException(f"no model trained: {failed} failed; its logs are in the Dagster UI")
    if not meta.get("trained"):
        counts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in meta.items() if k != "trained")
        raise click.ClickException(
            f"no model trained: not enough training data in the last {settings.history_days} days ({counts}); "
            "the enough_training_data check in the Dagster UI names the minimums"
        )
    counts = ", ".join(f"{meta[k]} {k.replace('_', ' ')}" for k in ("users", "items", "interactions", "users_with_two_or_more") if k in meta)
    click.echo(
        f"model {meta['version']} ({meta['algorithm']}): {counts}, {meta['train_seconds']} s; "
        f"NDCG@10 {meta['ndcg_at_10']:.4f} vs popularity {meta['ndcg_at_10_popularity']:.4f}"
    )
    if meta.get("served") is False:  # the selection found no model better than popularity
        click.echo(f"serving the popular list instead of a model: {meta.get('selection_reason')}")
    if not ok:
        raise click.ClickException(f"refreshing the caches failed: {failed}; its logs are in the Dagster UI")
    if meta.get("caches_skipped"):
        click.echo(f"caches not refreshed: {meta['caches_skipped']}")
    else:
        click.echo("refreshed recommendations, popular_items and similar_items")
    for check in meta.get("warnings", []):  # they passed nothing back, but the user should know
        click.echo(f"warning: the check {check} failed (see the Dagster UI for its numbers)")


@main.group()
def personalize() -> None:
    """Amazon Personalize: create the resources the backend needs."""


@personalize.command("setup")
@click.option("--name", default="amp-personalize", show_default=True, help="Prefix of every resource name.")
def personalize_setup(name: str) -> None:
    """Create the dataset group, schema, dataset, event tracker, solution, filter and (after a
    first training) campaign that the settings do not already name; print the settings to export."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from amp_personalize.backends.personalize.clients import make_clients
    from amp_personalize.backends.personalize.jobs import JobFailed, Poll
    from amp_personalize.backends.personalize.setup import setup
    from amp_personalize.events import load_weights

    settings = _settings()
    p = settings.personalize
    try:
        clients = make_clients(boto3.client("s3"))
        env = setup(clients, p, load_weights(settings.weights_file), name, Poll(p.job_timeout_seconds, min(p.poll_seconds, 10)), echo=click.echo)
    except JobFailed as failure:
        raise click.ClickException(str(failure)) from None
    except ClientError as exc:  # AccessDenied, a quota, a name taken: str() names the code and the operation
        raise click.ClickException(f"AWS refused the request: {exc}") from None
    except BotoCoreError as exc:  # no region, no credentials, no connection: before AWS answered at all
        raise click.ClickException(f"AWS SDK: {type(exc).__name__}: {exc}") from None
    click.echo("\n# export these (and AWS_PERSONALIZE_ROLE_ARN, AMP_PERSONALIZE_S3_URL for imports):")
    for key, value in env.items():
        click.echo(f"export {key}={value}")


def _print_items(items: list[tuple[str, float]], header: str) -> None:
    click.echo(header)
    for rank, (item, score) in enumerate(items, 1):
        click.echo(f"{rank:>4}  {item}  {score:.4f}")


@main.command()
@click.argument("user_id")
@click.option("--num-results", type=click.IntRange(1, MAX_NUM_RESULTS), default=None, help="[AMP_NUM_RESULTS, 25]")
def recommend(user_id: str, num_results: int | None) -> None:
    """Print a user's cached recommendations (popular items for an unknown user)."""
    from amp_personalize.serving.cache import CacheUnreadable, RecommendationCache
    from amp_personalize.lake.store import lake as lake_store

    if not user_id:  # as the HTTP route: a lost user id must not get strangers' list
        raise click.UsageError("USER_ID is empty")
    settings = _settings()
    try:
        items, source, version = RecommendationCache(lake_store(settings), log_errors=False).recommend(user_id, num_results or settings.num_results)
    except CacheUnreadable as error:
        raise click.ClickException(str(error)) from None
    if not items and version is None:
        raise click.ClickException("no recommendations cached yet: run `amp-personalize train`")
    if not items:
        click.echo(f"nothing left to recommend to {user_id}: they vetoed every popular item (model {version})")
        return
    _print_items(items, f"recommendations for {user_id} (source: {source}, model {version})")


@main.command()
@click.argument("item_id")
@click.option("--num-results", type=click.IntRange(1, MAX_NUM_RESULTS), default=None, help="[AMP_NUM_RESULTS, 25]")
def similar(item_id: str, num_results: int | None) -> None:
    """Print an item's cached similar items."""
    from amp_personalize.serving.cache import CacheUnreadable, RecommendationCache
    from amp_personalize.lake.store import lake as lake_store

    if not item_id:
        raise click.UsageError("ITEM_ID is empty")
    settings = _settings()
    try:
        items, version = RecommendationCache(lake_store(settings), log_errors=False).similar(item_id, num_results or settings.num_results)
    except CacheUnreadable as error:
        raise click.ClickException(str(error)) from None
    if version is None:
        raise click.ClickException("no similar items cached yet: run `amp-personalize train` (on Personalize this needs a SIMS campaign)")
    if items is None:
        raise click.ClickException(f"item {item_id!r} is not in the similar-items cache (model {version})")
    _print_items(items, f"items similar to {item_id} (model {version})")


# A query pasted with its leading `-- comment` line is SQL, not an unknown option.
@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("query")
@click.option(
    "--max-rows", type=click.IntRange(1, MAX_ROWS_LIMIT), default=DEFAULT_MAX_ROWS, show_default=True,
    help="Print at most this many rows (the first ones); the output says when there were more.",
)
def sql(query: str, max_rows: int) -> None:
    """Run duckdb SQL over the datasets (views in data/warehouse.duckdb) and print a table.

    Several statements run in order; the last one's result is printed. With AMP_LAKE_URL, the
    datasets the query names are read from S3.
    """
    import duckdb

    from amp_personalize.lake.store import lake as lake_store
    from amp_personalize.lake.warehouse import DATASETS, missing_dataset, refresh_views, tables_for
    from amp_personalize.lake.warehouse import query as run_query

    if not query.strip():
        raise click.UsageError('QUERY is empty: give a SQL statement, e.g. "select count(*) from interactions"')
    settings = _settings()
    lake = lake_store(settings)
    if lake.remote:  # duckdb cannot read S3 without httpfs: polars reads the datasets it names
        try:
            table = run_query(None, query, max_rows=max_rows, tables=tables_for(query, lake))
        except duckdb.Error as exc:
            raise click.ClickException(missing_dataset(exc, lake) or str(exc).splitlines()[0]) from None
        if table is None:
            raise click.UsageError("QUERY has no SQL statement in it (only comments or semicolons)")
        return click.echo(table)
    # The views name the lake by absolute path: made again here, so that a data directory that
    # was moved or restored from a copy is queried where it is now, not where it was.
    if any(lake.partitions(name) for name in DATASETS):
        try:
            refresh_views(settings.warehouse_path, lake)
        except (OSError, duckdb.Error):  # read-only access to the data directory: query as it is
            pass
    if not settings.warehouse_path.exists():
        raise click.UsageError(
            f"no dataset to query yet ({settings.warehouse_path} does not exist): it is made when "
            "`amp-personalize process` materializes a landing window, so events must land first "
            "(send or `replay` them, then process)"
        )
    try:
        table = run_query(settings.warehouse_path, query, max_rows=max_rows)
    except duckdb.Error as exc:
        raise click.ClickException(missing_dataset(exc, lake) or str(exc).splitlines()[0]) from None
    if table is None:
        raise click.UsageError("QUERY has no SQL statement in it (only comments or semicolons)")
    click.echo(table)


if __name__ == "__main__":
    main()
