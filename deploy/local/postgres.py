"""A throwaway PostgreSQL server in a directory: Debian's PostgreSQL 15 (`initdb`, `pg_ctl`).

For the rehearsal (rehearse.py) and the tests: trust authentication on 127.0.0.1 only, a port of
its own, the data directory and socket under `root`. As root it runs as the `postgres` user,
which PostgreSQL requires.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path


def _binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise RuntimeError(f"{name} not found: install Debian's postgresql package (apt-get install postgresql)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    def __init__(self, root: Path, port: int | None = None, user: str = "amp", database: str = "amp") -> None:
        self.root, self.port, self.user, self.database = Path(root), port or free_port(), user, database
        self.data = self.root / "pgdata"
        self.as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = ["runuser", "-u", "postgres", "--", *args] if self.as_postgres else list(args)
        done = subprocess.run(command, capture_output=True, text=True)
        if check and done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()
            raise RuntimeError(f"{Path(args[0]).name} failed: {said[-1] if said else f'exit {done.returncode}'}"
                               + (" (the postgres user must be able to enter every folder above it)"
                                  if self.as_postgres and "ermission denied" in done.stderr else ""))
        return done

    def start(self) -> "Postgres":
        self.root.mkdir(parents=True, exist_ok=True)
        if self.as_postgres:
            shutil.chown(self.root, "postgres")
        if not (self.data / "PG_VERSION").exists():
            self._run(_binary("initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8", "--no-sync")
        self._run(
            _binary("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "postgres.log"), "-w", "-t", "60", "start",
            "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200",
        )
        deadline = time.monotonic() + 30
        while self._run(_binary("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", "postgres",
                        "-c", f"CREATE DATABASE {self.database}", check=False).returncode != 0:
            if self._run(_binary("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", self.database,
                         "-c", "select 1", check=False).returncode == 0:
                break  # it exists already (a restart)
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start: see {self.root / 'postgres.log'}")
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(_binary("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    def __enter__(self) -> "Postgres":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
