"""What Personalize has acknowledged, durably: the record that makes every push exactly once.

An event id is written here in the same breath as PutEvents acknowledges it (one sqlite
transaction, synchronous=FULL), and every push first drops ids already here. So re-runs, crashes
between calls and Amplitude's duplicate deliveries in other segments never send an event twice.
The one window left is a crash inside a single call, after Personalize accepted it and before
the ledger commit: that call's events are sent again on the next run (at most 10 events).

Events PutEvents refused as invalid are kept apart, with the reason, so that the live push does
not send them again; a bulk import still takes them (its CSV is another path, with other rules).

Bulk imports record their event ids here too, so an event is in Personalize once whichever path
took it there. An import claims its ids before its job starts (under the push lock), so a push
run during the job's minutes leaves them to it; a failed job releases them. The landing segments
whose events are all pushed are listed, so the sensor knows what is left without reading events.

All of this is true of one dataset group only, so the ledger keeps the settings it was written
for and refuses to be used for another group (`bind`): it would silently keep every event it
lists from there. A new tracking id for the same dataset group (a recreated tracker) is followed.

On one machine it is a sqlite file under AMP_DATA_DIR, and the push lock a file lock. With
AMP_DATABASE_URL it is the same tables in Postgres, so that push and training runs may execute
on any host, and the push lock is a lease with an epoch that every ledger commit checks: a push
stranded on another pod after its lease passed on cannot record anything (storage.postgres).
"""

from __future__ import annotations

import fcntl
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from amp_personalize.settings import Settings, env_name

_CHUNK = 500  # below sqlite's bound-parameter limit


class PushInProgress(RuntimeError):
    """Another process is pushing from this ledger; two at once could send an event twice."""


PUSH_LEASE = "personalize_push"
LEASE_SECONDS = 30.0  # a killed pusher holds pushes up for this long at most (on its own host: not at all)


@contextmanager
def exclusive_push(path: Path, wait_seconds: float = 0.0) -> Iterator[None]:
    """Held for a whole push run (the ledger check and the send are not one atomic step), and
    while an import claims its rows. With wait_seconds, waits that long for a holder to finish."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_seconds
    with open(path.with_suffix(".lock"), "a+") as handle:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise PushInProgress(f"another run is pushing from {path}; this one leaves the segments to it") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class LedgerMismatch(RuntimeError):
    """The ledger records another Personalize destination than the settings now name."""


class _Sqlite:
    """The ledger's sqlite file: one connection shared by the push workers, serialised by a lock
    (sqlite's own threading rules), so a commit is one fsync whichever worker makes it."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")

    def execute(self, sql: str, params: tuple | list = ()) -> Any:
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: list) -> None:
        self.conn.executemany(sql, rows)

    def begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        self.conn.execute("ROLLBACK")

    def close(self) -> None:
        self.conn.close()


class _Postgres:
    """The same tables in Postgres (schema `amp`); SQL is written once, with sqlite's `?`."""

    def __init__(self, url: str) -> None:
        from amp_personalize.storage.postgres import connect

        self.conn = connect(url)
        self.cur = self.conn.cursor()

    def execute(self, sql: str, params: tuple | list = ()) -> Any:
        self.cur.execute(sql.replace("?", "%s"), tuple(params))
        return self.cur

    def executemany(self, sql: str, rows: list) -> None:
        from psycopg2.extras import execute_batch

        execute_batch(self.cur, sql.replace("?", "%s"), rows, page_size=500)

    def begin(self) -> None:
        pass  # psycopg2 opens a transaction at the first statement

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()

    def close(self) -> None:
        self.conn.close()


def open_ledger(settings: Settings) -> "Ledger":
    """The ledger these settings name: Postgres with AMP_DATABASE_URL, else the sqlite file."""
    return Ledger(settings.ledger_path, database_url=settings.database_url)


class Ledger:
    def __init__(self, path: Path, database_url: str | None = None) -> None:
        self.path = path
        self.database_url = database_url
        self.where = "the ledger in AMP_DATABASE_URL's database (schema amp)" if database_url else str(path)
        self._db = _Postgres(database_url) if database_url else _Sqlite(path)
        self._lock = threading.Lock()
        self._lease = None  # with Postgres, while this process holds the push lease
        statements = [
            "CREATE TABLE IF NOT EXISTS pushed (event_id TEXT PRIMARY KEY, pushed_at BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS segments (segment TEXT PRIMARY KEY, done_at BIGINT NOT NULL)",
            # Impressions seen lately, so a click pushed by the next run still carries the feed before it.
            "CREATE TABLE IF NOT EXISTS impressions (user_id TEXT NOT NULL, shown_at BIGINT NOT NULL, items TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS impressions_by_time ON impressions (shown_at)",
            "CREATE TABLE IF NOT EXISTS imports (job_arn TEXT PRIMARY KEY, mode TEXT NOT NULL, rows BIGINT NOT NULL, done_at BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS refused (event_id TEXT PRIMARY KEY, refused_at BIGINT NOT NULL, reason TEXT NOT NULL)",
            # Counters kept across runs: forgotten_before (see `prune`), refusal_streak (see `refuse`).
            "CREATE TABLE IF NOT EXISTS marks (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
            # The Personalize resources this ledger speaks for (setting name -> value), see `bind`.
            "CREATE TABLE IF NOT EXISTS destination (setting TEXT PRIMARY KEY, value TEXT NOT NULL)",
            # Ids an import job in flight is bringing in: the live push leaves them to it.
            "CREATE TABLE IF NOT EXISTS importing (event_id TEXT PRIMARY KEY, job_name TEXT NOT NULL, claimed_at BIGINT NOT NULL)",
        ]
        with self._write() as db:
            if database_url:  # made once, by whoever comes first
                from amp_personalize.storage.postgres import SCHEMA_LOCK

                db.execute(SCHEMA_LOCK)
            for statement in statements:
                db.execute(statement)

    @contextmanager
    def exclusive_push(self, wait_seconds: float = 0.0) -> Iterator[None]:
        """Held for a whole push run (the ledger check and the send are not one atomic step), and
        while an import claims its rows. With wait_seconds, waits that long for a holder to finish.

        On one machine a file lock beside the sqlite file; with Postgres a lease (renewed while
        held, taken over once it expires) whose epoch every write checks while it is held here.
        """
        if not self.database_url:
            with exclusive_push(self.path, wait_seconds):
                yield
            return
        from amp_personalize.storage.postgres import Lease, LeaseHeld, holder_name

        deadline = time.monotonic() + wait_seconds
        lease = Lease(self.database_url, PUSH_LEASE, holder_name(), LEASE_SECONDS)
        while True:
            try:
                lease.acquire()
                break
            except LeaseHeld as held:
                if time.monotonic() >= deadline:
                    raise PushInProgress(f"another run is pushing: {held}; this one leaves the segments to it") from None
                time.sleep(0.5)
        self._lease = lease
        try:
            yield
        finally:
            self._lease = None
            lease.release()

    def bind(self, destination: dict[str, str | None]) -> None:
        """Check that this ledger speaks for these settings (`PersonalizeSettings.destination`) and
        remember them; LedgerMismatch, naming old and new values and what to do, if it does not."""
        given = _set(destination)
        with self._write() as db:
            problem = _conflict(self.where, dict(db.execute("SELECT setting, value FROM destination")), given)
            if problem:
                raise LedgerMismatch(problem)
            # A value given for the first time joins; a recreated tracker's id replaces the old one.
            db.executemany("INSERT INTO destination VALUES (?, ?) ON CONFLICT (setting) DO UPDATE SET value = excluded.value", list(given.items()))

    def conflict(self, destination: dict[str, str | None]) -> str | None:
        """What `bind` would refuse, without binding: for the sensor, which only reads."""
        kept = dict(self._read("SELECT setting, value FROM destination"))
        return _conflict(self.where, kept, _set(destination))

    def already_pushed(self, event_ids: list[str]) -> set[str]:
        """Ids the live push must not send: Personalize has them (pushed or imported), an import
        in flight is bringing them in, or PutEvents refused them."""
        with self._lock:
            found = self._known(self._db, event_ids, ("pushed", "importing", "refused"))
            if self.database_url:
                self._db.rollback()
            return found

    @staticmethod
    def _known(db: Any, event_ids: list[str], tables: tuple[str, ...] = ("pushed", "importing")) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(event_ids), _CHUNK):
            chunk = event_ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            query = " UNION ".join(f"SELECT event_id FROM {table} WHERE event_id IN ({marks})" for table in tables)
            found.update(r[0] for r in db.execute(query, chunk * len(tables)))
        return found

    @contextmanager
    def _write(self) -> Iterator[Any]:
        """One transaction, committed (one fsync) or rolled back as a whole; under a Postgres
        push lease, only while the lease is still this holder's (checked with its row locked)."""
        with self._lock:
            self._db.begin()
            try:
                if self._lease is not None:
                    self._lease.check(self._db.cur)
                yield self._db
                self._db.commit()
            except BaseException:
                self._db.rollback()
                raise

    def _read(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        with self._lock:
            rows = list(self._db.execute(sql, params))
            if self.database_url:
                self._db.rollback()  # end the read's transaction: no snapshot held open
            return rows

    def record(self, event_ids: list[str]) -> None:
        now = int(time.time() * 1000)
        with self._write() as db:
            db.executemany("INSERT INTO pushed VALUES (?, ?) ON CONFLICT DO NOTHING", [(e, now) for e in event_ids])

    def refuse(self, refusals: list[tuple[str, str]], accepted: bool) -> None:
        """(event id, reason) of events PutEvents refused as invalid: the live push leaves them.

        Also counts refusals since a run last had a call accepted (`refusal_streak`), so that a
        setup refusing everything is noticed however few events each run carries.
        """
        now = int(time.time() * 1000)
        with self._write() as db:
            db.executemany(
                "INSERT INTO refused VALUES (?, ?, ?) ON CONFLICT (event_id) DO UPDATE SET refused_at = excluded.refused_at, reason = excluded.reason",
                [(e, now, reason) for e, reason in refusals],
            )
            streak = 0 if accepted else self._mark(db, "refusal_streak") + len(refusals)
            self._set_mark(db, "refusal_streak", streak)

    def refusal_streak(self) -> int:
        """Events refused since a push run last had a call accepted."""
        rows = self._read("SELECT value FROM marks WHERE name = 'refusal_streak'")
        return rows[0][0] if rows else 0

    @staticmethod
    def _mark(db: Any, name: str) -> int:
        row = db.execute("SELECT value FROM marks WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0

    @staticmethod
    def _set_mark(db: Any, name: str, value: int) -> None:
        db.execute("INSERT INTO marks VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, value))

    def refused(self) -> dict[str, str]:
        return dict(self._read("SELECT event_id, reason FROM refused"))

    def claim_for_import(self, job_name: str, event_ids: list[str], stale_before_ms: int) -> list[str]:
        """The ids nobody has or is bringing in, now claimed for this import, in one transaction.

        Claims older than stale_before_ms belong to an import that died before it could record
        or release them: they are released first, so their events are imported again.
        """
        now = int(time.time() * 1000)
        with self._write() as db:
            db.execute("DELETE FROM importing WHERE claimed_at < ?", (stale_before_ms,))
            known = self._known(db, event_ids)
            missing = [e for e in dict.fromkeys(event_ids) if e not in known]
            db.executemany("INSERT INTO importing VALUES (?, ?, ?)", [(e, job_name, now) for e in missing])
        return missing

    def release_import(self, job_name: str) -> None:
        """A failed import: its ids go back to whichever path takes them next."""
        with self._write() as db:
            db.execute("DELETE FROM importing WHERE job_name = ?", (job_name,))

    def record_import(self, job_arn: str, mode: str, event_ids: list[str], job_name: str) -> None:
        """An ACTIVE import: its events are in Personalize, and the next import is INCREMENTAL."""
        now = int(time.time() * 1000)
        with self._write() as db:
            db.executemany("INSERT INTO pushed VALUES (?, ?) ON CONFLICT DO NOTHING", [(e, now) for e in event_ids])
            db.execute(
                "INSERT INTO imports VALUES (?, ?, ?, ?) ON CONFLICT (job_arn) DO UPDATE SET mode = excluded.mode, "
                "rows = excluded.rows, done_at = excluded.done_at", (job_arn, mode, len(event_ids), now),
            )
            db.execute("DELETE FROM importing WHERE job_name = ?", (job_name,))

    def imports(self) -> int:
        return self._read("SELECT count(*) FROM imports")[0][0]

    def mark_segments(self, names: list[str]) -> None:
        """Segments (landing-relative paths, window first) whose every event Personalize now has."""
        now = int(time.time() * 1000)
        with self._write() as db:
            db.executemany(
                "INSERT INTO segments VALUES (?, ?) ON CONFLICT (segment) DO UPDATE SET done_at = excluded.done_at", [(name, now) for name in names]
            )

    def done_segments(self, since_window: str = "") -> set[str]:
        return {r[0] for r in self._read("SELECT segment FROM segments WHERE segment >= ?", (since_window,))}

    def keep_impressions(self, rows: list[tuple[str, int, str]], keep_since_ms: int) -> None:
        """Remember (user_id, shown_at ms, items JSON) and forget what is older than keep_since_ms."""
        with self._write() as db:
            db.executemany("INSERT INTO impressions VALUES (?, ?, ?)", rows)
            db.execute("DELETE FROM impressions WHERE shown_at < ?", (keep_since_ms,))

    def recent_impressions(self) -> list[tuple[str, int, str]]:
        return self._read("SELECT user_id, shown_at, items FROM impressions")

    def prune(self, pushed_before_ms: int) -> int:
        """Forget ids acknowledged before this time: past the history window no import asks for
        them, and past Amplitude's retry horizon no duplicate of them arrives. Returns how many.

        The newest forgotten acknowledgment is kept (`forgotten_before`): an event happens before
        it is acknowledged, so an event older than that may be in Personalize without the ledger
        knowing, and an import must leave it out, say after AMP_HISTORY_DAYS was raised. A prune
        that forgets nothing moves nothing: history never pushed stays importable.
        """
        with self._write() as db:
            (newest,) = db.execute("SELECT max(pushed_at) FROM pushed WHERE pushed_at < ?", (pushed_before_ms,)).fetchone()
            if newest is not None:  # nothing forgotten, nothing to hide from an import
                forgotten = max(self._mark(db, "forgotten_before"), newest + 1)
                self._set_mark(db, "forgotten_before", forgotten)
            db.execute("DELETE FROM refused WHERE refused_at < ?", (pushed_before_ms,))
            return db.execute("DELETE FROM pushed WHERE pushed_at < ?", (pushed_before_ms,)).rowcount

    def forgotten_before(self) -> int:
        """Epoch ms before which acknowledged ids may have been pruned; 0 if none ever were."""
        rows = self._read("SELECT value FROM marks WHERE name = 'forgotten_before'")
        return rows[0][0] if rows else 0

    def count(self) -> int:
        return self._read("SELECT count(*) FROM pushed")[0][0]

    def close(self) -> None:
        self._db.close()


# Where the events are: a new tracker in the same dataset group (or dataset) is the same place.
_DATASET_SETTINGS = ("dataset_group_arn", "interactions_dataset_arn")


def _set(destination: dict[str, str | None]) -> dict[str, str]:
    """The settings that are set: an unset one binds nothing and conflicts with nothing."""
    return {name: value for name, value in destination.items() if value}


def _conflict(where: str, kept: dict[str, str], given: dict[str, str]) -> str | None:
    """Why a ledger kept for `kept` cannot be used for `given`, or None if it can."""
    changed = {name: (kept[name], value) for name, value in given.items() if name in kept and kept[name] != value}
    same_dataset = any(name in kept and kept[name] == given.get(name) for name in _DATASET_SETTINGS)
    if not changed or (set(changed) == {"tracking_id"} and same_dataset):
        return None
    was = "; ".join(f"{env_name(name)} was {old!r} and is now {new!r}" for name, (old, new) in changed.items())
    start_over = (
        "empty the tables of schema amp in that database (keep the schema's `leases` table)" if where.startswith("the ledger in")
        else f"move {Path(where).name} and its -wal and -shm files aside"
    )
    message = (
        f"{where} was written for other Personalize settings ({was}). It lists the events that "
        "destination already has, so using it for another would leave them out there. For a new "
        f"dataset group, stop the pipeline (Ctrl-C `make up`), {start_over}, and start it again: "
        "the next push and training send everything there. Otherwise set the variable back."
    )
    known = [name for name in _DATASET_SETTINGS if name in kept]
    if set(changed) == {"tracking_id"} and known:
        message += (
            f" If only the event tracker was recreated in the same dataset group, set "
            f"{' and '.join(env_name(name) for name in known)} as before: with the dataset unchanged, "
            "the ledger follows the new tracking id."
        )
    return message
