"""Bulk import: the interactions dataset as Personalize's CSV, uploaded to S3, imported, polled.

CSV columns are Personalize's interactions schema: USER_ID, ITEM_ID, TIMESTAMP (epoch seconds),
EVENT_TYPE, EVENT_VALUE, IMPRESSION (item ids joined by '|', at most 1,000 characters) and
RECOMMENDATION_ID. The import job is polled to a final state; a failed or stuck import fails
the run with Personalize's own reason, and nothing is recorded as imported.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from typing import Callable

import polars as pl

from amp_personalize.backends.personalize.validation import validate

MAX_IMPRESSION_CHARS = 1000
CSV_COLUMNS = ["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE", "IMPRESSION", "RECOMMENDATION_ID"]


class ImportFailed(RuntimeError):
    """The dataset import job ended in CREATE FAILED, or did not finish in time."""


def _impression_text(items: pl.Expr) -> pl.Expr:
    """'|'-joined ids, cut back to whole ids within 1,000 characters (whole-column, no loops)."""
    joined = items.list.join("|")
    cut = joined.str.slice(0, MAX_IMPRESSION_CHARS + 1)
    return (
        pl.when(joined.str.len_chars() <= MAX_IMPRESSION_CHARS)
        .then(joined)
        .otherwise(cut.str.replace(r"\|[^|]*$", ""))
    )


def interactions_csv(interactions: pl.DataFrame) -> bytes:
    """Rows of `interactions` (plus an optional `impression` list column) as Personalize CSV."""
    impression = (
        _impression_text(pl.col("impression")) if "impression" in interactions.columns else pl.lit(None, dtype=pl.String)
    )
    return (
        interactions.select(
            pl.col("user_id").alias("USER_ID"),
            pl.col("item_id").alias("ITEM_ID"),
            (pl.col("event_time").dt.epoch("s")).alias("TIMESTAMP"),
            pl.col("event_type").alias("EVENT_TYPE"),
            pl.col("event_value").alias("EVENT_VALUE"),
            impression.alias("IMPRESSION"),
            pl.col("recommendation_id").str.slice(0, 40).alias("RECOMMENDATION_ID"),
        )
        .write_csv()
        .encode()
    )


def import_job_name(dataset: str, now: datetime | None = None) -> str:
    """Unique, and within the API's pattern ([a-zA-Z0-9][a-zA-Z0-9-_]*, 63 characters)."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return re.sub(r"[^a-zA-Z0-9_-]", "-", f"amp-{dataset}-{stamp}")[:63]


def run_import(
    client,
    dataset_arn: str,
    s3_uri: str,
    role_arn: str,
    full: bool,
    job_name: str,
    timeout_seconds: float = 3600,
    poll_seconds: float = 30,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Create the import job (FULL the first time, INCREMENTAL after), wait for ACTIVE."""
    request = {
        "jobName": job_name,
        "datasetArn": dataset_arn,
        "dataSource": {"dataLocation": s3_uri},
        "roleArn": role_arn,
        "importMode": "FULL" if full else "INCREMENTAL",
    }
    validate("personalize", "CreateDatasetImportJob", request)
    arn = client.create_dataset_import_job(**request)["datasetImportJobArn"]
    deadline = clock() + timeout_seconds
    while True:
        job = client.describe_dataset_import_job(datasetImportJobArn=arn)["datasetImportJob"]
        status = job["status"]
        if status == "ACTIVE":
            return arn
        if status == "CREATE FAILED":
            raise ImportFailed(f"import {job_name} ({arn}) failed: {job.get('failureReason', 'no reason given')}")
        if clock() > deadline:
            raise ImportFailed(f"import {job_name} ({arn}) still {status} after {timeout_seconds:.0f} s; check the Personalize console")
        sleep(poll_seconds)
