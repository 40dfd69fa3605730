"""`amp-personalize replay`: every file format, batching, retries, and the summary."""

import gzip
import io
import json
import time
import zipfile
from email.utils import formatdate

import orjson
import pytest
from click.testing import CliRunner

from amp_personalize.cli import main
from amp_personalize.receiver import create_app
from amp_personalize.replay import (
    MAX_RETRY_AFTER_SECONDS,
    ReplaySummary,
    read_events,
    replay,
    retry_after_seconds,
)
from amp_personalize_tests.conftest import WEBHOOK, LiveReceiver, landed_lines


def ev(i, kind="click"):
    return {"event_type": kind, "user_id": f"u{i % 5}", "uuid": f"e{i}", "event_properties": {"item_id": f"d{i % 7}"}}


def ndjson(events) -> bytes:
    return b"".join(orjson.dumps(e) + b"\n" for e in events)


@pytest.fixture
def export_files(tmp_path):
    """The same 60 events spread over each format replay reads."""
    events = [ev(i, "page_view" if i % 4 == 0 else "click") for i in range(60)]
    files = {
        "a.json": orjson.dumps({"events": events[0:10]}),
        "b.json": orjson.dumps(events[10:20]),
        "c.json": ndjson(events[20:30]),  # Amplitude export files are NDJSON named .json
        "d.json.gz": gzip.compress(ndjson(events[30:40])),
        "e.ndjson": ndjson(events[40:45]) + b"{broken\n" + b"[1,2]\n",
    }
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:  # an Amplitude export zip: gzipped NDJSON per hour
        z.writestr("123456/123456_2024-01-01_0#0.json.gz", gzip.compress(ndjson(events[45:55])))
        z.writestr("123456/123456_2024-01-01_1#0.json.gz", gzip.compress(ndjson(events[55:60])))
    files["export.zip"] = archive.getvalue()
    paths = []
    for name, content in files.items():
        path = tmp_path / name
        path.write_bytes(content)
        paths.append(path)
    return paths, events


def test_replay_reads_every_format_and_reports(receiver, settings, export_files):
    paths, events = export_files
    summary = replay(paths, receiver.url + WEBHOOK, batch_size=7, progress=False)
    assert (summary.sent, summary.failed, summary.invalid) == (60, 0, 2)
    assert summary.processed == 45 and summary.skipped == 15
    assert any("e.ndjson:6: not JSON" in e for e in summary.errors)
    assert sorted(line["event_id"] for line in landed_lines(settings.data_dir)) == sorted(e["uuid"] for e in events)


class Flaky:
    """Answers 429, then 503, before letting requests through: replay must retry, not drop."""

    def __init__(self, app, statuses, retry_after="0"):
        self.app, self.statuses, self.retry_after = app, list(statuses), retry_after

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST" and self.statuses:
            status = self.statuses.pop(0)
            retry_after = self.retry_after() if callable(self.retry_after) else self.retry_after
            await send({"type": "http.response.start", "status": status, "headers": [(b"retry-after", retry_after.encode())]})
            await send({"type": "http.response.body", "body": b"{}"})
            return
        await self.app(scope, receive, send)


def test_replay_retries_429_and_5xx(settings, export_files):
    paths, _ = export_files
    with LiveReceiver(Flaky(create_app(settings), [429, 503, 500])) as live:
        summary = replay(paths[:1], live.url + WEBHOOK, batch_size=100, backoff=0.01, progress=False)
    assert (summary.sent, summary.failed, summary.retries) == (10, 0, 3)


def test_replay_gives_up_and_says_so(settings, export_files):
    paths, _ = export_files
    with LiveReceiver(Flaky(create_app(settings), [503] * 10)) as live:
        summary = replay(paths[:1], live.url + WEBHOOK, max_retries=2, backoff=0.01, progress=False)
    assert (summary.sent, summary.failed) == (0, 10)
    assert summary.errors == ["HTTP 503: {}"]


def test_replay_cli_prints_the_summary(receiver, export_files):
    paths, _ = export_files
    result = CliRunner().invoke(
        main, ["replay", "--url", receiver.url + WEBHOOK, "--quiet", *map(str, paths)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "sent 60  processed 45  skipped 15  failed 0  invalid 2" in result.output


def test_replay_cli_fails_on_a_refused_batch(receiver, tmp_path):
    path = tmp_path / "good.json"
    path.write_bytes(orjson.dumps({"events": [ev(1), ev(2)]}))
    result = CliRunner().invoke(main, ["replay", "--url", receiver.url + "/no-such-endpoint/", "--quiet", str(path)])
    assert result.exit_code == 1
    assert "failed 2" in result.output


def test_one_bad_event_is_kept_out_of_its_batch_not_the_batch_refused(receiver, settings, tmp_path):
    """The receiver answers 400 for a whole request over one bad element; replay sends the rest."""
    path = tmp_path / "mixed.json"
    path.write_bytes(orjson.dumps({"events": [ev(1), {"time": 1}, ev(2)]}))  # no event_type, no ids
    summary = replay([path], receiver.url + WEBHOOK, progress=False)
    assert (summary.sent, summary.failed, summary.invalid) == (2, 0, 1)
    assert any("mixed.json: event 2" in e for e in summary.errors), summary.errors
    assert sorted(line["event_id"] for line in landed_lines(settings.data_dir)) == ["e1", "e2"]


def test_replay_waits_as_long_as_an_http_date_retry_after_says(settings, export_files):
    paths, _ = export_files
    until = []

    def two_seconds_from_now():  # the header has whole seconds: the wait is between 1 and 2 s
        until.append(time.time() + 2)
        return formatdate(until[-1], usegmt=True)

    with LiveReceiver(Flaky(create_app(settings), [503], retry_after=two_seconds_from_now)) as live:
        summary = replay(paths[:1], live.url + WEBHOOK, batch_size=100, backoff=0.01, progress=False)
        done = time.time()
    assert (summary.sent, summary.failed, summary.retries) == (10, 0, 1)
    assert done >= until[0] - 1


@pytest.mark.parametrize("retry_after", ["soon", "Mon, 99 Foo 2024 25:61:00 GMT", "nan", "inf", "-3", formatdate(0, usegmt=True), ""])
def test_replay_falls_back_to_its_backoff_on_a_retry_after_it_cannot_use(settings, export_files, retry_after):
    paths, _ = export_files
    with LiveReceiver(Flaky(create_app(settings), [429, 503], retry_after=retry_after)) as live:
        started = time.monotonic()
        summary = replay(paths[:1], live.url + WEBHOOK, batch_size=100, backoff=0.01, progress=False)
    assert (summary.sent, summary.failed, summary.retries) == (10, 0, 2)
    assert time.monotonic() - started < 5


def test_a_retry_after_beyond_reason_is_capped_not_an_overflow():
    assert retry_after_seconds("1e300") == MAX_RETRY_AFTER_SECONDS == retry_after_seconds("Fri, 31 Dec 9999 23:59:59 GMT")
    assert retry_after_seconds("7") == 7.0


def damaged_files(tmp_path):
    """Good files around a truncated .json.gz, a gzip that is not, a zip with a bad member, and a
    zip cut short (a copy that did not finish)."""
    events = [ev(i) for i in range(30)]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        z.writestr("export/0.json", ndjson(events[10:15]))
        z.writestr("export/1.json", ndjson([ev(100 + i) for i in range(5)]))
        z.writestr("export/2.json", ndjson(events[15:20]))
    data = bytearray(archive.getvalue())
    data[data.index(b'"e100"') + 2] ^= 1  # the middle member's bytes no longer match its CRC
    files = {
        "a.json": orjson.dumps(events[0:10]),
        "b.json.gz": gzip.compress(ndjson([ev(200 + i) for i in range(40)]))[:-12],  # cut short
        "c.json.gz": b"\x1f\x8b" + b"not gzip at all",
        "d.zip": bytes(data),
        "e.json": ndjson(events[20:30]),
        "f.zip": archive.getvalue()[:-40],  # its central directory is gone
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    return [tmp_path / name for name in files], events


def test_replay_reports_unreadable_files_and_goes_on(receiver, settings, tmp_path):
    paths, events = damaged_files(tmp_path)
    summary = replay(paths, receiver.url + WEBHOOK, batch_size=4, progress=False)
    assert (summary.sent, summary.failed, summary.invalid) == (30, 0, 0)
    assert sorted(line["event_id"] for line in landed_lines(settings.data_dir)) == sorted(e["uuid"] for e in events)
    [truncated, not_gzip, bad_member, cut_zip] = summary.unreadable
    assert truncated.startswith(f"{paths[1]}: ") and "EOFError: Compressed file ended before" in truncated
    assert not_gzip.startswith(f"{paths[2]}: ") and "BadGzipFile" in not_gzip
    assert bad_member.startswith(f"{paths[3]}!export/1.json: ") and "BadZipFile: Bad CRC-32" in bad_member
    assert cut_zip.startswith(f"{paths[5]}: ") and "BadZipFile" in cut_zip


def test_replay_cli_names_unreadable_files_and_fails(receiver, tmp_path):
    paths, _ = damaged_files(tmp_path)
    result = CliRunner().invoke(main, ["replay", "--url", receiver.url + WEBHOOK, "--quiet", *map(str, paths)])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    assert "sent 30  processed 30  skipped 0  failed 0  invalid 0  unreadable files 4" in result.output
    for path in (paths[1], paths[2], f"{paths[3]}!export/1.json", paths[5]):
        assert f"  unreadable: {path}: " in result.output


def test_a_file_named_zip_or_gzip_that_is_not_is_unreadable_not_ndjson(receiver, tmp_path):
    plain = ndjson([ev(i) for i in range(3)])
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("export/0.json.gz", plain)  # a member named .gz whose bytes are not gzip
    files = {"export.zip": plain, "a.json.gz": plain, "b.gz": b"not gzip\n", "c.ZIP": b"", "d.zip": archive.getvalue()}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    paths = [tmp_path / name for name in files]
    result = CliRunner().invoke(main, ["replay", "--url", receiver.url + WEBHOOK, "--quiet", *map(str, paths)])
    assert result.exit_code == 1, result.output
    assert "sent 0  processed 0  skipped 0  failed 0  invalid 0  unreadable files 5" in result.output
    assert "not JSON" not in result.output
    for path, kind in [(paths[0], "BadZipFile"), (paths[1], "BadGzipFile"), (paths[2], "BadGzipFile"), (paths[3], "BadZipFile"),
                       (f"{paths[4]}!export/0.json.gz", "BadGzipFile")]:
        assert f"  unreadable: {path}: {kind}: " in result.output, result.output


def test_ndjson_errors_are_numbered_by_line_even_after_a_bad_line(tmp_path):
    path = tmp_path / "events.ndjson"
    path.write_bytes(ndjson([ev(1)]) + b"\n" + b"{broken\n" + ndjson([ev(2), {"time": 1}, [1, 2]]))
    summary = ReplaySummary()
    sent = list(read_events(path, summary))
    assert [e["uuid"] for e in sent] == ["e1", "e2"]
    assert summary.errors == [
        f"{path}:3: not JSON",
        f"{path}:5: event has no event_type and no user_id or device_id",
        f"{path}:6: event is not an object (got list)",
    ]


def test_a_json_document_that_does_not_parse_is_unreadable_not_thousands_of_bad_lines(receiver, tmp_path):
    """QA: a pretty-printed list of 1,000 events with one trailing comma printed `invalid 8002`,
    sent nothing and exited 0; one Latin-1 byte in a one-line list dropped its good event."""
    events = [ev(i) for i in range(3)]
    pretty = json.dumps(events, indent=2)
    files = {
        "trailing_comma.json": (pretty[:-2] + ",\n]").encode(),
        "latin1.json": json.dumps(events).encode().replace(b"e0", b"\xe9"),
        "pretty_object.json": json.dumps({"events": events}, indent=2).encode()[:-3],  # cut short
        "fine.ndjson": b"{broken\n" + ndjson(events),  # NDJSON: its one bad line is named, the rest sent
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    result = CliRunner().invoke(main, ["replay", "--url", receiver.url + WEBHOOK, "--quiet", *(str(tmp_path / n) for n in files)])
    assert result.exit_code == 1, result.output
    assert "sent 3  processed 3  skipped 0  failed 0  invalid 1  unreadable files 3" in result.output
    for name in ("trailing_comma.json", "latin1.json", "pretty_object.json"):
        assert f"  unreadable: {tmp_path / name}: BrokenDocument: not valid JSON" in result.output, result.output
    assert f"{tmp_path / 'fine.ndjson'}:1: not JSON" in result.output


def test_batches_fit_the_receivers_body_limit_and_an_event_past_it_is_named(settings, tmp_path):
    """QA: 600 events of 45 KB went 500 to a request (22 MB, refused with 413), and one event past
    the limit failed its whole batch without naming its line."""
    from dataclasses import replace

    limit = 200_000
    fat = [{**ev(i), "event_properties": {"item_id": "d1", "note": "x" * 5_000}} for i in range(100)]
    huge = {**ev(100), "event_properties": {"item_id": "d1", "note": "x" * 300_000}}
    path = tmp_path / "fat.ndjson"
    path.write_bytes(ndjson([*fat[:50], huge, *fat[50:]]))
    with LiveReceiver(create_app(replace(settings, max_body_bytes=limit))) as live:
        summary = replay([path], live.url + WEBHOOK, progress=False, max_body_bytes=limit)
    assert (summary.sent, summary.failed, summary.invalid) == (100, 0, 1), summary.errors
    assert summary.requests == 3  # 100 x 5 KB in bodies of at most 200 KB
    request = len(b'{"events":[') + len(orjson.dumps(huge)) + len(b"]}")
    assert summary.errors == [f"{path}:51: event is {request:,} bytes as a request, more than the receiver takes "
                              f"(AMP_MAX_BODY_BYTES={limit})"]
    assert sorted(line["event_id"] for line in landed_lines(settings.data_dir)) == sorted(e["uuid"] for e in fat)


def test_a_receiver_not_there_is_named_by_its_url(tmp_path):
    path = tmp_path / "one.ndjson"
    path.write_bytes(ndjson([ev(1)]))
    summary = replay([path], "http://127.0.0.1:9/webhooks/amplitude/", max_retries=0, progress=False)
    assert summary.failed == 1 and summary.errors[0].endswith("(POST http://127.0.0.1:9/webhooks/amplitude/)")


def test_a_zip_made_on_macos_sends_its_events_and_ignores_the_resource_forks(receiver, tmp_path):
    """QA: the `__MACOSX/._*.json.gz` members Archive Utility adds made replay exit 1."""
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("export/0.json.gz", gzip.compress(ndjson([ev(1), ev(2)])))
        z.writestr("__MACOSX/export/._0.json.gz", b"\x00\x05\x16\x07 Mac OS X resource fork")
    result = CliRunner().invoke(main, ["replay", "--url", receiver.url + WEBHOOK, "--quiet", str(archive)])
    assert result.exit_code == 0, result.output
    assert "sent 2  processed 2  skipped 0  failed 0  invalid 0  unreadable files 0" in result.output
