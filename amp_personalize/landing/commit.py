"""Group commit: many concurrent requests, one write and one fdatasync.

Requests hand their lines to `commit` and wait. The loop writes all the lines staged in one
loop iteration with one `os.write` (page cache only: microseconds). A syncer thread does nothing
but fdatasync whatever has been written and tell the loop how far that reached; the loop then
answers every request whose lines end at or below that offset. So while one fdatasync is in
flight the loop keeps parsing and writing the next group: syncs per second follow the disk,
requests per second follow the CPU. When the syncer is idle, the first request of an iteration
is written at once, so a sync starts without waiting for the rest of a long iteration (waiting
made syncs, and so replies, about 40% rarer).

The syncer does as little Python as possible, because every bytecode it runs holds the GIL the
loop needs: an earlier design that built, wrote and synced each group on the thread reached
0.73-0.81 of the no-landing baseline.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections import deque
from typing import Callable

from amp_personalize.landing.writer import SegmentWriter

log = logging.getLogger(__name__)
# After an fdatasync the syncer thread needs the GIL back, and a busy event loop yields it only
# every switch interval (5 ms by default), which would cap syncs near 200/s whatever the disk does.
SWITCH_INTERVAL_SECONDS = 0.0005

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
    ) -> None:
        self.writer = writer
        self.interval_seconds = interval_seconds
        self.max_events = max_events  # with an interval: sync at once when this many wait
        self.on_commit = on_commit  # (requests, events, seconds) per sync, called on the loop
        self._staged_heads: list[bytes] = []  # lines of this loop iteration, not yet written
        self._staged: list[asyncio.Future] = []
        self._unsynced: deque[_Group] = deque()  # written, waiting for an fdatasync
        self._unsynced_events = 0
        self._wake = threading.Event()
        self._syncer_idle = True
        self._closing = False
        self._seal_timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- the event loop side ----------------------------------------------------------------

    async def commit(self, heads: list[bytes]) -> None:
        """Return once every line is written and fdatasync'd; LandingUnavailable if it cannot be."""
        if self._closing:
            raise LandingUnavailable("the receiver is shutting down")
        future = self._loop.create_future()
        self._staged.append(future)
        self._staged_heads += heads
        if len(self._staged) == 1:
            if self._syncer_idle:  # it can start on these lines now, not after this iteration
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
            return
        self._unsynced.append((self.writer.written, futures, len(heads)))
        self._unsynced_events += len(heads)
        self._syncer_idle = False
        self._wake.set()
        if self._seal_timer is None:
            self._seal_timer = self._loop.call_later(self.writer.seconds_until_due() or 0.0, self._seal_due)

    def _synced(self, seconds: float) -> None:
        """Called from the syncer thread (via the loop) after each successful fdatasync."""
        self._settle(None, seconds=seconds)

    def _sync_failed(self, exc: Exception) -> None:
        if self.writer.abandon(failed_only=True):  # else a seal has already cut it back
            self._settle(_unavailable("sync", exc, self._unsynced_events))

    def _settle(self, error: Exception | None, more: list[asyncio.Future] = (), seconds: float = 0.0) -> None:
        """Answer every group that is now synced; with an error, fail all the others (and `more`)."""
        synced, unsynced = self.writer.synced, self._unsynced
        requests = events = 0
        while unsynced and unsynced[0][0] <= synced:
            _, futures, n = unsynced.popleft()
            requests += len(futures)
            events += n
            for future in futures:
                if not future.done():
                    future.set_result(None)
        self._unsynced_events -= events
        if requests and self.on_commit is not None:
            self.on_commit(requests, events, seconds)
        if error is None:
            return
        failed = [future for _, futures, _ in unsynced for future in futures] + list(more)
        unsynced.clear()
        self._unsynced_events = 0
        for future in failed:
            if not future.done():
                future.set_exception(error)

    def _seal_due(self) -> None:
        self._seal_timer = None
        try:
            self.writer.seal_if_due()
        except Exception as exc:
            # Landing goes on in a fresh segment, so one bad seal never stops the receiver.
            log.exception("sealing a segment failed")
            self._settle(_unavailable("seal", exc, self._unsynced_events))
        else:
            self._settle(None)  # sealing synced what was written
        due = self.writer.seconds_until_due()
        if due is not None:
            self._seal_timer = self._loop.call_later(due, self._seal_due)

    def start(self) -> None:
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_SECONDS))
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="landing-syncer", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Land what is pending, seal the open segment, end the syncer thread."""
        self._write_staged()  # nothing staged may be left behind
        self._closing = True
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        if self._seal_timer is not None:
            self._seal_timer.cancel()
        try:
            self.writer.close()
        except Exception as exc:
            log.exception("sealing the last segment failed; recovery will seal it at next start")
            self._settle(_unavailable("seal", exc, self._unsynced_events))
        else:
            self._settle(None)

    # -- the syncer thread ------------------------------------------------------------------

    def _run(self) -> None:
        loop, writer = self._loop, self.writer
        while not self._closing:
            self._syncer_idle = not self._wake.is_set()
            self._wake.wait()
            self._syncer_idle = False
            self._wake.clear()
            if self.interval_seconds and not self._closing and self._unsynced_events < self.max_events:
                time.sleep(self.interval_seconds)  # let more requests join this sync
            started = time.perf_counter()
            try:
                writer.sync()
            except OSError as exc:
                callback, arg = self._sync_failed, exc
            else:
                callback, arg = self._synced, time.perf_counter() - started
            try:
                loop.call_soon_threadsafe(callback, arg)
            except RuntimeError:  # the loop is gone: nobody is waiting for these replies any more
                return


def _unavailable(step: str, exc: Exception, events: int) -> LandingUnavailable:
    """Any failure means "not durable": the client must retry."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
    log.error("landing %s failed for %d events: %s", step, events, reason)
    return LandingUnavailable(f"landing {step} failed: {reason}")
