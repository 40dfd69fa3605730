"""The official amplitude-analytics SDK, pointed at us with server_url, gets its events landed."""

import threading
import time

import pytest
from amplitude import Amplitude, BaseEvent, Config

from amp_personalize.receiver import create_app
from amp_personalize_tests.conftest import LiveReceiver, landed_lines

pytestmark = pytest.mark.slow


class FailFirst:
    """ASGI wrapper answering the first webhook POST with a bare 500, as a flaky proxy would."""

    def __init__(self, app) -> None:
        self.app, self.failed, self.posts = app, 0, 0

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            self.posts += 1
            if not self.failed:
                self.failed += 1
                await send({"type": "http.response.start", "status": 500, "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": b"injected failure"})
                return
        await self.app(scope, receive, send)


def test_sdk_delivers_every_event_through_a_retry(settings):
    app = FailFirst(create_app(settings))
    results: dict[str, int] = {}
    lock = threading.Lock()

    def callback(event, code, message=None):
        with lock:
            results[event.insert_id] = code

    with LiveReceiver(app) as live:
        client = Amplitude(
            "test-api-key",
            Config(server_url=live.url + "/webhooks/amplitude/", flush_queue_size=100, flush_interval_millis=200, callback=callback),
        )
        n = 300
        for i in range(n):
            props = {"items_shown": [f"doc_{i}", f"doc_{i + 1}"]} if i % 3 == 0 else {"item_id": f"doc_{i}"}
            kind = "initial_impression" if i % 3 == 0 else ("click" if i % 3 == 1 else "page_view")
            client.track(BaseEvent(event_type=kind, user_id=f"user-{i % 17:03d}", insert_id=f"ins-{i:04d}", event_properties=props))
        # The SDK holds the batch the 500 refused for its retry delay: flush until every callback
        # came back (shutdown alone may stop its workers first, and the retry never goes out).
        deadline = time.monotonic() + 30
        while len(results) < n and time.monotonic() < deadline:
            client.flush()
            time.sleep(0.05)
        client.shutdown()

    assert app.failed == 1 and app.posts >= 4, "the injected 500 was never hit"
    assert len(results) == n
    assert set(results.values()) == {200}, f"SDK callbacks reported failures: {set(results.values())}"
    landed = landed_lines(settings.data_dir)
    assert sorted(line["event_id"] for line in landed) == sorted(f"ins-{i:04d}" for i in range(n))
    assert all(line["event"]["library"].startswith("amplitude-python") for line in landed)
