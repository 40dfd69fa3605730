"""Replaying Amplitude exports (or any NDJSON of events) through the webhook, as Amplitude would.

Going through HTTP rather than writing landing files directly means a replay exercises exactly
the path live traffic takes: validation, durability, counting.
"""

from __future__ import annotations

import gzip
import math
import time
import zipfile
import zlib
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Callable, Iterable, Iterator

import httpx
import orjson

from amp_personalize.events import EventShapeError, extract

RETRY_STATUSES = {408, 429, 500, 502, 503, 504}
MAX_RETRY_AFTER_SECONDS = 600.0
# What reading a damaged file raises: gzip's BadGzipFile (an OSError) and EOFError for a cut-short
# stream, zlib.error for corrupt deflate data, BadZipFile for a bad CRC or header, NotImplementedError
# for a compression method zipfile lacks, RuntimeError for an encrypted member.
class BrokenDocument(ValueError):
    """A file that is one JSON document (it opens with `[`, or no line of it is JSON) and does not parse."""


_UNREADABLE = (OSError, EOFError, zlib.error, zipfile.BadZipFile, NotImplementedError, RuntimeError, BrokenDocument)


@dataclass
class ReplaySummary:
    sent: int = 0  # events acknowledged by the receiver
    processed: int = 0
    skipped: int = 0
    failed: int = 0  # events the receiver refused or never acknowledged
    invalid: int = 0  # lines or events the receiver would refuse (not JSON, no type or id...); never sent
    unreadable: list[str] = field(default_factory=list)  # "file: reason" for each file (or zip member) not read
    requests: int = 0
    retries: int = 0
    errors: list[str] = field(default_factory=list)

    def count(self, size: int, reply: dict | None, retries: int, error: str | None) -> None:
        """One request of `size` events: its reply, or the error it ended on."""
        self.requests += 1
        self.retries += retries
        if reply is None:
            self.failed += size
            self.errors.append(error or "unknown error")
        else:
            self.sent += reply.get("events_ingested", size)
            self.processed += reply.get("processed", 0)
            self.skipped += reply.get("skipped", 0)


def _events_in_document(data: bytes) -> list | None:
    """A whole-file JSON document's events, or None if the file is not one JSON document.

    A list that does not parse (a trailing comma, one Latin-1 byte) is a broken document: read
    line by line, each of its lines was one "not JSON" line, thousands of them, nothing sent
    and the exit status 0 (QA).
    """
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if data.lstrip()[:1] == b"[":
            raise BrokenDocument(f"not valid JSON ({exc})") from None
        return None
    if isinstance(doc, dict) and isinstance(doc.get("events"), list):
        return doc["events"]
    return doc if isinstance(doc, list) else [doc]


_NOT_JSON = object()


def parse_events(data: bytes, name: str, summary: ReplaySummary, max_bytes: int | None = None) -> Iterator[dict]:
    """Events from a .json document (object, list, or {"events": [...]}) or from NDJSON lines.

    A name ending .gz promises gzip: content that is not is unreadable (BadGzipFile), not NDJSON.
    Errors name the line (`file:6: ...`) for NDJSON and the event's index for a JSON document.
    """
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    elif name.lower().endswith(".gz"):
        raise gzip.BadGzipFile(f"not a gzip file (named .gz, but it starts {data[:8]!r})")
    events = _events_in_document(data)
    if events is None:
        located = []
        for number, line in enumerate(data.splitlines(), 1):
            if not line.strip():
                continue
            try:
                located.append((f"{name}:{number}: ", "event", orjson.loads(line)))
            except orjson.JSONDecodeError:
                located.append((f"{name}:{number}: ", "line", _NOT_JSON))  # reported in line order
        if data.strip() and all(event is _NOT_JSON for _, _, event in located):
            try:  # a pretty-printed object that does not parse: no line of it is JSON
                orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                raise BrokenDocument(f"not valid JSON, as one document or as lines ({exc})") from None
    else:
        located = [(f"{name}: ", f"event {number}", event) for number, event in enumerate(events, 1)]
    for prefix, where, event in located:
        if event is _NOT_JSON:
            summary.invalid += 1
            summary.errors.append(f"{prefix}not JSON")
            continue
        # The receiver refuses a whole request for one bad element, so one is kept out here, by
        # the receiver's own rule, rather than costing its batch's good events.
        try:
            orjson.dumps(extract(event, where))
            size = len(orjson.dumps(event)) + len(_ENVELOPE) if max_bytes else 0
        except EventShapeError as exc:
            summary.invalid += 1
            summary.errors.append(f"{prefix}{exc}")
        except orjson.JSONEncodeError:  # past orjson's depth limit, as the receiver would find
            summary.invalid += 1
            summary.errors.append(f"{prefix}{where} is nested too deeply")
        else:
            if max_bytes and size > max_bytes:  # the receiver would refuse any request holding it (413)
                summary.invalid += 1
                summary.errors.append(f"{prefix}{where} is {size:,} bytes as a request, more than the receiver takes "
                                      f"(AMP_MAX_BODY_BYTES={max_bytes})")
                continue
            yield event


def _readable(name: str, read: Callable[[], bytes], summary: ReplaySummary, max_bytes: int | None) -> Iterator[dict]:
    """The events of one file or zip member; one that cannot be read is reported, not raised.

    A file is read and decompressed whole before its first event is yielded, so an unreadable
    one sends nothing.
    """
    try:
        yield from parse_events(read(), name, summary, max_bytes)
    except _UNREADABLE as exc:
        summary.unreadable.append(f"{name}: {type(exc).__name__}: {exc}")


def _starts_like_a_zip(path: Path) -> bool:
    """A zip cut short has lost its central directory, which `is_zipfile` looks for; its first
    bytes still say zip, and read as NDJSON it would be nothing but 'not JSON' lines."""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def read_events(path: Path, summary: ReplaySummary, max_bytes: int | None = None) -> Iterator[dict]:
    """Events of one file: .json, .json.gz, .ndjson/.jsonl, or an Amplitude export .zip of those."""
    # A name ending .zip promises a zip: one that is not is unreadable (BadZipFile), not NDJSON.
    if path.name.lower().endswith(".zip") or zipfile.is_zipfile(path) or _starts_like_a_zip(path):
        try:
            archive = zipfile.ZipFile(path)
        except _UNREADABLE as exc:
            summary.unreadable.append(f"{path}: {type(exc).__name__}: {exc}")
            return
        with archive:
            for info in sorted(archive.infolist(), key=lambda i: i.filename):
                # macOS's Archive Utility adds a `__MACOSX/._name` resource fork per file: not data (QA).
                if info.is_dir() or info.filename.startswith("__MACOSX/") or Path(info.filename).name.startswith("._"):
                    continue
                yield from _readable(f"{path}!{info.filename}", lambda info=info: archive.read(info), summary, max_bytes)
        return
    yield from _readable(str(path), path.read_bytes, summary, max_bytes)


_ENVELOPE = b'{"events":[]}'


def batches(events: Iterable[dict], size: int, max_bytes: int | None = None) -> Iterator[list[bytes]]:
    """Encoded events, at most `size` a request and, with `max_bytes`, at most that many bytes
    a request body (QA: 600 events of 45 KB made 22 MB bodies, refused with 413)."""
    batch: list[bytes] = []
    total = len(_ENVELOPE)
    for event in events:
        encoded = orjson.dumps(event)
        if batch and max_bytes and total + len(encoded) + 1 > max_bytes:
            yield batch
            batch, total = [], len(_ENVELOPE)
        batch.append(encoded)
        total += len(encoded) + 1
        if len(batch) >= size:
            yield batch
            batch, total = [], len(_ENVELOPE)
    if batch:
        yield batch


def retry_after_seconds(value: str | None) -> float:
    """A Retry-After header's wait: delay-seconds or an HTTP-date (RFC 9110 section 10.2.3).

    0 when absent, past, or unparseable, which leaves the wait to the exponential backoff; at
    most MAX_RETRY_AFTER_SECONDS.
    """
    if not value:
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return 0.0
        if when.tzinfo is None:  # "-0000": UTC by RFC 5322
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - time.time()
    # Capped: replay is run by someone waiting for it, and it gives up after max_retries anyway;
    # past about 9e9 seconds time.sleep itself would overflow.
    return min(seconds, MAX_RETRY_AFTER_SECONDS) if math.isfinite(seconds) and seconds > 0 else 0.0


def post_batch(
    client: httpx.Client,
    url: str,
    batch: list[bytes],
    headers: dict[str, str],
    max_retries: int,
    backoff: float,
) -> tuple[dict | None, int, str | None]:
    """(reply, retries, error): retries 408/429/5xx and connection errors with exponential backoff."""
    body = b'{"events":[' + b",".join(batch) + b"]}"
    retries = 0
    while True:
        error: str
        try:
            response = client.post(url, content=body, headers=headers)
            if response.status_code == 200:
                return response.json(), retries, None
            error = f"HTTP {response.status_code}: {response.text[:200]}"
            if response.status_code not in RETRY_STATUSES:
                return None, retries, error
            delay = retry_after_seconds(response.headers.get("retry-after"))
        except httpx.TransportError as exc:  # with the URL: a receiver not there is the usual cause
            error = f"{type(exc).__name__}: {exc} (POST {url})"
            delay = 0.0
        if retries >= max_retries:
            return None, retries, error
        time.sleep(max(delay, backoff * 2**retries))
        retries += 1


def replay(
    paths: list[Path],
    url: str,
    batch_size: int = 500,
    secret: str | None = None,
    concurrency: int = 4,
    max_retries: int = 6,
    backoff: float = 0.5,
    progress: bool = True,
    max_body_bytes: int | None = None,
) -> ReplaySummary:
    from tqdm import tqdm

    summary = ReplaySummary()
    headers = {"Content-Type": "application/json"}
    if secret:
        headers["Authorization"] = f"Bearer {secret}"
    events = (event for path in paths for event in read_events(path, summary, max_body_bytes))
    bar = tqdm(unit="ev", disable=not progress, desc="replay")
    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(concurrency) as pool:
        in_flight: dict = {}

        def settle(done) -> None:
            for future in done:
                size = in_flight.pop(future)
                summary.count(size, *future.result())
                bar.update(size)

        for batch in batches(events, batch_size, max_body_bytes):
            if len(in_flight) >= concurrency:
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                settle(done)
            future = pool.submit(post_batch, client, url, batch, headers, max_retries, backoff)
            in_flight[future] = len(batch)
        settle(wait(in_flight).done)
    bar.close()
    return summary
