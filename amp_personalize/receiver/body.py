"""Reading and decoding a request body within limits, and finding the events in it (SPEC 3)."""

from __future__ import annotations

import zlib

import orjson

# The most a refused request's unread body is drained by (read and dropped; see BodyStream.drain).
DRAIN_MAX_BYTES = 64 * 1024 * 1024


class Rejection(Exception):
    """A request we refuse; carries the status and a message naming what is wrong and where."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ClientGone(Exception):
    """The client disconnected before sending its whole body; there is nobody to reply to."""


class BodyStream:
    """One request's body as it arrives: whether it was asked for, and whether it is all in.

    Its deadline is the handler's (receiver.deadlines): an overdue read is cancelled.
    """

    def __init__(self, receive, expect_continue: bool = False, declared: bytes | None = None) -> None:
        self._receive = receive
        self.expect_continue = expect_continue
        self.declared = int(declared) if declared is not None and declared.isdigit() else None
        self.started = False  # a read was asked for (with Expect: 100-continue, uvicorn then says "continue")
        self.complete = False  # the last part of the body has been read

    async def receive(self) -> dict:
        self.started = True
        message = await self._receive()
        if message["type"] == "http.request" and not message.get("more_body", False):
            self.complete = True
        return message

    async def drain(self, max_bytes: int = DRAIN_MAX_BYTES) -> bool:
        """Read and drop the rest of a refused request's body, so that its client hears the reply.

        Many clients (urllib, requests) write the whole body before they read anything; closing
        with their bytes unread makes the kernel answer with a reset, and they never see the 413
        (Amplitude's SDKs split a batch on a 413, and resend a reset one as it was). Bounded by
        the request's deadline (its reads are cancelled past it) and `max_bytes`; False when the
        rest could not be read within `max_bytes`.
        A client that asked to be told before it sends (Expect: 100-continue) is not invited to.
        """
        if self.complete:
            return True
        if self.expect_continue and not self.started:
            return False
        if self.declared is not None and self.declared > max_bytes:
            return False
        drained = 0
        while not self.complete:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                return False
            drained += len(message.get("body", b""))
            if drained > max_bytes:
                return False
        return True


async def read_limited(receive, declared: bytes | None, limit: int) -> bytes:
    """The whole ASGI body, or 413 as soon as it is known to exceed `limit` (before reading it all)."""
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise Rejection(400, f"Content-Length {declared[:40]!r} is not a number") from None
        if length > limit:
            raise Rejection(413, f"body of {length} bytes exceeds the limit of {limit} bytes")
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone
    body = message.get("body", b"")
    if not message.get("more_body", False):  # the common case: one message, no copying
        if len(body) > limit:
            raise Rejection(413, f"body exceeds the limit of {limit} bytes")
        return body
    parts = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Rejection(413, f"body exceeds the limit of {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def decode(body: bytes, content_encoding: bytes | None, limit: int) -> bytes:
    """Undo Content-Encoding; the decompressed size is held to the same limit (no zip bombs)."""
    encoding = (content_encoding or b"identity").decode("latin-1").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in ("gzip", "x-gzip"):
        raise Rejection(415, f"Content-Encoding {encoding[:40]!r} is not supported; send gzip or none")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise Rejection(400, f"body is not valid gzip ({exc})") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise Rejection(413, f"decompressed body exceeds the limit of {limit} bytes")
    if not inflater.eof:
        raise Rejection(400, "gzip body is truncated")
    return out


def find_events(body: bytes) -> tuple[list, str]:
    """The request's elements and the path prefix that names them in error messages."""
    if not body.strip():
        raise Rejection(400, "body is empty; expected JSON")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Rejection(400, f"body is not valid JSON: {exc}") from None
    if isinstance(doc, list):
        if not doc:
            raise Rejection(400, "the list of events is empty")
        return doc, "body"
    if not isinstance(doc, dict):
        raise Rejection(400, f"body must be a JSON object or list, got {type(doc).__name__}")
    if "events" in doc:
        events = doc["events"]
        if not isinstance(events, list):
            raise Rejection(400, f"'events' must be a list, got {type(events).__name__}")
        if not events:
            raise Rejection(400, "'events' is empty")
        return events, "events"
    if "event_type" in doc or "user_id" in doc or "device_id" in doc:
        return [doc], None  # one event (Amplitude's Webhook destination) or one user payload
    raise Rejection(
        400,
        "no events: expected {\"events\": [...]}, a list of events, or one event object with event_type",
    )
