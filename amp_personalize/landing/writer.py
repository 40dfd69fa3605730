"""The segment writer: appends batches of landed lines to the open segment and fsyncs them.

Used from one thread only (the group committer's). Each `append` is one write and one fsync
for however many requests the committer gathered, which is what makes durability cheap.
"""

from __future__ import annotations

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
    path: Path
    window_start_ms: int
    opened_monotonic: float
    size: int = 0


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
        self.torn_lines = 0  # lines quarantined after a failed write

    # -- the write path ---------------------------------------------------------------------

    def append(self, heads: list[bytes]) -> int:
        """Land one line per head and fsync; returns the receive time (epoch ms) stamped on them.

        Each head is a JSON object missing its closing brace; the receive time is added here so
        that the window a line lands in and the `received_at` it carries can never disagree.
        """
        now_ms = self.clock_ms()
        suffix = b',"received_at":%d}\n' % now_ms
        data = suffix.join(heads) + suffix
        segment = self._segment_for(now_ms, len(data))
        try:
            view = memoryview(data)
            while view:
                written = os.write(segment.fd, view)
                view = view[written:]
            os.fsync(segment.fd)
        except OSError:
            self._abandon(segment)
            raise
        segment.size += len(data)
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
        while True:
            self._seq += 1
            stem = segment_stem(now_ms, self.receiver_id, self._seq)
            creating = directory / (stem + CREATING_SUFFIX)
            fd = os.open(creating, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
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
            fsync_dir(directory)
            return _Segment(fd, path, window_start_ms, time.monotonic())

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
        segment, self._segment = self._segment, None
        if segment is None:
            return None
        try:
            return seal_locked(segment.fd, segment.path, self.quarantine_dir)
        finally:
            os.close(segment.fd)

    def _abandon(self, segment: _Segment) -> None:
        """After a failed write: cut back to the last acknowledged byte and seal, as best we can.

        If even that fails the file stays `.open` and unlocked once closed, so the next recovery
        pass seals it and quarantines whatever partial line the failed write left.
        """
        self._segment = None
        try:
            os.ftruncate(segment.fd, segment.size)
            result = seal_locked(segment.fd, segment.path, self.quarantine_dir)
            self.torn_lines += 1 if result.torn_bytes else 0
        except OSError:
            pass
        finally:
            os.close(segment.fd)

    def close(self) -> None:
        self.seal()
