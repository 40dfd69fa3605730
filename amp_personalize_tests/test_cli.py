"""The CLI's own behaviour on bad input: a bad weight file, `sql`'s table and its usage errors."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import dagster as dg
import duckdb
import polars as pl
import pytest
from click.testing import CliRunner
from dagster._core.instance.ref import InstanceRef

import amp_personalize.process
import amp_personalize.services
from amp_personalize.cli import main
from amp_personalize.events.windows import window_key, window_of
from amp_personalize.lake.parquet import partition_path, write_atomic
from amp_personalize.lake.warehouse import query, refresh_views
from amp_personalize_tests.landing_fixture import write_segment


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("AMP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    return tmp_path


@pytest.mark.parametrize("command", ["process", "train", "up", "serve"])
def test_a_malformed_weight_file_stops_every_command_before_it_starts_anything(env, monkeypatch, command):
    weights = env / "weights.json"
    weights.write_text(json.dumps({"weights": {"click": "x"}}))
    monkeypatch.setenv("AMP_WEIGHTS_FILE", str(weights))
    (env / "workspace.yaml").write_text("")
    never = lambda *a, **k: pytest.fail(f"{command} started running")  # noqa: E731
    monkeypatch.setattr(amp_personalize.process, "train_once", never)
    monkeypatch.setattr(amp_personalize.process, "process_once", never)
    monkeypatch.setattr(amp_personalize.services, "up", never)
    monkeypatch.setattr("uvicorn.run", never)
    args = [command, "--workspace", str(env / "workspace.yaml")] if command == "up" else [command]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert f"Error: {weights}: weights['click']: 'x' is not a number" in result.output
    assert "Traceback" not in result.output and not (env / "data" / "models").exists()


@pytest.mark.parametrize("command, setting", [
    *((c, "AMP_DATA_DIR is a file") for c in ("process", "train", "serve")),
    *((c, "DAGSTER_HOME does not exist") for c in ("process", "train")),  # serve records no runs
])
def test_an_unusable_data_directory_or_dagster_home_is_one_line_naming_it(env, monkeypatch, command, setting):
    """QA: a traceback ending in NotADirectoryError; `serve` started and refused every event."""
    if setting == "AMP_DATA_DIR is a file":
        (env / "afile").write_text("")
        monkeypatch.setenv("AMP_DATA_DIR", str(env / "afile"))
        monkeypatch.delenv("DAGSTER_HOME")
        expected = f"Error: AMP_DATA_DIR={env / 'afile'}: cannot create "
    else:
        monkeypatch.setenv("DAGSTER_HOME", str(env / "nowhere"))
        expected = f"Error: DAGSTER_HOME={env / 'nowhere'} is not a directory"
    never = lambda *a, **k: pytest.fail(f"{command} started running")  # noqa: E731
    monkeypatch.setattr(amp_personalize.process, "train_once", never)
    monkeypatch.setattr(amp_personalize.process, "process_once", never)
    monkeypatch.setattr("uvicorn.run", never)
    result = CliRunner().invoke(main, [command])
    assert result.exit_code == 2, result.output
    assert expected in result.output and "Traceback" not in result.output, result.output


@pytest.fixture
def warehouse(tmp_path):
    """A warehouse with a 14-column view of 30 rows, one of its values 80 characters long."""
    path = tmp_path / "warehouse.duckdb"
    columns = ", ".join(f"{i} AS col_{i}" for i in range(12))
    with duckdb.connect(str(path)) as con:
        con.execute(f"CREATE VIEW wide AS SELECT range AS n, repeat('y', 80) AS long_text, {columns} FROM range(30)")
    return path


def first_column(table: str) -> list[int]:
    return [int(m) for m in re.findall(r"^│\s+(\d+) │", table, re.MULTILINE)]


def test_sql_prints_every_row_and_column(warehouse):
    table = query(warehouse, "select * from wide order by n")
    assert first_column(table) == list(range(30)), table
    header = table.splitlines()[1]
    assert [name.strip() for name in header.strip("│").split("│")] == ["n", "long_text", *(f"col_{i}" for i in range(12))]
    assert "y" * 80 in table and "shown" not in table and "…" not in table


def test_sql_says_how_it_cut_a_result_beyond_max_rows(warehouse):
    table = query(warehouse, "select n from wide order by n", max_rows=10)
    assert first_column(table) == list(range(10)), table
    assert table.endswith("more than 10 rows: only the first 10 are shown (see --max-rows, or add a LIMIT)")
    assert "more than" not in query(warehouse, "select n from wide", max_rows=30)


def test_sql_cli_usage_errors(env, warehouse, monkeypatch):
    empty = CliRunner().invoke(main, ["sql", "  "])
    assert empty.exit_code == 2 and "QUERY is empty" in empty.output
    missing = CliRunner().invoke(main, ["sql", "select 1"])
    assert missing.exit_code == 2 and "no dataset to query yet" in missing.output
    assert "run `amp-personalize process` first" not in missing.output  # untrue after a process that found nothing
    (env / "data").mkdir()
    warehouse.rename(env / "data" / "warehouse.duckdb")
    comment = CliRunner().invoke(main, ["sql", "/* nothing */ ;"])
    assert comment.exit_code == 2 and "no SQL statement" in comment.output
    shown = CliRunner().invoke(main, ["sql", "--max-rows", "5", "select n from wide order by n"])
    assert shown.exit_code == 0 and "more than 5 rows" in shown.output
    # QA: a query pasted with its comment line was taken for an unknown option.
    pasted = CliRunner().invoke(main, ["sql", "-- how many\nselect count(*) as how_many from wide", "--max-rows", "5"])
    assert pasted.exit_code == 0 and re.search(r"│\s+30\s+│", pasted.output), pasted.output
    # Windows processed, no training yet: a dataset made later says what makes it, not duckdb's guess.
    early = CliRunner().invoke(main, ["sql", "select * from recommendations r join wide on true"])
    assert early.exit_code == 1, early.output
    assert early.output == "Error: recommendations has no data yet: it is made by training (`amp-personalize train`, or the retraining schedule)\n"
    assert CliRunner().invoke(main, ["sql", 'select * from "Recommendations"']).output == early.output
    typo = CliRunner().invoke(main, ["sql", "select * from recomendations"])
    assert typo.exit_code == 1
    assert typo.output == (
        "Error: there is no dataset recomendations: did you mean recommendations? Datasets with data: none yet; "
        "not made yet: raw_events, interactions, impressions, user_item_scores, recommendations, popular_items, similar_items\n"
    )
    write_atomic(pl.DataFrame({"event_id": ["e"]}), partition_path(env / "data" / "lake", "interactions", "20260101T0000Z"))
    listed = CliRunner().invoke(main, ["sql", "select * from clicks"]).output
    assert listed.startswith("Error: there is no dataset clicks. Datasets with data: interactions; not made yet: raw_events, "), listed
    write_atomic(pl.DataFrame({"user_id": ["u"]}), env / "data" / "lake" / "_rejected" / "recommendations" / "all.parquet")  # kept out by its checks
    held = CliRunner().invoke(main, ["sql", "select * from RECOMMENDATIONS"])
    assert held.output.startswith("Error: recommendations has no published data: what was made of it failed a blocking check"), held.output


def test_sql_in_a_moved_or_copied_data_directory_reads_that_directorys_lake(tmp_path, monkeypatch):
    first = tmp_path / "first"
    write_atomic(pl.DataFrame({"event_id": ["a", "b"]}), partition_path(first / "lake", "interactions", "20260101T0000Z"))
    refresh_views(first / "warehouse.duckdb", first / "lake")
    shutil.copytree(first, tmp_path / "copy")
    partition_path(tmp_path / "copy" / "lake", "interactions", "20260101T0000Z").unlink()
    write_atomic(pl.DataFrame({"event_id": ["c"]}), partition_path(tmp_path / "copy" / "lake", "interactions", "20260101T0100Z"))
    shutil.move(first, tmp_path / "moved")
    for data, ids in (("copy", "c"), ("moved", "a b")):
        monkeypatch.setenv("AMP_DATA_DIR", str(tmp_path / data))
        done = CliRunner().invoke(main, ["sql", "select string_agg(event_id, ' ' order by event_id) as ids from interactions"])
        assert done.exit_code == 0 and re.search(rf"│ {ids} +│", done.output), done.output


def run_cli(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """The command as a user runs it: its own process, no DAGSTER_HOME (the product's default instance)."""
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME" and not k.startswith("AMP_")}
    env["AMP_DATA_DIR"] = str(tmp_path / "data")
    return subprocess.run([sys.executable, "-m", "amp_personalize.cli", *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_train_without_data_prints_one_line_and_no_dagster_noise(tmp_path):
    done = run_cli(tmp_path, "train")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("Error: no model trained: not enough training data in the last 90 days (0 interactions"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "setting, said",
    [
        ({"AMP_DATABASE_URL": "postgresql://amp@127.0.0.1:1/amp"},
         'Error: cannot reach the database: connection to server at "127.0.0.1", port 1 failed: Connection refused'),
        ({"AMP_LANDING_URL": "s3://amp-nowhere/landing", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:1",
          "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"},
         "Error: S3 (AMP_LANDING_URL / AMP_LAKE_URL): EndpointConnectionError: Could not connect to the endpoint URL"),
    ],
    ids=["database", "s3"],
)
def test_a_shared_part_out_of_reach_is_one_line_naming_it(tmp_path, setting, said):
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME" and not k.startswith(("AMP_", "AWS_"))}
    env.update(AMP_DATA_DIR=str(tmp_path / "data"), AWS_MAX_ATTEMPTS="1", **setting)
    done = subprocess.run([sys.executable, "-m", "amp_personalize.cli", "process"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.startswith(said) and done.stderr.count("\n") == 1, done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("command", [["serve", "--port", "1"], ["ship"], ["ship", "--once"]])
def test_a_landing_bucket_that_does_not_exist_stops_serve_and_ship_in_one_line(tmp_path, s3, command):
    """QA: with a typo in the bucket's name, `serve` and `ship` retried for ever as if S3 were down."""
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME" and not k.startswith("AMP_")}
    env.update(AMP_DATA_DIR=str(tmp_path / "data"), AMP_LANDING_URL="s3://amp-tset/landing")
    done = subprocess.run([sys.executable, "-m", "amp_personalize.cli", *command], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"Error: AMP_LANDING_URL=s3://amp-tset/landing: S3 at {s3.endpoint} has no bucket 'amp-tset' (create it, or correct the name)\n"


@pytest.mark.parametrize("answer", ["out of reach", "no credentials", "403"])
def test_only_a_missing_bucket_stops_the_start(monkeypatch, answer):
    """An outage at start, a role that may not call HeadBucket, or no credentials yet must not
    stop the receiver: it lands events locally and the shipper retries (docs/scale-out.md)."""
    from botocore.stub import Stubber

    from amp_personalize.storage import s3 as s3store

    stubbers = []
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    url = s3store.S3Url.parse("s3://amp-landing/x")
    if answer == "out of reach":
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1")
    elif answer == "no credentials":
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    else:
        real = s3store.boto3.client

        def stubbed(*args, **kwargs):
            client = real(*args, aws_access_key_id="x", aws_secret_access_key="x", **kwargs)
            stubber = Stubber(client)
            stubber.add_client_error("head_bucket", "403", "Forbidden", http_status_code=403)
            stubber.activate()
            stubbers.append(stubber)
            return client

        monkeypatch.setattr(s3store.boto3, "client", stubbed)
    s3store.check_bucket(url, "AMP_LANDING_URL")  # returns: nothing said S3 has no such bucket
    for stubber in stubbers:  # the 403 came from S3's answer to HeadBucket, not from no question
        stubber.assert_no_pending_responses()


@pytest.mark.slow
def test_an_unexpected_run_failure_names_the_run_and_its_error_without_a_stack(tmp_path):
    write_segment(tmp_path / "data", "20250105T1000Z", [{"event_type": "click", "user_id": "u", "event_properties": {"item_id": "d"}}])
    (tmp_path / "data" / "lake").write_text("")  # a file where the lake's directory belongs
    done = run_cli(tmp_path, "process")
    assert done.returncode == 1
    assert done.stdout == "processed 0 window(s): -\n"
    lines = done.stderr.splitlines()
    assert lines[0] == "failed: 20250105T1000Z (see the Dagster UI for the run logs)", done.stderr
    assert re.fullmatch(r"  20250105T1000Z: run [0-9a-f-]{36} \(raw_events: NotADirectoryError: .*\)", lines[1]), done.stderr
    assert len(lines) == 2, done.stderr


@pytest.mark.slow
def test_process_stops_at_a_failed_window_and_builds_the_later_ones_after_it(tmp_path):
    """QA: `process` went on past a failed window; built later, that window kept the originals of
    retries the next window had already kept (205 interactions for 200 events)."""
    click = {"event_type": "click", "user_id": "u", "event_properties": {"item_id": "d"}}
    first, second = "20250105T1000Z", "20250105T1100Z"
    write_segment(tmp_path / "data", first, [{**click, "uuid": "a"}])
    write_segment(tmp_path / "data", second, [{**click, "uuid": "b"}, {**click, "uuid": "a"}])  # a retry of the first's
    blocker = partition_path(tmp_path / "data" / "lake", "raw_events", first)
    blocker.mkdir(parents=True)  # a directory where the first window's file goes: its build fails

    done = run_cli(tmp_path, "process")
    assert done.returncode == 1
    assert done.stdout == f"waiting: 1 later window(s) ({second} to {second}) wait until {first} is built: windows run oldest first\nprocessed 0 window(s): -\n", done.stdout
    assert done.stderr.startswith(f"failed: {first} "), done.stderr
    assert not partition_path(tmp_path / "data" / "lake", "raw_events", second).exists()

    blocker.rmdir()
    done = run_cli(tmp_path, "process")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"processed 2 window(s): {first}, {second}\n"), done.stdout
    ids = pl.read_parquet(tmp_path / "data" / "lake" / "interactions")["event_id"].sort().to_list()
    assert ids == ["a", "b"]


PATCHED_CLI = """
import sys, time
import polars as pl
import amp_personalize.assets.interactions as interactions
import amp_personalize.assets.raw_events as raw_events
from amp_personalize.cli import main
{patch}
main(sys.argv[1:], prog_name="amp-personalize")
"""
SLOW_READ = """
real_read = raw_events.read_landing
def slow_read(segments):
    print("reading", flush=True)
    time.sleep(60)
    return real_read(segments)
raw_events.read_landing = slow_read
"""
NULL_USERS = """
real = interactions.build_interactions
interactions.build_interactions = lambda raw, w: real(raw, w).with_columns(pl.lit(None, dtype=pl.String).alias("user_id"))
"""


def patched_cli(tmp_path, patch: str, *args: str, new_session: bool = False) -> subprocess.Popen:
    """The command in its own process (and process group, with `new_session`), with a fault put
    into the code it runs."""
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME" and not k.startswith("AMP_")}
    env["AMP_DATA_DIR"] = str(tmp_path / "data")
    return subprocess.Popen([sys.executable, "-c", PATCHED_CLI.format(patch=patch), *args], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=new_session)


@pytest.mark.slow
def test_ctrl_c_stops_process_at_the_window_it_was_building(tmp_path):
    """QA: Ctrl-C failed that window's run and `process` went on with the next ones."""
    click = {"event_type": "click", "user_id": "u", "event_properties": {"item_id": "d"}}
    write_segment(tmp_path / "data", "20250105T1000Z", [click])
    write_segment(tmp_path / "data", "20250105T1100Z", [click])
    proc = patched_cli(tmp_path, SLOW_READ, "process", new_session=True)
    try:
        assert proc.stdout.readline() == "reading\n"
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: to every process of the group
        out, err = proc.communicate(timeout=50)  # less than one more slow read: it did not go on
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted while building 20250105T1000Z" in err and "Traceback" not in err, err
    assert "reading" not in out
    assert not (tmp_path / "data" / "lake" / "raw_events").exists()


SLOW_TRAINING = """
import amp_personalize.backends.local.backend as local
real_train = local.LocalBackend.train
def slow_train(self, *args):
    print("training", flush=True)
    time.sleep(60)
    return real_train(self, *args)
local.LocalBackend.train = slow_train
"""


@pytest.mark.slow
def test_ctrl_c_in_a_terminal_stops_train_with_one_line(tmp_path):
    """QA: Ctrl-C printed two tracebacks (Dagster's compute-log helpers get it too, being in the
    terminal's process group) and "dagster._core.errors.DagsterExecutionInterruptedError"."""
    recent = window_key(window_of(int(time.time() * 1000), 60) - 7_200_000)  # inside the training history
    write_segment(tmp_path / "data", recent, [
        {"event_type": "click", "user_id": f"u{u}", "event_properties": {"item_id": f"d{i}"}} for u in range(4) for i in range(4)
    ])
    assert run_cli(tmp_path, "process").returncode == 0
    proc = patched_cli(tmp_path, SLOW_TRAINING, "train", new_session=True)
    try:
        assert proc.stdout.readline() == "training\n"
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: to every process of the group
        out, err = proc.communicate(timeout=50)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err == "interrupted while training: the caches still serve the previous model; `amp-personalize train` again trains a new one\n"
    assert not (tmp_path / "data" / "models" / "LATEST").exists()
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path / "data" / "dagster"))) as instance:
        [run] = instance.get_run_records(dg.RunsFilter(job_name="retrain"))
        assert run.dagster_run.status == dg.DagsterRunStatus.FAILURE  # ended, not left STARTED


@pytest.mark.slow
def test_a_failed_blocking_check_is_named_with_where_its_rows_are(tmp_path):
    """QA: the message ended at "1 blocking asset check failed with ERROR severity:"."""
    write_segment(tmp_path / "data", "20250105T1000Z", [{"event_type": "click", "user_id": "u", "event_properties": {"item_id": "d"}}])
    proc = patched_cli(tmp_path, NULL_USERS, "process")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    rejected = tmp_path / "data" / "lake" / "_rejected" / "interactions" / "20250105T1000Z.parquet"
    assert f"interactions failed its blocking check no_null_ids, its rows kept in {rejected}" in err, err
    assert rejected.exists()


SLOW_SCORES = """
import amp_personalize.assets.user_item_scores as scores
real_scores = scores.build_scores
def slow_scores(*args):
    print("scoring", flush=True)
    time.sleep(60)
    return real_scores(*args)
scores.build_scores = slow_scores
"""
FIRST_WINDOW_NULL_USER = """
real = interactions.build_interactions
interactions.build_interactions = lambda raw, w: real(raw, w).with_columns(
    pl.when(pl.col("event_id") == "a").then(None).otherwise(pl.col("user_id")).alias("user_id"))
"""


@pytest.mark.slow
def test_scores_interrupted_after_their_windows_are_refreshed_by_the_next_process(tmp_path):
    """Review: the next `process` found no new window, so it never refreshed the scores."""
    write_segment(tmp_path / "data", "20250105T1000Z", [{"event_type": "click", "user_id": "u", "event_properties": {"item_id": "d"}}])
    proc = patched_cli(tmp_path, SLOW_SCORES, "process")
    try:
        assert proc.stdout.readline() == "scoring\n"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=50)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "interrupted while building user_item_scores" in err, err
    done = run_cli(tmp_path, "process")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "processed 0 window(s): -\nrefreshed user_item_scores\n"
    assert run_cli(tmp_path, "process").stdout == "processed 0 window(s): -\n"  # and only then


@pytest.mark.slow
def test_process_goes_on_past_a_window_its_checks_kept_out(tmp_path):
    """Review: it stopped there as at a failure; but a window kept out is done, the checks decided."""
    click = {"event_type": "click", "user_id": "u", "event_properties": {"item_id": "d"}}
    first, second = "20250105T1000Z", "20250105T1100Z"
    write_segment(tmp_path / "data", first, [{**click, "uuid": "a"}])
    write_segment(tmp_path / "data", second, [{**click, "uuid": "b"}])
    proc = patched_cli(tmp_path, FIRST_WINDOW_NULL_USER, "process")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert out.startswith(f"processed 1 window(s): {second}\n") and "wait until" not in out, out
    assert f"failed: {first} " in err and "failed its blocking check no_null_ids" in err, err


@pytest.mark.slow
def test_train_ends_the_runs_of_a_train_that_was_killed(settings):
    """QA: `train` SIGKILLed mid-way left its retrain and refresh_recommendations runs STARTED for good."""
    from dagster._core.events import EngineEventData
    from dagster._core.test_utils import create_run_for_test

    from amp_personalize.process import train_once

    dead = subprocess.Popen(["true"])
    dead.wait()
    with dg.instance_for_test() as instance:
        killed = {}
        for job in ("retrain", "refresh_recommendations"):
            run = create_run_for_test(instance, job_name=job, status=dg.DagsterRunStatus.STARTED, tags={"amp/host": socket.gethostname()})
            instance.report_engine_event(f"Started process for run (pid: {dead.pid}).", run, EngineEventData.in_process(dead.pid))
            killed[job] = run.run_id
        trained, meta = train_once(settings, instance)  # no data: trains nothing, but looks first
        assert not trained and meta["trained"] is False
        assert {job: instance.get_run_by_id(run_id).status for job, run_id in killed.items()} == {
            "retrain": dg.DagsterRunStatus.FAILURE, "refresh_recommendations": dg.DagsterRunStatus.FAILURE}


@pytest.mark.slow
def test_a_changed_history_setting_refreshes_the_scores_without_a_new_window(settings):
    """QA: AMP_HISTORY_DAYS=365 and `process` built nothing, so the scores kept their 90 days."""
    from dataclasses import replace

    from amp_personalize.process import process_once

    write_segment(settings.data_dir, "20250105T1000Z", [{"event_type": "click", "user_id": "u", "event_properties": {"item_id": "d"}}])
    scores = partition_path(settings.data_dir / "lake", "user_item_scores")
    with dg.instance_for_test() as instance:
        first = process_once(settings, False, instance)
        assert first.windows == ["20250105T1000Z"] and first.scores_refreshed
        assert pl.read_parquet(scores).height == 0  # the click is older than 90 days
        assert not process_once(settings, False, instance).scores_refreshed  # nothing changed: nothing to do
        wider = process_once(replace(settings, history_days=3650), False, instance)
        assert wider.windows == [] and wider.scores_refreshed
        assert pl.read_parquet(scores).select("user_id", "item_id").rows() == [("u", "d")]


@pytest.mark.slow
def test_all_windows_waits_a_bounded_time_for_a_live_segment_and_says_so(settings, monkeypatch):
    """QA: with AMP_SEGMENT_MAX_AGE_SECONDS at a century, `process --all-windows` waited silently."""
    import fcntl
    from dataclasses import replace

    import amp_personalize.process as process

    live = write_segment(settings.data_dir, "20250105T1000Z", [{"event_type": "click", "user_id": "u"}], sealed=False)
    monkeypatch.setattr(process, "LONGEST_SEAL_WAIT_SECONDS", 1)
    said = []
    fd = os.open(live, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a receiver still writes it
        with dg.instance_for_test() as instance:
            started = time.monotonic()
            report = process.process_once(replace(settings, segment_max_age_seconds=3_153_600_000), True, instance, say=said.append)
            assert time.monotonic() - started < 30
    finally:
        os.close(fd)
    assert said == ["waiting up to 1 s for receivers to seal 1 open segment(s) (they do every AMP_SEGMENT_MAX_AGE_SECONDS=3153600000)"]
    assert f"20250105T1000Z/{live.name} is still open (a receiver is writing it)" in report.waiting
