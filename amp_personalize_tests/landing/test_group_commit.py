"""Concurrent requests share an fsync, and a 2xx is only ever sent for what is on disk."""

import asyncio

import httpx
import orjson

from amp_personalize_tests.conftest import WEBHOOK, landed_lines


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in metrics")


def test_concurrent_requests_share_fsyncs(receiver, settings):
    n = 300

    async def fire():
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=receiver.url, limits=limits, timeout=30) as client:
            bodies = [orjson.dumps({"event_type": "click", "user_id": f"u{i}", "uuid": f"e{i}"}) for i in range(n)]
            return await asyncio.gather(*(client.post(WEBHOOK, content=b) for b in bodies))

    replies = asyncio.run(fire())
    assert [r.status_code for r in replies] == [200] * n
    assert sorted(line["event_id"] for line in landed_lines(settings.data_dir)) == sorted(f"e{i}" for i in range(n))
    text = httpx.get(receiver.url + "/metrics").text
    commits = _metric(text, "amp_commit_seconds_count")
    assert _metric(text, "amp_commit_group_requests_sum") == n
    assert commits < n, f"{commits} fsync groups for {n} concurrent requests: no group commit"
