"""What Personalize has acknowledged, durably: the record that makes every push exactly once.

An event id is written here in the same breath as PutEvents acknowledges it (one sqlite
transaction, synchronous=FULL), and every push first drops ids already here. So re-runs, crashes
between calls and Amplitude's duplicate deliveries in other segments never send an event twice.
The one window left is a crash inside a single call, after Personalize accepted it and before
the ledger commit: that call's events are sent again on the next run (at most 10 events).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

_CHUNK = 500  # below sqlite's bound-parameter limit


class Ledger:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS pushed (event_id TEXT PRIMARY KEY, pushed_at INTEGER NOT NULL)")

    def already_pushed(self, event_ids: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(event_ids), _CHUNK):
            chunk = event_ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update(r[0] for r in self._db.execute(f"SELECT event_id FROM pushed WHERE event_id IN ({marks})", chunk))
        return found

    def record(self, event_ids: list[str]) -> None:
        now = int(time.time() * 1000)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany("INSERT OR IGNORE INTO pushed VALUES (?, ?)", [(e, now) for e in event_ids])
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def count(self) -> int:
        return self._db.execute("SELECT count(*) FROM pushed").fetchone()[0]

    def close(self) -> None:
        self._db.close()
