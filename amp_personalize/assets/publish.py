"""Run a dataset's checks, then publish the partition to the lake, or keep it out.

Shared by every asset so that 'checked before published' is one mechanism, not a habit.
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
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


def preview(df: pl.DataFrame, rows: int = 5) -> dg.MetadataValue:
    with pl.Config(tbl_formatting="MARKDOWN", tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True, fmt_str_lengths=40, tbl_cols=12):
        return dg.MetadataValue.md(str(df.head(rows)))


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
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "dagster/row_count": df.height,
            "published": not blocked,
            "blocked_by": ", ".join(blocked) or "none",
            "path": dg.MetadataValue.path(lake.uri(dataset, partition, rejected=bool(blocked))),
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
