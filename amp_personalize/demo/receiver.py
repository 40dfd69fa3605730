"""The demo's receiver: the real app, landing and group commit, on a receive clock the demo sets.

`make demo` sends hours of traffic in seconds. Through `serve` every event would land in the
current window; here the demo moves the receive clock along the events' delivery times, so each
lands in the window a receiver running all along would have put it in. The clock is memory shared
with the demo's own process alone: nothing a request carries moves it, and `serve` has no such knob.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import time

import httpx

from amp_personalize.receiver.app import WEBHOOK_PATH
from amp_personalize.settings import Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(settings: Settings, port: int, clock) -> None:
    import uvicorn

    from amp_personalize.receiver import create_app
    from amp_personalize.receiver.app import durable_landing

    landing = durable_landing(settings, clock_ms=lambda: clock.value)
    uvicorn.run(create_app(settings, landing=landing), host="127.0.0.1", port=port, log_level="warning")


class DemoReceiver:
    """A receiver process on a free loopback port whose receive time is `at(ms)`'s, from `start_ms` on."""

    def __init__(self, settings: Settings, start_ms: int) -> None:
        context = multiprocessing.get_context("spawn")  # not fork: this process may hold threads
        self.clock = context.Value("q", start_ms, lock=False)  # an aligned int64: read and set whole
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}{WEBHOOK_PATH}"
        self.process = context.Process(target=_serve, args=(settings, self.port, self.clock), daemon=True)

    def at(self, ms: int) -> None:
        """Requests from now on are received at `ms`."""
        self.clock.value = ms

    def __enter__(self) -> "DemoReceiver":
        self.process.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.process.is_alive():
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.process.kill()
        raise SystemExit("the demo's receiver did not start")

    def __exit__(self, *exc) -> None:
        if self.process.is_alive():
            os.kill(self.process.pid, signal.SIGINT)  # a clean stop seals the open segment
        self.process.join(30)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
