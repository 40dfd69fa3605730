"""Group commit: many concurrent requests, one write and one fdatasync.

Requests hand their lines to `commit` and wait. The loop writes all the lines staged in one
loop iteration with one `os.write` (page cache only: microseconds). The sync process
(`syncer.py`) does nothing but fdatasync the open segment when asked; its reply tells the loop
that everything written before the request is durable, and the loop answers every request whose
lines end at or below that offset. So while one fdatasync is in flight the loop keeps parsing
and writing the next group: syncs per second follow the disk, requests per second follow the
CPU. When no sync is in flight, the first request of an iteration is written and its sync asked
for at once, so a sync starts without waiting for the rest of a long iteration (waiting made
syncs, and so replies, about 40% rarer).

The fdatasync is in a process, not a thread, because a thread needs the GIL back after each one
and takes it from the busy loop (syncer.py says what that cost). If the sync process dies, the
loop syncs what is waiting itself, once, and starts another (one start a second at most while
they die at once): no request is refused for it. A sync that fails after its segment was sealed
still refuses the requests it covered; they wait for its answer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Callable, Sequence

from amp_personalize.landing import syncer
from amp_personalize.landing.writer import SegmentWriter

log = logging.getLogger(__name__)
# `-I -S`: no environment, no site-packages; the syncer needs nothing but the standard library.
SYNCER_COMMAND = (sys.executable, "-I", "-S", str(Path(syncer.__file__)))
SYNCER_RETRY_SECONDS = 1

# (offset where the group's lines end, its requests' futures, its number of events)
_Group = tuple[int, list[asyncio.Future], int]


class LandingUnavailable(Exception):
    """The events could not be made durable; the request must not be acknowledged."""


class GroupCommitter:
    def __init__(
        self,
        writer: SegmentWriter,
        interval_seconds: float = 0.0,
        max_events: int = 10_000,
        on_commit: Callable[[int, int, float], None] | None = None,
        syncer_command: Sequence[str] = SYNCER_COMMAND,
    ) -> None:
        self.writer = writer
        self.interval_seconds = interval_seconds
        self.max_events = max_events  # with an interval: sync at once when this many wait
        self.on_commit = on_commit  # (requests, events, seconds or None if no sync ran) per group answered
        self.syncer_command = list(syncer_command)  # the socket's descriptor is appended
        self._staged_heads: list[bytes] = []  # lines of this loop iteration, not yet written
        self._staged: list[asyncio.Future] = []
        self._unsynced: deque[_Group] = deque()  # written, waiting for an fdatasync
        self._unsynced_events = 0
        # (segment, offset it reaches, `synced` when asked) of the sync asked for, not yet answered
        self._in_flight: tuple | None = None
        self._interval_timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._seal_timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._process: subprocess.Popen | None = None
        self._socket: socket.socket | None = None
        self._sent_segment = None  # the segment whose descriptor the sync process holds
        self._started_at = 0.0
        self._start_again_at = 0.0  # after a failed start or a quick death, when to try again

    # -- requests ---------------------------------------------------------------------------

    async def commit(self, heads: list[bytes]) -> None:
        """Return once every line is written and fdatasync'd; LandingUnavailable if it cannot be."""
        if self._closing:
            raise LandingUnavailable("the receiver is shutting down")
        future = self._loop.create_future()
        self._staged.append(future)
        self._staged_heads += heads
        if len(self._staged) == 1:
            if self._in_flight is None and self._interval_timer is None:  # its sync can start now, not after this iteration
                self._write_staged()
            else:  # one write per loop iteration, not one per request
                self._loop.call_soon(self._write_staged)
        await future

    def _write_staged(self) -> None:
        futures, heads = self._staged, self._staged_heads
        if not futures:
            return
        self._staged, self._staged_heads = [], []
        try:
            self.writer.write(heads)
        except Exception as exc:  # the writer has cut back to what is synced: fail the rest
            self._settle(_unavailable("write", exc, len(heads)), futures)
            self._forget_closed_segment()
            return
        self._unsynced.append((self.writer.written, futures, len(heads)))
        self._unsynced_events += len(heads)
        self._sync_soon()
        if self._seal_timer is None:
            self._seal_timer = self._loop.call_later(self.writer.seconds_until_due() or 0.0, self._seal_due)

    def _settle(self, error: Exception | None, more: list[asyncio.Future] = (), seconds: float | None = None) -> None:
        """Answer every group that is now synced; with an error, fail all the others (and `more`).

        What a sync still in flight covers waits for its answer even when a seal of that segment
        has synced it since: should the sync fail, those requests are refused, not acknowledged.
        """
        synced = self.writer.synced
        if self._in_flight is not None and self._in_flight[0] is not self.writer.segment:
            synced = min(synced, self._in_flight[2])
        futures, events = self._take_through(synced)
        for future in futures:
            if not future.done():
                future.set_result(None)
        if futures and self.on_commit is not None:
            self.on_commit(len(futures), events, seconds)
        if error is None:
            return
        # Groups past what is synced fail; ones a seal synced wait for the answer of the sync in flight.
        failed, unsynced = list(more), self._unsynced
        while unsynced and unsynced[-1][0] > self.writer.synced:
            _, group, n = unsynced.pop()
            failed += group
            self._unsynced_events -= n
        _fail(failed, error)

    def _take_through(self, offset: int) -> tuple[list[asyncio.Future], int]:
        """Remove the groups whose lines end at or below `offset`: their futures and events."""
        futures, events, unsynced = [], 0, self._unsynced
        while unsynced and unsynced[0][0] <= offset:
            _, group, n = unsynced.popleft()
            futures += group
            events += n
        self._unsynced_events -= events
        return futures, events

    # -- syncing ----------------------------------------------------------------------------

    def _sync_soon(self) -> None:
        """Ask for a sync unless one is in flight or waiting out the commit interval."""
        if self._in_flight is not None or self._interval_timer is not None or not self._unsynced:
            return
        if self.interval_seconds and self._unsynced_events < self.max_events:
            # Let more requests join this sync; ones arriving meanwhile do not cut the wait short.
            self._interval_timer = self._loop.call_later(self.interval_seconds, self._sync_now)
        else:
            self._sync_now()

    def _sync_now(self) -> None:
        self._interval_timer = None
        segment, offset = self.writer.segment, self.writer.written
        if segment is None or segment.failed or offset <= self.writer.synced:
            return self._settle(None)  # a seal has synced it, or a cut back has failed it
        if self._socket is None and not self._closing and time.monotonic() >= self._start_again_at:
            self._start_syncer()
        try:
            if self._socket is None:
                raise OSError("no sync process")
            if segment is self._sent_segment:
                self._socket.send(b"sync")
            else:
                socket.send_fds(self._socket, [b"sync"], [segment.sync_fd])
                self._sent_segment = segment
        except OSError:
            self._syncer_lost()
            return
        self._in_flight = (segment, offset, self.writer.synced)

    def _on_reply(self) -> None:
        try:
            reply = self._socket.recv(64)
        except BlockingIOError:
            return
        except OSError:
            reply = b""
        if not reply or self._in_flight is None:
            return self._syncer_lost()
        (segment, offset, _), self._in_flight = self._in_flight, None
        status, _, detail = reply.partition(b" ")
        try:
            if status != b"ok":
                code = int(detail)
                raise OSError(code, os.strerror(code))
            self.writer.check_linked(segment)
        except OSError as error:
            if self.writer.mark_failed(segment):
                self._sync_failed(error)
            elif segment.sealed:  # refuse what this sync covered (the next segment's offsets start past it)
                self._refuse_through(offset, _unavailable("sync", error, self._unsynced_events))
            else:  # cut back: its requests were refused then, and its offsets may be the next segment's now
                self._settle(None)
        else:
            self.writer.mark_synced(segment, offset)
            self._settle(None, seconds=float(detail))
        self._forget_closed_segment()
        self._sync_soon()

    def _refuse_through(self, offset: int, error: Exception) -> None:
        _fail(self._take_through(offset)[0], error)
        self._settle(None)

    def _sync_failed(self, exc: Exception) -> None:
        if self.writer.abandon(failed_only=True):  # else a seal has already cut it back
            self._settle(_unavailable("sync", exc, self._unsynced_events))

    def _forget_closed_segment(self) -> None:
        """Have the sync process close its descriptor of a segment that is sealed or cut back,
        rather than keep the file open until the next segment's first sync."""
        if self._sent_segment is not None and self._sent_segment is not self.writer.segment and self._in_flight is None:
            self._sent_segment = None
            try:
                self._socket.send(b"drop")
            except OSError:
                pass  # its next descriptor, or its exit, closes the old one

    def _start_syncer(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._process = subprocess.Popen([*self.syncer_command, str(theirs.fileno())], pass_fds=[theirs.fileno()])
        except OSError:
            log.exception("could not start the sync process; syncing on the event loop, trying again in %d s",
                          SYNCER_RETRY_SECONDS)
            self._start_again_at = time.monotonic() + SYNCER_RETRY_SECONDS
            ours.close()
            return
        finally:
            theirs.close()
        ours.setblocking(False)
        self._socket, self._sent_segment, self._started_at = ours, None, time.monotonic()
        self._loop.add_reader(ours.fileno(), self._on_reply)

    def _stop_syncer(self) -> subprocess.Popen | None:
        """Close our end: the sync process exits once it has answered what it was doing."""
        if self._socket is not None:
            self._loop.remove_reader(self._socket.fileno())
            self._socket.close()
        self._socket, self._sent_segment, self._in_flight = None, None, None
        process, self._process = self._process, None
        return process

    def _syncer_lost(self) -> None:
        """The sync process is gone: sync what is waiting here, once; the next sync starts another."""
        process = self._stop_syncer()
        if process is not None:
            try:
                process.wait(0.1)  # it is exiting: its socket is closed
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() - self._started_at < SYNCER_RETRY_SECONDS:  # it cannot run: no restart per sync
                self._start_again_at = time.monotonic() + SYNCER_RETRY_SECONDS
            log.error("the sync process exited (status %s); syncing on the event loop and starting another",
                      process.returncode)
        started = time.perf_counter()
        try:
            self.writer.sync()
        except OSError as exc:
            self._sync_failed(exc)
        else:
            self._settle(None, seconds=time.perf_counter() - started)  # the next sync starts another process

    # -- sealing and lifetime ---------------------------------------------------------------

    def _seal_due(self) -> None:
        self._seal_timer = None
        started = time.perf_counter()
        try:
            self.writer.seal_if_due()
        except Exception as exc:
            # Landing goes on in a fresh segment, so one bad seal never stops the receiver.
            log.exception("sealing a segment failed")
            self._settle(_unavailable("seal", exc, self._unsynced_events))
        else:
            self._settle(None, seconds=time.perf_counter() - started)  # sealing synced what was written
        self._forget_closed_segment()
        due = self.writer.seconds_until_due()
        if due is not None:
            self._seal_timer = self._loop.call_later(due, self._seal_due)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._start_syncer()

    async def stop(self) -> None:
        """Land what is pending, seal the open segment, end the sync process."""
        self._write_staged()  # nothing staged may be left behind
        self._closing = True
        for timer in (self._interval_timer, self._seal_timer):
            if timer is not None:
                timer.cancel()
        deadline = time.monotonic() + 10
        while self._in_flight is not None and time.monotonic() < deadline:  # its answer may be a refusal
            await asyncio.sleep(0.001)
        process = self._stop_syncer()
        if process is not None:
            await _exited(process)
        started = time.perf_counter()
        try:
            self.writer.close()  # sealing syncs everything written, whatever was in flight
        except Exception as exc:
            log.exception("sealing the last segment failed; recovery will seal it at next start")
            self._settle(_unavailable("seal", exc, self._unsynced_events))
        else:
            self._settle(None, seconds=time.perf_counter() - started)


def _fail(futures: list[asyncio.Future], error: Exception) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(error)


async def _exited(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Wait for the sync process to exit without a thread: stop() can run after the loop's
    default executor has been shut down. It exits as soon as it has answered its last request."""
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            return
        await asyncio.sleep(0.005)


def _unavailable(step: str, exc: Exception, events: int) -> LandingUnavailable:
    """Any failure means "not durable": the client must retry."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
    log.error("landing %s failed for %d events: %s", step, events, reason)
    return LandingUnavailable(f"landing {step} failed: {reason}")
