"""Group commit: many concurrent requests, one write and one fsync.

Requests hand their lines to `commit` and wait; the loop hands a whole iteration's requests to
the writer under one lock (a lock and notify per request cost ~15% of durable throughput). A
dedicated writer thread takes everything pending, writes and fsyncs it once, hands the group's
completion to the event loop and goes straight back for the next group, without waiting for
the loop. So while one fsync is in flight
the loop keeps parsing requests into the next group: fsyncs per second follow the disk,
requests per second follow the CPU.
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
# After an fsync the writer thread needs the GIL back, and a busy event loop yields it only every
# switch interval (5 ms by default), which would cap commits near 200/s whatever the disk does.
SWITCH_INTERVAL_SECONDS = 0.0005

_Pending = tuple[list[bytes], asyncio.Future]


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
        self.max_events = max_events
        self.on_commit = on_commit  # (requests, events, seconds) per group, called on the loop
        self._pending: deque[_Pending] = deque()
        self._staged: list[_Pending] = []  # requests of this loop iteration, not yet handed off
        self._cond = threading.Condition()
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- the event loop side ----------------------------------------------------------------

    async def commit(self, heads: list[bytes]) -> None:
        """Return once every line is written and fsync'd; LandingUnavailable if it cannot be."""
        if self._closing:
            raise LandingUnavailable("the receiver is shutting down")
        future = self._loop.create_future()
        self._staged.append((heads, future))
        if len(self._staged) == 1:  # one hand-off per loop iteration, not one lock per request
            self._loop.call_soon(self._hand_off)
        await future

    def _hand_off(self) -> None:
        staged, self._staged = self._staged, []
        with self._cond:
            self._pending.extend(staged)
            self._cond.notify()

    def start(self) -> None:
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_SECONDS))
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="landing-writer", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Land what is pending, seal the open segment, end the writer thread."""
        self._hand_off()  # nothing staged may be left behind when the writer drains and exits
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    def _complete(self, group: list[_Pending], error: Exception | None, events: int, seconds: float) -> None:
        if error is None and self.on_commit is not None:
            self.on_commit(len(group), events, seconds)
        for _, future in group:
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    # -- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._pending:
                    if self._closing:
                        break
                    self._cond.wait(self.writer.seconds_until_due())
                if not self._pending:
                    group = None
                elif self.interval_seconds and not self._closing and self._pending_events() < self.max_events:
                    group = []  # let more requests join before committing
                else:
                    group = self._take_group()
            if group is None:
                self._seal_due()
            elif not group:
                time.sleep(self.interval_seconds)
                with self._cond:
                    group = self._take_group()
                self._commit(group)
            else:
                self._commit(group)
        try:
            self.writer.close()
        except Exception:
            log.exception("sealing the last segment failed; recovery will seal it at next start")

    def _commit(self, group: list[_Pending]) -> None:
        heads = [head for request_heads, _ in group for head in request_heads]
        started = time.perf_counter()
        error = None
        try:
            self.writer.append(heads)
        except Exception as exc:  # any failure means "not durable": the client must retry
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            log.error("landing write failed for %d events: %s", len(heads), reason)
            error = LandingUnavailable(f"landing write failed: {reason}")
        try:
            self._loop.call_soon_threadsafe(self._complete, group, error, len(heads), time.perf_counter() - started)
        except RuntimeError:  # the loop is gone: nobody is waiting for these replies any more
            pass

    def _seal_due(self) -> None:
        try:
            self.writer.seal_if_due()
        except Exception:
            # The segment stays `.open` and unlocked; the next recovery pass seals it. Landing
            # goes on in a fresh segment, so one bad seal never stops the receiver.
            log.exception("sealing a segment failed")

    def _pending_events(self) -> int:
        return sum(len(heads) for heads, _ in self._pending)

    def _take_group(self) -> list[_Pending]:
        """Whole requests, oldest first, up to max_events (always at least one request)."""
        group: list[_Pending] = []
        events = 0
        while self._pending:
            heads = self._pending[0][0]
            if group and events + len(heads) > self.max_events:
                break
            group.append(self._pending.popleft())
            events += len(heads)
        return group
