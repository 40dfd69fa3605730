"""Bulk import: the interactions dataset as Personalize's CSV, uploaded to S3, imported, polled.

CSV columns are Personalize's interactions schema: USER_ID, ITEM_ID, TIMESTAMP (epoch seconds),
EVENT_TYPE, EVENT_VALUE, IMPRESSION (item ids joined by '|', at most 1,000 characters) and
RECOMMENDATION_ID. The import job is polled to a final state; a failed or stuck import fails
the run with Personalize's own reason, and nothing is recorded as imported.
"""

from __future__ import annotations

import polars as pl

from amp_personalize.backends.personalize.jobs import Poll, wait_for
from amp_personalize.backends.personalize.validation import validate
from amp_personalize.transforms import n_shown

MAX_IMPRESSION_CHARS = 1000
CSV_COLUMNS = ["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE", "IMPRESSION", "RECOMMENDATION_ID"]


def _impression_text(items: pl.Expr) -> pl.Expr:
    """'|'-joined ids, cut back to whole ids within 1,000 characters (whole-column, no loops).

    Null entries (landed in place of entries that were not ids) are skipped; no ids is no IMPRESSION.
    """
    joined = items.list.join("|", ignore_nulls=True)
    cut = joined.str.slice(0, MAX_IMPRESSION_CHARS + 1)
    return (
        pl.when(n_shown(items) == 0)
        .then(pl.lit(None, dtype=pl.String))
        .when(joined.str.len_chars() <= MAX_IMPRESSION_CHARS)
        .then(joined)
        .otherwise(cut.str.replace(r"\|[^|]*$", ""))
    )


def interactions_csv(interactions: pl.DataFrame) -> bytes:
    """Rows of `interactions` (plus an optional `items_shown` list column) as Personalize CSV."""
    impression = (
        _impression_text(pl.col("items_shown")) if "items_shown" in interactions.columns else pl.lit(None, dtype=pl.String)
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


def run_import(client, dataset_arn: str, s3_uri: str, role_arn: str, full: bool, job_name: str, poll: Poll) -> str:
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
    wait_for(lambda: client.describe_dataset_import_job(datasetImportJobArn=arn)["datasetImportJob"], f"import {job_name} ({arn})", poll)
    return arn
