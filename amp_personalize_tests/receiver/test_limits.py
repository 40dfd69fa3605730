"""The receiver's limits as clients on real sockets meet them: a refusal they can hear, a body
or head that stops arriving, and a bound on connections (`amp-personalize serve`, its own process)."""

from __future__ import annotations

import http.client
import os
import select
import socket
import time
import urllib.error
import urllib.request

import httpx
import orjson
import pytest


WEBHOOK = "/webhooks/amplitude/"
BIG = orjson.dumps({"events": [{"event_type": "click", "user_id": "u", "event_properties": {"item_id": f"d{i}"}} for i in range(30_000)]})


def urllib_post(url: str, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url + WEBHOOK, data=body, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, orjson.loads(reply.read())
    except urllib.error.HTTPError as refused:
        return refused.code, orjson.loads(refused.read())


@pytest.mark.slow
def test_clients_that_write_the_whole_body_first_hear_the_413_and_the_401(start_receiver):
    """urllib sends `Connection: close` and the whole body before it reads: it used to get a reset."""
    live = start_receiver(AMP_MAX_BODY_BYTES="100000", AMP_WEBHOOK_SECRET="s3cret")
    assert len(BIG) > 10 * 100_000
    status, reply = urllib_post(live.url, BIG, {"Authorization": "Bearer s3cret"})
    assert (status, reply["code"]) == (413, 413) and "exceeds the limit of 100000 bytes" in reply["error"]
    status, reply = urllib_post(live.url, BIG, {"Authorization": "Bearer wrong"})
    assert (status, reply["code"]) == (401, 401)
    # http.client, without Content-Length: chunked, refused while streaming.
    connection = http.client.HTTPConnection("127.0.0.1", live.port, timeout=30)
    connection.request("POST", WEBHOOK, body=iter([BIG[i : i + 65536] for i in range(0, len(BIG), 65536)]),
                       headers={"Authorization": "Bearer s3cret", "Connection": "close"}, encode_chunked=True)
    answer = connection.getresponse()
    assert answer.status == 413 and orjson.loads(answer.read())["code"] == 413
    # The receiver still lands what fits.
    assert urllib_post(live.url, orjson.dumps({"events": [{"event_type": "click", "user_id": "u"}]}), {"Authorization": "Bearer s3cret"})[0] == 200


def read_reply(sock: socket.socket, timeout: float) -> bytes:
    """What the server sends until it closes the connection (b"" if it closes without a word)."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def stalled_upload(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"POST {WEBHOOK} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n".encode() + b'{"events": [')
    return sock


@pytest.mark.slow
def test_a_body_that_stops_arriving_gets_a_408_and_its_connection_is_closed(start_receiver):
    live = start_receiver(AMP_BODY_TIMEOUT_SECONDS="1")
    sock = stalled_upload(live.port)
    started = time.monotonic()
    reply = read_reply(sock, timeout=15)
    assert reply.startswith(b"HTTP/1.1 408 ") and b"AMP_BODY_TIMEOUT_SECONDS" in reply
    assert 0.9 < time.monotonic() - started < 15
    # A connection that never sends a request head is closed too, without a word.
    idle = socket.create_connection(("127.0.0.1", live.port))
    assert read_reply(idle, timeout=15) == b""
    half_head = socket.create_connection(("127.0.0.1", live.port))
    half_head.sendall(b"POST /webhooks/amplitude/ HTTP/1.1\r\nHost: x\r\n")
    assert read_reply(half_head, timeout=15) == b""


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.slow
def test_stalled_uploads_cannot_take_more_than_the_connection_limit(start_receiver):
    live = start_receiver(AMP_MAX_CONNECTIONS="20", AMP_BODY_TIMEOUT_SECONDS="3")
    before = open_fds(live.proc.pid)
    stalled = [stalled_upload(live.port) for _ in range(60)]
    time.sleep(1)  # well within the 3 s body deadline
    # Past the limit a request is answered 503 and closed at once; the rest are held, bounded.
    answered, _, _ = select.select(stalled, [], [], 0)
    held = [s for s in stalled if s not in answered]
    assert len(held) <= 20 and len(answered) >= 40
    assert all(read_reply(s, timeout=5).startswith(b"HTTP/1.1 503 ") for s in answered)
    assert open_fds(live.proc.pid) <= before + 20
    # Held ones end with a 408 once their body is overdue; then new requests are served again.
    for sock in held:
        assert read_reply(sock, timeout=20).startswith(b"HTTP/1.1 408 ")
    assert httpx.post(live.url + WEBHOOK, json={"events": [{"event_type": "click", "user_id": "u"}]}, timeout=10).status_code == 200
    for sock in stalled:
        sock.close()


def test_the_head_deadline_spares_a_pipelined_request_being_answered():
    """Review: a response completing with the next request already in made the sweeper close that
    one's connection while it was being handled (its 200 lost, its events resent)."""
    import asyncio
    import threading
    from functools import partial

    import uvicorn

    from amp_personalize.receiver.protocol import ReceiverProtocol

    async def slow(scope, receive, send) -> None:  # each request takes longer than the head deadline
        await asyncio.sleep(1.5)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(slow, http=partial(ReceiverProtocol, head_timeout=1.0), loop="uvloop", log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        client = socket.create_connection(sock.getsockname())
        client.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        client.settimeout(10)
        answers = b""
        while answers.count(b"HTTP/1.1 200") < 2 and (chunk := client.recv(65536)):
            answers += chunk
        assert answers.count(b"HTTP/1.1 200") == 2
    finally:
        server.should_exit = True
        thread.join(10)
