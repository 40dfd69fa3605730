"""Local recommender at scale: synthetic interactions -> train -> recommendations cache -> similar items.

Generates (numpy + polars, vectorised, seeded) a 90-day history shaped like the interactions
table: by default 50,000 users, 20,000 items and 5,000,000 interactions. Item popularity is
long-tailed (Zipf-like), every item belongs to one of ~item/400 taste clusters and every user
has a favourite cluster (a quarter of them a second one), so the model has something to learn;
about 3% of events are negative (downvote -1.0, hide -1.5, flag -2.5), the rest click 1.0,
download 1.5, upvote/share 2.0, donate/fundraise 3.0. Impressions are skipped unless
--impressions N asks for N of them.

Then, in one process, it times each step the retraining job runs, mirroring LocalBackend.train
and the caching assets, and prints one line per step: wall seconds, CPU seconds (both cores
count, so CPU s above seconds means the step ran in parallel), the process's peak RSS
(ru_maxrss) after it and its RSS now:

  generate        the synthetic TrainingData (sorted like recommender.training_data)
  select          LocalBackend.choose: the selection of the model's settings on time-based
                  validation windows, within its time budget (selection.py)
  evaluate        LocalBackend.evaluate with the chosen settings: Personalize's split, a fit on
                  its train part, scoring the test users, offline metrics for model and popularity
  fit             the final fit on all interactions (and impressions), with the chosen settings
  save            model.save + meta.json + LATEST, as LocalBackend.train does
  load            LocalModel.load, as the recommendations asset does (a fresh process would)
  recommend       25 items for every user (the recommendations cache)
  similar_items   similar_items(None, 20): every item's 20 neighbours (not in the target)

Indented lines under a step break it down by the library functions it calls (timed by wrapping
them in this process only), with the peak RSS when each last returned.

The target: select + evaluate + fit + save + load + recommend (training plus the
recommendations cache) within 5 minutes and peak RSS under 6 GiB on this 2-core machine; and
the selection at most a third of the training (select + evaluate + fit + save). The last line says PASS or
FAIL; like benchmarks/quality.py a miss is not an error (exit status 0). Other work on the
machine inflates the wall seconds, so the load average is printed at the start and the end.

--threshold-sweep instead times EASE's closed form and the sparse top-k cosine against the
number of items (default 1,000..8,000 on a 10,000-user, 1,000,000-interaction sample), with
NDCG@10 on Personalize's split for EASE, ALS and the cosine, to check LocalParams.ease_max_items.

    .venv/bin/python benchmarks/scale.py [--users 50000] [--items 20000] [--interactions 5000000] [--seed 7]
                                         [--impressions 0] [--ease-max-items N] [--no-breakdown]
    .venv/bin/python benchmarks/scale.py --threshold-sweep [--sweep-items 1000,2000,4000,6000,8000]
                                         [--sweep-users 10000] [--sweep-interactions 1000000] [--no-quality]
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import resource
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

from amp_personalize.backends.base import TrainingData
from amp_personalize.backends.local import backend as backend_module
from amp_personalize.backends.local import model as model_module
from amp_personalize.backends.local import selection as selection_module
from amp_personalize.backends.local.backend import LocalBackend
from amp_personalize.backends.local.matrix import build_matrices
from amp_personalize.backends.local.model import LocalModel, LocalParams, fit
from amp_personalize.backends.local.dlae import ease
from amp_personalize.backends.local.similarity import cosine_top_k

TARGET_SECONDS = 300.0
TARGET_RSS_GIB = 6.0
TARGET_SELECTION_SHARE = 1 / 3
NUM_RESULTS = 25
SIMILAR_PER_ITEM = 20
AS_OF = datetime(2025, 6, 1, tzinfo=timezone.utc)
DAYS = 90

# (event_type, event_value, probability): the default weight table's values, ~3% negative.
EVENT_MIX = (
    ("click", 1.0, 0.66),
    ("download", 1.5, 0.13),
    ("upvote", 2.0, 0.09),
    ("share", 2.0, 0.06),
    ("donate", 3.0, 0.02),
    ("fundraise", 3.0, 0.01),
    ("downvote", -1.0, 0.015),
    ("hide", -1.5, 0.01),
    ("flag", -2.5, 0.005),
)


# -- data --------------------------------------------------------------------------------------


def generate(n_users: int, n_items: int, n_interactions: int, seed: int, n_impressions: int = 0) -> TrainingData:
    """Seeded synthetic TrainingData; every user and every item appears at least once."""
    if n_interactions < max(n_users, n_items):
        raise SystemExit("--interactions must be at least max(--users, --items)")
    rng = np.random.default_rng(seed)

    # Items: a Zipf-like popularity over a random ranking, and a taste cluster each.
    n_clusters = int(np.clip(n_items // 400, 4, 100))
    popularity = 1.0 / (rng.permutation(n_items) + 5.0) ** 0.9
    item_cluster = rng.integers(0, n_clusters, n_items)
    by_cluster = np.argsort(item_cluster, kind="stable")  # item indices grouped by cluster
    cluster_of_sorted = item_cluster[by_cluster]
    weights_sorted = popularity[by_cluster]
    # cdf[c-block] runs c < x <= c + 1 within cluster c, so one searchsorted draws from any cluster.
    cum = np.cumsum(weights_sorted)
    starts = np.searchsorted(cluster_of_sorted, np.arange(n_clusters))
    ends = np.append(starts[1:], n_items)
    before = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0.0)
    totals = cum[ends - 1] - before
    cluster_cdf = cluster_of_sorted + (cum - before[cluster_of_sorted]) / totals[cluster_of_sorted]
    global_cdf = np.cumsum(popularity) / popularity.sum()

    # Users: long-tailed activity, a favourite cluster, and for a quarter a second one.
    activity = rng.lognormal(0.0, 1.0, n_users)
    primary = rng.integers(0, n_clusters, n_users)
    secondary = np.where(rng.random(n_users) < 0.25, rng.integers(0, n_clusters, n_users), primary)

    # Every user once, then the rest by activity.
    user = np.concatenate([np.arange(n_users), rng.choice(n_users, n_interactions - n_users, p=activity / activity.sum())])
    rng.shuffle(user)

    # Event types; negatives go to off-taste (globally popular) items, positives mostly to taste.
    probs = np.array([p for _, _, p in EVENT_MIX])
    kind = rng.choice(len(EVENT_MIX), n_interactions, p=probs / probs.sum())
    value = np.array([v for _, v, _ in EVENT_MIX])[kind]
    source = rng.random(n_interactions)  # < .65 favourite cluster, < .80 second cluster, else global
    cluster = np.where(source < 0.65, primary[user], secondary[user])
    u = rng.random(n_interactions)
    from_cluster = by_cluster[np.minimum(np.searchsorted(cluster_cdf, cluster + u), n_items - 1)]
    from_global = np.minimum(np.searchsorted(global_cdf, u), n_items - 1)
    item = np.where((source < 0.80) & (value > 0), from_cluster, from_global)
    item[:n_items] = np.arange(n_items)  # every item once (rows are in random order already)

    now_ms = int(AS_OF.timestamp() * 1000)
    span = DAYS * 86_400_000
    age_ms = rng.integers(0, span, n_interactions)
    event_ms = now_ms - age_ms
    # Sorted like recommender.training_data (user_id, event_time, item_id): zero-padded ids sort
    # as their codes do, and two stable integer argsorts beat polars on strings (and lexsort) ~5x.
    order = np.argsort(item, kind="stable")
    order = order[np.argsort((user * span + (span - 1 - age_ms))[order], kind="stable")]
    user, item, kind, value, event_ms = user[order], item[order], kind[order], value[order], event_ms[order]

    uw, iw = len(str(n_users - 1)), len(str(n_items - 1))  # zero-padded, so ids sort as their codes
    user_ids = pl.Series([f"user_{i:0{uw}d}" for i in range(n_users)], dtype=pl.String)
    item_ids = pl.Series([f"item_{i:0{iw}d}" for i in range(n_items)], dtype=pl.String)
    interactions = pl.DataFrame(
        {
            "user_id": user_ids.gather(user),
            "item_id": item_ids.gather(item),
            "event_type": pl.Series([t for t, _, _ in EVENT_MIX], dtype=pl.String).gather(kind),
            "event_value": value.astype(np.float64),
            "event_time": pl.Series(event_ms).cast(pl.Datetime("ms")).dt.replace_time_zone("UTC"),
        }
    )
    if n_impressions:
        shown_user = rng.choice(n_users, n_impressions, p=activity / activity.sum())
        shown_item = np.minimum(np.searchsorted(global_cdf, rng.random(n_impressions)), n_items - 1)
        impressions = pl.DataFrame(
            {
                "user_id": user_ids.gather(shown_user),
                "item_id": item_ids.gather(shown_item),
                "event_time": pl.Series(now_ms - rng.integers(0, DAYS * 86_400_000, n_impressions))
                .cast(pl.Datetime("ms"))
                .dt.replace_time_zone("UTC"),
            }
        )
    else:
        impressions = pl.DataFrame(schema={"user_id": pl.String, "item_id": pl.String, "event_time": pl.Datetime("ms", "UTC")})
    return TrainingData(interactions, impressions, AS_OF)


# -- measuring ---------------------------------------------------------------------------------


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def current_rss_gib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 1024**3


class Breakdown:
    """Wraps library functions by name in their modules, summing their wall time per step."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.peak: dict[str, float] = {}

    def wrap(self, module, name: str, label: str | None = None) -> None:
        original = getattr(module, name)
        label = label or name

        @functools.wraps(original)
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - started
                self.calls[label] += 1
                self.peak[label] = peak_rss_gib()

        setattr(module, name, timed)

    def wrap_method(self, cls, name: str) -> None:
        self.wrap(cls, name, f"{name}()")

    def take(self) -> list[tuple[str, float, int, float]]:
        out = [(k, v, self.calls[k], self.peak[k]) for k, v in self.seconds.items()]
        self.seconds.clear()
        self.calls.clear()
        self.peak.clear()
        return out


def install_breakdown() -> Breakdown:
    b = Breakdown()
    # What LocalBackend.evaluate calls (looked up in the backend module's namespace).
    for name in ("personalize_split", "relevant_items", "offline_metrics"):
        b.wrap(backend_module, name)
    # What fit() calls (looked up in the model module's namespace).
    for name in ("build_matrices", "cosine_top_k", "autoencoder", "als", "time_decayed_popularity"):
        b.wrap(model_module, name)
    # What the selection calls on its validation windows (its fits run through the model module's).
    for name in ("time_folds", "build_matrices", "time_decayed_popularity"):
        b.wrap(selection_module, name, f"{name} (selection)")
    b.wrap_method(LocalModel, "recommend_rows")
    b.wrap_method(LocalModel, "popular_for_rows")
    return b


class Steps:
    def __init__(self, breakdown: Breakdown | None) -> None:
        self.breakdown = breakdown
        self.seconds: dict[str, float] = {}
        print(f"{'step':<16}{'seconds':>10}{'CPU s':>8}{'peak RSS GiB':>14}{'RSS now GiB':>13}  notes", flush=True)

    def run(self, name: str, fn, note=lambda result: ""):
        gc.collect()
        if self.breakdown:
            self.breakdown.take()
        started, cpu = time.perf_counter(), time.process_time()
        result = fn()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        self.seconds[name] = seconds
        print(f"{name:<16}{seconds:>10.2f}{cpu:>8.1f}{peak_rss_gib():>14.2f}{current_rss_gib():>13.2f}  {note(result)}", flush=True)
        if self.breakdown:
            for label, s, calls, peak in sorted(self.breakdown.take(), key=lambda x: -x[1]):
                print(f"  {label:<24}{s:>10.2f}{'':>8}{peak:>14.2f}{'':>13}  {calls} call{'s' if calls > 1 else ''}", flush=True)
        return result


# -- the run -----------------------------------------------------------------------------------


def scale(args: argparse.Namespace) -> int:
    params = LocalParams() if args.ease_max_items is None else LocalParams(ease_max_items=args.ease_max_items)
    print(
        f"scale: {args.users:,} users, {args.items:,} items, {args.interactions:,} interactions, "
        f"{args.impressions:,} impressions, seed {args.seed}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    print(f"{params}",
        flush=True,
    )
    steps = Steps(install_breakdown() if not args.no_breakdown else None)
    backend = LocalBackend(params)

    data = steps.run(
        "generate",
        lambda: generate(args.users, args.items, args.interactions, args.seed, args.impressions),
        lambda d: (
            f"{d.interactions.height:,} rows, {d.interactions['user_id'].n_unique():,} users, "
            f"{d.interactions['item_id'].n_unique():,} items, "
            f"{(d.interactions['event_value'] < 0).mean():.1%} negative"
        ),
    )

    def ndcg(metrics: dict) -> str:
        if not metrics:
            return "no metrics"
        m, p = metrics["model"], metrics["popularity"]
        key = "normalized_discounted_cumulative_gain_at_10"
        return f"NDCG@10 model {m[key]:.4f} vs popularity {p[key]:.4f}, test users {metrics['split']['test_users']:,}"

    chosen = steps.run(
        "select",
        lambda: backend.choose(data),
        lambda c: f"{c.chosen()['algorithm']} over {c.validation.get('samples', 0):,} (user, window) pairs, "
        f"{sum(t.ndcg is not None and t.fit for t in c.trials)} fits, budget {c.budget_seconds:.0f} s; {c.reason}",
    )
    params = chosen.params
    print(f"  chosen: {chosen.chosen()}", flush=True)
    metrics = steps.run("evaluate", lambda: backend.evaluate(data, params), ndcg)
    model = steps.run(
        "fit",
        lambda: fit(data.interactions, data.impressions, data.as_of, params),
        lambda m: f"{m.algorithm}, {m.info['training_pairs']:,} training pairs",
    )

    with tempfile.TemporaryDirectory(prefix="amp-scale-") as tmp:
        models_dir = Path(tmp)

        def save(model: LocalModel = model) -> Path:
            return backend.publish(model, metrics, data.as_of, models_dir, chosen).path  # as LocalBackend.train does

        directory = steps.run("save", save, lambda d: f"{sum(f.stat().st_size for f in d.iterdir()) / 2**20:,.0f} MiB on disk")
        del model
        backend._loaded.clear()  # drop the in-memory copy, as a new process would
        loaded = steps.run("load", lambda: LocalModel.load(directory))

    users = data.interactions["user_id"].unique().sort().to_list()
    recs = steps.run(
        "recommend",
        lambda: loaded.recommend(users, NUM_RESULTS),
        lambda r: f"{r.height:,} rows for {len(users):,} users, {r['user_id'].n_unique():,} with a list, "
        f"{(r['source'] == 'model').mean():.1%} from the model",
    )
    del recs
    steps.run(
        "similar_items",
        lambda: loaded.similar_items(None, SIMILAR_PER_ITEM),
        lambda r: f"{r.height:,} rows for {r['item_id'].n_unique():,} items",
    )

    counted = ("select", "evaluate", "fit", "save", "load", "recommend")
    total = sum(steps.seconds[s] for s in counted)
    training = sum(steps.seconds[s] for s in ("select", "evaluate", "fit", "save"))
    share = steps.seconds["select"] / training
    peak = peak_rss_gib()
    ok = total <= TARGET_SECONDS and peak < TARGET_RSS_GIB and share <= TARGET_SELECTION_SHARE
    print(
        f"target: {' + '.join(counted)} = {total:.1f} s (limit {TARGET_SECONDS:.0f} s), "
        f"peak RSS {peak:.2f} GiB (limit {TARGET_RSS_GIB:.0f} GiB), selection {steps.seconds['select']:.1f} s = "
        f"{share:.0%} of training {training:.1f} s (limit {TARGET_SELECTION_SHARE:.0%}): {'PASS' if ok else 'FAIL'}"
        f"; load average now {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    return 0


def threshold_sweep(args: argparse.Namespace) -> int:
    sizes = [int(s) for s in args.sweep_items.split(",")]
    print(
        f"threshold sweep: {args.sweep_users:,} users, {args.sweep_interactions:,} interactions, seed {args.seed}; "
        f"current ease_max_items={LocalParams().ease_max_items}; load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    print(
        f"{'items':>7}{'pairs':>11}{'cosine s':>10}{'ease s':>9}{'ease path s':>13}{'B MiB':>8}"
        f"{'peak GiB':>10}{'ndcg ease':>11}{'ndcg als':>10}{'ndcg knn':>10}{'ndcg pop':>10}",
        flush=True,
    )
    for n in sizes:
        data = generate(args.sweep_users, n, args.sweep_interactions, args.seed)
        positive = build_matrices(data.interactions, None).positive
        gc.collect()
        started = time.perf_counter()
        cosine_top_k(positive, LocalParams().neighbours)
        cos_s = time.perf_counter() - started
        gc.collect()
        started = time.perf_counter()
        weights = ease(positive, LocalParams().l2)
        ease_s = time.perf_counter() - started
        dense_mib = weights.nbytes / 2**20
        del weights
        quality = []
        if not args.no_quality:
            for algorithm in ("ease", "als", "item_knn"):  # each forced, at the default settings
                metrics = LocalBackend(LocalParams(algorithm=algorithm, ease_max_items=10**9)).evaluate(data)
                quality.append(metrics["model"]["normalized_discounted_cumulative_gain_at_10"])
            quality.append(metrics["popularity"]["normalized_discounted_cumulative_gain_at_10"])
        q = "".join(f"{x:>10.4f} " for x in quality).rstrip() if quality else ""
        print(
            f"{n:>7,}{positive.nnz:>11,}{cos_s:>10.2f}{ease_s:>9.2f}{cos_s + ease_s:>13.2f}{dense_mib:>8.0f}"
            f"{peak_rss_gib():>10.2f} {q}",
            flush=True,
        )
        del data, positive
    print(
        "ease path = cosine (similar items) + EASE: fit() runs both when items <= ease_max_items, and train() fits twice "
        f"(evaluate, then final); B MiB = the dense EASE weights kept in memory and saved. Load average now {os.getloadavg()[0]:.1f}.",
        flush=True,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=50_000)
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--interactions", type=int, default=5_000_000)
    p.add_argument("--impressions", type=int, default=0, help="impression rows to generate (default none)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--ease-max-items", type=int, default=None, help="override LocalParams.ease_max_items (e.g. to time EASE at scale)")
    p.add_argument("--no-breakdown", action="store_true", help="do not print the per-function lines under each step")
    p.add_argument("--threshold-sweep", action="store_true", help="time EASE vs cosine against the number of items instead")
    p.add_argument("--sweep-items", default="1000,2000,4000,6000,8000")
    p.add_argument("--sweep-users", type=int, default=10_000)
    p.add_argument("--sweep-interactions", type=int, default=1_000_000)
    p.add_argument("--no-quality", action="store_true", help="sweep: skip the NDCG@10 evaluations")
    args = p.parse_args(argv)
    return threshold_sweep(args) if args.threshold_sweep else scale(args)


if __name__ == "__main__":
    sys.exit(main())
