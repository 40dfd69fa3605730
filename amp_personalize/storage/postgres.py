"""Postgres for the state that hosts share (AMP_DATABASE_URL): the Personalize ledger, leases.

On one machine that state is sqlite files and file locks under AMP_DATA_DIR; once Dagster runs
each run in its own task or pod, a file lock on one host guards nothing on another. psycopg2
(dagster-postgres's driver) speaks to it; `postgresql://`, `postgres://` and SQLAlchemy's
`postgresql+psycopg2://` URLs are all accepted (libpq reads the first two; the third is what
dagster-postgres's `postgres_url` takes, since SQLAlchemy now maps plain `postgresql://` to
psycopg 3). Our tables live in their own schema, `amp`, beside Dagster's.
"""

from __future__ import annotations

import os
import socket
import threading
from contextlib import contextmanager
from typing import Any, Iterator

SCHEMA = "amp"


# Taken by whoever makes our tables, for that transaction: two processes making them at once on
# a new database can fail on a unique violation in the catalog, IF NOT EXISTS or not.
SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(hashtext('amp-personalize schema'))"


def connect(url: str) -> Any:
    import psycopg2

    dsn = url.replace("postgresql+psycopg2://", "postgresql://", 1)
    conn = psycopg2.connect(dsn, connect_timeout=10, application_name=f"amp-personalize@{socket.gethostname()}")
    with conn, conn.cursor() as cur:
        cur.execute(SCHEMA_LOCK)
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        cur.execute(f"SET search_path TO {SCHEMA}")
        cur.execute(
            "CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, holder TEXT, epoch BIGINT NOT NULL DEFAULT 0, "
            "expires_at TIMESTAMPTZ)"
        )
    conn.autocommit = False
    return conn


class LeaseHeld(RuntimeError):
    """Someone else holds the lease; the message names them."""


class LeaseLost(RuntimeError):
    """This holder's lease was taken over (it expired): it must not commit what it did under it."""


class Lease:
    """A named lease with an epoch, held until released or, if its holder stops renewing it
    (killed, paused, cut off), until it expires and another takes it with the next epoch.

    Whoever commits work under the lease checks its epoch in the same transaction (`check`),
    with the row locked: a stranded holder, still running after its lease passed to another,
    cannot commit anything after losing it.
    """

    def __init__(self, url: str, name: str, holder: str, ttl_seconds: float = 60.0) -> None:
        self.url, self.name, self.holder, self.ttl = url, name, holder, ttl_seconds
        self.epoch: int | None = None
        self._conn: Any = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def acquire(self) -> int:
        self._conn = connect(self.url)
        with self._conn, self._conn.cursor() as cur:
            cur.execute("INSERT INTO leases (name) VALUES (%s) ON CONFLICT DO NOTHING", (self.name,))
            cur.execute(
                "UPDATE leases SET holder = %s, epoch = epoch + 1, expires_at = now() + %s * interval '1 second' "
                "WHERE name = %s AND (holder IS NULL OR expires_at < now()) RETURNING epoch",
                (self.holder, self.ttl, self.name),
            )
            row = cur.fetchone()
            if row is None:
                cur.execute("SELECT holder, expires_at, epoch FROM leases WHERE name = %s", (self.name,))
                holder, expires, epoch = cur.fetchone()
                if _gone_from_this_host(holder):  # killed here: no need to wait for it to expire
                    cur.execute(
                        "UPDATE leases SET holder = %s, epoch = epoch + 1, expires_at = now() + %s * interval '1 second' "
                        "WHERE name = %s AND epoch = %s RETURNING epoch",
                        (self.holder, self.ttl, self.name, epoch),
                    )
                    row = cur.fetchone()
        if row is None:
            self._conn.close()
            raise LeaseHeld(f"{self.name} is held by {holder} (until {expires:%Y-%m-%d %H:%M:%S %Z} unless renewed)")
        self.epoch = row[0]
        self._renewer = threading.Thread(target=self._renew, name=f"lease-{self.name}", daemon=True)
        self._renewer.start()
        return self.epoch

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                with self._conn, self._conn.cursor() as cur:
                    cur.execute(
                        "UPDATE leases SET expires_at = now() + %s * interval '1 second' WHERE name = %s AND epoch = %s",
                        (self.ttl, self.name, self.epoch),
                    )
                    if cur.rowcount == 0:
                        return  # taken over: commits under it fail their check
            except Exception:  # noqa: BLE001 (a passing outage: the next renewal tries again)
                continue

    def check(self, cur: Any) -> None:
        """In the caller's transaction: LeaseLost unless this holder's epoch is still current."""
        cur.execute("SELECT epoch, holder FROM leases WHERE name = %s FOR UPDATE", (self.name,))
        row = cur.fetchone()
        if row is None or row[0] != self.epoch:
            raise LeaseLost(f"the {self.name} lease (epoch {self.epoch}) passed to {row[1] if row else 'nobody'} (epoch {row[0] if row else '-'})")

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(5)
        if self._conn is None:
            return
        try:
            with self._conn, self._conn.cursor() as cur:
                cur.execute("UPDATE leases SET holder = NULL, expires_at = NULL WHERE name = %s AND epoch = %s", (self.name, self.epoch))
        finally:
            self._conn.close()
            self._conn = None


def _pid_namespace() -> str:
    """Containers may share a host name (host networking) but not their pids: only a holder in
    this pid namespace can be looked up by its pid here."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "?"


def holder_name() -> str:
    """A lease holder as a refusal names it, and as `_gone_from_this_host` reads it."""
    return f"{socket.gethostname()} pid {os.getpid()} (pid namespace {_pid_namespace()})"


def _gone_from_this_host(holder: str | None) -> bool:
    """Whether a holder named by holder_name() is a process of this host's pid namespace that no
    longer runs."""
    from amp_personalize.pids import alive

    name, _, namespace = (holder or "").partition(" (pid namespace ")
    host, _, pid = name.rpartition(" pid ")
    return (host == socket.gethostname() and namespace.rstrip(")") == _pid_namespace() and pid.isdigit()
            and int(pid) != os.getpid() and not alive(int(pid)))


@contextmanager
def advisory_lock(url: str, key: str, wait: bool = True) -> Iterator[bool]:
    """A session-level advisory lock: released when the holder's connection ends, however it
    ends (a killed process leaves nothing held). Yields False when `wait` is off and it is held."""
    conn = connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(hashtext(%s))" if wait else "SELECT pg_try_advisory_lock(hashtext(%s))", (key,))
            got = cur.fetchone()[0] if not wait else True
        yield bool(got)
    finally:
        conn.close()
