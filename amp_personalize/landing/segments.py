"""Segment files on disk: their names, sealing, and recovery after a crash.

A segment is written as `<window>/<name>.ndjson.open` while its writer holds an exclusive
flock on it, and becomes `<window>/<name>.ndjson` when sealed. The lock is what tells a live
segment from one a crashed process left behind: the kernel drops it when the process dies, so
any process may recover an unlocked open segment, and none can seal a live one.
"""

from __future__ import annotations

import fcntl
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

SEALED_SUFFIX = ".ndjson"
OPEN_SUFFIX = ".ndjson.open"
# A file is created under this suffix and renamed to OPEN_SUFFIX only once it is locked, so a
# recovering process can never mistake a segment that is being born for an abandoned one.
CREATING_SUFFIX = ".ndjson.creating"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def segment_stem(opened_at_ms: int, receiver_id: str, seq: int) -> str:
    """Sortable by open time; unique per receiver process, so receivers can share a directory."""
    return f"{opened_at_ms:013d}-{_UNSAFE.sub('_', receiver_id)}-{seq:06d}"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """A file written by something else (a library's writer, a temp file) on disk before it is renamed."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: Path) -> None:
    """mkdir -p that also makes the new directory entries durable."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            pass
        fsync_dir(directory.parent)


def landing_windows(landing_dir: Path) -> list[str]:
    """The window folders under landing_dir, oldest first."""
    if not landing_dir.exists():
        return []
    return sorted(p.name for p in landing_dir.iterdir() if p.is_dir() and p.name[:1].isdigit())


def sealed_segments(landing_dir: Path, window: str | None = None) -> list[Path]:
    pattern = f"{window}/*{SEALED_SUFFIX}" if window else f"*/*{SEALED_SUFFIX}"
    return sorted(landing_dir.glob(pattern))


def open_segments(landing_dir: Path, window: str | None = None) -> list[Path]:
    return sorted(landing_dir.glob(f"{window or '*'}/*{OPEN_SUFFIX}"))


@dataclass
class SealResult:
    sealed: Path | None  # None when the segment held no complete line and was removed
    torn_bytes: int  # bytes after the last newline, moved to quarantine


def _quarantine(fd: int, start: int, end: int, segment: Path, quarantine_dir: Path) -> None:
    torn = os.pread(fd, end - start, start)
    target_dir = quarantine_dir / segment.parent.name
    ensure_dir(target_dir)
    target = target_dir / (segment.name.removesuffix(OPEN_SUFFIX) + ".torn")
    with open(target, "ab") as out:
        out.write(torn + b"\n")
        out.flush()
        os.fsync(out.fileno())


def _last_newline_end(fd: int, size: int) -> int:
    """Offset just past the last b'\\n' (0 if none), reading backwards in blocks."""
    block = 64 * 1024
    pos = size
    while pos > 0:
        start = max(0, pos - block)
        chunk = os.pread(fd, pos - start, start)
        idx = chunk.rfind(b"\n")
        if idx >= 0:
            return start + idx + 1
        pos = start
    return 0


def sealed_path(path: Path) -> Path:
    """An open segment's name once sealed."""
    return path.with_name(path.name.removesuffix(OPEN_SUFFIX) + SEALED_SUFFIX)


def seal_locked(fd: int, path: Path, quarantine_dir: Path) -> SealResult:
    """Seal an open segment whose lock the caller holds: quarantine a torn tail, then rename.

    A torn tail is the unacknowledged part of a write that a crash or an I/O error cut short;
    every acknowledged line ended in a newline that was fsync'd before the reply.
    """
    os.fsync(fd)
    size = os.fstat(fd).st_size
    end = _last_newline_end(fd, size)
    torn = size - end
    if torn:
        _quarantine(fd, end, size, path, quarantine_dir)
        os.ftruncate(fd, end)
        os.fsync(fd)
    if end == 0:
        path.unlink()
        fsync_dir(path.parent)
        return SealResult(None, torn)
    sealed = sealed_path(path)
    os.rename(path, sealed)
    fsync_dir(path.parent)
    return SealResult(sealed, torn)


@dataclass
class RecoveryReport:
    sealed: list[Path]
    torn_lines: int
    left_open: list[tuple[Path, str]] = field(default_factory=list)  # could not be sealed: why


def recover(landing_dir: Path, quarantine_dir: Path, window: str | None = None) -> RecoveryReport:
    """Seal every open segment that no live process holds; safe to run at any time, by anyone."""
    report = RecoveryReport(sealed=[], torn_lines=0)
    if not landing_dir.exists():
        return report
    for leftover in landing_dir.glob(f"{window or '*'}/*{CREATING_SUFFIX}"):
        try:
            _with_lock(leftover, lambda fd, p: (p.unlink(), None))
        except OSError:
            pass  # an empty file that never held a line: the next pass removes it
    for path in open_segments(landing_dir, window):
        try:
            result = _with_lock(path, lambda fd, p: seal_locked(fd, p, quarantine_dir))
        except OSError as exc:
            # A full disk (no room to quarantine a torn tail) or a read-only file system. The
            # segment is left as it was, and whoever calls recovery next seals it: a receiver
            # must still start, and answer 503 for what it cannot land. Only the directory's
            # fsync failing comes after the rename: that one is sealed.
            sealed = sealed_path(path)
            if not path.exists() and sealed.exists():
                report.sealed.append(sealed)
            else:
                report.left_open.append((path, exc.strerror or str(exc)))
            continue
        if result is None:
            continue
        report.torn_lines += 1 if result.torn_bytes else 0
        if result.sealed is not None:
            report.sealed.append(result.sealed)
    return report


def _with_lock(path: Path, action):
    """Run action(fd, path) if nobody holds path's lock; None if it is live or already gone."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        if not path.exists():  # sealed by someone else between our open and our lock
            return None
        return action(fd, path)
    finally:
        os.close(fd)
