"""The webhook handler's own cost, durable landing against none, without sockets.

benchmarks/ingest.py measures the receiver through uvicorn and loopback TCP, where the kernel's
network path and other work on this 2-core machine swing a round by +-30 %. This drives the
same WebhookHandler in one process, on uvloop, from C concurrent tasks with in-memory ASGI
receive/send: once with landing replaced by a no-op (the baseline) and once with the real group
commit (SegmentWriter + GroupCommitter, fdatasync and all, in a temp dir under data/). Rounds
alternate ABBA and every round is printed; the medians give requests/s and CPU per request
(this process's time and its sync process's, read from /proc) and the ratios durable/baseline.

    .venv/bin/python benchmarks/handler_cpu.py [--requests 20000] [--rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import amplitude_event, cpu_seconds  # noqa: E402  (the same event shape and CPU clock as the socket benchmark)

from amp_personalize.events import load_weights  # noqa: E402
from amp_personalize.landing.commit import GroupCommitter  # noqa: E402
from amp_personalize.landing.writer import SegmentWriter  # noqa: E402
from amp_personalize.receiver.app import GC_GEN0_THRESHOLD  # noqa: E402
from amp_personalize.receiver.metrics import ReceiverMetrics  # noqa: E402
from amp_personalize.receiver.webhook import WebhookHandler  # noqa: E402


class NoLanding:
    async def commit(self, heads: list[bytes]) -> None:
        return None

    def start(self) -> None: ...

    async def stop(self) -> None: ...


async def drive(landing, body: bytes, requests: int, concurrency: int) -> dict[str, float]:
    handler = WebhookHandler(load_weights(), landing, ReceiverMetrics(), 10_000_000, None)
    scope = {"type": "http", "path": "/webhooks/amplitude/", "method": "POST", "headers": [(b"content-length", str(len(body)).encode())]}
    message = {"type": "http.request", "body": body, "more_body": False}
    statuses: list[int] = []

    async def receive():
        return message

    async def send(m):
        if m["type"] == "http.response.start":
            statuses.append(m["status"])

    left = requests

    async def worker():
        nonlocal left
        while left > 0:
            left -= 1
            await handler(scope, receive, send)

    landing.start()
    cpu, loop_cpu, wall = cpu_seconds(os.getpid())["process"], time.thread_time(), time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    cpu, loop_cpu, wall = cpu_seconds(os.getpid())["process"] - cpu, time.thread_time() - loop_cpu, time.perf_counter() - wall
    await landing.stop()
    if statuses.count(200) != requests:
        raise SystemExit(f"{requests - statuses.count(200)} requests were not acknowledged")
    return {"rps": requests / wall, "cpu_us": cpu / requests * 1e6, "loop_us": loop_cpu / requests * 1e6}


def durable(tmp: Path) -> GroupCommitter:
    writer = SegmentWriter(tmp / "landing", tmp / "quarantine", 60, 64 << 20, 15)
    return GroupCommitter(writer)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000, help="single-event requests per round (batches: a tenth)")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    gc.freeze()  # as the receiver does at start-up
    gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])
    scenarios = {
        "single event": (orjson.dumps(amplitude_event(1)), args.requests, 64),
        "100-event batch": (orjson.dumps({"events": [amplitude_event(i) for i in range(100)]}), args.requests // 10, 16),
    }
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parents[1] / "data") as tmp:
        for name, (body, requests, concurrency) in scenarios.items():
            runs: dict[str, list[dict]] = {"baseline": [], "durable": []}
            for round_no in range(args.rounds):
                order = ("baseline", "durable") if round_no % 2 == 0 else ("durable", "baseline")
                for mode in order:
                    landing = NoLanding() if mode == "baseline" else durable(Path(tmp) / f"{name}-{round_no}")
                    runs[mode].append(await drive(landing, body, requests, concurrency))
                print(f"  {name} round {round_no + 1}: " + ", ".join(
                    f"{m} {runs[m][-1]['rps']:,.0f} req/s, CPU {runs[m][-1]['cpu_us']:.1f} us/req" for m in ("baseline", "durable")), flush=True)
            med = {m: {k: statistics.median(r[k] for r in runs[m]) for k in ("rps", "cpu_us", "loop_us")} for m in runs}
            b, d = med["baseline"], med["durable"]
            print(f"{name} ({concurrency} concurrent, median of {args.rounds}): baseline {b['rps']:,.0f} req/s, "
                  f"CPU {b['cpu_us']:.1f} us/req; durable {d['rps']:,.0f} req/s, CPU {d['cpu_us']:.1f} us/req "
                  f"({d['loop_us']:.1f} on the event loop, the rest in the sync process)")
            print(f"{name}: durable/baseline req/s {d['rps'] / b['rps']:.3f}; CPU per request baseline/durable "
                  f"{b['cpu_us'] / d['cpu_us']:.3f} (event loop only {b['loop_us'] / d['loop_us']:.3f})")


if __name__ == "__main__":
    uvloop.run(main())
