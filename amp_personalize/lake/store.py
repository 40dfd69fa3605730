"""The lake as the assets, the server and the CLI see it: on this machine's disk, or on S3.

One parquet object per (dataset, partition), in the same layout either way: `<lake>/<dataset>/
<partition>.parquet`, and `<lake>/_rejected/<dataset>/...` for data a blocking check kept out.
Every object is written whole (a local temp file renamed into place; on S3 a single PUT), so a
reader sees the old version or the new, never half of either. AMP_LAKE_URL chooses S3.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from amp_personalize.lake import parquet
from amp_personalize.lake.parquet import UNPARTITIONED
from amp_personalize.settings import Settings
from amp_personalize.storage import s3 as s3store

REJECTED = "_rejected"
SUFFIX = ".parquet"


@dataclass(frozen=True)
class Stat:
    modified: float  # epoch seconds
    size: int
    version: str  # changes whenever the object is replaced: inode/size/mtime locally, the ETag on S3


class LocalLake:
    remote = False

    def __init__(self, lake_dir: Path) -> None:
        self.lake_dir = lake_dir

    def __str__(self) -> str:
        return str(self.lake_dir)

    def path(self, dataset: str, partition: str = UNPARTITIONED, rejected: bool = False) -> Path:
        return parquet.rejected_path(self.lake_dir, dataset, partition) if rejected else parquet.partition_path(self.lake_dir, dataset, partition)

    def uri(self, dataset: str, partition: str | None = None, rejected: bool = False) -> str:
        if partition is None:
            return str((self.lake_dir / REJECTED / dataset) if rejected else parquet.table_dir(self.lake_dir, dataset))
        return str(self.path(dataset, partition, rejected))

    def write(self, df: pl.DataFrame, dataset: str, partition: str = UNPARTITIONED, file_metadata: dict[str, str] | None = None,
              rejected: bool = False) -> int:
        return parquet.write_atomic(df, self.path(dataset, partition, rejected), file_metadata)

    def remove(self, dataset: str, partition: str = UNPARTITIONED, rejected: bool = False) -> None:
        self.path(dataset, partition, rejected).unlink(missing_ok=True)

    def partitions(self, dataset: str, rejected: bool = False) -> list[str]:
        folder = (self.lake_dir / REJECTED / dataset) if rejected else parquet.table_dir(self.lake_dir, dataset)
        return sorted(p.stem for p in folder.glob(f"*{SUFFIX}"))

    def stats(self, dataset: str, rejected: bool = False) -> dict[str, Stat]:
        """Every partition's Stat at once."""
        found = {}
        for partition in self.partitions(dataset, rejected):
            stat = self.stat(dataset, partition, rejected)
            if stat is not None:
                found[partition] = stat
        return found

    def stat(self, dataset: str, partition: str = UNPARTITIONED, rejected: bool = False) -> Stat | None:
        try:
            st = self.path(dataset, partition, rejected).stat()
        except FileNotFoundError:
            return None
        return Stat(st.st_mtime, st.st_size, f"{st.st_ino}-{st.st_size}-{st.st_mtime_ns}")

    def footer(self, dataset: str, partition: str = UNPARTITIONED) -> dict[str, str] | None:
        path = self.path(dataset, partition)
        return pl.read_parquet_metadata(path) if path.exists() else None

    def read(self, dataset: str, partition: str = UNPARTITIONED) -> pl.DataFrame | None:
        path = self.path(dataset, partition)
        return pl.read_parquet(path) if path.exists() else None

    def scan(self, dataset: str, schema: dict, partitions: list[str] | None = None) -> pl.LazyFrame:
        names = self.partitions(dataset) if partitions is None else partitions
        if not names:
            return pl.LazyFrame(schema=schema)
        return pl.scan_parquet([self.path(dataset, p) for p in names])

    def glob(self, dataset: str) -> str:
        """Every published partition of a dataset, as duckdb's read_parquet takes it."""
        return str((parquet.table_dir(self.lake_dir, dataset) / f"*{SUFFIX}").resolve())


class S3Lake(s3store.S3Place):
    @property
    def options(self) -> dict[str, str]:
        """polars' options, made at each read: credentials from a role or IRSA expire, and a
        receiver holds its lake for days."""
        return s3store.storage_options()

    def key(self, dataset: str, partition: str = UNPARTITIONED, rejected: bool = False) -> str:
        # Partition keys are window keys (digits, 'T', 'Z') or UNPARTITIONED: never request data.
        return self.url.key(REJECTED, dataset, partition + SUFFIX) if rejected else self.url.key(dataset, partition + SUFFIX)

    def uri(self, dataset: str, partition: str | None = None, rejected: bool = False) -> str:
        if partition is None:
            return self.url.url(REJECTED, dataset) if rejected else self.url.url(dataset)
        return f"s3://{self.url.bucket}/{self.key(dataset, partition, rejected)}"

    def write(self, df: pl.DataFrame, dataset: str, partition: str = UNPARTITIONED, file_metadata: dict[str, str] | None = None,
              rejected: bool = False) -> int:
        buffer = io.BytesIO()
        df.write_parquet(buffer, **parquet.WRITE_OPTIONS, metadata=file_metadata)
        data = buffer.getvalue()
        s3store.put(self.s3, self.url.bucket, self.key(dataset, partition, rejected), data)
        return len(data)

    def remove(self, dataset: str, partition: str = UNPARTITIONED, rejected: bool = False) -> None:
        self.s3.delete_object(Bucket=self.url.bucket, Key=self.key(dataset, partition, rejected))

    def partitions(self, dataset: str, rejected: bool = False) -> list[str]:
        base = (self.url.key(REJECTED, dataset) if rejected else self.url.key(dataset)) + "/"
        keys = (o["Key"][len(base):] for o in s3store.list_keys(self.s3, self.url.bucket, base))
        return sorted(k[: -len(SUFFIX)] for k in keys if k.endswith(SUFFIX) and "/" not in k)

    def stats(self, dataset: str, rejected: bool = False) -> dict[str, Stat]:
        """Every partition's Stat from one listing (LastModified there is whole seconds)."""
        base = (self.url.key(REJECTED, dataset) if rejected else self.url.key(dataset)) + "/"
        found = {}
        for entry in s3store.list_keys(self.s3, self.url.bucket, base):
            name = entry["Key"][len(base):]
            if name.endswith(SUFFIX) and "/" not in name:
                found[name[: -len(SUFFIX)]] = Stat(entry["LastModified"].timestamp(), entry["Size"], entry["ETag"])
        return found

    def stat(self, dataset: str, partition: str = UNPARTITIONED, rejected: bool = False) -> Stat | None:
        head = s3store.head(self.s3, self.url.bucket, self.key(dataset, partition, rejected))
        if head is None:
            return None
        return Stat(head["LastModified"].timestamp(), head["ContentLength"], head["ETag"])

    def footer(self, dataset: str, partition: str = UNPARTITIONED) -> dict[str, str] | None:
        if self.stat(dataset, partition) is None:
            return None
        return pl.read_parquet_metadata(self.uri(dataset, partition), storage_options=self.options)

    def read(self, dataset: str, partition: str = UNPARTITIONED) -> pl.DataFrame | None:
        data = s3store.get(self.s3, self.url.bucket, self.key(dataset, partition))
        return pl.read_parquet(io.BytesIO(data)) if data is not None else None

    def scan(self, dataset: str, schema: dict, partitions: list[str] | None = None) -> pl.LazyFrame:
        names = self.partitions(dataset) if partitions is None else partitions
        if not names:
            return pl.LazyFrame(schema=schema)
        return pl.scan_parquet([self.uri(dataset, p) for p in names], storage_options=self.options)

    def glob(self, dataset: str) -> str:
        return self.url.url(dataset, f"*{SUFFIX}")


Lake = LocalLake | S3Lake


def lake(settings: Settings, s3: Any = None) -> Lake:
    return S3Lake(settings.lake_url, s3) if settings.lake_url else LocalLake(settings.lake_dir)


class LakeIndex:
    """A lake's partitions and their Stats, listed once per dataset and kept for one planning
    pass: deciding which windows are due asks for the same few files of many windows, which on
    S3 was a HEAD each (review: 1,740 for 60 windows)."""

    remote = property(lambda self: self.lake.remote)

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self._stats: dict[tuple[str, bool], dict[str, Stat]] = {}
        self._footers: dict[tuple[str, str], dict[str, str] | None] = {}

    def _of(self, dataset: str, rejected: bool) -> dict[str, Stat]:
        if (dataset, rejected) not in self._stats:
            self._stats[dataset, rejected] = self.lake.stats(dataset, rejected)
        return self._stats[dataset, rejected]

    def partitions(self, dataset: str, rejected: bool = False) -> list[str]:
        return sorted(self._of(dataset, rejected))

    def stats(self, dataset: str, rejected: bool = False) -> dict[str, Stat]:
        return self._of(dataset, rejected)

    def stat(self, dataset: str, partition: str = UNPARTITIONED, rejected: bool = False) -> Stat | None:
        return self._of(dataset, rejected).get(partition)

    def footer(self, dataset: str, partition: str = UNPARTITIONED) -> dict[str, str] | None:
        if (dataset, partition) not in self._footers:
            self._footers[dataset, partition] = self.lake.footer(dataset, partition) if self.stat(dataset, partition) else None
        return self._footers[dataset, partition]
