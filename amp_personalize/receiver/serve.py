"""`amp-personalize serve`: the receiver's listeners, bound before anything else starts.

Binding first turns a port that is taken into one line naming it (not uvicorn's error after
the app has loaded), and lets one process serve two listeners: the webhook's and, with
AMP_SERVING_PORT, an internal one for recommendations and metrics (receiver.exposure).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import subprocess
import sys
import threading
from functools import partial

from amp_personalize.settings import Settings

log = logging.getLogger(__name__)
APP = "amp_personalize.receiver:create_app"


class PortUnavailable(Exception):
    """A listener cannot be opened; the message names the address and the setting."""


def listen(host: str, port: int, setting: str, likely: str = "is `make up` or another `amp-personalize serve` already running?") -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortUnavailable(f"port {port} on {host} ({setting}) is in use: {likely}") from None
        if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
            raise PortUnavailable(f"cannot listen on {host}:{port} ({setting}): no such address on this host") from None
        raise PortUnavailable(f"cannot listen on {host}:{port} ({setting}): {exc.strerror}") from None
    sock.set_inheritable(True)  # `--workers N` hands it to their processes
    return sock


def listeners(settings: Settings) -> list[socket.socket]:
    """The webhook's listener, and serving's own when AMP_SERVING_PORT is set."""
    webhook = listen(settings.receiver_host, settings.receiver_port, "AMP_RECEIVER_PORT / --port")
    if settings.serving_port is None:
        return [webhook]
    try:
        return [webhook, listen(settings.serving_host, settings.serving_port, "AMP_SERVING_PORT")]
    except PortUnavailable:
        webhook.close()
        raise


def run(settings: Settings, sockets: list[socket.socket], workers: int) -> None:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from amp_personalize.receiver.protocol import ReceiverProtocol

    config = uvicorn.Config(
        APP,
        factory=True,
        workers=workers,
        loop="uvloop",
        http=partial(ReceiverProtocol, head_timeout=settings.body_timeout_seconds),
        # Past this many connections (or requests in flight), a request is answered 503 and its
        # connection closed: a flood of slow clients cannot take every file descriptor.
        limit_concurrency=settings.max_connections,
        access_log=False,
        proxy_headers=False,  # no X-Forwarded-* rewriting on the hot path; nothing reads client addresses
        server_header=False,
        log_level="info",
    )
    for sock in sockets:
        host, port = sock.getsockname()[:2]
        what = "webhook: POST /webhooks/amplitude/" if port == settings.receiver_port else "recommendations and /metrics"
        log.info("listening on http://%s:%d (%s)", host, port, what)
    if workers > 1:
        Multiprocess(config, sockets=sockets).run()
    else:
        uvicorn.Server(config).run(sockets=sockets)


def export(settings: Settings) -> None:
    """The `--host`/`--port` a user gave, in the environment the app factory reads (in this
    process and in `--workers` processes), so the app knows which address it faces."""
    os.environ["AMP_RECEIVER_HOST"] = settings.receiver_host
    os.environ["AMP_RECEIVER_PORT"] = str(settings.receiver_port)


class ShipperProcess:
    """With AMP_LANDING_URL: the shipper, in a process of its own so that no upload or checksum
    takes time from the event loop, kept running while `serve` runs (restarted, a few seconds
    later, if it dies). It stops when its stdin closes: when `serve` stops it, or dies however it
    dies (the kernel closes the pipe); not on a terminal's Ctrl-C (it has its own process group),
    which would stop it before the receivers have sealed what they hold."""

    RESTART_SECONDS = 2.0

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="shipper-watch", daemon=True)

    def start(self) -> "ShipperProcess":
        self.proc = self._spawn()
        self._watcher.start()
        return self

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "amp_personalize.cli", "ship", "--until-stdin-closes"], stdin=subprocess.PIPE, process_group=0
        )

    def _watch(self) -> None:
        while not self._stopping.wait(1.0):
            if self.proc.poll() is not None and not self._stopping.is_set():
                log.error("the shipper exited (status %s); starting it again in %.0f s", self.proc.returncode, self.RESTART_SECONDS)
                if self._stopping.wait(self.RESTART_SECONDS):
                    return
                self.proc = self._spawn()

    def stop(self) -> None:
        """After the receivers have sealed their segments: ship them, mark the volume stopped."""
        from amp_personalize.landing.shipping import STOP_SECONDS

        self._stopping.set()
        self._watcher.join(5)
        proc = self.proc
        if proc is None:
            return
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(STOP_SECONDS + 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_shipper(settings: Settings) -> ShipperProcess | None:
    return ShipperProcess().start() if settings.landing_url else None


def stop_shipper(shipper: ShipperProcess | None) -> None:
    if shipper is not None:
        shipper.stop()
