"""Live PutEvents push: calls per event against the fewest possible, and throughput under the TPS cap.

Why: every PutEvents call is billed and counts against the account's TPS quota, so the push must
pack a window's events into as few calls as the API's one-user-one-session-ten-events rule
allows; and at ~20 ms a call one connection cannot go past ~50 calls/s, so the push runs
`concurrency` workers under one shared rate limiter. This checks both halves of that design:
packing, and that the workers reach the configured TPS without ever going over it.

  efficiency   one window of generated landed segments (benchmarks/transform.py's write_window:
               the seeded demo generator in the receiver's exact landing format) goes through
               push_segments, the live asset's own path (read_landing -> raw_events -> push_frame
               -> put_events_requests -> push with a fresh ledger), into a client that only
               counts. Efficiency = minimum_calls(frame) / calls the client received.
  throughput   a real boto3 personalize-events client (retries off and a connection pool as in
               clients.py, dummy credentials) sends those requests to a local endpoint that
               answers POST /events with 200 {} after --latency-ms. The endpoint is uvicorn in
               a separate process, so its event loop does not take the client's GIL on this
               2-core machine, and it records the arrival time of every request. Whole users are
               drawn at random until about --seconds of calls at --tps, and pushed at --tps with
               --concurrency workers and a fresh sqlite ledger (fsync per acknowledged call, as
               in production). Then a baseline: the same client with one worker and no TPS cap
               (what one sequential connection reaches, ~1/latency calls/s).

The TPS cap holds when no 1-second window, sliding over every call start, holds more than --tps
calls (+1 for a call exactly on the boundary); it is checked on the client's send times
(recorded on the client's before-call event), what the rate limiter controls, and shown on the endpoint's arrival times,
which trail the sends by boto3's serialising and signing. Not measured: TLS, the real service's
latency spread and its throttling.

    flock /tmp/bench.lock .venv/bin/python benchmarks/personalize_push.py \
        [--events 100000] [--segments 4] [--tps 200] [--concurrency 8] [--latency-ms 20] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import orjson
import polars as pl

from amp_personalize.backends.personalize.clients import make_clients
from amp_personalize.backends.personalize.ledger import Ledger
from amp_personalize.backends.personalize.push import PushStats, push
from amp_personalize.backends.personalize.put_events import (
    minimum_calls,
    put_events_requests,
    session_keys,
)
from amp_personalize.backends.personalize.realtime import push_frame, push_segments
from amp_personalize.landing.source import LocalLanding, Segment
from amp_personalize.events import load_weights
from amp_personalize.landing.segments import sealed_segments
from amp_personalize.transforms.landing import read_landing
from amp_personalize.transforms.raw_events import raw_events
from amp_personalize.transforms.weights import weights_frame

TRACKING_ID = "bench-tracking-id"
EFFICIENCY_TARGET = 0.95


# -- the local PutEvents endpoint (runs in its own process) ----------------------------------


def serve(port: int, latency_ms: float) -> None:
    """POST /events -> 200 {} after the latency; GET /arrivals hands over and clears arrival times."""
    import uvicorn

    latency = latency_ms / 1000
    arrivals: list[float] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        arrived = time.monotonic()  # CLOCK_MONOTONIC: the same clock as the client's send times
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        if scope["method"] == "POST" and scope["path"] == "/events":
            arrivals.append(arrived)
            await asyncio.sleep(latency)
            body = b"{}"
        elif scope["path"] == "/arrivals":
            body = orjson.dumps(arrivals)
            arrivals.clear()
        else:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            return await send({"type": "http.response.body", "body": b""})
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", lifespan="off",
                log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_endpoint(latency_ms: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--latency-ms", str(latency_ms)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            arrivals(url)
            return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("the local PutEvents endpoint did not start")
            time.sleep(0.1)


def arrivals(url: str) -> np.ndarray:
    with urllib.request.urlopen(url + "/arrivals", timeout=5) as response:
        return np.array(orjson.loads(response.read()), dtype=float)


def events_client(url: str, concurrency: int):
    """The push's own client (clients.make_clients), pointed at the local endpoint the way a user
    would point it anywhere: boto3's AWS_ENDPOINT_URL_PERSONALIZE_EVENTS."""
    os.environ.update({"AWS_ENDPOINT_URL_PERSONALIZE_EVENTS": url, "AWS_ACCESS_KEY_ID": "bench",
                       "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"})
    return make_clients(None, push_concurrency=concurrency).events


# -- measuring -------------------------------------------------------------------------------


class CountingClient:
    """Takes PutEvents calls and counts them; what the efficiency phase pushes into."""

    def __init__(self) -> None:
        self.calls = 0
        self.events = 0
        self._lock = threading.Lock()

    def put_events(self, **call) -> dict:
        with self._lock:
            self.calls += 1
            self.events += len(call["eventList"])
        return {}


def max_in_window(times: np.ndarray, width: float = 1.0) -> int:
    """Most times in any [t, t + width) window; the max is reached at a window starting on a time."""
    if not len(times):
        return 0
    times = np.sort(times)
    return int((np.searchsorted(times, times + width, side="left") - np.arange(len(times))).max())


def per_second(times: np.ndarray) -> list[int]:
    """Counts in consecutive whole seconds from the first time (the last, partial second dropped)."""
    if len(times) < 2:
        return []
    seconds = ((times - times.min()) // 1).astype(int)
    return np.bincount(seconds)[:-1].tolist()


def pick_users(requests: list[dict], calls: int, seed: int) -> list[dict]:
    """Whole users at random until `calls` requests: a user's calls stay together, as in a real push."""
    by_user: dict[str, list[dict]] = {}
    for request in requests:
        by_user.setdefault(request["userId"], []).append(request)
    users = sorted(by_user)
    random.Random(seed).shuffle(users)
    chosen: set[str] = set()
    total = 0
    for user in users:
        if total >= calls:
            break
        chosen.add(user)
        total += len(by_user[user])
    return [r for r in requests if r["userId"] in chosen]  # the builder's order, as push gets it


def run_push(requests: list[dict], client, url: str, ledger_path: Path, tps: float, concurrency: int) -> dict:
    arrivals(url)  # drop whatever arrived before this run
    ledger = Ledger(ledger_path)
    send_times: list[float] = []  # every attempt, as the client hands it to botocore to send

    def sending(**_) -> None:
        send_times.append(time.monotonic())

    client.meta.events.register("before-call.personalize-events.PutEvents", sending)
    cpu, started = time.process_time(), time.perf_counter()
    try:
        stats: PushStats = push(requests, client, ledger, max_tps=tps, concurrency=concurrency)
    finally:
        client.meta.events.unregister("before-call.personalize-events.PutEvents", sending)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    ledger.close()
    server = arrivals(url)
    sends = np.array(send_times)
    latencies = np.array(stats.latencies) * 1000
    middle = np.sort(sends)[int(len(sends) * 0.05) : int(len(sends) * 0.95)]
    return {
        "users": len({r["userId"] for r in requests}),
        "calls": stats.calls,
        "events": stats.events,
        "retries": stats.retries,
        "wall": wall,
        "cpu": cpu,
        "events/s": stats.events / wall,
        "calls/s": stats.calls / wall,
        # middle 90% of sends: the rate once every worker is busy, without start-up or the tail
        "steady calls/s": (len(middle) - 1) / (middle[-1] - middle[0]) if len(middle) > 1 else float("nan"),
        "max 1-s sends": max_in_window(sends),
        "max 1-s arrivals": max_in_window(server),
        "arrivals": len(server),
        "per second": per_second(server),
        "p50 ms": float(np.percentile(latencies, 50)),
        "p99 ms": float(np.percentile(latencies, 99)),
    }


# -- the report ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="landed lines in the window")
    parser.add_argument("--segments", type=int, default=4)
    parser.add_argument("--tps", type=float, default=200, help="the push's max_tps")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency-ms", type=float, default=20, help="the local endpoint's time to answer")
    parser.add_argument("--seconds", type=float, default=15, help="about how long the capped run lasts")
    parser.add_argument("--baseline-seconds", type=float, default=8, help="about how long the sequential run lasts")
    parser.add_argument("--seed", type=int, default=0, help="which users each run pushes")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve, args.latency_ms)

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from transform import WINDOW, write_window

    data = Path(__file__).resolve().parents[1] / "data"
    data.mkdir(exist_ok=True)
    weights = weights_frame(load_weights())
    proc, url = start_endpoint(args.latency_ms)
    try:
        with tempfile.TemporaryDirectory(dir=data) as tmp:
            root = Path(tmp)
            started = time.perf_counter()
            write_window(root, args.events, args.segments, 0)
            segments = sealed_segments(root / "landing", WINDOW)
            print(f"wrote {args.events:,} landed lines in {len(segments)} segments in {time.perf_counter() - started:.1f}s",
                  file=sys.stderr)

            # Efficiency: the frame and requests as the asset builds them, and the calls its push makes.
            landed, _ = read_landing(segments)
            raw, _ = raw_events(landed)
            frame, _ = push_frame(raw, weights)
            requests = put_events_requests(frame, TRACKING_ID)
            minimum = minimum_calls(frame)
            counting = CountingClient()
            started = time.perf_counter()
            report = push_segments([Segment(p.parent.name, p.name, p.stat().st_size) for p in segments], LocalLanding(root / "landing"), weights, TRACKING_ID, counting, Ledger(root / "efficiency.sqlite"),
                                   max_tps=1e9, concurrency=args.concurrency)
            print(f"push_segments into a counting client: {time.perf_counter() - started:.1f}s", file=sys.stderr)
            pushable = frame.filter(pl.col("user_id").is_not_null(), pl.col("item_id").is_not_null())
            users = pushable["user_id"].n_unique()
            sessions = pushable.select("user_id", session_keys(pushable).alias("s")).n_unique()
            efficiency = minimum / counting.calls if counting.calls else float("nan")

            # Throughput: a real boto3 client against the local endpoint.
            client = events_client(url, args.concurrency)
            for request in requests[:3]:  # warm-up: endpoint resolution, the first connections
                client.put_events(**request)
            capped = pick_users(requests, int(args.tps * args.seconds), args.seed)
            sequential = pick_users(requests, int(args.baseline_seconds * 1000 / args.latency_ms), args.seed + 1)
            print(f"pushing {len(capped):,} calls at {args.tps:g} TPS x {args.concurrency} workers", file=sys.stderr)
            load_before = os.getloadavg()[0]
            runs = {
                f"capped ({args.concurrency} workers, {args.tps:g} TPS)": run_push(
                    capped, client, url, root / "capped.sqlite", args.tps, args.concurrency),
            }
            print(f"pushing {len(sequential):,} calls with 1 worker, no cap", file=sys.stderr)
            runs["sequential (1 worker, no cap)"] = run_push(sequential, client, url, root / "sequential.sqlite", 10_000, 1)
            load_after = os.getloadavg()[0]
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    capped_run, sequential_run = runs.values()
    print(f"\nPutEvents push: {args.events:,} landed lines ({len(segments)} segments, one window), "
          f"endpoint latency {args.latency_ms:g} ms, {os.cpu_count()} CPUs; load average before {load_before:.1f}, after {load_after:.1f}")
    print("\nefficiency (push_segments, the live asset's path, into a counting client)")
    rows = [
        ("landed lines", landed.height), ("raw events after dedupe", raw.height),
        ("interactions to push (events)", frame.height), ("users", users), ("user sessions", sessions),
        ("requests built", len(requests)), ("calls made", counting.calls), ("events in those calls", counting.events),
        ("minimum_calls", minimum), ("events per call", f"{counting.events / max(counting.calls, 1):.2f}"),
        ("impressions attached", report.impressions_attached), ("efficiency (minimum / made)", f"{efficiency:.3f}"),
    ]
    for name, value in rows:
        print(f"  {name:<32} {value:>10,}" if isinstance(value, int) else f"  {name:<32} {value:>10}")

    print(f"\nthroughput (real boto3 client -> local endpoint at {args.latency_ms:g} ms; whole users drawn at random)")
    columns = ("users", "calls", "events", "retries", "wall", "cpu", "events/s", "calls/s", "steady calls/s",
               "max 1-s sends", "max 1-s arrivals", "p50 ms", "p99 ms")
    print(f"  {'run':<32}" + "".join(f"{c:>{max(9, len(c) + 1)}}" for c in columns))
    for name, run in runs.items():
        cells = []
        for c in columns:
            v = run[c]
            text = f"{v:,}" if isinstance(v, int) else f"{v:,.1f}"
            cells.append(f"{text:>{max(9, len(c) + 1)}}")
        print(f"  {name:<32}" + "".join(cells))
    ratio = capped_run["events/s"] / sequential_run["events/s"]
    print(f"  concurrent / sequential: events/s {ratio:.1f}x, calls/s {capped_run['calls/s'] / sequential_run['calls/s']:.1f}x")
    cpu_per_call = capped_run["cpu"] / capped_run["calls"] * 1000
    ceilings = {
        f"the {args.tps:g} TPS cap": args.tps,
        f"{args.concurrency} workers / p50 latency": args.concurrency / (capped_run["p50 ms"] / 1000),
        f"client CPU ({cpu_per_call:.1f} ms a call: boto3, ledger, threads, one GIL)": 1000 / cpu_per_call,
    }
    binding = min(ceilings, key=ceilings.get)
    print("  ceilings, calls/s: " + "; ".join(f"{name} {value:,.0f}" for name, value in ceilings.items())
          + f" -> {binding.split(' (')[0]} binds")
    print(f"  endpoint arrivals per second, capped run: {' '.join(map(str, capped_run['per second']))}")
    print("  (the last seconds are the few heaviest users left, each one call at a time; arrivals trail sends by the "
          "client's own serialising and signing, so they can bunch a call or two past the sends)")

    limit = args.tps + 1
    targets = [
        ("efficiency (minimum / made)", efficiency, ">=", EFFICIENCY_TARGET),
        ("max calls sent in any 1 s", capped_run["max 1-s sends"], "<=", limit),
        ("steady calls/s vs TPS", capped_run["steady calls/s"], ">=", 0.9 * args.tps),
    ]
    print()
    for name, value, op, target in targets:
        met = value >= target if op == ">=" else value <= target
        shown = f"{value:.3f}" if value < 10 else f"{value:,.1f}"
        print(f"{name:<30} {shown:>9}   target {op} {target:<8g} {'met' if met else 'MISSED'}")
    print(f"{'max arrivals in any 1 s':<30} {capped_run['max 1-s arrivals']:>9,.1f}   (endpoint side, for reference: "
          f"no target, see above)")


if __name__ == "__main__":
    main()
