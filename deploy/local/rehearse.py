"""The production topology on one machine: a rehearsal of docs/deploy.md with real processes.

    .venv/bin/python deploy/local/rehearse.py [--dir DIR] [--receivers 2] [--window-minutes 60]

Starts, all on loopback: PostgreSQL 15 (Debian's initdb/pg_ctl) for Dagster's storage and the
product's shared state; moto's S3 server for the landing, the lake and compute logs; the code
server (`dagster api grpc -m amp_personalize.definitions`), `dagster-daemon run` and
`dagster-webserver`, with deploy/dagster.yaml as their instance; and receivers (`amp-personalize
serve`), each on its own data directory, shipping to S3. It prints where everything is (and
writes it to DIR/rehearsal.json), and stops it all on Ctrl-C or SIGTERM, receivers first so that
they ship what they hold. The tests start it the same way.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from postgres import Postgres, free_port  # noqa: E402

DEPLOY = HERE.parent
BIN = Path(sys.executable).parent
BUCKET = "amp-rehearsal"


def wait_for(check, what: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if check():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {seconds:.0f} s")
        time.sleep(0.3)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.status == 200
    except urllib.error.URLError:
        return False


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Topology:
    def __init__(self, root: Path, receivers: int, window_minutes: int, grace_seconds: float) -> None:
        self.root, self.receivers, self.window_minutes, self.grace_seconds = root, receivers, window_minutes, grace_seconds
        self.postgres = Postgres(root / "postgres")
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.ports = {"s3": free_port(), "code": free_port(), "ui": free_port()}
        self.receiver_ports = [free_port() for _ in range(receivers)]
        self.logs = root / "logs"

    @property
    def env(self) -> dict[str, str]:
        """What every process of the topology gets: AWS (moto), Postgres, the product's URLs."""
        pg = self.postgres
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AMP_", "DAGSTER_", "AWS_"))},
            "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{self.ports['s3']}",
            "AWS_ACCESS_KEY_ID": "rehearsal", "AWS_SECRET_ACCESS_KEY": "rehearsal", "AWS_DEFAULT_REGION": "us-east-1",
            "DAGSTER_HOME": str(self.root / "dagster_home"),
            "DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(pg.port), "DAGSTER_PG_USERNAME": pg.user,
            "DAGSTER_PG_PASSWORD": "unused-trust-auth", "DAGSTER_PG_DB": pg.database,
            "DAGSTER_COMPUTE_LOGS_BUCKET": BUCKET,
            "AMP_DATABASE_URL": pg.url,
            "AMP_LANDING_URL": f"s3://{BUCKET}/landing",
            "AMP_LAKE_URL": f"s3://{BUCKET}/lake",
            "AMP_WINDOW_MINUTES": str(self.window_minutes),
            "AMP_GRACE_SECONDS": str(self.grace_seconds),
            "AMP_SEGMENT_MAX_AGE_SECONDS": "5",
            "AMP_VOLUME_DEAD_AFTER_SECONDS": "120",
        }

    def spawn(self, name: str, command: list[str], **env: str) -> subprocess.Popen:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{name}.log", "ab")
        proc = subprocess.Popen(command, env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT, process_group=0, cwd=self.root)
        self.children.append((name, proc))
        return proc

    def start(self) -> dict:
        self.root.mkdir(parents=True, exist_ok=True)
        self.postgres.start()
        self.spawn("s3", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.ports["s3"])])
        wait_for(lambda: port_open(self.ports["s3"]), "moto's S3 server")
        import boto3

        boto3.client("s3", endpoint_url=self.env["AWS_ENDPOINT_URL_S3"], aws_access_key_id="rehearsal",
                     aws_secret_access_key="rehearsal", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        home = self.root / "dagster_home"
        home.mkdir(exist_ok=True)
        shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
        (self.root / "workspace.yaml").write_text(
            "load_from:\n  - grpc_server:\n      host: 127.0.0.1\n"
            f"      port: {self.ports['code']}\n      location_name: amp_personalize\n"
        )
        processing = {"AMP_DATA_DIR": str(self.root / "processing")}
        self.spawn("code-server", [str(BIN / "dagster"), "api", "grpc", "-m", "amp_personalize.definitions",
                                   "-h", "127.0.0.1", "-p", str(self.ports["code"])], **processing)
        wait_for(lambda: port_open(self.ports["code"]), "the code server", 120)
        workspace = str(self.root / "workspace.yaml")
        self.spawn("daemon", [str(BIN / "dagster-daemon"), "run", "-w", workspace], **processing)
        self.spawn("webserver", [str(BIN / "dagster-webserver"), "-w", workspace, "-h", "127.0.0.1", "-p", str(self.ports["ui"])],
                   **processing)
        for i, port in enumerate(self.receiver_ports):
            self.spawn(f"receiver-{i}", [str(BIN / "amp-personalize"), "serve", "--port", str(port)],
                       AMP_DATA_DIR=str(self.root / f"volume-{i}"))
        for port in self.receiver_ports:
            wait_for(lambda port=port: http_ok(f"http://127.0.0.1:{port}/healthz"), "a receiver")
        wait_for(lambda: http_ok(f"http://127.0.0.1:{self.ports['ui']}/server_info"), "the webserver", 120)
        where = {
            "dir": str(self.root),
            "dagster_ui": f"http://127.0.0.1:{self.ports['ui']}",
            "graphql": f"http://127.0.0.1:{self.ports['ui']}/graphql",
            "receivers": [f"http://127.0.0.1:{port}" for port in self.receiver_ports],
            "postgres": self.postgres.url,
            "s3_endpoint": self.env["AWS_ENDPOINT_URL_S3"],
            "bucket": BUCKET,
            "env": {k: v for k, v in self.env.items() if k.startswith(("AMP_", "AWS_", "DAGSTER_"))},
            "pids": {name: proc.pid for name, proc in self.children},
        }
        (self.root / "rehearsal.json").write_text(json.dumps(where, indent=2))
        # The CLI against this topology: `source DIR/env.sh`, then `.venv/bin/amp-personalize train` etc.
        cli = {**where["env"], "AMP_DATA_DIR": str(self.root / "processing")}  # a processing host's
        (self.root / "env.sh").write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in cli.items()))
        return where

    def stop(self) -> None:
        """Receivers first (they seal and ship what they hold), then Dagster, then S3, then Postgres."""
        order = sorted(self.children, key=lambda c: (not c[0].startswith("receiver"), c[0] in ("s3",)))
        for name, proc in order:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM if name.startswith("receiver") else signal.SIGINT)
                except ProcessLookupError:
                    continue
                try:
                    proc.wait(45)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self.postgres.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=None, help="where everything lives (a new temporary directory by default)")
    parser.add_argument("--receivers", type=int, default=2)
    parser.add_argument("--window-minutes", type=int, default=60)
    parser.add_argument("--grace-seconds", type=float, default=30.0)
    args = parser.parse_args()
    missing = [name for name in ("dagster", "dagster-daemon", "dagster-webserver", "moto_server", "amp-personalize")
               if not (BIN / name).exists()]
    if missing:
        print(f"rehearse.py: {BIN} has no {', '.join(missing)}: run it with the project's .venv/bin/python "
              "(make install creates it)", file=sys.stderr)
        return 1
    if args.dir is None:
        root = Path(tempfile.mkdtemp(prefix="amp-rehearsal-"))
        root.chmod(0o755)  # PostgreSQL runs as the postgres user below it when we are root
    else:
        root = args.dir.resolve()
        root.mkdir(parents=True, exist_ok=True)
    # One rehearsal per directory: a second would start its own servers on the first one's
    # Postgres data and, stopping, shut that Postgres down under the first.
    lock = open(root / "rehearsal.lock", "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"rehearse.py: a rehearsal is already running in {root}; stop it (Ctrl-C) or pass another --dir", file=sys.stderr)
        return 1
    topology = Topology(root, args.receivers, args.window_minutes, args.grace_seconds)
    stopping = False

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    def interrupt(signum, frame) -> None:
        raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: a shell without job control ignores it in `&` jobs
        signal.signal(signum, interrupt)
    code = 0
    try:
        where = topology.start()  # Ctrl-C while starting: KeyboardInterrupt, then the same stop
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, stop)
        print(f"rehearsal in {where['dir']} (Ctrl-C stops everything)")
        print(f"  Dagster UI     {where['dagster_ui']}")
        for url in where["receivers"]:
            print(f"  receiver       {url}/webhooks/amplitude/")
        print(f"  PostgreSQL     {where['postgres']}")
        print(f"  S3 (moto)      {where['s3_endpoint']}  bucket {BUCKET} (in memory: gone when this stops)")
        print(f"  logs           {topology.logs}")
        print(f"  the CLI        source {root / 'env.sh'}, then .venv/bin/amp-personalize train (or process, sql, recommend)")
        sys.stdout.flush()
        while not stopping:
            for name, proc in topology.children:
                if proc.poll() is not None:
                    print(f"{name} exited ({proc.returncode}); see {topology.logs / (name + '.log')}", file=sys.stderr)
                    stopping = True
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        print(f"rehearse.py: {exc}", file=sys.stderr)
        code = 1
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the stop short
            signal.signal(signum, signal.SIG_IGN)
        topology.stop()
        print("stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
