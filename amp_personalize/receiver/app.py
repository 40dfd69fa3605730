"""The receiver as one ASGI app: the webhook path goes straight to its handler, the rest to Starlette.

Start-up recovers what a crash left open before the first request is accepted; shutdown lands
what is pending and seals the open segment.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from amp_personalize.events import WeightTable, load_weights
from amp_personalize.landing.commit import GroupCommitter
from amp_personalize.landing.segments import recover
from amp_personalize.landing.writer import SegmentWriter
from amp_personalize.pids import alive
from amp_personalize.receiver.exposure import Exposure, is_read_path
from amp_personalize.receiver.metrics import CONTENT_TYPE, ReceiverMetrics, ShippingMetrics
from amp_personalize.receiver.webhook import Landing, WebhookHandler
from amp_personalize.lake.store import lake as lake_store
from amp_personalize.serving.cache import RecommendationCache
from amp_personalize.serving.routes import serving_routes
from amp_personalize.settings import Settings

log = logging.getLogger(__name__)
GC_GEN0_THRESHOLD = 20_000
PR_SET_PDEATHSIG = 1  # linux/prctl.h
WEBHOOK_PATH = "/webhooks/amplitude/"
# Without the slash too: a POST redirected by 307 is one many senders won't follow.
WEBHOOK_PATHS = frozenset({WEBHOOK_PATH, WEBHOOK_PATH.rstrip("/")})


SUPERVISOR_PID_ENV = "AMP_SERVE_SUPERVISOR_PID"  # set by `serve --workers N` for its workers, not a setting


def end_with_supervisor() -> None:
    """In a `serve --workers N` worker: be sent SIGTERM (a graceful stop) when the supervisor dies.

    uvicorn's supervisor stops its workers on SIGINT and SIGTERM, but a SIGKILLed one left them
    serving the port with nobody to restart them, and a new `serve` failed with "Address already
    in use". Only `serve` asks for it (a lone receiver must outlive its shell under `nohup`), and
    only for a direct child: Linux signals when the parent *thread* ends. Never fatal.
    """
    supervisor = os.environ.get(SUPERVISOR_PID_ENV, "")
    if not supervisor.isdigit() or not sys.platform.startswith("linux"):
        return
    try:
        if os.getppid() != int(supervisor):
            if not alive(int(supervisor)):  # it died before we could ask
                os.kill(os.getpid(), signal.SIGTERM)
            return  # started some other way (a fork server): nothing to tie to
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        if os.getppid() != int(supervisor):  # it died between the check and the prctl
            os.kill(os.getpid(), signal.SIGTERM)
    except Exception as exc:
        log.warning("this worker will not stop with its supervisor if that is killed: %s", exc)


def durable_landing(
    settings: Settings,
    on_commit: Callable[[int, int, float | None], None] | None = None,
    clock_ms: Callable[[], int] | None = None,
) -> GroupCommitter:
    """The settings' landing; `clock_ms` lets the demo land hours of traffic in minutes."""
    writer = SegmentWriter(
        settings.landing_dir,
        settings.quarantine_dir,
        settings.window_minutes,
        settings.segment_max_bytes,
        settings.segment_max_age_seconds,
        clock_ms=clock_ms,
    )
    return GroupCommitter(
        writer,
        interval_seconds=settings.commit_interval_ms / 1000,
        max_events=settings.commit_max_events,
        on_commit=on_commit,
    )


class ReceiverApp:
    def __init__(self, webhook: WebhookHandler, rest: Starlette, settings: Settings, exposure: Exposure) -> None:
        self.webhook = webhook
        self.rest = rest
        self.settings = settings
        self.metrics = webhook.metrics
        self.exposure = exposure

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path in WEBHOOK_PATHS:
                if scope["method"] == "POST":
                    return await self.webhook(scope, receive, send)
                # A user checking the URL in a browser learns it is the right one.
                return await _reply(send, 405, "this is the Amplitude webhook: POST events to it", [(b"allow", b"POST")])
            if is_read_path(path) and (refusal := self.exposure.refusal(scope)) is not None:
                status, why = refusal
                return await _reply(send, status, why, [(b"www-authenticate", b"Bearer")] if status == 401 else [])
        await self.rest(scope, receive, send)


async def _reply(send, status: int, error: str, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), *headers]})
    await send({"type": "http.response.body", "body": orjson.dumps({"code": status, "error": error})})


def create_app(
    settings: Settings | None = None,
    weights: WeightTable | None = None,
    landing: Landing | None = None,
) -> ReceiverApp:
    settings = settings or Settings.from_env()
    weights = weights or load_weights(settings.weights_file)
    metrics = ReceiverMetrics()
    if settings.landing_url:
        metrics.registry.register(ShippingMetrics(settings.data_dir, settings.landing_dir))
    landing = landing or durable_landing(settings, on_commit=metrics.commit)
    webhook = WebhookHandler(weights, landing, metrics, settings.max_body_bytes, settings.webhook_secret, settings.body_timeout_seconds)
    exposure = Exposure(settings)

    async def healthz(request: Request) -> Response:
        return Response(orjson.dumps({"status": "ok"}), media_type="application/json")

    async def metrics_endpoint(request: Request) -> Response:
        # In a thread: with shipping it lists the landing directory, which must not hold up the loop.
        return Response(await run_in_threadpool(metrics.render), media_type=CONTENT_TYPE)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        end_with_supervisor()
        log.info(exposure.describe(f"http://{settings.receiver_host}:{settings.receiver_port}"))
        report = recover(settings.landing_dir, settings.quarantine_dir)
        if report.sealed or report.torn_lines:
            log.warning("recovered %d open segments, quarantined %d torn lines", len(report.sealed), report.torn_lines)
        for path, why in report.left_open:
            log.error("could not seal %s left open by a crash (%s); the next recovery will", path, why)
        metrics.segments_recovered += len(report.sealed)
        metrics.torn_lines += report.torn_lines
        # Everything loaded so far lives for the whole process: keep the collector off it, and
        # let it run less often, since each request allocates a few short-lived dicts.
        gc.freeze()
        gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])
        landing.start()
        try:
            yield
        finally:
            await landing.stop()

    cache = RecommendationCache(lake_store(settings))
    rest = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            *serving_routes(cache, settings.num_results),
        ],
        lifespan=lifespan,
    )
    return ReceiverApp(webhook, rest, settings, exposure)
