"""Model versions on S3 (AMP_LAKE_URL): `<lake>/models/<version>/<file>` and `<lake>/models/LATEST`.

Backends write and load versions in a local folder as on one machine (backends.versions); with
the lake on S3 that folder is a cache of the S3 copy: a training uploads its new version's files
and then LATEST (so LATEST never names a version not whole there), and a reader on any host
fetches the version LATEST names before loading it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from amp_personalize.backends.versions import LATEST, latest_version, publish_latest
from amp_personalize.settings import Settings
from amp_personalize.storage import s3 as s3store


class ModelStore:
    def __init__(self, settings: Settings, s3: Any = None) -> None:
        self.local = settings.models_dir
        self.url = s3store.S3Url.parse(settings.lake_url).child("models") if settings.lake_url else None
        self._s3 = s3

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            self._s3 = s3store.client()
        return self._s3

    def push(self, version: str) -> None:
        """A version trained here: its files, then LATEST, on S3."""
        if self.url is None:
            return
        folder = self.local / version
        for path in sorted(folder.iterdir()):
            if path.is_file():
                s3store.put(self.s3, self.url.bucket, self.url.key(version, path.name), path.read_bytes())
        s3store.put(self.s3, self.url.bucket, self.url.key(LATEST), (version + "\n").encode(), "text/plain")

    def pull_latest(self) -> str | None:
        """The version LATEST names, fetched into the local folder if it is not there yet."""
        if self.url is None:
            return latest_version(self.local)
        latest = s3store.get(self.s3, self.url.bucket, self.url.key(LATEST))
        version = latest.decode().strip() if latest else None
        if not version:
            return None
        folder = self.local / version
        if not (folder / "meta.json").exists():
            staging = self.local / f".{version}.fetch-{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            base = self.url.key(version) + "/"
            for entry in s3store.list_keys(self.s3, self.url.bucket, base):
                name = entry["Key"][len(base):]
                if name and "/" not in name:
                    self.s3.download_file(self.url.bucket, entry["Key"], str(staging / name))
            if not (staging / "meta.json").exists():
                shutil.rmtree(staging, ignore_errors=True)
                raise FileNotFoundError(f"{self.url.url(LATEST)} names model version {version}, which is not whole under {self.url.url(version)}")
            if folder.exists() and not (folder / "meta.json").exists():
                shutil.rmtree(folder, ignore_errors=True)  # a fetch that was killed part way
            try:
                os.rename(staging, folder)  # fails if another process put it there first: theirs stays
            except OSError:
                shutil.rmtree(staging, ignore_errors=True)
                if not (folder / "meta.json").exists():
                    raise
        if latest_version(self.local) != version:
            publish_latest(self.local, version)
        return version
