"""recommender_model, recommendations, similar_items: training and the caches an app reads."""

import json
import time
import zipfile
from datetime import datetime, timedelta, timezone

import dagster as dg
import polars as pl

from amp_personalize.assets.partitions import reads_every_window
from amp_personalize.assets.publish import check_specs, publish
from amp_personalize.assets.selection_report import selection_metadata, served
from amp_personalize.assets.tables import CODE_VERSION, OWNERS, table_metadata
from amp_personalize.backends.base import TrainedModel, TrainingData
from amp_personalize.backends.personalize.jobs import JobFailed
from amp_personalize.backends.personalize.ledger import LedgerMismatch
from amp_personalize.backends.personalize.resource import PersonalizeResource
from amp_personalize.backends.personalize.validation import RequestInvalid
from amp_personalize.backends.versions import latest_version, load_version
from amp_personalize.backends.vetoes import fill_empty_lists, recommend_without_vetoed
from amp_personalize.checks.recommendations import (
    RECOMMENDATIONS_DECLARED,
    SIMILAR_ITEMS,
    recommendation_checks,
)
from amp_personalize.backends.model_store import ModelStore
from amp_personalize.lake.store import lake as lake_store
from amp_personalize.resources import AmpResource
from amp_personalize.serving.cache import MODEL_VERSION_KEY, NOTHING_LEFT_KEY
from amp_personalize.settings import SettingsError
from amp_personalize.transforms import UTC_MS
from amp_personalize.transforms.interactions import (
    IMPRESSIONS_SCHEMA,
    INTERACTIONS_SCHEMA,
)


def training_data(amp: AmpResource, as_of: datetime) -> TrainingData:
    settings = amp.settings()
    since = pl.lit(as_of - timedelta(days=settings.history_days)).cast(UTC_MS)
    interactions = (
        lake_store(settings).scan("interactions", INTERACTIONS_SCHEMA)
        .filter(pl.col("event_time") >= since)
        .unique(subset="event_id", keep="first")
        .select("event_id", "user_id", "item_id", "event_type", "event_value", "event_time", "recommendation_id")
        .sort("user_id", "event_time", "item_id")
        .collect()
    )
    impressions = (
        lake_store(settings).scan("impressions", IMPRESSIONS_SCHEMA)
        .filter(pl.col("event_time") >= since)
        .select("event_id", "user_id", "item_id", "position", "event_time")
        .collect()
    )
    return TrainingData(interactions, impressions, as_of)


def metrics_table(metrics: dict) -> dg.MetadataValue:
    """Model against popularity; with Personalize, the local model on the same data beside it."""
    model, popularity, local = metrics.get("model", {}), metrics.get("popularity", {}), metrics.get("local")
    nan = float("nan")
    head = "| metric | model | popularity | ratio |" + (" local model |" if local is not None else "")
    lines = [head, "|---|---|---|---|" + ("---|" if local is not None else "")]
    for name in model:
        ratio = model[name] / popularity[name] if popularity.get(name) else nan
        row = f"| {name} | {model[name]:.4f} | {popularity.get(name, nan):.4f} | {ratio:.2f} |"
        lines.append(row + (f" {local.get(name, nan):.4f} |" if local is not None else ""))
    return dg.MetadataValue.md("\n".join(lines))


@dg.asset(
    deps=[reads_every_window("interactions"), reads_every_window("impressions")],
    check_specs=[
        dg.AssetCheckSpec("enough_training_data", asset="recommender_model", blocking=True,
                          description="Enough history before training starts: the local backend wants 10 interactions, 2 users and 2 items; "
                                      "Personalize refuses fewer than 1,000 positive interactions or 25 users with at least 2."),
        dg.AssetCheckSpec("beats_popularity", asset="recommender_model",
                          description="The model beat popularity on its selection's validation split (else the popular list is "
                                      "served in its place) and NDCG@10 on Personalize's split (a warning: tiny data is noisy)."),
    ],
    group_name="recommendations",
    kinds={"numpy", "scipy"},
    owners=OWNERS,
    code_version=CODE_VERSION,
)
def recommender_model(context: dg.AssetExecutionContext, amp: AmpResource, personalize: PersonalizeResource) -> dg.MaterializeResult:
    """A versioned model under data/models/, trained on the history window, with offline metrics."""
    settings = amp.settings()
    data = training_data(amp, datetime.now(timezone.utc))
    backend = amp.recommender(personalize)
    counts = backend.minimums(data.interactions)
    enough = bool(counts.pop("enough"))
    if not enough:
        return dg.MaterializeResult(
            metadata={**counts, "trained": False},
            check_results=[
                dg.AssetCheckResult(check_name="enough_training_data", passed=False, metadata=counts),
                dg.AssetCheckResult(check_name="beats_popularity", passed=False, severity=dg.AssetCheckSeverity.WARN, metadata={"reason": "not trained"}),
            ],
        )
    started = time.perf_counter()
    try:
        trained = backend.train(data, settings.models_dir)
    except (JobFailed, LedgerMismatch, RequestInvalid, SettingsError) as failure:  # a clear reason, not a traceback
        raise dg.Failure(description=f"training on {backend.name} failed: {failure}") from None
    ModelStore(settings).push(trained.version)  # with the lake on S3, for every host
    seconds = time.perf_counter() - started
    model_ndcg = trained.metrics.get("model", {}).get("normalized_discounted_cumulative_gain_at_10", 0.0)
    pop_ndcg = trained.metrics.get("popularity", {}).get("normalized_discounted_cumulative_gain_at_10", 0.0)
    model_served, why = served(trained.info)
    return dg.MaterializeResult(
        metadata={
            **counts,
            "trained": True,
            "version": trained.version,
            "backend": trained.backend,
            "algorithm": str(trained.info.get("algorithm")),
            "train_seconds": round(seconds, 2),
            "ndcg_at_10": model_ndcg,
            "ndcg_at_10_popularity": pop_ndcg,
            # Each metric on its own too, so each plots across model versions.
            **{name: float(value) for name, value in trained.metrics.get("model", {}).items()},
            "offline_metrics": metrics_table(trained.metrics),
            "dagster/uri": str(trained.path.resolve()),
            **selection_metadata(trained.info),
        },
        check_results=[
            dg.AssetCheckResult(check_name="enough_training_data", passed=True, metadata=counts),
            dg.AssetCheckResult(
                check_name="beats_popularity",
                passed=bool(model_served and model_ndcg > pop_ndcg),
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"ndcg_at_10": model_ndcg, "ndcg_at_10_popularity": pop_ndcg, **trained.metrics.get("split", {}),
                          **({"reason": why} if why else {})},
            ),
        ],
    )


def latest_model(amp: AmpResource, backend) -> TrainedModel:
    settings = amp.settings()
    version = ModelStore(settings).pull_latest()  # from S3 with AMP_LAKE_URL: trained on any host
    if version is None:
        raise dg.Failure("no trained model yet: materialize recommender_model (or run `amp-personalize train`)")
    path = settings.models_dir / version
    try:
        trained_by = load_version(path).backend
        if trained_by != backend.name:
            raise dg.Failure(f"the latest model ({version}) was trained by the {trained_by} backend, not {backend.name}: retrain first")
        return backend.load(path)
    # QA: a hand-edited or dangling LATEST gave a bare FileNotFoundError.
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as error:
        raise dg.Failure(
            f"{settings.models_dir / 'LATEST'} names model version {version!r}, which cannot be loaded "
            f"({type(error).__name__}: {error}): run `amp-personalize train` for a new one"
        ) from None


@dg.asset(
    deps=["recommender_model"],
    check_specs=check_specs("recommendations", RECOMMENDATIONS_DECLARED),
    group_name="recommendations",
    kinds={"polars", "parquet", "duckdb"},
    owners=OWNERS,
    code_version=CODE_VERSION,
    metadata=table_metadata("recommendations"),
)
def recommendations(context: dg.AssetExecutionContext, amp: AmpResource, personalize: PersonalizeResource) -> dg.MaterializeResult:
    """Top-N items per user active in the period: the cache the app reads (HTTP or the lake)."""
    settings = amp.settings()
    backend = amp.recommender(personalize)
    model = latest_model(amp, backend)
    now = datetime.now(timezone.utc)
    interactions = lake_store(settings).scan("interactions", INTERACTIONS_SCHEMA)
    active = (
        interactions.filter(pl.col("event_time") >= pl.lit(now - timedelta(days=settings.active_days)).cast(UTC_MS))
        .select("user_id").unique().sort("user_id").collect()["user_id"]
    )
    vetoed = interactions.filter(pl.col("event_value") < 0).select("user_id", "item_id").unique().collect()
    # A user without a list gets the popular one, which may hold an item they vetoed: so everyone
    # who ever vetoed an item gets a list of their own, however long ago they were active.
    vetoing = vetoed.select("user_id").unique().filter(~pl.col("user_id").is_in(active.implode()))["user_id"]
    users = pl.concat([active, vetoing]).sort()  # not Series.append: it would grow `active` in place
    recs = recommend_without_vetoed(backend, model, users.to_list(), settings.num_results, vetoed)
    history = interactions.filter(pl.col("event_time") >= pl.lit(now - timedelta(days=settings.history_days)).cast(UTC_MS))
    recs, nothing_left = fill_empty_lists(
        backend, model, users.to_list(), recs, settings.num_results, vetoed, history, settings.exclude_seen
    )
    recs = recs.with_columns(pl.lit(model.version).alias("model_version"), pl.lit(now).cast(UTC_MS).alias("generated_at"))
    result = publish(
        "recommendations",
        recs,
        recommendation_checks(active, settings.num_results, vetoed, nothing_left),
        amp,
        # The server answers a user without a list with the popular one: these must get none.
        file_metadata={NOTHING_LEFT_KEY: json.dumps(nothing_left), MODEL_VERSION_KEY: model.version},
        metadata={
            "model_version": model.version,
            "active_users": active.len(),
            "inactive_users_with_vetoes": vetoing.len(),
            "users_with_nothing_left": len(nothing_left),
            "by_source": dg.MetadataValue.json(dict(recs.group_by("source").len().sort("source").iter_rows())) if recs.height else {},
            "num_results": settings.num_results,
            "active_days": settings.active_days,
        },
    )
    # The fallback list the server answers unknown users with moves only with the lists it
    # backs: a rejected model must not leave a new fallback beside the old recommendations.
    if result.metadata["published"]:
        popular = backend.popular_items(model, settings.num_results)
        publish("popular_items", popular, [], amp, metadata={"model_version": model.version})
    return result


@dg.asset(
    deps=["recommender_model"],
    check_specs=check_specs("similar_items", SIMILAR_ITEMS),
    group_name="recommendations",
    kinds={"polars", "parquet", "duckdb"},
    owners=OWNERS,
    code_version=CODE_VERSION,
    metadata=table_metadata("similar_items"),
)
def similar_items(context: dg.AssetExecutionContext, amp: AmpResource, personalize: PersonalizeResource) -> dg.MaterializeResult:
    """The nearest items to each item: co-occurrence cosine locally, the SIMS campaign on Personalize."""
    backend = amp.recommender(personalize)
    model = latest_model(amp, backend)
    # As many as a recommendation list: 20 were cached while num_results defaults to 25 (QA).
    per_item = amp.settings().num_results
    df = backend.similar_items(model, None, per_item).with_columns(pl.lit(model.version).alias("model_version"))
    return publish(
        "similar_items",
        df,
        SIMILAR_ITEMS,
        amp,
        metadata={"model_version": model.version, "items": df["item_id"].n_unique(), "per_item": per_item},
    )
