"""Receiver throughput with durable group-commit landing against a baseline that lands nothing.

Both apps are the same handler on uvicorn (one worker, uvloop + httptools): the baseline swaps
landing for a no-op, so the ratio is exactly the cost of write + fsync. A bare ASGI app that
only reads the body and replies is run too, as uvicorn's ceiling on this machine. Load comes
from wrk (C, one thread, on the other core).

This 2-core machine's speed swings by up to 2x within seconds (other tenants), so the three
servers are started once, warmed up, and measured in many short slices: each round runs wrk
against all three in a shuffled order, and the headline ratio is the median of the rounds'
durable/baseline ratios, each taken from slices seconds apart. (Rounds of several seconds on
fresh servers, as this script ran before, gave single-round ratios from 0.59 to 1.22.) After
the last round the durable server's landing files must hold every event wrk saw acknowledged,
or the run is void. Beside requests per second it prints the server's CPU per request (its
event-loop thread, and the whole receiver with its sync process), which other work on the
machine moves less than it moves throughput.

    .venv/bin/python benchmarks/ingest.py [--seconds 2] [--rounds 15] [--connections 64]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import httpx
import orjson


def amplitude_event(i: int) -> dict:
    """Shaped like an event from Amplitude's Webhook destination (export format)."""
    return {
        "event_type": "click",
        "user_id": f"user_{i % 5000}",
        "device_id": "5f2c6e0e-8d1b-4f5e-9d5a-0a1b2c3d4e5f",
        "uuid": f"0f8f1f5e-2d7c-4a9b-8c3d-{i:012d}",
        "session_id": 1732600000000,
        "time": 1732600000000 + i,
        "event_time": "2024-11-26 05:46:40.000000",
        "server_received_time": "2024-11-26 05:46:40.512000",
        "platform": "Web",
        "os_name": "Chrome",
        "country": "United States",
        "event_properties": {"item_id": f"unified_doc_{i % 20000}", "item_type": "paper", "position": 3, "feed_type": "popular"},
        "user_properties": {"plan": "free", "signup_cohort": "2024-10"},
    }


def serve(mode: str, port: int, data_dir: str) -> None:
    import uvicorn

    from amp_personalize.receiver import create_app
    from amp_personalize.settings import Settings

    class NoLanding:
        async def commit(self, heads: list[bytes]) -> None:
            return None

        def start(self) -> None: ...

        async def stop(self) -> None: ...

    async def bare(scope, receive, send) -> None:
        """Reads the body and replies: uvicorn's own ceiling on this machine, for reference."""
        if scope["type"] != "http":
            return
        message = {"more_body": True}
        while message.get("more_body"):
            message = await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"code":200}'})

    settings = replace(Settings.from_env(), data_dir=Path(data_dir))
    app = bare if mode == "bare" else create_app(settings, landing=NoLanding() if mode == "baseline" else None)
    # The receiver's own protocol and connection limit, as `serve` runs it; bare is uvicorn's own.
    from functools import partial

    from amp_personalize.receiver.protocol import ReceiverProtocol

    product = {} if mode == "bare" else {
        "http": partial(ReceiverProtocol, head_timeout=settings.body_timeout_seconds), "limit_concurrency": settings.max_connections,
    }
    uvicorn.run(
        app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
        access_log=False, proxy_headers=False, server_header=False, log_level="warning", **product,
    )


def wrk(url: str, body: bytes, seconds: int, connections: int, workdir: Path) -> dict:
    body_file = workdir / "body.json"
    body_file.write_bytes(body)
    script = workdir / "post.lua"
    script.write_text(
        'local f = io.open("%s", "rb")\nwrk.body = f:read("*a")\nf:close()\n'
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n' % body_file
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk saw failures:\n{out}")

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": rps, "p50": ms("50%"), "p99": ms("99%"), "requests": requests}


def run_server(mode: str, data_dir: Path):
    port = 18000 + (os.getpid() % 1000) * 3 + ["bare", "baseline", "durable"].index(mode)
    proc = subprocess.Popen([sys.executable, __file__, "--serve", mode, "--port", str(port), "--data", str(data_dir)])
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(url + "/healthz", timeout=0.5)
            return proc, url
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{mode} server did not start")


def cpu_seconds(pid: int) -> dict[str, float]:
    """CPU time of the server's event-loop thread (its main thread) and of the whole receiver.

    The whole receiver is its process and the processes it started (the group-commit sync
    process). Per request, these move less with other work on the machine than requests per
    second do: a busy neighbour slows a request's wall time far more than the CPU it takes.
    """
    def ticks(stat: str) -> int:
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            return 0
        return int(fields[11]) + int(fields[12])  # utime + stime

    children = [c for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]
    hz = os.sysconf("SC_CLK_TCK")
    return {
        "loop": ticks(f"/proc/{pid}/task/{pid}/stat") / hz,
        "process": (ticks(f"/proc/{pid}/stat") + sum(ticks(f"/proc/{c}/stat") for c in children)) / hz,
    }


def landed_lines(data_dir: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in (data_dir / "landing").glob("*/*.ndjson*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=2, help="length of one slice of load on one server")
    parser.add_argument("--rounds", type=int, default=15, help="rounds of one slice per server, in shuffled order")
    parser.add_argument("--connections", type=int, default=64, help="for single events (Amplitude's webhook)")
    parser.add_argument("--batch-connections", type=int, default=16, help="for 100-event batches (replays, SDKs)")
    parser.add_argument("--only", choices=["single", "batch"], help="run one scenario")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of load on each fresh server before measuring")
    parser.add_argument("--seed", type=int, default=0, help="for the order of the slices")
    parser.add_argument("--serve", choices=["bare", "baseline", "durable"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--data")
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve, args.port, args.data)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk (make bench does this)")

    scenarios = {
        "single event": (orjson.dumps(amplitude_event(1)), 1, args.connections),
        "100-event batch": (orjson.dumps({"events": [amplitude_event(i) for i in range(100)]}), 100, args.batch_connections),
    }
    if args.only:
        scenarios = {k: v for k, v in scenarios.items() if k.startswith(args.only) or (args.only == "batch" and "batch" in k)}
    modes = ("bare", "baseline", "durable")
    shuffle = random.Random(args.seed).shuffle
    results: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parents[1] / "data") as tmp:
        tmp = Path(tmp)
        for name, (body, events_per_request, connections) in scenarios.items():
            servers, acknowledged = {}, 0
            try:
                for mode in modes:
                    servers[mode] = run_server(mode, tmp / f"{mode}-{events_per_request}")
                    if args.warmup:  # a serving receiver is warm: imports done, segment open
                        done = wrk(servers[mode][1] + "/webhooks/amplitude/", body, args.warmup, connections, tmp)["requests"]
                        acknowledged += done if mode == "durable" else 0
                for round_no in range(args.rounds):
                    order = list(modes)
                    shuffle(order)
                    for mode in order:
                        proc, url = servers[mode]
                        before = cpu_seconds(proc.pid)
                        result = wrk(url + "/webhooks/amplitude/", body, args.seconds, connections, tmp)
                        after = cpu_seconds(proc.pid)
                        acknowledged += result["requests"] if mode == "durable" else 0
                        result.update({k: (after[k] - before[k]) / result["requests"] * 1e6 for k in ("loop", "process")})
                        results.setdefault((name, mode), []).append(result)
                    print(f"  {name} round {round_no + 1} ({', '.join(order)}): " + ", ".join(
                        f"{mode} {results[(name, mode)][-1]['rps']:,.0f}" for mode in modes) + " req/s; durable/baseline "
                        f"{results[(name, 'durable')][-1]['rps'] / results[(name, 'baseline')][-1]['rps']:.3f}", flush=True)
            finally:
                for proc, _ in servers.values():
                    proc.terminate()
                    proc.wait(30)
            landed = landed_lines(tmp / f"durable-{events_per_request}")  # every acknowledged event is on disk, or the run is void
            if landed < acknowledged * events_per_request:
                raise SystemExit(f"durable run void: {acknowledged * events_per_request} events acknowledged, {landed} landed")

    print(f"\nreceiver ingest: 1 uvicorn worker; wrk -t1; {args.rounds} rounds of one {args.seconds}s slice per server, "
          f"shuffled; medians")
    print(f"{'scenario':<17} {'mode':<9} {'req/s':>9} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'loop CPU us/req':>16} {'process CPU us/req':>19}")
    for name, (_, per, connections) in scenarios.items():
        medians = {}
        for mode in modes:
            runs = results[(name, mode)]
            med = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99", "loop", "process")}
            medians[mode] = med
            print(f"{name:<17} {mode:<9} {med['rps']:>9.0f} {med['rps'] * per:>10.0f} {med['p50']:>8.2f} {med['p99']:>8.2f}"
                  f" {med['loop']:>16.1f} {med['process']:>19.1f}")
        paired = sorted(d["rps"] / b["rps"] for d, b in zip(results[(name, "durable")], results[(name, "baseline")]))
        quartiles = statistics.quantiles(paired, n=4) if len(paired) > 1 else paired * 3
        print(f"{name:<17} ratio durable/baseline: {statistics.median(paired):.3f} (median of {len(paired)} rounds; "
              f"quartiles {quartiles[0]:.3f}-{quartiles[2]:.3f}; ratio of medians "
              f"{medians['durable']['rps'] / medians['baseline']['rps']:.3f}; {connections} connections); "
              f"CPU per request, baseline/durable: loop thread {medians['baseline']['loop'] / medians['durable']['loop']:.3f}, "
              f"process {medians['baseline']['process'] / medians['durable']['process']:.3f}")


if __name__ == "__main__":
    main()
