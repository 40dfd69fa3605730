"""Requests whose body is overdue, found by one sweep a second instead of a timer per request.

uvicorn waits for a request body for ever: a client that sends its headers and part of a body,
then nothing, held its connection (and a file descriptor) open indefinitely. A timer per
request (asyncio.timeout, or loop.call_at) costs 3-7 us on uvloop, a third of the handler's own
CPU for a single event; a sweep every SWEEP_SECONDS costs nothing per request but a dict
insert and delete. An overdue request's task is cancelled, and the handler, seeing it was
overdue (not shut down), answers 408. A deadline is met to within one sweep.
"""

from __future__ import annotations

import asyncio

SWEEP_SECONDS = 0.5


class Deadlines:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._watched: dict[asyncio.Task, float] = {}
        self._overdue: set[asyncio.Task] = set()
        self._sweep: asyncio.TimerHandle | None = None

    def watch(self, task: asyncio.Task, now: float) -> None:
        self._watched[task] = now + self.timeout
        if self._sweep is None:
            self._schedule(asyncio.get_running_loop())

    def forget(self, task: asyncio.Task) -> None:
        self._watched.pop(task, None)
        self._overdue.discard(task)

    def was_overdue(self, task: asyncio.Task) -> bool:
        """Whether this task was cancelled for being overdue (once; then it is forgotten)."""
        if task in self._overdue:
            self._overdue.discard(task)
            return True
        return False

    def stop(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sweep = loop.call_later(min(SWEEP_SECONDS, self.timeout / 4), self._run, loop)

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for task, deadline in list(self._watched.items()):
            if now >= deadline:
                del self._watched[task]
                self._overdue.add(task)
                task.cancel()
        self._schedule(loop)
