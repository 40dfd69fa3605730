"""POST /webhooks/amplitude/ as a plain ASGI handler.

It reads top to bottom: auth, limits (size and time), parse, validate, land, reply. Nothing is landed until every
element has been validated (a rejected request lands nothing), and nothing is acknowledged until
it is fsync'd. It is plain ASGI rather than a Starlette endpoint because Starlette's Request,
Response and middleware cost half the throughput on this path (benchmarks/ingest.py: about 7,400
req/s through Starlette vs 15,600 for bare uvicorn on one core); every other route is Starlette.
"""

from __future__ import annotations

import asyncio
import hmac
from dataclasses import dataclass
from typing import Protocol

import orjson

from amp_personalize.events import EventShapeError, WeightTable, extract
from amp_personalize.events.fields import nested_too_deeply
from amp_personalize.landing.commit import LandingUnavailable
from amp_personalize.receiver.body import (
    DRAIN_MAX_BYTES,
    BodyStream,
    ClientGone,
    Rejection,
    decode,
    find_events,
    read_limited,
)
from amp_personalize.receiver.deadlines import Deadlines
from amp_personalize.receiver.metrics import ReceiverMetrics

SUCCESS_MESSAGE = "Webhook successfully processed"
_JSON_HEADERS = [(b"content-type", b"application/json")]
_CLOSE = (b"connection", b"close")


class Landing(Protocol):
    """What the handler needs from landing; the benchmark's baseline swaps in a no-op."""

    async def commit(self, heads: list[bytes]) -> None: ...
    def start(self) -> None: ...
    async def stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Refused:
    status: int
    error: str
    heard: bool = True  # the client read its whole body, so it will read the reply too


class WebhookHandler:
    def __init__(
        self,
        weights: WeightTable,
        landing: Landing,
        metrics: ReceiverMetrics,
        max_body_bytes: int,
        secret: str | None,
        body_timeout: float = 30.0,
    ) -> None:
        self.is_relevant = weights.is_relevant
        self.landing = landing
        self.metrics = metrics
        self.limit = max_body_bytes
        self.body_timeout = body_timeout
        self.deadlines = Deadlines(body_timeout)
        # The token is compared as bytes, in constant time, exactly as sent after "<scheme> ".
        self.expected_token = secret.encode() if secret else None

    async def __call__(self, scope, receive, send) -> None:
        authorization = content_length = content_encoding = None
        expect_continue = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-length":
                content_length = value
            elif name == b"content-encoding":
                content_encoding = value
            elif name == b"expect":
                expect_continue = value.lower() == b"100-continue"
        body = BodyStream(receive, expect_continue, content_length)

        # The body, held to its deadline: past it, the read is cancelled (receiver.deadlines).
        task = asyncio.current_task()
        self.deadlines.watch(task, asyncio.get_running_loop().time())
        try:
            read = await self.read(body, authorization, content_length, content_encoding)
        except asyncio.CancelledError:
            if not self.deadlines.was_overdue(task):
                raise
            task.uncancel()
            read = Refused(408, f"the request did not arrive whole within {self.body_timeout:g} s (AMP_BODY_TIMEOUT_SECONDS)", heard=False)
        finally:
            self.deadlines.forget(task)
        if read is None:
            return self.metrics.request(499)
        if isinstance(read, Refused):
            return await self.reply(send, read.status, {"code": read.status, "error": read.error}, close=not read.heard)
        heads, total, processed, body_bytes = read
        try:
            await self.landing.commit(heads)
        except LandingUnavailable as exc:
            return await self.reply(send, 503, {"code": 503, "error": f"{exc}; nothing was acknowledged, retry later"})

        self.metrics.events(total, processed, body_bytes)
        await self.reply(
            send,
            200,
            {"message": SUCCESS_MESSAGE, "processed": processed, "skipped": total - processed, "code": 200, "events_ingested": total},
        )

    async def read(self, body: BodyStream, authorization, content_length, content_encoding) -> "tuple | Refused | None":
        """Limits, parse, validate: the landed lines and counts, a refusal, or None (client gone)."""
        if self.expected_token is not None and not self.authorized(authorization):
            return await self.refuse(body, 401, "missing or wrong Authorization: Bearer <AMP_WEBHOOK_SECRET>")
        try:
            raw = await read_limited(body.receive, content_length, self.limit)
            elements, prefix = find_events(decode(raw, content_encoding, self.limit))
            records = [extract(element, _where(prefix, i)) for i, element in enumerate(elements)]
            heads = _heads(records, prefix)
        except Rejection as rejection:
            return await self.refuse(body, rejection.status, rejection.message)
        except EventShapeError as exc:
            return Refused(400, str(exc))
        except ClientGone:
            return None

        is_relevant = self.is_relevant
        processed = 0
        for r in records:
            if r["kind"] == "event" and is_relevant(r["event_type"], r["user_id"], r["item_id"], r["items_shown"]):
                processed += 1
        # The parsed events are done with once this returns: they are not held through the wait
        # for the fsync, so that many requests' dicts are not (on 100-event batches, holding them
        # made the allocator and the garbage collector the loop's biggest costs).
        return heads, len(records), processed, len(raw)

    def authorized(self, authorization: bytes | None) -> bool:
        """`Bearer <secret>`; the scheme is case-insensitive (RFC 7235 section 2.1), the secret is not."""
        scheme, _, token = (authorization or b"").partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token, self.expected_token)

    async def refuse(self, body: BodyStream, status: int, error: str) -> "Refused":
        """A refusal the client hears: the unread rest of its body drained first (bounded), or,
        when it cannot be (too large, or never to be sent), the connection closed after."""
        return Refused(status, error, heard=await body.drain(DRAIN_MAX_BYTES + self.limit))

    async def reply(self, send, status: int, body: dict, close: bool = False) -> None:
        self.metrics.request(status)
        headers = _JSON_HEADERS if status != 401 else [*_JSON_HEADERS, (b"www-authenticate", b"Bearer")]
        if close:
            headers = [*headers, _CLOSE]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": orjson.dumps(body)})


def _where(prefix: str | None, i: int) -> str:
    return f"{prefix}[{i}]" if prefix else "the event"


def _heads(records: list[dict], prefix: str | None) -> list[bytes]:
    """The landed lines, each missing its closing brace (the writer adds `received_at`).

    Serializing fails only past orjson's depth limit, which the record (one object around the
    event) can reach when the event alone did not: then EventShapeError names the event.
    """
    dumps = orjson.dumps
    try:
        return [dumps(r)[:-1] for r in records]
    except orjson.JSONEncodeError:
        for i, r in enumerate(records):
            try:
                dumps(r)
            except orjson.JSONEncodeError:
                raise nested_too_deeply(_where(prefix, i)) from None
        raise
