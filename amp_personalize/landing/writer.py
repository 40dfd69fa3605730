"""The segment writer: appends landed lines to the open segment, syncs them, rotates and seals.

Only the event loop calls it; group commit's fdatasync runs in the sync process, on a
descriptor of the open segment of its own (`sync_fd`), and reports back through `mark_synced` /
`mark_failed`, which take the segment the sync was for and change nothing once that segment is
sealed or cut back (the committer decides what a late failure means). Offsets are counted over
all segments: `written` is where the last write ended, `synced` how much of that is durable.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from amp_personalize.events.windows import window_key, window_of
from amp_personalize.landing.segments import (
    CREATING_SUFFIX,
    OPEN_SUFFIX,
    SealResult,
    ensure_dir,
    fsync_dir,
    seal_locked,
    segment_stem,
)


@dataclass
class _Segment:
    fd: int
    # A second open file description of the same file, for the sync process. Opened before any
    # write, so a writeback error reaches both: Linux reports one to every description opened
    # before it, once each. Sharing `fd` instead would let the sync process's fdatasync take the
    # error and a later seal's fsync of `fd` return success.
    sync_fd: int
    path: Path
    window_start_ms: int
    opened_monotonic: float
    base: int  # `written` when the segment was opened: file offset = global offset - base
    size: int = 0
    failed: bool = False  # an fdatasync failed: later ones may lie (the kernel drops dirty pages)
    sealed: bool = False  # sealed whole, as opposed to cut back after a failure


class SegmentWriter:
    def __init__(
        self,
        landing_dir: Path,
        quarantine_dir: Path,
        window_minutes: int,
        max_bytes: int,
        max_age_seconds: float,
        receiver_id: str | None = None,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self.landing_dir = landing_dir
        self.quarantine_dir = quarantine_dir
        self.window_minutes = window_minutes
        self.max_bytes = max_bytes
        self.max_age_seconds = max_age_seconds
        self.receiver_id = receiver_id or f"{socket.gethostname()}-{os.getpid()}"
        self._seq = 0
        # Wall-clock source for receive times and windows; tests pass one to cross a window edge.
        self.clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._segment: _Segment | None = None
        self.written = 0
        self.synced = 0
        self.torn_lines = 0  # lines quarantined after a failed write

    # -- the write path ---------------------------------------------------------------------

    def write(self, heads: list[bytes]) -> int:
        """Write one line per head (not yet durable); returns the receive time stamped on them.

        Each head is a JSON object missing its closing brace; the receive time is added here so
        that the window a line lands in and the `received_at` it carries can never disagree.
        On failure the segment is cut back to `synced` and sealed: nothing unsynced survives.
        """
        now_ms = self.clock_ms()
        suffix = b',"received_at":%d}\n' % now_ms
        data = suffix.join(heads) + suffix
        segment = self._segment_for(now_ms, len(data))
        try:
            written = os.write(segment.fd, data)
            while written < len(data):  # a short write: a file size limit, a full disk
                written += os.write(segment.fd, memoryview(data)[written:])
        except OSError:
            self.abandon()
            raise
        segment.size += len(data)
        self.written += len(data)
        return now_ms

    @property
    def segment(self) -> _Segment | None:
        """The open segment, if any: what a sync started now would cover."""
        return self._segment

    def sync(self) -> None:
        """Make everything written so far durable here, on the caller's thread."""
        segment, target = self._segment, self.written
        if segment is None or segment.failed or target <= self.synced:
            return
        try:
            os.fdatasync(segment.fd)
            self.check_linked(segment)
        except OSError:
            segment.failed = True
            raise
        self.synced = target

    def check_linked(self, segment: _Segment) -> None:
        """OSError if the open segment's file has been deleted (say, its directory): an fdatasync
        of it then succeeds, but what it holds is gone with the last descriptor. One fstat per sync."""
        if segment is self._segment and os.fstat(segment.fd).st_nlink == 0:
            raise OSError(errno.ENOENT, f"{segment.path.name} was deleted while open")

    def mark_synced(self, segment: _Segment, offset: int) -> None:
        """A sync of `segment` that began when `written` was `offset` succeeded elsewhere."""
        if segment is self._segment and offset > self.synced:
            self.synced = offset

    def mark_failed(self, segment: _Segment) -> bool:
        """A sync of `segment` failed elsewhere; False if it is no longer the open segment."""
        if segment is not self._segment:
            return False
        segment.failed = True
        return True

    def append(self, heads: list[bytes]) -> int:
        """Write and sync on one thread: durable on return."""
        now_ms = self.write(heads)
        self.sync()
        return now_ms

    def _segment_for(self, now_ms: int, incoming: int) -> _Segment:
        start = window_of(now_ms, self.window_minutes)
        segment = self._segment
        if segment is not None and (
            segment.window_start_ms != start
            or (segment.size and segment.size + incoming > self.max_bytes)
            or time.monotonic() - segment.opened_monotonic >= self.max_age_seconds
        ):
            self.seal()
            segment = None
        if segment is None:
            segment = self._segment = self._open(start, now_ms)
        return segment

    def _open(self, window_start_ms: int, now_ms: int) -> _Segment:
        directory = self.landing_dir / window_key(window_start_ms)
        ensure_dir(directory)
        missing_dir = False
        while True:
            self._seq += 1
            stem = segment_stem(now_ms, self.receiver_id, self._seq)
            creating = directory / (stem + CREATING_SUFFIX)
            try:
                fd = os.open(creating, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
            except FileNotFoundError:
                # The window's folder went between ensure_dir and here (a shipper's prune of empty
                # folders, say): made again, once more at most.
                if missing_dir:
                    raise
                missing_dir = True
                ensure_dir(directory)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                path = directory / (stem + OPEN_SUFFIX)
                os.rename(creating, path)
            except FileNotFoundError:
                # A recovery pass removed the file before we locked it; take the next name.
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                raise
            segment = _Segment(fd, -1, path, window_start_ms, time.monotonic(), base=self.written)
            try:
                segment.sync_fd = os.open(path, os.O_WRONLY)
                fsync_dir(directory)
            except BaseException:
                _close(segment)
                raise
            return segment

    # -- sealing ----------------------------------------------------------------------------

    def seconds_until_due(self) -> float | None:
        """How long the open segment may stay open (age or window end), None if none is open."""
        segment = self._segment
        if segment is None:
            return None
        by_age = segment.opened_monotonic + self.max_age_seconds - time.monotonic()
        window_end_ms = segment.window_start_ms + self.window_minutes * 60_000
        by_window = (window_end_ms - self.clock_ms()) / 1000
        return max(0.0, min(by_age, by_window))

    def seal_if_due(self) -> None:
        if self._segment is not None and self.seconds_until_due() == 0.0:
            self.seal()

    def seal(self) -> SealResult | None:
        """Seal the open segment; sealing fsyncs it, so everything written becomes synced.

        If sealing fails the segment is cut back to `synced` instead (see `abandon`).
        """
        segment = self._segment
        if segment is None:
            return None
        if segment.failed:
            self._cut_back(segment)
            raise OSError("an earlier fdatasync of this segment failed")
        try:
            result = seal_locked(segment.fd, segment.path, self.quarantine_dir)
        except OSError:
            self._cut_back(segment)
            raise
        self._segment = None
        self.synced = self.written
        segment.sealed = True
        _close(segment)
        return result

    def abandon(self, failed_only: bool = False) -> bool:
        """After a failed write or sync: cut back to the last synced byte and seal, as best we can.

        With `failed_only`, only a segment whose fdatasync failed (not one opened since). Returns
        whether anything was cut back.
        """
        segment = self._segment
        if segment is None or (failed_only and not segment.failed):
            return False
        self._cut_back(segment)
        return True

    def _cut_back(self, segment: _Segment) -> None:
        """Drop every unsynced byte: those requests are refused, so none of their lines may land.

        If even that fails the file stays `.open` and unlocked once closed, so the next recovery
        pass seals it and quarantines whatever partial line the failed write left.
        """
        self._segment = None
        self.written = self.synced
        try:
            os.ftruncate(segment.fd, self.synced - segment.base)
            result = seal_locked(segment.fd, segment.path, self.quarantine_dir)
            self.torn_lines += 1 if result.torn_bytes else 0
        except OSError:
            pass
        finally:
            _close(segment)

    def close(self) -> None:
        self.seal()


def _close(segment: _Segment) -> None:
    os.close(segment.fd)
    if segment.sync_fd >= 0:
        os.close(segment.sync_fd)
