"""Choosing the local model's configuration at every training, on a validation split of its data.

Users cannot tune a recommender by hand, and the right settings differ between datasets: the
algorithm and its regularization, how event weights become training values, whether recent
history should weigh more, how far a veto pulls its neighbours down, what impressions cost.
So each training tries them on its own data, within a time budget, the way Personalize tunes
its hyperparameters at training time.

The validation split follows how the model is used: it predicts what users do after the
training data ends. Everything before a cutoff time (the newest `VALIDATION_FRACTION` of
interactions start there) trains; a user's positive interactions in the window after it are the
targets. Where that window has few users, earlier windows of the same width are added, each
trained on what came before it (time_folds). A split that holds out each user's own newest
events instead flatters recency weighting, because those targets sit closer in time to the
user's history than real future events do. Coverage follows the evaluation split's rules: a
validation user has at least one interaction before the cutoff (something to recommend from)
and one after (something to hit).

The search is coordinate-wise: one setting at a time, in order of how much it mattered on the
public datasets measured (docs/recommender.md). Within a step the default (simplest) value is
kept unless another wins by more than the standard error of the per-user differences (the
one-standard-error rule): validation sets are small, and a noisy win must not add a feature or
move a setting. A model that does not beat popularity on validation is not served.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime

import numpy as np
import polars as pl
import scipy.sparse as sp

from amp_personalize.backends.local.matrix import WEIGHTINGS, Matrices, build_matrices, recency_weighted, time_decayed_popularity
from amp_personalize.backends.local.model import LocalModel, LocalParams, fit_matrices
from amp_personalize.backends.metrics import ndcg

K = 10  # NDCG@10: the issue's, Personalize's and the benchmark's headline metric
VALIDATION_FRACTION = 0.1
MAX_VALIDATION_USERS = 3000  # more users narrow the standard error but cost scoring time
MIN_VALIDATION_USERS = 5  # below this not even the default is scored: it is served as it is
# Below this many (user, window) pairs a difference between settings is noise (a standard error
# of 0.05-0.07 NDCG@10 at 11 users, measured on MovieLens latest-small): only the default is
# scored, against popularity.
MIN_DECISION_SAMPLES = 50
MIN_VALIDATION_SAMPLES = 500  # (user, window) pairs wanted before no earlier window is added
MAX_FOLDS = 5  # windows at most: the newest half of the history
# Above this many items a dense fit takes seconds to tens of seconds (items^3), once per window
# and candidate: only the newest window is used, and ALS is tried beside the dense models.
DENSE_FOLD_ITEMS = 4000
MIN_BUDGET_SECONDS = 10.0
# Up to DENSE_FOLD_ITEMS a dense fit takes 1-3 s here, and a fixed 10 s floor stopped the
# selection after two of the algorithm candidates on MovieLens-1M (6,040 users, 3,706 items, 2
# validation windows); with only DLAE l2=100 scored it lost to popularity, and the popular list
# was served (1.08x popularity on the benchmark's time split, where tuned DLAE scored 1.24x). The
# same happened with a 30 s floor when another job shared the 2 cores and the first candidate
# took 14 s. So where fits are cheap the budget is what every algorithm and weighting candidate
# would take at the first candidate's pace, plus the scoring-only steps (at least
# CHEAP_FIT_BUDGET_SECONDS, at most CHEAP_FIT_BUDGET_CAP): the whole grid is scored before
# popularity can be preferred. Below DENSE_FOLD_ITEMS the selection may then take several times
# the training's own fits (at 1-3 s a fit, seconds to a minute); "a third of a training" holds
# above it, where the scale benchmark's size (20,000 items) keeps the 10 s floor.
CHEAP_FIT_BUDGET_SECONDS = 30.0
CHEAP_FIT_BUDGET_CAP = 240.0
# The budget beyond the first fit, as a multiple of that fit's seconds: training after the
# selection fits twice more (the evaluation split, then all data, plus the similar items), so
# this keeps the selection within a third of a training (benchmarks/scale.py measures it: at
# 1.0, or with a 20 s floor, it took 35-38% at 20,000 items).
BUDGET_PER_FIT = 0.5
# Scoring-only candidates (recency, negative pull, impression penalty) cost a fraction of a fit:
# a fit is not started if it would leave less than this many scorings' time in the budget.
SCORING_RESERVE = 10

# The values tried in each step. The first is the default: a step keeps it unless another
# value wins by more than one standard error (so on data too small or too noisy to tell, the
# model is the default one). Defaults: features off (recency, negative pull, impression
# penalty); DLAE with Steck's dropout p = 0.25 and l2 = 100, ALS with 64 factors. Those
# algorithm defaults were read off MovieLens-100k and latest-small measurements
# (docs/recommender.md says which), so on those two datasets they are not untuned. DLAE p = 0.75
# was added after MovieLens-1M, where tuned DLAE won with it on both test splits. DLAE's grid is
# the whole cross of l2 (30, 100, 300) and p (0.25, 0.5, 0.75), as a tuner's would be; the corners
# come after EASE, so that a budget cut drops them first.
DENSE_FITS = (  # (algorithm, l2, dropout)
    ("dlae", 100.0, 0.25), ("dlae", 30.0, 0.25), ("dlae", 300.0, 0.25), ("dlae", 100.0, 0.5), ("dlae", 100.0, 0.75),
    ("ease", 300.0, 0.0), ("ease", 1000.0, 0.0),
    ("dlae", 300.0, 0.5), ("dlae", 300.0, 0.75), ("dlae", 30.0, 0.5), ("dlae", 30.0, 0.75),
)
LARGE_FITS = (  # (algorithm, ALS regularization, ALS alpha); the first is LocalParams' default
    ("als", 1.0, 1.0), ("als", 0.1, 1.0), ("als", 10.0, 1.0), ("als", 1.0, 10.0), ("item_knn", 0.0, 0.0),
)
HALF_LIVES = (0.0, 40.0, 20.0, 10.0, 5.0)
NEGATIVE_PULLS = (0.0, 0.5, 1.0)
IMPRESSION_PENALTIES = (0.0, 0.02, 0.05)


@dataclass(frozen=True)
class ValidationSplit:
    train: pl.DataFrame
    impressions: pl.DataFrame | None
    cutoff: datetime
    users: np.ndarray  # validation user ids
    targets: pl.DataFrame  # user_id, item_id: positives from the cutoff on


@dataclass
class Trial:
    step: str
    value: str
    params: LocalParams
    complexity: int
    ndcg: np.ndarray | None = None  # per validation user
    seconds: float = 0.0
    skipped: str = ""
    fit: bool = False

    def mean(self) -> float:
        return float(self.ndcg.mean()) if self.ndcg is not None else float("nan")


@dataclass
class Selection:
    params: LocalParams
    serve_model: bool
    reason: str
    trials: list[Trial] = field(default_factory=list)
    popularity_ndcg: float = float("nan")
    validation: dict = field(default_factory=dict)
    seconds: float = 0.0
    budget_seconds: float = 0.0

    def chosen(self) -> dict:
        """The selected settings (what the steps can change) for metadata and meta.json."""
        p = asdict(self.params)
        keys = ("algorithm", "l2", "dropout", "factors", "als_regularization", "als_alpha", "weighting",
                "history_half_life", "negative_pull", "impression_penalty")
        return {k: p[k] for k in keys}

    def table(self) -> list[dict]:
        return [
            {"step": t.step, "value": t.value, "ndcg_at_10": None if t.ndcg is None else round(t.mean(), 5),
             "standard_error": None if t.ndcg is None else round(_se(t.ndcg), 5),
             "seconds": round(t.seconds, 2), "skipped": t.skipped}
            for t in self.trials
        ]

    def summary(self) -> dict:
        return {
            "chosen": self.chosen(), "serve_model": self.serve_model, "reason": self.reason,
            "validation": self.validation, "popularity_ndcg_at_10": round(self.popularity_ndcg, 5),
            "seconds": round(self.seconds, 2), "budget_seconds": round(self.budget_seconds, 2), "table": self.table(),
        }


def time_split(
    interactions: pl.DataFrame, impressions: pl.DataFrame | None, exclude_seen: bool = True,
    start: float = 1 - VALIDATION_FRACTION, stop: float = 1.0, max_users: int | None = None, seed: int = 42,
) -> ValidationSplit | None:
    """Train before a cutoff (the `start` quantile of event times), targets from it up to the
    `stop` quantile; None when the data has no usable future there. At most `max_users`
    (default MAX_VALIDATION_USERS) users, drawn with `seed`."""
    max_users = MAX_VALIDATION_USERS if max_users is None else max_users
    times = interactions["event_time"].sort()
    n = times.len()
    if n < 2:
        return None
    cutoff, end = times[min(n - 1, int(n * start))], times[min(n - 1, int(n * stop))] if stop < 1 else None
    dtype = interactions.schema["event_time"]
    before = pl.col("event_time") < pl.lit(cutoff).cast(dtype)
    train = interactions.filter(before)
    later = interactions.filter(~before if end is None else ~before & (pl.col("event_time") < pl.lit(end).cast(dtype)))
    if train.is_empty() or later.is_empty():
        return None
    known = train.select("user_id").unique()
    catalog = train.select("item_id").unique()
    targets = (
        later.filter(pl.col("event_value") > 0).select("user_id", "item_id").unique()
        .join(known, on="user_id", how="semi").join(catalog, on="item_id", how="semi")
    )
    if exclude_seen:
        targets = targets.join(train.filter(pl.col("event_value") > 0).select("user_id", "item_id").unique(), on=["user_id", "item_id"], how="anti")
    # A veto is kept out of every list, so an item vetoed before the cutoff cannot be a hit.
    targets = targets.join(train.filter(pl.col("event_value") < 0).select("user_id", "item_id").unique(), on=["user_id", "item_id"], how="anti")
    users = targets["user_id"].unique().sort().to_numpy()
    if len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    targets = targets.filter(pl.col("user_id").is_in(pl.Series(users, dtype=pl.String).implode()))
    shown = None
    if impressions is not None and impressions.height:
        shown = impressions.filter(pl.col("event_time") < pl.lit(cutoff).cast(impressions.schema["event_time"]))
    return ValidationSplit(train, shown, cutoff, users, targets)


def time_folds(
    interactions: pl.DataFrame, impressions: pl.DataFrame | None, exclude_seen: bool = True, seed: int = 42,
    min_samples: int | None = None, max_folds: int | None = None,
) -> list[ValidationSplit]:
    """The newest window of VALIDATION_FRACTION of the events first, then earlier windows of the
    same width (each trained on everything before it) while fewer than `min_samples` (user,
    window) pairs have been found: where few users return across a cutoff (MovieLens users rate
    in one sitting), one window is too noisy to choose by, and earlier cutoffs are still futures."""
    min_samples = MIN_VALIDATION_SAMPLES if min_samples is None else min_samples
    max_folds = MAX_FOLDS if max_folds is None else max_folds
    folds: list[ValidationSplit] = []
    for k in range(max_folds):
        stop = 1.0 - k * VALIDATION_FRACTION
        fold = time_split(interactions, impressions, exclude_seen, stop - VALIDATION_FRACTION, stop, seed=seed + k)
        if fold is not None and len(fold.users):
            folds.append(fold)
        if sum(len(f.users) for f in folds) >= min_samples:
            break
    return folds


def ndcg_at_k(ranked: np.ndarray, relevant: sp.csr_matrix, k: int = K) -> np.ndarray:
    """Per-user NDCG@k of ranked item columns (users x >= k) against a users x items 0/1 matrix."""
    top = ranked[:, :k]
    rows = np.repeat(np.arange(top.shape[0]), top.shape[1])
    hits = np.asarray(relevant[rows, top.ravel()]).reshape(top.shape) > 0
    return ndcg(hits, np.diff(relevant.indptr), k)  # the offline metrics' NDCG


def _se(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else float("inf")


class _Fold:
    """One validation window: its training part's matrices, its users' rows and targets."""

    def __init__(self, split: ValidationSplit, base: LocalParams, clock: Callable[[], float] = time.perf_counter):
        self.split, self.base, self.clock = split, base, clock
        self.matrices: dict[str, Matrices] = {}
        self.models: dict[tuple, LocalModel] = {}

    def matrices_for(self, weighting: str) -> Matrices:
        if weighting not in self.matrices:
            m = build_matrices(self.split.train, self.split.impressions, 0.0, weighting)
            self.matrices[weighting] = m
            if not hasattr(self, "rows"):
                self.popularity = time_decayed_popularity(self.split.train, m.items, self.split.cutoff, self.base.popularity_half_life_days)
                index = {u: i for i, u in enumerate(m.users)}
                self.rows = np.array([index[u] for u in self.split.users], dtype=np.int64)
                codes = self.split.targets.select(
                    pl.col("user_id").cast(pl.Enum(pl.Series(self.split.users, dtype=pl.String))).to_physical().cast(pl.Int64).alias("r"),
                    pl.col("item_id").cast(pl.Enum(pl.Series(m.items, dtype=pl.String))).to_physical().cast(pl.Int64).alias("c"),
                )
                self.relevant = sp.csr_matrix(
                    (np.ones(codes.height, np.float32), (codes["r"].to_numpy(), codes["c"].to_numpy())),
                    shape=(len(self.split.users), len(m.items)),
                )
        return self.matrices[weighting]

    def fitted(self, params: LocalParams) -> LocalModel:
        """The weights depend on algorithm, regularization and weighting only: refit just for those."""
        key = _fit_key(params)
        if key not in self.models:
            # ALS candidates are compared after half the iterations, which keeps the selection
            # within its share of a training at 20,000 items; the chosen model gets all of them.
            fitting = replace(params, als_iterations=max(4, params.als_iterations // 2)) if params.algorithm == "als" else params
            model = fit_matrices(self.matrices_for(params.weighting), fitting, with_similar=False)
            model.popularity = self.popularity
            # The two latest fits stay: a step compares against the one before it (a dense
            # model is 64 MB at 4,000 items).
            self.models = {**dict(list(self.models.items())[-1:]), key: model}
        return self.models[key]

    def score(self, params: LocalParams) -> np.ndarray:
        model = self.fitted(params)
        started = self.clock()
        matrices = model.matrices
        if params.history_half_life:
            matrices = replace(matrices, recency=recency_weighted(matrices, params.history_half_life))
        scored = replace(model, params=params, matrices=matrices)
        ranked = np.concatenate([scored.recommend_rows(self.rows[i : i + 2048], K)[0] for i in range(0, len(self.rows), 2048)])
        scores = ndcg_at_k(ranked, self.relevant)
        self.scoring_seconds = self.clock() - started
        return scores

    def score_popularity(self) -> np.ndarray:
        m = self.matrices_for(self.base.weighting)
        empty = sp.csr_matrix((len(m.items), len(m.items)), dtype=np.float32)
        model = LocalModel(replace(self.base, algorithm="popularity"), "popularity", m, empty, empty, self.popularity)
        ranked = np.concatenate([model.popular_for_rows(self.rows[i : i + 2048], K) for i in range(0, len(self.rows), 2048)])
        return ndcg_at_k(ranked, self.relevant)


class _Search:
    """Scores a configuration on every validation window: one NDCG@10 per (user, window)."""

    def __init__(self, folds: list[ValidationSplit], base: LocalParams, clock: Callable[[], float] = time.perf_counter):
        self.folds = [_Fold(f, base, clock) for f in folds]

    def needs_fit(self, params: LocalParams) -> bool:
        return any(_fit_key(params) not in f.models for f in self.folds)

    def score(self, params: LocalParams) -> np.ndarray:
        return np.concatenate([f.score(params) for f in self.folds])

    def scoring_seconds(self) -> float:
        """What scoring alone last took over all windows (a step that refits nothing costs this)."""
        return sum(getattr(f, "scoring_seconds", 0.0) for f in self.folds)

    def score_popularity(self) -> np.ndarray:
        return np.concatenate([f.score_popularity() for f in self.folds])


def select(
    interactions: pl.DataFrame,
    impressions: pl.DataFrame | None,
    as_of: datetime,
    base: LocalParams = LocalParams(),
    budget_seconds: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Selection:
    """The configuration to train with, chosen on a time-based validation split of this data.

    `budget_seconds` caps the search (default: for dense fits up to DENSE_FOLD_ITEMS items, the
    whole grid at the first candidate's pace, between CHEAP_FIT_BUDGET_SECONDS and
    CHEAP_FIT_BUDGET_CAP; otherwise MIN_BUDGET_SECONDS or 1 + BUDGET_PER_FIT times what the
    selection took up to the end of its first candidate, whichever is more); a
    candidate that would overrun it is skipped and the values found so far are kept. `clock` is
    for tests.
    """
    started = clock()
    n_items = interactions["item_id"].n_unique()
    dense = n_items <= base.ease_max_items
    costly = dense and n_items > DENSE_FOLD_ITEMS
    folds = time_folds(interactions, impressions, base.exclude_seen, base.seed, max_folds=1 if costly else None)
    samples = sum(len(f.users) for f in folds)
    if samples < MIN_VALIDATION_USERS:
        return Selection(base, True, f"no selection: {samples} validation users (at least {MIN_VALIDATION_USERS} needed); defaults kept",
                         validation={"users": samples}, seconds=clock() - started)
    search = _Search(folds, base, clock)
    current: Trial | None = None
    start = replace(base, history_half_life=0.0, negative_pull=0.0, impression_penalty=0.0, weighting=WEIGHTINGS[0])
    trials: list[Trial] = []
    budget = budget_seconds
    cheap = dense and not costly

    def default_budget(first_candidate: float) -> float:
        if cheap:  # every algorithm and weighting candidate at the first one's pace, and the scorings after
            grid = first_candidate * (len(DENSE_FITS) + len(WEIGHTINGS) - 1) + SCORING_RESERVE * search.scoring_seconds()
            return min(CHEAP_FIT_BUDGET_CAP, max(CHEAP_FIT_BUDGET_SECONDS, grid))
        return max(MIN_BUDGET_SECONDS, first_candidate * (1 + BUDGET_PER_FIT))

    def run(trial: Trial) -> None:
        nonlocal budget
        if current is not None and trial.params == current.params:  # already scored: reuse it
            trial.ndcg, trial.skipped = current.ndcg, "same as the previous step's choice"
            trials.append(trial)
            return
        is_fit = search.needs_fit(trial.params)
        estimate = search.scoring_seconds()
        if is_fit:  # and leave room for the cheap steps that follow
            estimate = _estimate(trials, trial.params.algorithm) + (SCORING_RESERVE * estimate if trial.params.algorithm != "als" else 0.0)
        if budget is not None and clock() - started + estimate > budget:
            trial.skipped = "budget"
            trials.append(trial)
            return
        t0 = clock()
        trial.ndcg = search.score(trial.params)
        trial.seconds = clock() - t0
        trial.fit = is_fit
        trials.append(trial)
        if budget is None:  # the first fit sets the budget
            budget = default_budget(clock() - started)

    def step(name: str, candidates: list[tuple[str, LocalParams]]) -> None:
        """Candidates in order, the default first: it is the simplest, the others richer."""
        nonlocal current
        done = []
        for position, (value, params) in enumerate(candidates):
            trial = Trial(name, value, params, int(position > 0))
            run(trial)
            if trial.ndcg is not None:
                done.append(trial)
        if done:
            current = _simplest_within_se(done)

    popularity = search.score_popularity()  # the bar a model must clear to be served
    if dense:
        fits = [(f"{a} l2={l2:g}" + (f" dropout={p:g}" if a == "dlae" else ""),
                 replace(start, algorithm=a, l2=l2, dropout=p if a == "dlae" else start.dropout))
                for a, l2, p in DENSE_FITS]
        if costly:  # ALS costs a fraction of a dense fit here: worth a look
            a, r, al = LARGE_FITS[0]
            fits.insert(1, (f"als reg={r:g} alpha={al:g}", replace(start, algorithm=a, als_regularization=r, als_alpha=al)))
    else:
        fits = [(a if a == "item_knn" else f"als reg={r:g} alpha={al:g}",
                 replace(start, algorithm=a, **({} if a == "item_knn" else {"als_regularization": r, "als_alpha": al})))
                for a, r, al in LARGE_FITS]
    if samples < MIN_DECISION_SAMPLES:
        fits = fits[:1]
    step("algorithm", fits)
    if current is not None and samples >= MIN_DECISION_SAMPLES:
        p = current.params
        step("weighting", [(w, replace(p, weighting=w)) for w in WEIGHTINGS])  # the default first
        if current.params.algorithm != "als":  # ALS scores from user factors: no history to weigh
            p = current.params
            step("history_half_life", [(f"{h:g}", replace(p, history_half_life=h)) for h in HALF_LIVES])
        if interactions["event_value"].lt(0).any() and current.params.algorithm != "als":
            p = current.params
            step("negative_pull", [(f"{v:g}", replace(p, negative_pull=v)) for v in NEGATIVE_PULLS])
        if any(f.impressions is not None and f.impressions.height for f in folds):
            p = current.params
            step("impression_penalty", [(f"{v:g}", replace(p, impression_penalty=v)) for v in IMPRESSION_PENALTIES])

    model_ndcg = current.mean() if current is not None else float("nan")
    serve = bool(model_ndcg > popularity.mean())
    reason = (
        f"validation NDCG@10 {model_ndcg:.4f} vs popularity {popularity.mean():.4f} over {samples} (user, window) pairs"
        + ("" if serve else ": the model does not beat popularity, so the popular list is served")
    )
    chosen = current.params if serve else replace(current.params if current else start, algorithm="popularity")
    validation = {
        "windows": [{"cutoff": f.cutoff.isoformat(), "users": len(f.users), "targets": f.targets.height,
                     "train_interactions": f.train.height} for f in folds],
        "samples": samples, "items": n_items,
    }
    return Selection(chosen, serve, reason, trials, float(popularity.mean()), validation, clock() - started, budget or 0.0)


def _fit_key(params: LocalParams) -> tuple:
    return (params.algorithm, params.l2, params.dropout, params.factors, params.als_regularization, params.als_alpha, params.weighting)


def _estimate(trials: list[Trial], algorithm: str) -> float:
    """Seconds the next fit may take: the slowest fit of its algorithm so far, else of any."""
    fits = [t for t in trials if t.ndcg is not None and t.fit]
    same = [t.seconds for t in fits if t.params.algorithm == algorithm]
    return max(same or [t.seconds for t in fits] or [0.0])


def _simplest_within_se(trials: list[Trial]) -> Trial:
    """The best trial, unless a simpler one is within one standard error of the paired differences."""
    best = max(trials, key=Trial.mean)
    for trial in sorted(trials, key=lambda t: (t.complexity, -t.mean())):
        diff = best.ndcg - trial.ndcg
        if trial is best or diff.mean() <= _se(diff):
            return trial
    return best
