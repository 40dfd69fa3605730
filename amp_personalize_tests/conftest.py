"""Shared fixtures: a real uvicorn on loopback (in a thread or a subprocess) and landing readers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import orjson
import pytest
import uvicorn

# The window partitions load once per process, from the environment. Unset, they start where
# AMP_DATA_DIR's data begins (./data here: whatever the last `make demo` left), and the tests'
# windows, in temporary data directories from 2025 on, would not be partitions. Before any import
# of the code location, and inherited by the commands tests start.
os.environ.setdefault("AMP_PARTITIONS_START", "2025-01-01")

from amp_personalize.landing.commit import SYNCER_COMMAND
from amp_personalize.landing.segments import OPEN_SUFFIX, SEALED_SUFFIX
from amp_personalize.receiver import create_app
from amp_personalize.settings import Settings

WEBHOOK = "/webhooks/amplitude/"
PACKAGE = Path(create_app.__code__.co_filename).parents[1]  # amp_personalize/
_DEPRECATIONS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
_own_deprecations: list[str] = []


def pytest_warning_recorded(warning_message, when, nodeid, location) -> None:
    """A deprecation met by our own code (Dagster's and polars' name the line of ours that calls
    them), at import or in a test. Not an `error` filter: polars warns from native code, where
    an error is swallowed, and the call would pass unseen."""
    if issubclass(warning_message.category, _DEPRECATIONS) and Path(warning_message.filename).is_relative_to(PACKAGE):
        _own_deprecations.append(f"{warning_message.filename}:{warning_message.lineno}: {warning_message.message}")


def pytest_sessionfinish(session, exitstatus) -> None:
    if _own_deprecations and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter) -> None:
    if _own_deprecations:
        terminalreporter.write_line("deprecated calls in amp_personalize (fix them):", red=True)
        for where in sorted(set(_own_deprecations)):
            terminalreporter.write_line(f"  {where}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sync_processes(pid: int) -> set[int]:
    """The group-commit sync processes a process has started (children of any of its threads)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                if SYNCER_COMMAND[-1].encode() in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.add(int(child))
            except FileNotFoundError:
                pass
    return found


def gone(pid: int, timeout: float = 10.0) -> bool:
    """Whether a process has exited (a zombie nobody reaped counts) within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


def landed_lines(data_dir: Path, include_open: bool = True) -> list[dict]:
    """Every landed line under data_dir/landing, sealed and (optionally) still open."""
    suffixes = (SEALED_SUFFIX, OPEN_SUFFIX) if include_open else (SEALED_SUFFIX,)
    lines = []
    for path in sorted((data_dir / "landing").glob("*/*")):
        if path.name.endswith(suffixes):
            lines.extend(orjson.loads(line) for line in path.read_bytes().splitlines() if line)
    return lines


class LiveReceiver:
    """A real uvicorn serving an app in a background thread, on a free loopback port."""

    def __init__(self, app) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "LiveReceiver":
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("receiver did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def post(self, body=None, *, content: bytes | None = None, headers: dict | None = None, path=WEBHOOK):
        if content is None:
            content = orjson.dumps(body)
        return httpx.post(self.url + path, content=content, headers=headers or {}, timeout=30)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return replace(Settings.from_env({}), data_dir=tmp_path / "data")


@pytest.fixture
def receiver(settings: Settings):
    with LiveReceiver(create_app(settings)) as live:
        yield live


class ReceiverProcess:
    """`amp-personalize serve` as a separate process, for crash and resource-limit tests."""

    def __init__(self, data_dir: Path, env: dict | None = None, preexec=None, args: tuple = (), port: int | None = None) -> None:
        self.data_dir = data_dir
        self.args = list(args)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "AMP_DATA_DIR": str(data_dir), **(env or {})}
        self.preexec = preexec
        self.proc: subprocess.Popen | None = None

    def start(self) -> "ReceiverProcess":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "amp_personalize.cli", "serve", "--port", str(self.port), *self.args],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=self.preexec,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"receiver exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("receiver did not become healthy")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def postgres_server():
    """Debian's PostgreSQL 15, started once for the session in a directory of its own (deploy/local/postgres.py)."""
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy" / "local"))
    from postgres import Postgres

    root = Path(tempfile.mkdtemp(prefix="amp-postgres-"))
    server = Postgres(root).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def database_url(postgres_server, request) -> str:
    """A database of the test's own on the session's server: AMP_DATABASE_URL for it."""
    import re

    import psycopg2

    name = "t_" + re.sub(r"[^a-z0-9]", "_", request.node.name.lower())[:50] + f"_{os.getpid()}_{time.monotonic_ns() % 100000}"
    admin = psycopg2.connect(postgres_server.url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    admin.close()
    return postgres_server.url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def s3(monkeypatch):
    """moto's S3 server on loopback, and the SDK's variables pointing this process at it."""
    from amp_personalize_tests.s3_server import S3Server

    with S3Server() as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        yield server


@pytest.fixture
def start_receiver(tmp_path):
    """`amp-personalize serve` processes on tmp_path/data, each with extra settings, all stopped after."""
    started: list[ReceiverProcess] = []

    def start(**env: str) -> ReceiverProcess:
        started.append(ReceiverProcess(tmp_path / "data", env=env).start())
        return started[-1]

    yield start
    for receiver in started:
        receiver.stop()
