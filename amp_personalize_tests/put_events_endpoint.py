"""A local PutEvents endpoint: real HTTP on loopback, answering as Personalize's event service.

The product's own boto3 client reaches it the way a user points the SDK anywhere
(`AWS_ENDPOINT_URL_PERSONALIZE_EVENTS`), so the request is built and signed by botocore from
its service model; the endpoint records each call's body.
"""

from __future__ import annotations

import threading

import orjson

from amp_personalize_tests.conftest import LiveReceiver


class PutEventsEndpoint:
    def __init__(self) -> None:
        self.calls: list[dict] = []
        # Called with (call number from 1, the call) once it is recorded, before the reply: a
        # test kills the pushing process there, between PutEvents and the ledger's commit.
        self.on_call = lambda number, call: None
        self._lock = threading.Lock()
        async def app(scope, receive, send) -> None:  # a coroutine function: uvicorn's ASGI 3 test
            await self._app(scope, receive, send)

        self._live = LiveReceiver(app)

    async def _app(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    return await send({"type": "lifespan.shutdown.complete"})
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if scope["method"] == "POST" and scope["path"] == "/events":
            call = orjson.loads(body)
            with self._lock:
                self.calls.append(call)
                number = len(self.calls)
            self.on_call(number, call)
            status, reply = 200, b"{}"
        else:
            status, reply = 404, b'{"message": "not found"}'
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": reply})

    @property
    def url(self) -> str:
        return self._live.url

    def event_ids(self) -> list[str]:
        with self._lock:
            return [event["eventId"] for call in self.calls for event in call["eventList"]]

    def env(self) -> dict[str, str]:
        """What a user exports to send the product's PutEvents calls here."""
        return {"AWS_ENDPOINT_URL_PERSONALIZE_EVENTS": self.url, "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}

    def __enter__(self) -> "PutEventsEndpoint":
        self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._live.__exit__(*exc)
