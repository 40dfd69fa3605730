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
"""

from __future__ import annotations

import fcntl
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from amp_personalize.settings import env_name

_CHUNK = 500  # below sqlite's bound-parameter limit


class PushInProgress(RuntimeError):
    """Another process is pushing from this ledger; two at once could send an event twice."""


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


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by the push workers, serialised by a lock (sqlite's own
        # threading rules), so a commit is one fsync whichever worker makes it.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS pushed (event_id TEXT PRIMARY KEY, pushed_at INTEGER NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS segments (segment TEXT PRIMARY KEY, done_at INTEGER NOT NULL)")
        # Impressions seen lately, so a click pushed by the next run still carries the feed before it.
        self._db.execute("CREATE TABLE IF NOT EXISTS impressions (user_id TEXT NOT NULL, shown_at INTEGER NOT NULL, items TEXT NOT NULL)")
        self._db.execute("CREATE INDEX IF NOT EXISTS impressions_by_time ON impressions (shown_at)")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS imports (job_arn TEXT PRIMARY KEY, mode TEXT NOT NULL, rows INTEGER NOT NULL, done_at INTEGER NOT NULL)"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS refused (event_id TEXT PRIMARY KEY, refused_at INTEGER NOT NULL, reason TEXT NOT NULL)")
        # Counters kept across runs: forgotten_before (see `prune`), refusal_streak (see `refuse`).
        self._db.execute("CREATE TABLE IF NOT EXISTS marks (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        # The Personalize resources this ledger speaks for (setting name -> value), see `bind`.
        self._db.execute("CREATE TABLE IF NOT EXISTS destination (setting TEXT PRIMARY KEY, value TEXT NOT NULL)")
        # Ids an import job in flight is bringing in: the live push leaves them to it.
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS importing (event_id TEXT PRIMARY KEY, job_name TEXT NOT NULL, claimed_at INTEGER NOT NULL)"
        )

    def bind(self, destination: dict[str, str | None]) -> None:
        """Check that this ledger speaks for these settings (`PersonalizeSettings.destination`) and
        remember them; LedgerMismatch, naming old and new values and what to do, if it does not."""
        given = _set(destination)
        with self._write() as db:
            problem = _conflict(self.path, dict(db.execute("SELECT setting, value FROM destination")), given)
            if problem:
                raise LedgerMismatch(problem)
            # A value given for the first time joins; a recreated tracker's id replaces the old one.
            db.executemany("INSERT OR REPLACE INTO destination VALUES (?, ?)", list(given.items()))

    def conflict(self, destination: dict[str, str | None]) -> str | None:
        """What `bind` would refuse, without binding: for the sensor, which only reads."""
        with self._lock:
            kept = dict(self._db.execute("SELECT setting, value FROM destination"))
        return _conflict(self.path, kept, _set(destination))

    def already_pushed(self, event_ids: list[str]) -> set[str]:
        """Ids the live push must not send: Personalize has them (pushed or imported), an import
        in flight is bringing them in, or PutEvents refused them."""
        with self._lock:
            return self._known(self._db, event_ids, ("pushed", "importing", "refused"))

    @staticmethod
    def _known(db: sqlite3.Connection, event_ids: list[str], tables: tuple[str, ...] = ("pushed", "importing")) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(event_ids), _CHUNK):
            chunk = event_ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            query = " UNION ".join(f"SELECT event_id FROM {table} WHERE event_id IN ({marks})" for table in tables)
            found.update(r[0] for r in db.execute(query, chunk * len(tables)))
        return found

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction, committed (one fsync) or rolled back as a whole."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def record(self, event_ids: list[str]) -> None:
        now = int(time.time() * 1000)
        with self._write() as db:
            db.executemany("INSERT OR IGNORE INTO pushed VALUES (?, ?)", [(e, now) for e in event_ids])

    def refuse(self, refusals: list[tuple[str, str]], accepted: bool) -> None:
        """(event id, reason) of events PutEvents refused as invalid: the live push leaves them.

        Also counts refusals since a run last had a call accepted (`refusal_streak`), so that a
        setup refusing everything is noticed however few events each run carries.
        """
        now = int(time.time() * 1000)
        with self._write() as db:
            db.executemany("INSERT OR REPLACE INTO refused VALUES (?, ?, ?)", [(e, now, reason) for e, reason in refusals])
            streak = 0 if accepted else self._mark(db, "refusal_streak") + len(refusals)
            db.execute("INSERT OR REPLACE INTO marks VALUES ('refusal_streak', ?)", (streak,))

    def refusal_streak(self) -> int:
        """Events refused since a push run last had a call accepted."""
        with self._lock:
            return self._mark(self._db, "refusal_streak")

    @staticmethod
    def _mark(db: sqlite3.Connection, name: str) -> int:
        row = db.execute("SELECT value FROM marks WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0

    def refused(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT event_id, reason FROM refused"))

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
            db.executemany("INSERT OR IGNORE INTO pushed VALUES (?, ?)", [(e, now) for e in event_ids])
            db.execute("INSERT OR REPLACE INTO imports VALUES (?, ?, ?, ?)", (job_arn, mode, len(event_ids), now))
            db.execute("DELETE FROM importing WHERE job_name = ?", (job_name,))

    def imports(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM imports").fetchone()[0]

    def mark_segments(self, names: list[str]) -> None:
        """Segments (landing-relative paths, window first) whose every event Personalize now has."""
        now = int(time.time() * 1000)
        with self._write() as db:
            db.executemany("INSERT OR REPLACE INTO segments VALUES (?, ?)", [(name, now) for name in names])

    def done_segments(self, since_window: str = "") -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT segment FROM segments WHERE segment >= ?", (since_window,))}

    def keep_impressions(self, rows: list[tuple[str, int, str]], keep_since_ms: int) -> None:
        """Remember (user_id, shown_at ms, items JSON) and forget what is older than keep_since_ms."""
        with self._write() as db:
            db.executemany("INSERT INTO impressions VALUES (?, ?, ?)", rows)
            db.execute("DELETE FROM impressions WHERE shown_at < ?", (keep_since_ms,))

    def recent_impressions(self) -> list[tuple[str, int, str]]:
        with self._lock:
            return list(self._db.execute("SELECT user_id, shown_at, items FROM impressions"))

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
                db.execute("INSERT OR REPLACE INTO marks VALUES ('forgotten_before', ?)", (forgotten,))
            db.execute("DELETE FROM refused WHERE refused_at < ?", (pushed_before_ms,))
            return db.execute("DELETE FROM pushed WHERE pushed_at < ?", (pushed_before_ms,)).rowcount

    def forgotten_before(self) -> int:
        """Epoch ms before which acknowledged ids may have been pruned; 0 if none ever were."""
        with self._lock:
            return self._mark(self._db, "forgotten_before")

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM pushed").fetchone()[0]

    def close(self) -> None:
        self._db.close()


# Where the events are: a new tracker in the same dataset group (or dataset) is the same place.
_DATASET_SETTINGS = ("dataset_group_arn", "interactions_dataset_arn")


def _set(destination: dict[str, str | None]) -> dict[str, str]:
    """The settings that are set: an unset one binds nothing and conflicts with nothing."""
    return {name: value for name, value in destination.items() if value}


def _conflict(path: Path, kept: dict[str, str], given: dict[str, str]) -> str | None:
    """Why a ledger kept for `kept` cannot be used for `given`, or None if it can."""
    changed = {name: (kept[name], value) for name, value in given.items() if name in kept and kept[name] != value}
    same_dataset = any(name in kept and kept[name] == given.get(name) for name in _DATASET_SETTINGS)
    if not changed or (set(changed) == {"tracking_id"} and same_dataset):
        return None
    was = "; ".join(f"{env_name(name)} was {old!r} and is now {new!r}" for name, (old, new) in changed.items())
    message = (
        f"{path} was written for other Personalize settings ({was}). It lists the events that "
        "destination already has, so using it for another would leave them out there. For a new "
        f"dataset group, stop the pipeline (Ctrl-C `make up`), move {path.name} and its -wal and -shm "
        "files aside, and start it again: the next push and training send everything there. "
        "Otherwise set the variable back."
    )
    known = [name for name in _DATASET_SETTINGS if name in kept]
    if set(changed) == {"tracking_id"} and known:
        message += (
            f" If only the event tracker was recreated in the same dataset group, set "
            f"{' and '.join(env_name(name) for name in known)} as before: with the dataset unchanged, "
            "the ledger follows the new tracking id."
        )
    return message
