"""The PutEvents ledger in Postgres (AMP_DATABASE_URL): the same record as the sqlite file, and a
push lease that a second pusher is refused, naming the holder, and that a stranded holder cannot
commit under once it has passed on."""

from __future__ import annotations

import time

import pytest

from amp_personalize.backends.personalize.ledger import Ledger, LedgerMismatch, PushInProgress
from amp_personalize.storage.postgres import Lease, LeaseHeld, LeaseLost

pytestmark = pytest.mark.slow


def test_the_postgres_ledger_keeps_what_the_sqlite_one_keeps(tmp_path, database_url):
    for ledger in (Ledger(tmp_path / "ledger.sqlite"), Ledger(tmp_path / "unused", database_url=database_url)):
        ledger.bind({"dataset_group_arn": "arn:dg", "interactions_dataset_arn": None, "tracking_id": "t1"})
        ledger.record(["e1", "e2"])
        ledger.record(["e2", "e3"])
        ledger.refuse([("bad", "invalid")], accepted=False)
        ledger.mark_segments(["20261206T0100Z/a.ndjson"])
        ledger.mark_segments(["20261206T0100Z/a.ndjson"])
        assert ledger.claim_for_import("job-1", ["e1", "e4", "e5"], stale_before_ms=0) == ["e4", "e5"]
        ledger.keep_impressions([("u1", 10, '["d1"]')], keep_since_ms=0)
        assert ledger.already_pushed(["e1", "e4", "bad", "new"]) == {"e1", "e4", "bad"}
        assert (ledger.count(), ledger.refusal_streak(), ledger.refused()) == (3, 1, {"bad": "invalid"})
        assert ledger.done_segments("20261206") == {"20261206T0100Z/a.ndjson"}
        assert ledger.recent_impressions() == [("u1", 10, '["d1"]')]
        ledger.record_import("arn:import", "FULL", ["e4", "e5"], job_name="job-1")
        assert (ledger.imports(), ledger.count()) == (1, 5)
        assert ledger.prune(int(time.time() * 1000) + 1) == 5 and ledger.forgotten_before() > 0
        ledger.bind({"dataset_group_arn": "arn:dg", "tracking_id": "t2"})  # a recreated tracker: followed
        with pytest.raises(LedgerMismatch, match="AWS_PERSONALIZE_DATASET_GROUP_ARN was 'arn:dg' and is now 'arn:other'"):
            ledger.bind({"dataset_group_arn": "arn:other", "tracking_id": "t2"})
        ledger.close()


def test_a_second_push_is_refused_naming_the_holder(tmp_path, database_url):
    first, second = Ledger(tmp_path / "x", database_url=database_url), Ledger(tmp_path / "x", database_url=database_url)
    with first.exclusive_push():
        first.record(["e1"])
        with pytest.raises(PushInProgress, match=r"personalize_push is held by \S+ pid \d+"):
            with second.exclusive_push():
                pass
    with second.exclusive_push():  # released: the next push goes ahead
        second.record(["e2"])
    assert second.count() == 2


def test_a_stranded_pusher_cannot_commit_after_its_lease_passed_on(tmp_path, database_url):
    stranded = Ledger(tmp_path / "x", database_url=database_url)
    with stranded.exclusive_push():
        stranded._lease._stop.set()  # its renewals stop, as a paused or cut-off pod's would
        stranded._lease._renewer.join()
        takeover = Lease(database_url, "personalize_push", "the next pod", ttl_seconds=60)
        with pytest.raises(LeaseHeld, match="held by"):
            takeover.acquire()  # not before it expires
        with stranded._db.conn, stranded._db.conn.cursor() as cur:  # let it expire now
            cur.execute("UPDATE leases SET expires_at = now() - interval '1 second' WHERE name = 'personalize_push'")
        takeover.acquire()
        with pytest.raises(LeaseLost, match="passed to the next pod"):
            stranded.record(["e-after-losing-it"])
        takeover.release()
    fresh = Ledger(tmp_path / "x", database_url=database_url)
    assert fresh.already_pushed(["e-after-losing-it"]) == set()
