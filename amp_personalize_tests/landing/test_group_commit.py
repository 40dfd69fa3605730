"""Concurrent requests share an fsync, and a 2xx is only ever sent for what is on disk."""

import asyncio
import errno
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import httpx
import orjson

from amp_personalize.landing import writer as writer_module
from amp_personalize.landing.commit import (
    SYNCER_COMMAND,
    SYNCER_RETRY_SECONDS,
    GroupCommitter,
    LandingUnavailable,
)
from amp_personalize.landing.segments import sealed_segments
from amp_personalize.landing.writer import SegmentWriter
from amp_personalize_tests.conftest import WEBHOOK, gone, landed_lines, sync_processes


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in metrics")


def test_concurrent_requests_share_fsyncs(receiver, settings):
    n = 300

    async def fire():
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=receiver.url, limits=limits, timeout=30) as client:
            bodies = [orjson.dumps({"event_type": "click", "user_id": f"u{i}", "uuid": f"e{i}"}) for i in range(n)]
            return await asyncio.gather(*(client.post(WEBHOOK, content=b) for b in bodies))

    replies = asyncio.run(fire())
    assert [r.status_code for r in replies] == [200] * n
    assert sorted(line["event_id"] for line in landed_lines(settings.data_dir)) == sorted(f"e{i}" for i in range(n))
    text = httpx.get(receiver.url + "/metrics").text
    commits = _metric(text, "amp_commit_group_requests_count")  # groups answered together
    assert _metric(text, "amp_commit_group_requests_sum") == n
    assert commits < n, f"{commits} fsync groups for {n} concurrent requests: no group commit"


def test_a_landing_directory_deleted_under_the_receiver_is_refused_not_acknowledged(receiver, settings):
    """fdatasync of a deleted file succeeds; a 2xx for it would be for lines that are nowhere."""
    click = lambda i: {"event_type": "click", "user_id": "u1", "uuid": f"e{i}"}  # noqa: E731
    assert receiver.post(click(1)).status_code == 200
    shutil.rmtree(settings.landing_dir)
    refused = receiver.post(click(2))
    assert refused.status_code == 503
    assert "was deleted while open" in refused.json()["error"]
    assert receiver.post(click(3)).status_code == 200  # a new segment, in the directory made again
    assert receiver.post(click(2)).status_code == 200  # the client's retry
    assert sorted(line["event_id"] for line in landed_lines(settings.data_dir)) == ["e2", "e3"]


SYNCER_THAT_CANNOT_RUN = [sys.executable, "-c", "raise SystemExit(3)"]


def _committer(tmp_path, syncer_command=SYNCER_COMMAND, **writer_args):
    args = dict(window_minutes=60, max_bytes=1 << 20, max_age_seconds=60)
    args.update(writer_args)
    writer = SegmentWriter(tmp_path / "landing", tmp_path / "quarantine", receiver_id="t", **args)
    return GroupCommitter(writer, syncer_command=syncer_command)


def _line(event_id: str) -> bytes:
    return orjson.dumps({"kind": "event", "event_id": event_id})[:-1]


def _landed_ids(tmp_path) -> list[str]:
    return [orjson.loads(x)["event_id"] for p in sealed_segments(tmp_path / "landing") for x in p.read_bytes().splitlines()]


def test_rotating_while_lines_wait_for_their_sync_loses_none(tmp_path):
    committer = _committer(tmp_path, max_bytes=400)  # a few lines a segment: rotation on most writes

    async def client(c: int):
        for k in range(5):  # each client's next write may come while its last sync is in flight
            await committer.commit([_line(f"c{c}-{k}")])

    async def run():
        committer.start()
        await asyncio.gather(*(client(c) for c in range(40)))
        await committer.stop()

    asyncio.run(run())
    assert len(sealed_segments(tmp_path / "landing")) > 2
    assert sorted(_landed_ids(tmp_path)) == sorted(f"c{c}-{k}" for c in range(40) for k in range(5))


def _syncer_failing(nth: int, after_seconds: float = 0.0, slow_seconds: float = 0.0) -> list[str]:
    """The real sync process, its nth fdatasync failing with EIO (after a while) as a dying disk's
    would; nth=0 fails none. Every fdatasync can be made slow too."""
    code = (
        "import errno, os, runpy, sys, time\n"
        "real, calls = os.fdatasync, []\n"
        "def fdatasync(fd):\n"
        "    calls.append(fd)\n"
        f"    time.sleep({slow_seconds})\n"
        f"    if len(calls) == {nth}:\n"
        f"        time.sleep({after_seconds})\n"
        "        raise OSError(errno.EIO, os.strerror(errno.EIO))\n"
        "    real(fd)\n"
        "os.fdatasync = fdatasync\n"
        "sys.argv = sys.argv[1:]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    return [sys.executable, "-I", "-c", code, SYNCER_COMMAND[-1]]


def test_a_failed_sync_refuses_every_unsynced_request_and_lands_none_of_them(tmp_path):
    committer = _committer(tmp_path, syncer_command=_syncer_failing(2))

    async def run():
        committer.start()
        await committer.commit([_line("before")])
        refused = await asyncio.gather(  # one loop iteration: one write, one (failing) sync
            committer.commit([_line("a1"), _line("a2")]), committer.commit([_line("b")]), return_exceptions=True
        )
        await committer.commit([_line("after")])
        await committer.stop()
        return refused

    refused = asyncio.run(run())
    assert [type(r) for r in refused] == [LandingUnavailable, LandingUnavailable]
    assert "Input/output error" in str(refused[0])
    assert _landed_ids(tmp_path) == ["before", "after"]


def test_when_the_sync_process_dies_no_request_is_refused_and_syncing_goes_on(tmp_path, caplog):
    committer = _committer(tmp_path)

    async def client(c: int, k0: int):
        for k in range(k0, k0 + 5):
            await committer.commit([_line(f"c{c}-{k}")])

    async def run():
        committer.start()
        await asyncio.gather(*(client(c, 0) for c in range(20)))
        await asyncio.sleep(SYNCER_RETRY_SECONDS)  # one that had been running is replaced at once
        [first] = sync_processes(os.getpid())
        os.kill(first, signal.SIGKILL)
        assert gone(first)
        await asyncio.gather(*(client(c, 5) for c in range(20)))  # raises if any is refused
        [second] = sync_processes(os.getpid())
        await asyncio.gather(*(client(c, 10) for c in range(20)))
        await committer.stop()
        return first, second

    first, second = asyncio.run(run())
    assert second != first
    assert "the sync process exited" in caplog.text
    assert sorted(_landed_ids(tmp_path)) == sorted(f"c{c}-{k}" for c in range(20) for k in range(15))
    assert gone(second) and not sync_processes(os.getpid()), "stop() left a sync process behind"


def test_the_sync_process_syncs_an_open_file_description_of_its_own(tmp_path):
    """Linux reports a writeback error once per open file description: had the sync process
    shared the loop's, an EIO its fdatasync took would hide from the seal's later fsync."""
    committer = _committer(tmp_path)

    def position(fdinfo: Path) -> int:
        return int(fdinfo.read_text().split("pos:")[1].split()[0])

    async def run():
        committer.start()
        await committer.commit([_line("a")])
        [pid] = sync_processes(os.getpid())
        segment = committer.writer.segment
        [theirs] = [fd for fd in Path(f"/proc/{pid}/fd").iterdir() if os.readlink(fd) == str(segment.path)]
        positions = position(Path(f"/proc/{pid}/fdinfo/{theirs.name}")), position(Path(f"/proc/self/fdinfo/{segment.fd}"))
        await committer.stop()
        return positions

    theirs, ours = asyncio.run(run())
    assert ours > 0 and theirs == 0, "the sync process holds the loop's own description (it shares its file position)"


def test_a_sync_failing_after_its_segment_was_sealed_still_refuses_what_it_covered(tmp_path):
    # The seal's own fsync succeeds here (the failure is simulated in the sync process only), so
    # only waiting for the in-flight sync's answer keeps "a" from being acknowledged.
    committer = _committer(tmp_path, syncer_command=_syncer_failing(1, after_seconds=0.3), max_bytes=60)

    async def run():
        committer.start()
        first = asyncio.ensure_future(committer.commit([_line("a")]))
        await asyncio.sleep(0.05)  # its sync is in flight, and will fail
        await committer.commit([_line("b")])  # rotates: sealing fsyncs the segment holding "a"
        [a] = await asyncio.gather(first, return_exceptions=True)
        await committer.stop()
        return a

    assert isinstance(asyncio.run(run()), LandingUnavailable)


def _failing_write_once():
    real, calls = os.write, []

    def write(fd, data):
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(fd, data)

    return write


async def _a_in_flight_then_a_failed_write(committer, monkeypatch, line: bytes):
    """Start, commit "a", and while its sync is in flight commit `line` with the write failing:
    "a"'s future and what `line`'s commit came to."""
    committer.start()
    a = asyncio.ensure_future(committer.commit([_line("a")]))
    await asyncio.sleep(0.1)
    with monkeypatch.context() as m:
        m.setattr(writer_module.os, "write", _failing_write_once())
        [b] = await asyncio.gather(committer.commit([line]), return_exceptions=True)
    return a, b


def test_a_late_failure_of_a_cut_back_segment_refuses_nothing_of_the_next(tmp_path, monkeypatch):
    # The cut back refuses "b" (and "a", whose sync is in flight) and reuses their offsets for the
    # next segment; the failing sync's late answer must not refuse "c", which lands there.
    committer = _committer(tmp_path, syncer_command=_syncer_failing(1, after_seconds=0.5))

    async def run():
        a, b = await _a_in_flight_then_a_failed_write(committer, monkeypatch, _line("b"))
        c = await asyncio.gather(committer.commit([_line("c")]), return_exceptions=True)
        await committer.stop()
        return [*(await asyncio.gather(a, return_exceptions=True)), b, *c]

    a, b, c = asyncio.run(run())
    assert isinstance(a, LandingUnavailable) and isinstance(b, LandingUnavailable)
    assert c is None
    assert _landed_ids(tmp_path) == ["c"]


def test_a_failure_after_a_seal_refuses_nothing_the_seal_made_durable(tmp_path, monkeypatch):
    # "a"'s (slow, successful) sync is in flight when a rotation seals its segment, then the write
    # of "b" to the next segment fails: "b" is refused, "a" is acknowledged and landed.
    committer = _committer(tmp_path, syncer_command=_syncer_failing(0, after_seconds=0.0, slow_seconds=0.5), max_bytes=60)

    async def run():
        a, b = await _a_in_flight_then_a_failed_write(committer, monkeypatch, _line("b" * 30))
        await committer.stop()
        return [*(await asyncio.gather(a, return_exceptions=True)), b]

    a, b = asyncio.run(run())
    assert a is None and isinstance(b, LandingUnavailable)
    assert _landed_ids(tmp_path) == ["a"]


def test_stop_waits_for_the_sync_in_flight_and_refuses_what_it_failed(tmp_path):
    committer = _committer(tmp_path, syncer_command=_syncer_failing(1, after_seconds=0.3))

    async def run():
        committer.start()
        first = asyncio.ensure_future(committer.commit([_line("a")]))
        await asyncio.sleep(0.05)
        await committer.stop()
        return (await asyncio.gather(first, return_exceptions=True))[0]

    assert isinstance(asyncio.run(run()), LandingUnavailable)
    assert _landed_ids(tmp_path) == []


def test_a_sync_process_that_cannot_run_is_not_started_again_for_every_sync(tmp_path, caplog):
    committer = _committer(tmp_path, syncer_command=SYNCER_THAT_CANNOT_RUN)

    async def run():
        committer.start()
        started = time.monotonic()
        for i in range(50):
            await committer.commit([_line(f"x{i}")])  # each acknowledged: the loop syncs them itself
        await committer.stop()
        return time.monotonic() - started

    seconds = asyncio.run(run())
    assert caplog.text.count("the sync process exited") <= 2 + seconds / SYNCER_RETRY_SECONDS  # not 50
    assert sorted(_landed_ids(tmp_path)) == sorted(f"x{i}" for i in range(50))


def test_commit_latency_is_the_sync_that_answered_not_zero(tmp_path):
    """amp_commit_seconds: groups the loop synced itself (no sync process) are timed too, as are
    those a seal made durable; both were recorded as 0 s, pulling the reported latency down."""
    recorded = []
    committer = _committer(tmp_path, syncer_command=SYNCER_THAT_CANNOT_RUN)
    committer.on_commit = lambda requests, events, seconds: recorded.append(seconds)

    async def run():
        committer.start()
        for i in range(5):
            await committer.commit([_line(f"x{i}")])
        await committer.stop()

    asyncio.run(run())
    assert len(recorded) == 5
    assert all(seconds > 0 for seconds in recorded), recorded


def test_with_an_interval_a_sync_skips_the_wait_only_for_max_events_already_waiting(tmp_path):
    """What docs/settings.md's AMP_COMMIT_MAX_EVENTS row says: the count is looked at before the interval's
    sleep; events arriving during the sleep do not cut it short."""
    interval = 1.5
    writer = SegmentWriter(tmp_path / "landing", tmp_path / "quarantine", receiver_id="t", window_minutes=60, max_bytes=1 << 20, max_age_seconds=60)
    committer = GroupCommitter(writer, interval_seconds=interval, max_events=3)

    async def timed(lines: list[bytes]) -> float:
        started = time.monotonic()
        await committer.commit(lines)
        return time.monotonic() - started

    async def run():
        committer.start()
        full = await timed([_line(f"full{i}") for i in range(3)])
        one = asyncio.ensure_future(timed([_line("one")]))
        await asyncio.sleep(0.2)  # the sync for that one event now waits out the interval
        late = await timed([_line(f"late{i}") for i in range(5)])  # 6 waiting: it sleeps on
        one = await one
        await committer.stop()
        return full, one, late

    full, one, late = asyncio.run(run())
    assert full < interval - 0.5, f"3 events waiting as the sync began, yet it took {full:.2f} s"
    assert one >= interval
    assert late >= interval - 0.5, f"the late events cut the interval short ({late:.2f} s)"
    assert sorted(_landed_ids(tmp_path)) == sorted(["one", *(f"full{i}" for i in range(3)), *(f"late{i}" for i in range(5))])
