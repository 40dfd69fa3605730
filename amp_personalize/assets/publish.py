"""Run a dataset's checks, then publish the partition to the lake, or keep it out.

Shared by every asset so that 'checked before published' is one mechanism, not a habit.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import dagster as dg
import orjson
import polars as pl

from amp_personalize.checks.rules import (
    Check,
    CheckContext,
    blocking_failures,
    evaluate,
)
from amp_personalize.lake.parquet import UNPARTITIONED
from amp_personalize.lake.store import lake as lake_store
from amp_personalize.lake.warehouse import refresh_views
from amp_personalize.resources import AmpResource
from amp_personalize.transforms.weights import weights_frame


def check_specs(asset: str, checks: list[Check]) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(c.name, asset=asset, description=c.description, blocking=c.blocking) for c in checks]


def _text(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, datetime):  # the lake's times are UTC, to the millisecond
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if isinstance(value, list):
        return orjson.dumps(value).decode()
    return str(value)


def _cell(value, max_chars: int) -> str:
    text = _text(value)
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    # A pipe would end the cell, a newline the row; a backslash before either would escape it.
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def markdown_table(df: pl.DataFrame, max_chars: int = 40) -> str:
    """A GitHub-flavoured markdown table of every column and row, as the Dagster UI renders one:
    one header row, no wrapping (a long value is cut at `max_chars`), lists as JSON, times in UTC."""
    lines = [
        "| " + " | ".join(_cell(name, max_chars) for name in df.columns) + " |",
        "|" + "---|" * df.width,
    ]
    for row in df.iter_rows():
        lines.append("| " + " | ".join(_cell(value, max_chars) for value in row) + " |")
    return "\n".join(lines)


def preview(df: pl.DataFrame, rows: int = 5) -> dg.MetadataValue:
    return dg.MetadataValue.md(markdown_table(df.head(rows)))


def check_context(amp: AmpResource) -> CheckContext:
    return CheckContext(weights=weights_frame(amp.weights()), future_skew=timedelta(minutes=amp.future_skew_minutes))


def publish(
    dataset: str,
    df: pl.DataFrame,
    checks: list[Check],
    amp: AmpResource,
    metadata: dict,
    partition: str = UNPARTITIONED,
    file_metadata: dict[str, str] | None = None,
) -> dg.MaterializeResult:
    settings = amp.settings()
    lake = lake_store(settings)
    results = evaluate(checks, df, check_context(amp))
    blocked = blocking_failures(results)
    size = lake.write(df, dataset, partition, file_metadata, rejected=bool(blocked))
    if not blocked:
        # An earlier build's rejected rows are history now: left, they would mark the window
        # as kept out (see raw_events._files_missing) and stop it being rebuilt.
        lake.remove(dataset, partition, rejected=True)
        refresh_views(settings.warehouse_path, lake, (dataset,))
    # A window's rows are its partition's count; the whole table's are the unpartitioned asset's.
    rows = "dagster/row_count" if partition == UNPARTITIONED else "dagster/partition_row_count"
    return dg.MaterializeResult(
        metadata={
            **metadata,
            rows: df.height,
            "published": not blocked,
            "blocked_by": ", ".join(blocked) or "none",
            "dagster/uri": lake.uri(dataset, partition, rejected=bool(blocked)),  # where these rows are: the lake, or _rejected/
            "bytes": size,
            "preview": preview(df),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=check.name,
                passed=outcome.passed,
                severity=dg.AssetCheckSeverity.ERROR if check.blocking else dg.AssetCheckSeverity.WARN,
                metadata=outcome.metadata,
            )
            for check, outcome in results
        ],
    )
