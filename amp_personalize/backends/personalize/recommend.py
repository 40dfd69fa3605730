"""Filling the caches from Personalize: GetRecommendations per user, or one batch inference job.

Real-time calls are billed per request above the campaign's provisioned TPS and throttled past
it, so they go out from a bounded pool under a shared rate limit. Past `batch_users` users a
batch inference job (S3 JSON lines in and out) is cheaper and kinder to the campaign.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import orjson
import polars as pl

from amp_personalize.backends.base import RECOMMENDATIONS_SCHEMA, SIMILAR_ITEMS_SCHEMA
from amp_personalize.backends.personalize.clients import Clients
from amp_personalize.backends.personalize.ids import fit_id, restore
from amp_personalize.backends.personalize.jobs import Poll, job_name, wait_for
from amp_personalize.backends.personalize.push import RateLimiter
from amp_personalize.backends.personalize.validation import validate

SOURCE = "personalize"
# GetRecommendations and batch inference answer at most this many items per user.
MAX_RESULTS = 500


def _ranked(key: str, key_name: str, items: list[dict], target: str = "item_id") -> list[dict]:
    return [
        {key_name: key, "rank": rank, target: item["itemId"], "score": float(item.get("score") or 0.0)}
        for rank, item in enumerate(items, start=1)
    ]


def _fan_out(calls: list[dict], call, tps: float, concurrency: int) -> list:
    limiter = RateLimiter(tps)

    def one(params: dict):
        limiter.wait()
        return call(**params)

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="get-recommendations") as pool:
        return list(pool.map(one, calls))


def recommendations_request(campaign_arn: str, user_id: str, num_results: int, filter_arn: str | None) -> dict:
    """One GetRecommendations request, checked against the API's model."""
    params = {"campaignArn": campaign_arn, "userId": user_id, "numResults": num_results}
    if filter_arn:
        params["filterArn"] = filter_arn
    validate("personalize-runtime", "GetRecommendations", params)
    return params


def realtime(clients: Clients, campaign_arn: str, user_ids: list[str], num_results: int, filter_arn: str | None, tps: float, concurrency: int) -> pl.DataFrame:
    calls = [recommendations_request(campaign_arn, fit_id(user), num_results, filter_arn) for user in user_ids]
    replies = _fan_out(calls, clients.runtime.get_recommendations, tps, concurrency)
    rows = [row for user, reply in zip(user_ids, replies) for row in _ranked(user, "user_id", reply.get("itemList", []))]
    return pl.DataFrame(rows, schema={k: v for k, v in RECOMMENDATIONS_SCHEMA.items() if k != "source"}).with_columns(
        pl.lit(SOURCE).alias("source")
    ).select(list(RECOMMENDATIONS_SCHEMA))


def batch(
    clients: Clients, version_arn: str, user_ids: list[str], num_results: int, filter_arn: str | None, s3_url: str, role_arn: str, poll: Poll
) -> pl.DataFrame:
    """One CreateBatchInferenceJob over every user, polled, its output read back from S3."""
    name = job_name("batch")
    bucket, _, prefix = s3_url.removeprefix("s3://").partition("/")
    base = f"{prefix}/batch/{name}".lstrip("/")
    body = b"".join(orjson.dumps({"userId": fit_id(u)}) + b"\n" for u in user_ids)
    clients.s3.put_object(Bucket=bucket, Key=f"{base}/input.json", Body=body)
    request = {
        "jobName": name,
        "solutionVersionArn": version_arn,
        "numResults": num_results,
        "jobInput": {"s3DataSource": {"path": f"s3://{bucket}/{base}/input.json"}},
        "jobOutput": {"s3DataDestination": {"path": f"s3://{bucket}/{base}/output/"}},
        "roleArn": role_arn,
    }
    if filter_arn:
        request["filterArn"] = filter_arn
    validate("personalize", "CreateBatchInferenceJob", request)
    arn = clients.personalize.create_batch_inference_job(**request)["batchInferenceJobArn"]
    wait_for(lambda: clients.personalize.describe_batch_inference_job(batchInferenceJobArn=arn)["batchInferenceJob"], f"batch inference {name} ({arn})", poll)
    out = clients.s3.get_object(Bucket=bucket, Key=f"{base}/output/input.json.out")["Body"].read()
    lines = pl.read_ndjson(
        io.BytesIO(out),
        schema={
            "input": pl.Struct({"userId": pl.String}),
            "output": pl.Struct({"recommendedItems": pl.List(pl.String), "scores": pl.List(pl.Float64)}),
            "error": pl.String,
        },
    )
    return (
        lines.filter(pl.col("error").is_null())
        .select(
            pl.col("input").struct.field("userId").alias("user_id"),
            pl.col("output").struct.field("recommendedItems").alias("item_id"),
            pl.col("output").struct.field("scores").alias("score"),
        )
        .with_columns(pl.int_ranges(1, pl.col("item_id").list.len() + 1, dtype=pl.Int32).alias("rank"))
        .explode("item_id", "score", "rank")
        .filter(pl.col("item_id").is_not_null())
        .with_columns(pl.lit(SOURCE).alias("source"))
        .select(list(RECOMMENDATIONS_SCHEMA))
        .cast(RECOMMENDATIONS_SCHEMA)
        .pipe(restore, "user_id", user_ids)
    )


def similar(clients: Clients, sims_campaign_arn: str, item_ids: list[str], num_results: int, tps: float, concurrency: int) -> pl.DataFrame:
    """Similar items from a SIMS / Similar-Items campaign, one GetRecommendations per item."""
    calls = [{"campaignArn": sims_campaign_arn, "itemId": fit_id(item), "numResults": num_results} for item in item_ids]
    replies = _fan_out(calls, clients.runtime.get_recommendations, tps, concurrency)
    rows = [
        row
        for item, reply in zip(item_ids, replies)
        for row in _ranked(item, "item_id", reply.get("itemList", []), target="similar_item_id")
    ]
    return pl.DataFrame(rows, schema=SIMILAR_ITEMS_SCHEMA)
