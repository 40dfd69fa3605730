"""Writing and reading lake tables: one parquet file per partition, replaced atomically.

A reader sees the old file or the new one, never half of either; a run killed mid-write leaves
only a temp file, which the next write of that partition removes.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import polars as pl

from amp_personalize.landing.segments import ensure_dir, fsync_dir, fsync_file
from amp_personalize.pids import alive

UNPARTITIONED = "all"
# Fixed settings (no statistics that vary, one row group order) keep rebuilds byte-identical.
WRITE_OPTIONS = {"compression": "zstd", "compression_level": 1, "statistics": True, "row_group_size": 1_048_576}


def table_dir(lake_dir: Path, dataset: str) -> Path:
    return lake_dir / dataset


def partition_path(lake_dir: Path, dataset: str, partition: str = UNPARTITIONED) -> Path:
    # Partition keys are window keys (digits, 'T', 'Z') or UNPARTITIONED: never request data.
    return lake_dir / dataset / f"{partition}.parquet"


def rejected_path(lake_dir: Path, dataset: str, partition: str = UNPARTITIONED) -> Path:
    """Where data that failed a blocking check goes: kept for inspection, out of every glob."""
    return lake_dir / "_rejected" / dataset / f"{partition}.parquet"


def write_atomic(df: pl.DataFrame, path: Path, file_metadata: dict[str, str] | None = None) -> int:
    """Write df to path via temp file + fsync + rename; returns the file size.

    `file_metadata` goes into the parquet footer's key-value metadata (what the file was built from).
    """
    ensure_dir(path.parent)
    _remove_dead_writers_temp_files(path)
    tmp = path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")
    df.write_parquet(tmp, **WRITE_OPTIONS, metadata=file_metadata)
    fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path.stat().st_size


def _remove_dead_writers_temp_files(path: Path) -> None:
    """A writer killed mid-write leaves its temp file (named by host and pid) behind: once the
    pid is gone nobody will finish or rename it, and each could be as large as the partition.
    Only this host's: a pid says nothing about another host sharing the lake."""
    for tmp in path.parent.glob(f".{path.name}.tmp-{socket.gethostname()}-*"):
        pid = tmp.name.rsplit("-", 1)[1]
        if pid.isdigit() and not alive(int(pid)):
            tmp.unlink(missing_ok=True)


def published(lake_dir: Path, dataset: str) -> list[Path]:
    return sorted(table_dir(lake_dir, dataset).glob("*.parquet"))


def read_partition(lake_dir: Path, dataset: str, partition: str, schema: dict) -> pl.DataFrame:
    path = partition_path(lake_dir, dataset, partition)
    if not path.exists():
        return pl.DataFrame(schema=schema)
    return pl.read_parquet(path)


def scan_table(lake_dir: Path, dataset: str, schema: dict) -> pl.LazyFrame:
    paths = published(lake_dir, dataset)
    if not paths:
        return pl.LazyFrame(schema=schema)
    return pl.scan_parquet(paths)
