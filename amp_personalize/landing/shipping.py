"""Shipping sealed segments to S3, and the volume's watermark there (SPEC section 9).

A 200 means fsync'd on this volume; shipping comes after, and never loses or doubles a segment:

- Each sealed segment goes to `<AMP_LANDING_URL>/<window>/<volume id>/<segment file name>` with a
  conditional PUT (storage.s3.put_if_absent). The name never changes, so a retry after a crash
  between the PUT and the marker below finds it there (a 412) instead of making a second copy.
- A confirmed upload leaves an empty marker, `<data>/shipped/<window>/<segment file name>`;
  the local copy is deleted AMP_LANDING_KEEP_HOURS after it.
- `<AMP_LANDING_URL>/_volumes/<volume id>.json` says what is complete: every event this volume
  received before `complete_before_ms` is sealed and shipped. It is the minimum of the pass's
  start (less a margin) and the open time of every segment still open or not yet shipped: a
  segment's name starts with the receive time of its first line, and no line in it is older.
  With a heartbeat and `live` or `stopped`, it is what closes a window across volumes.

S3 outages are retried with backoff while receivers keep acknowledging on local disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import orjson

from amp_personalize.events.windows import window_key, window_of
from amp_personalize.landing.segments import CREATING_SUFFIX, OPEN_SUFFIX, ensure_dir, recover, sealed_segments
from amp_personalize.landing.volume import volume_id
from amp_personalize.settings import Settings
from amp_personalize.storage import s3 as s3store

log = logging.getLogger(__name__)

SHIPPED_DIR = "shipped"
STATE_FILE = "_state.json"  # in SHIPPED_DIR: the shipper's counters, for the receiver's /metrics
LOCK_FILE = ".lock"  # in SHIPPED_DIR: held by the volume's one running shipper
VOLUMES = "_volumes"
MARGIN_MS = 2_000  # a line stamped just before a pass, whose segment is being opened as it lists
PASS_SECONDS = 1.0
HEARTBEAT_SECONDS = 10.0
MAX_BACKOFF_SECONDS = 60.0
STOP_SECONDS = 20.0  # how long a graceful stop keeps shipping before it marks the volume stopped


def opened_at_ms(segment: Path) -> int:
    """The receive time of a segment's first line: its name starts with it (segments.segment_stem)."""
    return int(segment.name[:13])


def volume_key(url: s3store.S3Url, volume: str) -> str:
    return url.key(VOLUMES, f"{volume}.json")


def segment_key(url: s3store.S3Url, window: str, volume: str, name: str) -> str:
    return url.key(window, volume, name)


@dataclass
class ShipState:
    """Counters since the shipper started, written to <data>/shipped/_state.json each pass."""

    shipped_segments: int = 0
    shipped_bytes: int = 0
    already_there: int = 0
    upload_failures: int = 0
    last_error: str | None = None
    last_error_ms: int | None = None
    last_success_ms: int | None = None
    complete_before_ms: int | None = None
    status: str = "live"


@dataclass
class Waiting:
    segments: list[Path] = field(default_factory=list)
    bytes: int = 0

    @property
    def oldest_ms(self) -> int | None:
        return min((opened_at_ms(p) for p in self.segments), default=None)


def waiting(landing_dir: Path, shipped_dir: Path) -> Waiting:
    """Sealed segments not yet confirmed in S3, oldest first."""
    found = Waiting()
    for path in sealed_segments(landing_dir):
        if not (shipped_dir / path.parent.name / path.name).exists():
            try:
                found.bytes += path.stat().st_size
            except FileNotFoundError:
                continue
            found.segments.append(path)
    found.segments.sort(key=opened_at_ms)
    return found


def _read(segment: Path) -> tuple[bytes, str]:
    """A sealed segment's bytes and their SHA-256 (storage.s3.sha256_b64): what its PUT sends."""
    data = segment.read_bytes()
    return data, s3store.sha256_b64(data)


def read_state(data_dir: Path) -> dict | None:
    try:
        return orjson.loads((data_dir / SHIPPED_DIR / STATE_FILE).read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None


class Shipper:
    def __init__(self, settings: Settings, s3: Any = None, clock_ms: Callable[[], int] | None = None) -> None:
        if not settings.landing_url:
            raise ValueError("shipping needs AMP_LANDING_URL")
        self.settings = settings
        self.url = s3store.S3Url.parse(settings.landing_url)
        self.landing_dir = settings.landing_dir
        self.shipped_dir = settings.data_dir / SHIPPED_DIR
        self.volume = volume_id(settings.data_dir)
        self.s3 = s3 or s3store.client()
        self.clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self.state = ShipState()
        self.heartbeat_seconds = min(HEARTBEAT_SECONDS, settings.volume_dead_after_seconds / 4)
        self._published: tuple | None = None  # what the last watermark said, and when
        self._published_at = 0.0
        # The receive time of the oldest segment on this volume as the shipper starts: processing
        # that has never seen this volume looks for its late segments from there, not from 1970.
        segments = [opened_at_ms(p) for p in self.landing_dir.glob("*/*.ndjson*") if p.name[:13].isdigit()]
        self.since_ms = min([self.clock_ms(), *segments])

    # -- one pass ---------------------------------------------------------------------------

    def ship_once(self, status: str = "live") -> Waiting:
        """Seal what crashed writers left, upload what is sealed, publish the watermark, prune.

        Raises on an S3 error after recording it (the caller backs off); what was shipped before
        it stays shipped.
        """
        started = self.clock_ms()
        recover(self.landing_dir, self.settings.quarantine_dir)  # only segments no live writer holds
        # `.creating` first: one renamed to `.open` between the two listings is in the second.
        still_open = [opened_at_ms(p) for suffix in (CREATING_SUFFIX, OPEN_SUFFIX) for p in self.landing_dir.glob(f"*/*{suffix}")]
        todo = waiting(self.landing_dir, self.shipped_dir)
        shipped_before = self.state.shipped_segments + self.state.already_there
        try:
            self._upload_all(todo)
        except Exception as exc:
            self.state.upload_failures += 1
            self.state.last_error, self.state.last_error_ms = f"{type(exc).__name__}: {exc}"[:500], self.clock_ms()
            self._write_state()
            raise
        complete_before = min([started - MARGIN_MS, *still_open, *(opened_at_ms(p) for p in todo.segments)])
        self.state.complete_before_ms = complete_before
        self.state.status = status
        self._publish(complete_before, status, todo, news=self.state.shipped_segments + self.state.already_there > shipped_before)
        self.state.last_success_ms = self.clock_ms()
        self._write_state()
        self._prune()
        return todo

    def _upload_all(self, todo: Waiting) -> None:
        """Upload the waiting segments one after the other, each marked once its PUT succeeded.

        Beside the PUTs, one thread reads and checksums the next segment and makes the marker of
        the one just confirmed: the file reads, hashlib, the file system's calls and the wait for
        S3's reply all release the GIL, so a pass takes about the time of its PUTs alone
        (benchmarks/ship.py). At most two segments are in memory.
        """
        segments = list(todo.segments)
        if not segments:
            return
        with ThreadPoolExecutor(1, thread_name_prefix="ship") as aside:
            ahead, marking = aside.submit(_read, segments[0]), None
            for i, path in enumerate(segments):
                data, checksum = ahead.result()
                if i + 1 < len(segments):
                    ahead = aside.submit(_read, segments[i + 1])
                key = segment_key(self.url, path.parent.name, self.volume, path.name)
                created = s3store.put_if_absent(self.s3, self.url.bucket, key, data, checksum)
                if marking is not None:
                    marking.result()  # the previous one's marker is made (or its error raised)
                marking = aside.submit(self._mark, path)
                if created:
                    self.state.shipped_segments += 1
                    self.state.shipped_bytes += len(data)
                else:
                    self.state.already_there += 1
                todo.segments.remove(path)
                todo.bytes -= len(data)
            marking.result()

    def _mark(self, path: Path) -> None:
        """The upload of `path` is confirmed. A marker lost in a crash is made again by the next
        pass, which finds the object there (a 412)."""
        marker = self.shipped_dir / path.parent.name / path.name
        ensure_dir(marker.parent)
        marker.touch()

    def _publish(self, complete_before: int, status: str, todo: Waiting, news: bool) -> None:
        window_minutes = self.settings.window_minutes
        # The newest window every line of which this volume has shipped.
        through = window_key(window_of(complete_before, window_minutes) - window_minutes * 60_000)
        said = (through, status, complete_before if todo.segments else None, len(todo.segments))
        if not news and said == self._published and time.monotonic() - self._published_at < self.heartbeat_seconds:
            return
        body = {
            "volume_id": self.volume,
            "status": status,
            "heartbeat_ms": self.clock_ms(),
            "complete_before_ms": complete_before,
            "since_ms": self.since_ms,
            "shipped_through_window": through,
            "window_minutes": window_minutes,
            "unshipped_segments": len(todo.segments),
            "unshipped_bytes": todo.bytes,
            "host": socket.gethostname(),
        }
        s3store.put(self.s3, self.url.bucket, volume_key(self.url, self.volume), orjson.dumps(body), "application/json")
        self._published, self._published_at = said, time.monotonic()

    def _prune(self) -> None:
        """Local copies AMP_LANDING_KEEP_HOURS after their upload was confirmed, and their markers."""
        cutoff = time.time() - self.settings.landing_keep_hours * 3600
        if not self.shipped_dir.exists():
            return
        for marker in self.shipped_dir.glob("*/*"):
            try:
                if marker.stat().st_mtime > cutoff:
                    continue
            except FileNotFoundError:
                continue
            (self.landing_dir / marker.parent.name / marker.name).unlink(missing_ok=True)
            marker.unlink(missing_ok=True)
        # Empty folders of windows long closed: never the current window's or the last one's, which
        # a writer may have just made and not yet put its segment in (review: a 503 at rollover).
        closed_before = window_key(window_of(self.clock_ms(), self.settings.window_minutes) - 3_600_000)
        for directory in (*self.shipped_dir.iterdir(), *(self.landing_dir.iterdir() if self.landing_dir.exists() else ())):
            if directory.is_dir() and directory.name < closed_before:
                try:
                    directory.rmdir()  # only when empty
                except OSError:
                    pass

    def _write_state(self) -> None:
        ensure_dir(self.shipped_dir)
        tmp = self.shipped_dir / f".{STATE_FILE}.tmp-{os.getpid()}"
        tmp.write_bytes(orjson.dumps(asdict(self.state)))
        os.replace(tmp, self.shipped_dir / STATE_FILE)

    # -- the loop ---------------------------------------------------------------------------

    def run(self, stopping: threading.Event, stop_seconds: float = STOP_SECONDS) -> Waiting:
        """Pass after pass until `stopping`; then ship what the receivers seal as they stop, for
        at most `stop_seconds`, and mark the volume stopped. Returns what could not be shipped.

        One shipper per volume: a second (a restarted `serve` while the one before it finishes,
        or a sidecar beside `serve`'s own) waits for the first, so that a `stopped` it writes
        last never follows the new one's `live`.
        """
        with self._exclusive(stopping) as mine:
            if not mine:
                return Waiting()
            return self._run(stopping, stop_seconds)

    def ship_alone(self) -> Waiting | None:
        """One pass, if no other shipper of this volume is running (None if one is): one beside
        `serve`'s own could publish `live` after its graceful `stopped`."""
        already = threading.Event()
        already.set()  # do not wait for the lock
        with self._exclusive(already) as mine:
            return self.ship_once() if mine else None

    @contextlib.contextmanager
    def _exclusive(self, stopping: threading.Event):
        ensure_dir(self.shipped_dir)
        with open(self.shipped_dir / LOCK_FILE, "a") as lock:
            said = False
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not said:
                        log.info("another shipper of volume %s is running; waiting for it to finish", self.volume)
                        said = True
                    if stopping.wait(0.5):
                        yield False
                        return
            try:
                yield True
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _run(self, stopping: threading.Event, stop_seconds: float) -> Waiting:
        backoff = 0.0
        while not stopping.is_set():
            try:
                self.ship_once()
                backoff = 0.0
            except Exception as exc:
                backoff = min(MAX_BACKOFF_SECONDS, max(1.0, backoff * 2))
                log.warning("shipping to %s failed (%s); retrying in %.0f s, receivers keep landing locally", self.url, exc, backoff)
            stopping.wait(backoff or PASS_SECONDS)
        return self.stop(stop_seconds)

    def stop(self, stop_seconds: float = STOP_SECONDS) -> Waiting:
        deadline = time.monotonic() + stop_seconds
        left = Waiting()
        said = None
        while True:
            last = time.monotonic() >= deadline
            try:
                open_now = any(self.landing_dir.glob(f"*/*{OPEN_SUFFIX}"))
                left = self.ship_once(status="stopped" if last or not open_now else "live")
                if not open_now and not left.segments:
                    return left
            except Exception as exc:
                if str(exc) != said:  # once per error, not once a second for the whole deadline
                    log.warning("shipping to %s failed while stopping (%s)", self.url, exc)
                    said = str(exc)
                left = waiting(self.landing_dir, self.shipped_dir)
            if last:
                if left.segments:
                    log.error("stopped with %d segment(s) not shipped; the next start ships them", len(left.segments))
                return left
            time.sleep(min(PASS_SECONDS, max(0.0, deadline - time.monotonic())))
