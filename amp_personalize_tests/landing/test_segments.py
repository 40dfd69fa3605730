"""Segments: rotation on size, age and window edge; sealing; recovery of what a crash left."""

import errno
import fcntl
import os
import time
from dataclasses import replace

import orjson

from amp_personalize.landing import segments as segments_module
from amp_personalize.landing.segments import (
    CREATING_SUFFIX,
    OPEN_SUFFIX,
    recover,
    sealed_segments,
)
from amp_personalize.landing.writer import SegmentWriter
from amp_personalize.receiver import create_app
from amp_personalize.settings import Settings
from amp_personalize_tests.conftest import LiveReceiver, landed_lines

HOUR_MS = 3_600_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MS  # a window start


def head(i: int) -> bytes:
    return orjson.dumps({"kind": "event", "event_id": f"e{i}"})[:-1]


def writer(tmp_path, clock=None, **kw):
    args = dict(window_minutes=60, max_bytes=1 << 20, max_age_seconds=60)
    args.update(kw)
    return SegmentWriter(tmp_path / "landing", tmp_path / "quarantine", receiver_id="test", clock_ms=clock, **args)


def read_ids(paths):
    return [orjson.loads(line)["event_id"] for p in paths for line in p.read_bytes().splitlines()]


def test_lines_carry_the_receive_time_of_their_window(tmp_path):
    now = [T0 + 5]
    w = writer(tmp_path, clock=lambda: now[0])
    assert w.append([head(1), head(2)]) == T0 + 5
    w.close()
    [segment] = sealed_segments(tmp_path / "landing")
    assert segment.parent.name == "20231114T2200Z"
    lines = [orjson.loads(x) for x in segment.read_bytes().splitlines()]
    assert [(x["event_id"], x["received_at"]) for x in lines] == [("e1", T0 + 5), ("e2", T0 + 5)]


def test_a_segment_never_spans_two_windows(tmp_path):
    now = [T0 + HOUR_MS - 1]
    w = writer(tmp_path, clock=lambda: now[0])
    w.append([head(1)])
    now[0] += 2  # across the window edge
    w.append([head(2)])
    w.close()
    segments = sealed_segments(tmp_path / "landing")
    assert [s.parent.name for s in segments] == ["20231114T2200Z", "20231114T2300Z"]
    assert [read_ids([s]) for s in segments] == [["e1"], ["e2"]]


def test_rotation_on_size_and_on_age(tmp_path):
    w = writer(tmp_path, max_bytes=1024)
    for i in range(40):  # ~40 bytes a line -> several 1 KiB segments
        w.append([head(i)])
    w.close()
    by_size = sealed_segments(tmp_path / "landing")
    assert len(by_size) > 1
    assert all(s.stat().st_size <= 1024 for s in by_size)
    assert read_ids(by_size) == [f"e{i}" for i in range(40)]

    aged = writer(tmp_path / "aged", max_age_seconds=0.05)
    aged.append([head(1)])
    assert 0 < aged.seconds_until_due() <= 0.05
    time.sleep(0.06)
    aged.seal_if_due()
    assert len(sealed_segments(tmp_path / "aged" / "landing")) == 1
    assert aged.seconds_until_due() is None


def _crashed_segment(tmp_path, content: bytes):
    directory = tmp_path / "landing" / "20231114T2200Z"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / ("0000000000001-dead-000001" + OPEN_SUFFIX)
    path.write_bytes(content)
    return path


def test_recovery_seals_and_quarantines_a_torn_last_line(tmp_path):
    _crashed_segment(tmp_path, b'{"event_id":"a"}\n{"event_id":"b"}\n{"event_id":"c","ty')
    report = recover(tmp_path / "landing", tmp_path / "quarantine")
    assert report.torn_lines == 1
    [sealed] = report.sealed
    assert read_ids([sealed]) == ["a", "b"]
    [torn] = (tmp_path / "quarantine").glob("*/*.torn")
    assert torn.read_bytes() == b'{"event_id":"c","ty\n'


def test_a_receiver_starts_when_recovery_cannot_seal_what_a_crash_left_open(tmp_path, caplog):
    """No room for the torn tail (here: the quarantine path is a file; a full disk or a read-only
    file system is the same to recovery): the segment stays as it was, and the receiver serves."""
    content = b'{"event_id":"a"}\n{"event_id":"c","ty'
    segment = _crashed_segment(tmp_path / "data", content)
    (tmp_path / "data" / "quarantine").write_bytes(b"")
    settings = replace(Settings.from_env({}), data_dir=tmp_path / "data")
    with LiveReceiver(create_app(settings)) as live:
        assert live.post({"event_type": "click", "user_id": "u1", "uuid": "new"}).status_code == 200
    assert f"could not seal {segment}" in caplog.text
    assert segment.read_bytes() == content  # untouched, for the next recovery

    (tmp_path / "data" / "quarantine").unlink()
    report = recover(settings.landing_dir, settings.quarantine_dir)
    assert report.torn_lines == 1 and report.left_open == []
    assert sorted(line["event_id"] for line in landed_lines(settings.data_dir)) == ["a", "new"]


def test_a_segment_sealed_before_a_failing_directory_fsync_is_reported_sealed(tmp_path, monkeypatch):
    _crashed_segment(tmp_path, b'{"event_id":"a"}\n')

    def failing(directory):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(segments_module, "fsync_dir", failing)
    report = recover(tmp_path / "landing", tmp_path / "quarantine")
    assert report.left_open == []
    assert read_ids(report.sealed) == ["a"]


def test_recovery_removes_segments_with_no_complete_line(tmp_path):
    _crashed_segment(tmp_path, b"")
    creating = tmp_path / "landing" / "20231114T2200Z" / ("x" + CREATING_SUFFIX)
    creating.write_bytes(b"")
    report = recover(tmp_path / "landing", tmp_path / "quarantine")
    assert report.sealed == [] and report.torn_lines == 0
    assert list((tmp_path / "landing").glob("*/*")) == []


def test_recovery_leaves_a_live_writers_segment_alone(tmp_path):
    path = _crashed_segment(tmp_path, b'{"event_id":"a"}\n')
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a running receiver holds it
        assert recover(tmp_path / "landing", tmp_path / "quarantine").sealed == []
        assert path.exists()
    finally:
        os.close(fd)
    assert len(recover(tmp_path / "landing", tmp_path / "quarantine").sealed) == 1


def test_a_live_writer_is_not_disturbed_by_recovery(tmp_path):
    w = writer(tmp_path)
    w.append([head(1)])
    assert recover(tmp_path / "landing", tmp_path / "quarantine").sealed == []
    w.append([head(2)])
    w.close()
    assert read_ids(sealed_segments(tmp_path / "landing")) == ["e1", "e2"]
