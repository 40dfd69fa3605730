"""Offline quality: the local recommender against the popularity baseline, metric for metric.

Both are scored by LocalBackend.evaluate, i.e. on Personalize's split (10% of users drawn at
random, the newest 10% of each one's history held out) with Personalize's metric definitions
(amp_personalize.backends.metrics). The baseline is the model's own time-decayed popularity,
minus what each user has already seen. Two datasets:

  movielens  MovieLens-100k as bundled in the recbole 1.2.1 wheel, read where pip installed it
             (never copied into the repo): each rating is one interaction, event_type "rating",
             event_value 1.0 (--ml-value rating: the 1-5 rating), event_time its timestamp.
  demo       the seeded demo generator's Amplitude events (default sizes, fixed end), landed as
             the receiver lands them and run through the pipeline's transforms: read_landing ->
             raw_events -> interactions / impressions. Users' tastes are known there, so the
             share of recommended items on the user's own topics is reported as well.

Target: NDCG@10 at least 2.0x popularity's on each dataset. A miss prints FAIL but is not an
error; the exit status is non-zero only when something breaks (e.g. recbole is not installed).

    .venv/bin/pip install --no-deps recbole==1.2.1    # once; `make bench` does this
    .venv/bin/python benchmarks/quality.py [--dataset both|movielens|demo] [--l2 250]
                                           [--ml-value one|rating] [--weighting log1p|binary]

--l2 and --weighting are for experiments; the defaults are the product's (LocalParams).
--weighting binary makes every positive (user, item) pair 1 instead of log1p(its summed weight).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import orjson
import polars as pl

import amp_personalize.backends.local.backend as backend_module
import amp_personalize.backends.local.model as model_module
from amp_personalize.backends.base import TrainingData
from amp_personalize.backends.local.backend import LocalBackend
from amp_personalize.backends.local.model import LocalParams
from amp_personalize.backends.metrics import METRIC_NAMES
from amp_personalize.demo.generator import DEFAULT_END_MS, generate_events, user_taste
from amp_personalize.events import EventShapeError, extract, load_weights
from amp_personalize.transforms.interactions import impressions, interactions
from amp_personalize.transforms.landing import read_landing
from amp_personalize.transforms.raw_events import raw_events
from amp_personalize.transforms.weights import weights_frame

TARGET_METRIC = "normalized_discounted_cumulative_gain_at_10"
TARGET_RATIO = 2.0
DEMO_SEED = 7  # generate_events' and user_taste's default
UTC_MS = pl.Datetime("ms", "UTC")
ML_INTER = Path("dataset_example", "ml-100k", "ml-100k.inter")


# -- datasets ------------------------------------------------------------------------------


def movielens(value: str) -> tuple[TrainingData, str]:
    """ML-100k from the installed recbole wheel; the package is located, not imported (it needs torch)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("recbole is not installed: run .venv/bin/pip install --no-deps recbole==1.2.1")
    path = Path(next(iter(spec.submodule_search_locations))) / ML_INTER
    if not path.is_file():
        raise SystemExit(f"the installed recbole wheel has no MovieLens-100k data: {path} does not exist")
    ratings = pl.read_csv(
        path, separator="\t", has_header=True,
        new_columns=["user_id", "item_id", "rating", "timestamp"],
        schema_overrides={"user_id": pl.String, "item_id": pl.String, "rating": pl.Float64, "timestamp": pl.Int64},
    )
    frame = ratings.select(
        "user_id",
        "item_id",
        pl.lit("rating").alias("event_type"),
        (pl.col("rating") if value == "rating" else pl.lit(1.0)).alias("event_value"),
        (pl.col("timestamp") * 1000).cast(UTC_MS).alias("event_time"),
    )
    no_impressions = pl.DataFrame(schema={"user_id": pl.String, "item_id": pl.String, "event_time": UTC_MS})
    label = f"MovieLens-100k (recbole {importlib.metadata.version('recbole')} bundled data, event_value={'rating' if value == 'rating' else '1.0'})"
    return TrainingData(frame, no_impressions, frame["event_time"].max()), label


def demo() -> tuple[TrainingData, str]:
    """Generated events -> landing lines -> read_landing -> raw_events -> interactions/impressions."""
    lines = []
    for event in generate_events(end_ms=DEFAULT_END_MS):
        try:
            head = orjson.dumps(extract(event, "event"))[:-1]
        except EventShapeError:  # the receiver rejects these; they never land
            continue
        received = datetime.fromisoformat(event["server_received_time"]).replace(tzinfo=timezone.utc)
        lines.append(head + b',"received_at":%d}\n' % int(received.timestamp() * 1000))
    with tempfile.TemporaryDirectory() as tmp:
        segment = Path(tmp) / "demo.ndjson"
        segment.write_bytes(b"".join(lines))
        landed, malformed = read_landing([segment])
    if malformed:
        raise RuntimeError(f"{malformed} landed lines did not parse")
    raw, _ = raw_events(landed)
    weights = weights_frame(load_weights())
    # As the recommender_model asset's training_data reads them from the lake.
    found = (
        interactions(raw, weights).unique(subset="event_id", keep="first")
        .select("user_id", "item_id", "event_type", "event_value", "event_time")
        .sort("user_id", "event_time", "item_id")
    )
    shown = impressions(raw, weights).select("user_id", "item_id", "event_time")
    as_of = datetime.fromtimestamp(DEFAULT_END_MS / 1000, timezone.utc)
    return TrainingData(found, shown, as_of), f"demo events (generate_events defaults, seed {DEMO_SEED}, via the pipeline transforms)"


# -- evaluation ----------------------------------------------------------------------------


@contextmanager
def observed(binary: bool):
    """Time LocalBackend.evaluate's fit and keep the lists it scores (model's first, then popularity's).

    Wraps the names evaluate looks up in its module, so what is reported is exactly what it scored.
    With `binary`, the fitted matrices' positive part is set to 1 (an experiment, not the product).
    """
    seen: dict = {"fit_s": 0.0, "lists": [], "model": None}
    real_fit, real_metrics, real_build = backend_module.fit, backend_module.offline_metrics, model_module.build_matrices

    def timed_fit(*args, **kwargs):
        start = time.perf_counter()
        seen["model"] = real_fit(*args, **kwargs)
        seen["fit_s"] += time.perf_counter() - start
        return seen["model"]

    def kept_metrics(recommended, relevant, catalog):
        seen["lists"].append(recommended)
        return real_metrics(recommended, relevant, catalog)

    def binary_build(*args, **kwargs):
        matrices = real_build(*args, **kwargs)
        matrices.positive.data[:] = 1.0
        return matrices

    backend_module.fit, backend_module.offline_metrics = timed_fit, kept_metrics
    if binary:
        model_module.build_matrices = binary_build
    try:
        yield seen
    finally:
        backend_module.fit, backend_module.offline_metrics = real_fit, real_metrics
        model_module.build_matrices = real_build


def taste_share(lists: dict[str, list[str]], k: int) -> float:
    taste = user_taste(DEMO_SEED)
    pairs = [(u, i) for u, items in lists.items() for i in items[:k]]
    return sum(taste.likes(u, i) for u, i in pairs) / len(pairs) if pairs else float("nan")


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else ("-" if a == 0 else "inf")


def run(name: str, load, params: LocalParams, binary: bool) -> dict:
    start = time.perf_counter()
    data, label = load()
    prepared = time.perf_counter() - start
    backend = LocalBackend(params)
    with observed(binary) as seen:
        start = time.perf_counter()
        metrics = backend.evaluate(data)
        evaluated = time.perf_counter() - start
    if not metrics:
        raise RuntimeError(f"{name}: nothing to evaluate (no test user with a held-out positive interaction)")
    if len(seen["lists"]) != 2:
        raise RuntimeError(f"{name}: expected evaluate to score 2 lists (model, popularity), saw {len(seen['lists'])}")
    model, popular = metrics["model"], metrics["popularity"]
    frame = data.interactions
    print(f"== {label}")
    print(f"data: {frame.height:,} interactions, {data.impressions.height:,} impressions, "
          f"{frame['user_id'].n_unique():,} users, {frame['item_id'].n_unique():,} items")
    split = metrics["split"]
    print(f"split: {split['test_users']:,} test users, {split['holdout_interactions']:,} held-out interactions, "
          f"{frame.height - split['holdout_interactions']:,} training interactions")
    fitted = seen["model"]
    print(f"model: {fitted.algorithm}, l2={params.l2:g}, weighting={'binary' if binary else 'log1p'}; "
          f"seconds: prepare {prepared:.2f}, fit {seen['fit_s']:.2f}, score {evaluated - seen['fit_s']:.2f}")
    width = max(map(len, METRIC_NAMES))
    print(f"{'metric':<{width}}  {'local model':>11}  {'popularity':>10}  {'ratio':>7}")
    for metric in METRIC_NAMES:
        print(f"{metric:<{width}}  {model[metric]:>11.4f}  {popular[metric]:>10.4f}  {ratio(model[metric], popular[metric]):>7}")
    if name == "demo":
        for k in (10, 25):
            m, p = (taste_share(lists, k) for lists in seen["lists"])
            print(f"{f'taste match @{k} (share on user topics)':<{width}}  {m:>11.4f}  {p:>10.4f}  {ratio(m, p):>7}")
    achieved = model[TARGET_METRIC] / popular[TARGET_METRIC] if popular[TARGET_METRIC] else float("inf")
    verdict = "PASS" if achieved >= TARGET_RATIO else "FAIL"
    print(f"target: NDCG@10 >= {TARGET_RATIO:.1f}x popularity: {model[TARGET_METRIC]:.4f} vs "
          f"{popular[TARGET_METRIC]:.4f} = {achieved:.2f}x  {verdict}")
    print()
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=("both", "movielens", "demo"), default="both")
    parser.add_argument("--l2", type=float, default=LocalParams().l2, help="EASE regularisation (default: LocalParams)")
    parser.add_argument("--ml-value", choices=("one", "rating"), default="one", help="MovieLens event_value")
    parser.add_argument("--weighting", choices=("log1p", "binary"), default="log1p", help="positive matrix values")
    args = parser.parse_args(argv)
    params = replace(LocalParams(), l2=args.l2)
    binary = args.weighting == "binary"
    if args.dataset in ("both", "movielens"):
        run("movielens", lambda: movielens(args.ml_value), params, binary)
    if args.dataset in ("both", "demo"):
        run("demo", demo, params, binary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
