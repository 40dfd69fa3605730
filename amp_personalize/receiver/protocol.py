"""uvicorn's httptools protocol with a deadline for every request head.

uvicorn times out nothing before a request's head is complete: a connection that sends nothing,
or half a head, is held (with its file descriptor) for as long as the client likes. Such a
connection is closed once AMP_BODY_TIMEOUT_SECONDS pass without a complete head; the body's own
deadline is the webhook handler's (receiver.deadlines). As there, one sweep over the open
connections every half second, not a timer per request: a timer costs 3-7 us on uvloop.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

SWEEP_SECONDS = 0.5
_sweeping: set[int] = set()  # id() of the connection sets (one per server) being swept


class ReceiverProtocol(HttpToolsProtocol):
    def __init__(self, *args, head_timeout: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.head_timeout = head_timeout
        self.waiting_since: float | None = None  # the loop's time since when a request head is awaited

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.waiting_since = self.loop.time()
        if id(self.connections) not in _sweeping:
            _sweeping.add(id(self.connections))
            self.loop.call_later(min(SWEEP_SECONDS, self.head_timeout / 4), _sweep, self.loop, self.connections, self.head_timeout)

    def on_headers_complete(self) -> None:
        self.waiting_since = None
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # uvicorn starts the next request, whose head is in
        super().on_response_complete()
        if not pipelined:
            self.waiting_since = self.loop.time()


def _sweep(loop: asyncio.AbstractEventLoop, connections: set, timeout: float) -> None:
    if loop.is_closed():
        return
    overdue = loop.time() - timeout
    for connection in list(connections):
        since = getattr(connection, "waiting_since", None)
        if since is not None and since < overdue and not connection.transport.is_closing():
            connection.transport.close()
    loop.call_later(min(SWEEP_SECONDS, timeout / 4), _sweep, loop, connections, timeout)
