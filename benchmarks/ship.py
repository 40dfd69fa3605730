"""Shipping to S3 (moto's server on loopback): the shipper against a plain boto3 upload loop, and
the receiver's single-event ingest with shipping on against off.

1. Throughput. N sealed segments (default 200 of about 1 MB), written in exactly the landing
   format (landing_fixture.landed_line over ingest.amplitude_event, named as the writer names
   them) across a few windows, are shipped by the product's `Shipper(settings).ship_once()` and,
   in the other arm, by a plain `put_object` loop over the same files (same keys under another
   prefix, a client from the same `storage.s3.client()`, the same server). Rounds alternate ABBA;
   moto is reset before every arm (it holds objects in memory). Each round gives segments/s and
   MB/s per arm and the shipper/plain ratio; the headline is the median of the rounds' ratios.
   Beside wall time it prints the CPU each arm took in this process (the client: botocore, the
   checksum, the file system work) and in moto's, per segment, which the machine's other tenants
   move far less. Then it times each piece of a pass that the plain loop does not do, alone on
   the same files: on the pass's own thread (recovery and the directory scans, the watermark and
   state, prune), on its side thread, which overlaps the PUTs (reading, the SHA-256 checksum, the
   markers), and what the plain loop does in line instead (reading, botocore's default CRC32).
   Over http, as to moto, botocore also signs every body with SHA-256, in both arms alike.
2. Ingest. Two `amp-personalize serve` processes on their own data dirs, both with
   AMP_SEGMENT_MAX_AGE_SECONDS=1 (so the difference is shipping alone, and the shipper really
   ships a segment a second during the load), one with AMP_LANDING_URL on the moto server. wrk
   (64 connections, one single-event POST each request, as benchmarks/ingest.py) drives them in
   interleaved slices of 5 s, ABBA; the headline is the median of the rounds' on/off ratios.
   After every slice the run waits until both receivers have sealed and the shipping arm has
   shipped all it took, so that no slice pays for the shipping of the one before it (the other
   arm's); it prints how much of what was shipped went while the shipping arm's slices ran
   (a segment is shipped 1-2 s after its first line: the seal age, then the shipper's next pass).
   Per request it prints the receiver's CPU (event-loop thread; the whole receiver with its sync
   process), the shipper process's and moto's. After the last round both are stopped (SIGTERM:
   the receiver seals, its shipper ships what is left and marks the volume stopped), and every
   sealed segment of the shipping arm must be in S3 byte for byte, holding at least as many
   lines as wrk saw acknowledged, with the volume `stopped` and nothing unshipped: or the run is
   void (exit 1).

moto's server runs in a process of its own (ThreadedMotoServer, as amp_personalize_tests.s3_server
starts it, with werkzeug's request log off): in this process it would share the GIL with the
client being measured, serialising the two and measuring the hand-offs; the receivers' shipper
processes reach it the same way. This machine has 2 cores shared with other tenants, so every
ratio is taken against the baseline measured in the same run, seconds apart; never compare
numbers across runs. PASS/FAIL is printed per target (0.9); the exit status is non-zero only when
something broke. Run it under the benchmark lock:

    flock /tmp/bench.lock .venv/bin/python benchmarks/ship.py [--segments 200] [--segment-mb 1] [--rounds 9] [--ingest-rounds 10] [--seconds 5]
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]

import httpx  # noqa: E402
import orjson  # noqa: E402

from amp_personalize.events.windows import window_key, window_of  # noqa: E402
from amp_personalize.landing import shipping  # noqa: E402
from amp_personalize.landing.segments import CREATING_SUFFIX, OPEN_SUFFIX, ensure_dir, recover, segment_stem, sealed_segments  # noqa: E402
from amp_personalize.landing.volume import volume_id  # noqa: E402
from amp_personalize.settings import Settings  # noqa: E402
from amp_personalize.storage import s3 as s3store  # noqa: E402
from amp_personalize_tests.landing_fixture import landed_line  # noqa: E402  (the receiver's line format)
from amp_personalize_tests.s3_server import S3Server  # noqa: E402
from ingest import amplitude_event, wrk  # noqa: E402  (the same event and load as ingest.py)

BUCKET = "amp-bench"
TARGET = 0.9
RECEIVER_ID = "bench-host-4242"  # as SegmentWriter names them: <host>-<pid>



def _paired(ratios) -> tuple[list[float], float, list[float]]:
    """Per-round ratios of two arms run back to back: sorted, their median and quartiles (a noisy
    machine moves both arms of a round together, so the paired ratio is steadier than the medians')."""
    paired = sorted(ratios)
    return paired, statistics.median(paired), statistics.quantiles(paired, n=4) if len(paired) > 1 else paired * 3

def cpu_of(pid: int, thread: int | None = None) -> float:
    """Seconds of CPU a process has taken, all its threads (the finished ones too) and not its
    children; or one of its threads'."""
    try:
        fields = Path(f"/proc/{pid}/task/{thread}/stat" if thread else f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- moto's server, in a process of its own ------------------------------------------------------


def run_moto(port: int) -> None:
    """The benchmark's S3: until the benchmark closes this process's stdin (or dies)."""
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a log line per request costs the server CPU
    server = S3Server(port)
    server.start(bucket=None)
    sys.stdin.buffer.read()
    server.stop()


class Moto:
    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.server = S3Server(port)
        self.proc = subprocess.Popen([sys.executable, __file__, "--moto", str(port)], stdin=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("moto's server did not start")
                time.sleep(0.1)

    def env(self) -> dict[str, str]:
        return self.server.env()

    def reset(self) -> None:
        """Empty: moto keeps every object in memory; a fresh bucket for the next arm."""
        request = urllib.request.Request(self.server.endpoint + "/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=30).close()
        self.server.client().create_bucket(Bucket=BUCKET)

    def cpu(self) -> float:
        return cpu_of(self.proc.pid)

    def stop(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- 1. throughput: the shipper against a plain upload loop -------------------------------------


def make_segments(data_dir: Path, count: int, size: int, windows: int) -> list[Path]:
    """`count` sealed segments of about `size` bytes, in the last `windows` hourly windows before
    this one, each named by the receive time of its first line, lines in receive order."""
    landing = data_dir / "landing"
    width = 3_600_000
    first_window = window_of(time.time_ns() // 1_000_000, 60) - windows * width
    per_window = -(-count // windows)
    files, n = [], 0
    for i in range(count):
        w, k = divmod(i, per_window)
        start = first_window + w * width
        opened = start + k * (width // per_window)
        directory = landing / window_key(start)
        directory.mkdir(parents=True, exist_ok=True)
        lines = bytearray()
        while len(lines) < size:
            lines += landed_line(amplitude_event(n), opened + n % 1000)
            n += 1
        path = directory / (segment_stem(opened, RECEIVER_ID, i + 1) + ".ndjson")
        path.write_bytes(lines)
        files.append(path)
    return sorted(files)


def check_uploaded(client, prefix: str, files: list[Path]) -> None:
    found = [o for o in s3store.list_keys(client, BUCKET, prefix + "/") if f"/{shipping.VOLUMES}/" not in o["Key"]]
    if len(found) != len(files) or sum(o["Size"] for o in found) != sum(p.stat().st_size for p in files):
        raise SystemExit(f"s3://{BUCKET}/{prefix}: {len(found)} objects, expected {len(files)}")


def ship_arm(settings: Settings, files: list[Path], moto: Moto) -> dict:
    shutil.rmtree(settings.data_dir / shipping.SHIPPED_DIR, ignore_errors=True)  # nothing marked shipped yet
    shipper = shipping.Shipper(settings)  # its own client: storage.s3.client()
    cpu, server, wall = time.process_time(), moto.cpu(), time.perf_counter()
    left = shipper.ship_once()
    wall, cpu, server = time.perf_counter() - wall, time.process_time() - cpu, moto.cpu() - server
    if left.segments or shipper.state.shipped_segments != len(files):
        raise SystemExit(f"the shipper shipped {shipper.state.shipped_segments} of {len(files)} segments; {len(left.segments)} left")
    check_uploaded(shipper.s3, "shipper", files)
    return {"wall": wall, "cpu": cpu, "server": server}


def plain_arm(files: list[Path], volume: str, moto: Moto) -> dict:
    client = s3store.client()  # the same configuration the shipper's client has
    cpu, server, wall = time.process_time(), moto.cpu(), time.perf_counter()
    for path in files:
        client.put_object(Bucket=BUCKET, Key=f"plain/{path.parent.name}/{volume}/{path.name}", Body=path.read_bytes())
    wall, cpu, server = time.perf_counter() - wall, time.process_time() - cpu, moto.cpu() - server
    check_uploaded(client, "plain", files)
    return {"wall": wall, "cpu": cpu, "server": server}


def typical(action, times: int = 3) -> float:
    """Seconds: the median of `times` runs of `action(run number)`."""
    spent = []
    for k in range(times):
        start = time.perf_counter()
        action(k)
        spent.append(time.perf_counter() - start)
    return statistics.median(spent)


def breakdown(settings: Settings, files: list[Path], moto: Moto) -> dict[str, list[tuple[str, float]]]:
    """What a pass does besides the PUTs both arms make, each piece timed alone on the same files
    (ms per pass, the median of 3): on the pass's own thread, on its side thread (which overlaps
    the PUTs: Shipper._upload_all), and what the plain loop does in line instead."""
    landing, shipped = settings.landing_dir, settings.data_dir / shipping.SHIPPED_DIR
    datas = [p.read_bytes() for p in files]
    scratch = settings.data_dir / "breakdown"
    shutil.rmtree(shipped, ignore_errors=True)

    def markers(k: int) -> None:  # new files each time, as a pass makes them
        for path in files:
            marker = scratch / str(k) / path.parent.name / path.name
            ensure_dir(marker.parent)
            marker.touch()

    moto.reset()
    shipper = shipping.Shipper(settings)
    shipper._publish(0, "live", shipping.Waiting(), news=True)  # the first connection
    rows = {
        "on the pass's thread": [
            ("recover() and the open-segment glob", typical(lambda k: (recover(landing, settings.quarantine_dir), [
                p for suffix in (OPEN_SUFFIX, CREATING_SUFFIX) for p in landing.glob(f"*/*{suffix}")]))),
            ("waiting(): list sealed, a marker lookup and a stat each", typical(lambda k: shipping.waiting(landing, shipped))),
            ("the watermark PUT and _state.json", typical(lambda k: (
                shipper._publish(0, "live", shipping.Waiting(), news=True), shipper._write_state()))),
        ],
        "on its side thread, beside the PUTs": [
            ("read every segment", typical(lambda k: [p.read_bytes() for p in files])),
            ("SHA-256 of every segment (put_if_absent's checksum)", typical(lambda k: [s3store.sha256_b64(d) for d in datas])),
            ("markers: ensure_dir and touch a new file, one a segment", typical(markers)),
        ],
        "what the plain loop does in line instead": [
            ("read every segment", typical(lambda k: [p.read_bytes() for p in files])),
            ("botocore's default CRC32 of every segment", typical(
                lambda k: [base64.b64encode(zlib.crc32(d).to_bytes(4, "big")) for d in datas])),
        ],
    }
    shutil.rmtree(shipped, ignore_errors=True)
    shutil.rmtree(scratch / "1", ignore_errors=True)
    shutil.rmtree(scratch / "2", ignore_errors=True)
    (scratch / "0").rename(shipped)  # the markers of a pass that shipped them all, for prune to look at
    rows["on the pass's thread"].append(("prune: glob and stat every marker", typical(lambda k: shipper._prune())))
    shutil.rmtree(shipped, ignore_errors=True)
    shutil.rmtree(scratch, ignore_errors=True)
    return {where: [(name, seconds * 1000) for name, seconds in pieces] for where, pieces in rows.items()}


def throughput(args, tmp: Path, moto: Moto) -> tuple[float, list[float]]:
    data_dir = tmp / "ship"
    print(f"writing {args.segments} segments of ~{args.segment_mb:g} MB in {args.windows} windows ...", flush=True)
    files = make_segments(data_dir, args.segments, int(args.segment_mb * 1_000_000), args.windows)
    total_mb = sum(p.stat().st_size for p in files) / 1e6
    lines = sum(p.read_bytes().count(b"\n") for p in files)
    settings = replace(Settings.from_env({}), data_dir=data_dir, landing_url=f"s3://{BUCKET}/shipper")
    volume = volume_id(data_dir)
    arms = {"shipper": lambda: ship_arm(settings, files, moto), "plain": lambda: plain_arm(files, volume, moto)}
    for arm in arms.values():  # warm-up: imports, the first connections, the page cache
        moto.reset()
        arm()
    runs: dict[str, list[dict]] = {"shipper": [], "plain": []}
    for round_no in range(args.rounds):
        order = ("shipper", "plain") if round_no % 2 == 0 else ("plain", "shipper")
        for name in order:
            moto.reset()
            runs[name].append(arms[name]())
        s, p = runs["shipper"][-1], runs["plain"][-1]
        print(f"  round {round_no + 1} ({', '.join(order)}): shipper {len(files) / s['wall']:.1f} seg/s, plain "
              f"{len(files) / p['wall']:.1f} seg/s; shipper/plain {p['wall'] / s['wall']:.3f}", flush=True)
    moto.reset()
    pieces = breakdown(settings, files, moto)
    moto.reset()

    print(f"\nshipping {len(files)} segments, {total_mb:.1f} MB, {lines:,} lines, {args.windows} windows, to moto's server "
          f"on loopback; {args.rounds} rounds ABBA; medians")
    print(f"{'arm':<9} {'segments/s':>11} {'MB/s':>8} {'client CPU ms/seg':>18} {'moto CPU ms/seg':>16}")
    med = {}
    for name in ("shipper", "plain"):
        m = {k: statistics.median(r[k] for r in runs[name]) for k in ("wall", "cpu", "server")}
        med[name] = m
        print(f"{name:<9} {len(files) / m['wall']:>11.1f} {total_mb / m['wall']:>8.1f} {m['cpu'] / len(files) * 1000:>18.2f} "
              f"{m['server'] / len(files) * 1000:>16.2f}")
    paired, ratio, q = _paired(p["wall"] / s["wall"] for s, p in zip(runs["shipper"], runs["plain"]))
    print(f"shipper/plain segments/s (= MB/s: the same files): {ratio:.3f} (median of {len(paired)} rounds; quartiles "
          f"{q[0]:.3f}-{q[2]:.3f}; ratio of medians {med['plain']['wall'] / med['shipper']['wall']:.3f}); client CPU "
          f"plain/shipper {med['plain']['cpu'] / med['shipper']['cpu']:.3f}; moto CPU plain/shipper "
          f"{med['plain']['server'] / med['shipper']['server']:.3f}")
    pass_ms = med["shipper"]["wall"] * 1000
    print(f"a pass besides the PUTs, each piece timed alone on the same files (median of 3; the pass took {pass_ms:.0f} ms):")
    for where, rows in pieces.items():
        print(f"  {where}: {sum(ms for _, ms in rows):.1f} ms, {sum(ms for _, ms in rows) / pass_ms * 100:.1f} % of the pass")
        for name, ms in rows:
            print(f"    {name:<58} {ms:>8.1f} ms {ms / len(files) * 1000:>7.0f} us/seg")
    shutil.rmtree(data_dir)
    return ratio, paired


# -- 2. ingest with shipping on and off -----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """`amp-personalize serve`, the real command: with AMP_LANDING_URL it runs its shipper."""

    def __init__(self, name: str, data_dir: Path, env: dict[str, str]) -> None:
        self.name, self.data_dir = name, data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"{name}.log"
        data_dir.mkdir(parents=True)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "amp_personalize.cli", "serve", "--port", str(self.port)],
                                         env={**env, "AMP_DATA_DIR": str(data_dir)}, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.fail("did not start")
            time.sleep(0.1)

    def fail(self, why: str):
        raise SystemExit(f"receiver {self.name} {why}:\n{self.log.read_text()[-3000:]}")

    def cpu(self) -> dict[str, float]:
        """Seconds: the event-loop thread, the receiver (with its sync process), the shipper process."""
        def tree(pid: int) -> list[int]:
            try:
                kids = [int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()]
            except FileNotFoundError:
                return []
            return [pid, *(p for k in kids for p in tree(k))]

        pid = self.proc.pid
        out = {"loop": cpu_of(pid, thread=pid), "receiver": 0.0, "shipper": 0.0}
        for p in tree(pid):
            try:
                argv = Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")
            except FileNotFoundError:
                continue
            out["shipper" if b"ship" in argv else "receiver"] += cpu_of(p)
        return out

    def stop(self) -> None:
        """SIGTERM, as an orchestrator stops it: seal, then (shipping) ship what is left and mark stopped."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(shipping.STOP_SECONDS + 40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.fail("did not stop within the shipper's stop time")


def lines_in(paths) -> int:
    return sum(p.read_bytes().count(b"\n") for p in paths)


def verify_shipped(receiver: Receiver, prefix: str, acknowledged: int) -> str:
    """Every sealed segment of the shipping arm is in S3 as it is on disk, the S3 copies hold every
    acknowledged line, and the volume says `stopped` with nothing left: or the run is void."""
    client = s3store.client()
    volume = volume_id(receiver.data_dir)
    landing = receiver.data_dir / "landing"
    still_open = list(landing.glob(f"*/*{OPEN_SUFFIX}"))
    local = {f"{prefix}/{p.parent.name}/{volume}/{p.name}": p for p in sealed_segments(landing)}
    remote = {o["Key"]: o for o in s3store.list_keys(client, BUCKET, prefix + "/") if f"/{shipping.VOLUMES}/" not in o["Key"]}
    doc = orjson.loads(s3store.get(client, BUCKET, f"{prefix}/{shipping.VOLUMES}/{volume}.json") or b"{}")
    s3_lines = 0
    for key in remote:
        body = s3store.get(client, BUCKET, key)
        s3_lines += body.count(b"\n")
        if key in local and body != local[key].read_bytes():
            raise SystemExit(f"shipping run void: s3://{BUCKET}/{key} differs from {local[key]}")
    problems = []
    if still_open:
        problems.append(f"{len(still_open)} segment(s) left open")
    if missing := sorted(set(local) - set(remote)):
        problems.append(f"{len(missing)} sealed segment(s) not in S3, e.g. {missing[0]}")
    if extra := sorted(set(remote) - set(local)):
        problems.append(f"{len(extra)} object(s) in S3 with no local segment, e.g. {extra[0]}")
    if s3_lines < acknowledged:
        problems.append(f"{acknowledged} events acknowledged, {s3_lines} lines in S3")
    if doc.get("status") != "stopped" or doc.get("unshipped_segments") != 0:
        problems.append(f"the volume says {doc}")
    if problems:
        raise SystemExit("shipping run void: " + "; ".join(problems))
    return (f"{acknowledged:,} events acknowledged, {s3_lines:,} lines in {len(remote)} segments in S3 "
            f"({sum(o['Size'] for o in remote.values()) / 1e6:.1f} MB), each the same bytes as on disk; volume stopped, 0 unshipped")


def settled(receiver: Receiver) -> bool:
    """Nothing open (the age seal came), and with shipping nothing sealed waits for S3."""
    landing = receiver.data_dir / "landing"
    if any(landing.glob(f"*/*{OPEN_SUFFIX}")):
        return False
    return receiver.name == "off" or not shipping.waiting(landing, receiver.data_dir / shipping.SHIPPED_DIR).segments


def settle(receivers: dict[str, Receiver], limit: float = 30.0) -> float:
    """After a slice: until the shipping arm has shipped what it took (and both have sealed), so
    that no slice pays for the one before it. Returns the seconds it took."""
    start = time.monotonic()
    while not all(settled(r) for r in receivers.values()):
        if time.monotonic() - start > limit:
            print(f"  (not settled after {limit:.0f} s: the next slice starts with a backlog)", flush=True)
            break
        time.sleep(0.05)
    return time.monotonic() - start


def shipped_bytes(receiver: Receiver) -> int:
    return (shipping.read_state(receiver.data_dir) or {}).get("shipped_bytes", 0)


def ingest(args, tmp: Path, moto: Moto) -> tuple[float, list[float]]:
    moto.reset()
    prefix = "landing"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AMP_", "AWS_"))}
    base.update(moto.env())
    base["AMP_SEGMENT_MAX_AGE_SECONDS"] = str(args.segment_age)
    modes = ("on", "off")
    env = {"on": {**base, "AMP_LANDING_URL": f"s3://{BUCKET}/{prefix}"}, "off": base}
    body = orjson.dumps(amplitude_event(1))
    url_path = "/webhooks/amplitude/"
    receivers: dict[str, Receiver] = {}
    acknowledged = {m: 0 for m in modes}
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    in_slices, settling = 0, {m: [] for m in modes}
    try:
        for mode in modes:
            receivers[mode] = Receiver(mode, tmp / "ingest" / mode, env[mode])
        for mode in modes:  # warm: imports done, a segment open, the shipper's first passes
            acknowledged[mode] += wrk(receivers[mode].url + url_path, body, args.warmup, args.connections, tmp)["requests"]
        settle(receivers)
        for round_no in range(args.ingest_rounds):
            order = modes if round_no % 4 in (0, 3) else modes[::-1]
            for mode in order:
                receiver = receivers[mode]
                before, server, shipped = receiver.cpu(), moto.cpu(), shipped_bytes(receivers["on"])
                result = wrk(receiver.url + url_path, body, args.seconds, args.connections, tmp)
                after, server = receiver.cpu(), moto.cpu() - server
                in_slices += shipped_bytes(receivers["on"]) - shipped if mode == "on" else 0
                acknowledged[mode] += result["requests"]
                n = result["requests"]
                result.update({k: (after[k] - before[k]) / n * 1e6 for k in after})
                result["moto"] = server / n * 1e6
                runs[mode].append(result)
                settling[mode].append(settle(receivers))
            print(f"  ingest round {round_no + 1} ({', '.join(order)}): " + ", ".join(
                f"{m} {runs[m][-1]['rps']:,.0f}" for m in modes) + f" req/s; on/off {runs['on'][-1]['rps'] / runs['off'][-1]['rps']:.3f}",
                flush=True)
    finally:
        for receiver in receivers.values():
            receiver.stop()
    state = shipping.read_state(receivers["on"].data_dir) or {}
    landed_off = lines_in(sealed_segments(receivers["off"].data_dir / "landing"))
    if landed_off < acknowledged["off"]:
        raise SystemExit(f"run void: {acknowledged['off']} events acknowledged without shipping, {landed_off} landed")
    verdict = verify_shipped(receivers["on"], prefix, acknowledged["on"])

    print(f"\nreceiver ingest, single events, {args.connections} connections (wrk -t1); `amp-personalize serve` x2, "
          f"AMP_SEGMENT_MAX_AGE_SECONDS={args.segment_age:g} on both; {args.ingest_rounds} rounds of one {args.seconds}s slice each, "
          f"ABBA; after each slice a settle until both have sealed and the shipping arm has shipped all it took (median "
          f"{statistics.median(settling['on']):.1f} s after its slices, {statistics.median(settling['off']):.1f} s after the other's); medians")
    print(f"{'shipping':<9} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'loop us/req':>12} {'receiver us/req':>16} "
          f"{'shipper us/req':>15} {'moto us/req':>12}")
    med = {}
    for mode in modes:
        med[mode] = {k: statistics.median(r[k] for r in runs[mode]) for k in ("rps", "p50", "p99", "loop", "receiver", "shipper", "moto")}
        m = med[mode]
        print(f"{mode:<9} {m['rps']:>9.0f} {m['p50']:>7.2f} {m['p99']:>7.2f} {m['loop']:>12.1f} {m['receiver']:>16.1f} "
              f"{m['shipper']:>15.1f} {m['moto']:>12.1f}")
    paired, ratio, q = _paired(on["rps"] / off["rps"] for on, off in zip(runs["on"], runs["off"]))
    print(f"on/off req/s: {ratio:.3f} (median of {len(paired)} rounds; quartiles {q[0]:.3f}-{q[2]:.3f}; ratio of medians "
          f"{med['on']['rps'] / med['off']['rps']:.3f}); receiver CPU per request off/on {med['off']['receiver'] / med['on']['receiver']:.3f}")
    total = state.get("shipped_bytes", 0)
    print(f"the shipper: {state.get('shipped_segments', 0)} segments, {total / 1e6:.1f} MB, {state.get('upload_failures', 0)} failed "
          f"passes; {in_slices / 1e6:.1f} MB ({in_slices / max(total, 1) * 100:.0f} %) shipped while its receiver's slices ran, "
          f"the rest in the settles (the last segment of a slice is sealed {args.segment_age:g} s after its first line)")
    print(f"verified: {verdict}")
    return ratio, paired


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=200, help="sealed segments to ship per arm and round")
    parser.add_argument("--segment-mb", type=float, default=1.0, help="size of each segment, MB")
    parser.add_argument("--windows", type=int, default=4, help="hourly windows the segments are spread over")
    parser.add_argument("--rounds", type=int, default=9, help="throughput rounds, one pass per arm each, ABBA")
    parser.add_argument("--ingest-rounds", type=int, default=10, help="ingest rounds, one slice per receiver each, ABBA")
    parser.add_argument("--seconds", type=int, default=5, help="length of one ingest slice")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of load on each fresh receiver before measuring")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--segment-age", type=float, default=1.0, help="AMP_SEGMENT_MAX_AGE_SECONDS of both receivers")
    parser.add_argument("--only", choices=["throughput", "ingest"], help="run one part")
    parser.add_argument("--moto", type=int, help=argparse.SUPPRESS)  # the server process
    args = parser.parse_args()
    if args.moto:
        return run_moto(args.moto)
    if shutil.which("wrk") is None and args.only != "throughput":
        raise SystemExit("wrk is not installed: apt-get install -y wrk (make bench does this)")

    moto = Moto()
    os.environ.update(moto.env())  # this process's clients: the SDK's standard variables, as the product reads them
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        os.environ.pop(name, None)
    results = {}
    try:
        with tempfile.TemporaryDirectory(dir=ROOT / "data") as tmp:
            if args.only != "ingest":
                results["shipping throughput, shipper/plain boto3 loop"] = throughput(args, Path(tmp), moto)
            if args.only != "throughput":
                print(flush=True)
                results["single-event ingest, shipping on/off"] = ingest(args, Path(tmp), moto)
    finally:
        moto.stop()
    print()
    for name, (ratio, paired) in results.items():
        print(f"{'PASS' if ratio >= TARGET else 'FAIL'}  {name}: {ratio:.3f} (target >= {TARGET}; rounds "
              f"{min(paired):.3f}-{max(paired):.3f})")


if __name__ == "__main__":
    main()
