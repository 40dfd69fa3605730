"""Where processing reads the landing from: this machine's directory, or S3 (SPEC section 9).

With AMP_LANDING_URL set, windows are read from what the volumes shipped, so the host that
processes them needs no landing of its own; without it, from <AMP_DATA_DIR>/landing as always.
A segment is named within its window: by file name locally, `<volume id>/<file name>` on S3.
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import orjson

from amp_personalize.landing.segments import SEALED_SUFFIX, landing_windows, sealed_segments
from amp_personalize.landing.shipping import VOLUMES
from amp_personalize.settings import Settings
from amp_personalize.storage import s3 as s3store


@dataclass(frozen=True)
class Segment:
    window: str
    name: str
    size: int


@dataclass(frozen=True)
class Volume:
    """What a volume's `_volumes/<id>.json` said (landing.shipping writes it)."""

    volume_id: str
    status: str
    heartbeat_ms: int
    complete_before_ms: int
    since_ms: int = 0  # its oldest segment's receive time when its shipper started (0: unknown)

    def fresh(self, now_ms: int, dead_after_seconds: float) -> bool:
        return now_ms - self.heartbeat_ms <= dead_after_seconds * 1000


class LocalLanding:
    """<AMP_DATA_DIR>/landing on this machine."""

    remote = False

    def __init__(self, landing_dir: Path) -> None:
        self.landing_dir = landing_dir

    def __str__(self) -> str:
        return str(self.landing_dir)

    def windows(self, after: str | None = None) -> list[str]:
        return [w for w in landing_windows(self.landing_dir) if after is None or w > after]

    def segments(self, window: str) -> list[Segment]:
        return [Segment(window, p.name, p.stat().st_size) for p in sealed_segments(self.landing_dir, window)]

    @contextmanager
    def local_files(self, segments: list[Segment]) -> Iterator[list[Path]]:
        yield [self.landing_dir / s.window / s.name for s in segments]

    def changed_since(self, window: str, built_at: float) -> bool:
        """Whether the window's folder may hold a segment newer than `built_at` (epoch s): a
        folder untouched for an hour before then is passed over on one stat."""
        folder = self.landing_dir / window
        return folder.exists() and folder.stat().st_mtime >= built_at - 3600


class S3Landing(s3store.S3Place):
    """`<AMP_LANDING_URL>/<window>/<volume id>/<segment>`, as the volumes' shippers put it."""

    def windows(self, after: str | None = None) -> list[str]:
        folders = s3store.list_folders(self.s3, self.url.bucket, self.url.key("") + "/" if self.url.prefix else "",
                                       start_after=self.url.key(after) + "/~" if after else None)
        return sorted(f for f in folders if f[:1].isdigit() and (after is None or f > after))

    def segments(self, window: str) -> list[Segment]:
        base = self.url.key(window) + "/"
        return [
            Segment(window, o["Key"][len(base):], o["Size"])
            for o in s3store.list_keys(self.s3, self.url.bucket, base)
            if o["Key"].endswith(SEALED_SUFFIX) and o["Key"][len(base):].count("/") == 1
        ]

    @contextmanager
    def local_files(self, segments: list[Segment]) -> Iterator[list[Path]]:
        """The segments downloaded into a temporary directory, removed afterwards."""
        with tempfile.TemporaryDirectory(prefix="amp-landing-") as tmp:
            paths = [Path(tmp) / s.window / s.name for s in segments]

            def fetch(pair: tuple[Segment, Path]) -> None:
                segment, path = pair
                path.parent.mkdir(parents=True, exist_ok=True)
                self.s3.download_file(self.url.bucket, self.url.key(segment.window, segment.name), str(path))

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(fetch, zip(segments, paths)))
            yield paths

    def changed_since(self, window: str, built_at: float) -> bool:
        return True  # S3 keeps no folder times: whoever asks lists the window (see landing_sensor)

    def volumes(self) -> list[Volume]:
        found = []
        for o in s3store.list_keys(self.s3, self.url.bucket, self.url.key(VOLUMES) + "/"):
            body = s3store.get(self.s3, self.url.bucket, o["Key"])
            if body is None:
                continue
            try:
                doc = orjson.loads(body)
                found.append(Volume(str(doc["volume_id"]), str(doc["status"]), int(doc["heartbeat_ms"]), int(doc["complete_before_ms"]),
                                    int(doc.get("since_ms") or 0)))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # a damaged watermark: that volume counts as absent, its late segments rebuild
        return sorted(found, key=lambda v: v.volume_id)


LandingSource = LocalLanding | S3Landing


def landing_source(settings: Settings, s3: Any = None) -> LandingSource:
    return S3Landing(settings.landing_url, s3) if settings.landing_url else LocalLanding(settings.landing_dir)
