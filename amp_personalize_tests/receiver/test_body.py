"""The body limit trips while streaming: no chunk past the limit is read from the client."""

import asyncio

import pytest

from amp_personalize.receiver.body import Rejection, read_limited


def receiver_of(chunks: int, size: int):
    consumed = []

    async def receive():
        consumed.append(1)
        more = len(consumed) < chunks
        return {"type": "http.request", "body": b"x" * size, "more_body": more}

    return receive, consumed


def test_a_chunked_body_is_refused_at_the_first_chunk_past_the_limit():
    receive, consumed = receiver_of(chunks=10_000, size=100)  # 1 MB offered, limit 1,000 bytes
    with pytest.raises(Rejection) as err:
        asyncio.run(read_limited(receive, None, 1000))
    assert err.value.status == 413
    assert len(consumed) == 11, "the reader kept pulling chunks after the limit was passed"


def test_a_declared_length_over_the_limit_is_refused_before_reading():
    receive, consumed = receiver_of(chunks=1, size=10)
    with pytest.raises(Rejection, match="body of 5000 bytes exceeds the limit of 1000 bytes"):
        asyncio.run(read_limited(receive, b"5000", 1000))
    assert consumed == []


def test_a_body_within_the_limit_is_read_whole():
    receive, _ = receiver_of(chunks=5, size=100)
    assert asyncio.run(read_limited(receive, None, 1000)) == b"x" * 500
