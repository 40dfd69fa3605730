"""The model's selection on synthetic data built so that one setting is right."""

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest

import amp_personalize.backends.local.selection as selection
from amp_personalize.backends.local.model import LocalParams
from amp_personalize.backends.local.selection import select

NOW = datetime(2026, 1, 10, tzinfo=timezone.utc)


def tastes(drift: bool, seed: int = 0, users: int = 240, clusters: int = 4, per_cluster: int = 60, days: int = 100):
    """Each user reads from one cluster of items; with `drift`, from the next cluster from day 70
    on, so what they read last (not what they read most) says what they read after the cutoff.
    Within a cluster each user has favourites, so all of a steady user's history is worth using."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        early = u % clusters
        late = (early + 1) % clusters if drift else early
        favourites = {c: rng.choice(per_cluster, 12, replace=False) + c * per_cluster for c in range(clusters)}
        for day in np.sort(rng.uniform(0, days, 50)):
            cluster = late if day >= 70 else early
            pool = favourites[cluster] if rng.random() < 0.7 else np.arange(per_cluster) + cluster * per_cluster
            rows.append((f"u{u}", f"i{rng.choice(pool)}", NOW - timedelta(days=days - day)))
    return pl.DataFrame(
        {"user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows], "event_type": "click",
         "event_value": 1.0, "event_time": [r[2] for r in rows]}
    ).with_columns(pl.col("event_time").cast(pl.Datetime("ms", "UTC")))


def chosen_half_life(interactions) -> float:
    result = select(interactions, None, NOW, LocalParams(), budget_seconds=float("inf"))
    assert result.serve_model, result.reason
    return result.params.history_half_life


@pytest.mark.slow
def test_recency_is_chosen_when_tastes_drift():
    assert chosen_half_life(tastes(drift=True)) > 0


@pytest.mark.slow
def test_recency_stays_off_when_tastes_hold():
    assert chosen_half_life(tastes(drift=False)) == 0


class FakeClock:
    """Seconds that pass only when a model is fitted or a window scored: a budget test that no
    machine's speed can fail."""

    def __init__(self, per_fit: float, per_score: float = 0.0) -> None:
        self.now, self.per_fit, self.per_score = 0.0, per_fit, per_score

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def slow_fits(monkeypatch):
    clock = FakeClock(per_fit=10.0)
    real = selection.fit_matrices

    real_score = selection.ndcg_at_k

    def fit_matrices(*args, **kwargs):
        clock.now += clock.per_fit
        return real(*args, **kwargs)

    def ndcg_at_k(*args, **kwargs):  # once per validation window and candidate (popularity too)
        clock.now += clock.per_score
        return real_score(*args, **kwargs)

    monkeypatch.setattr(selection, "fit_matrices", fit_matrices)
    monkeypatch.setattr(selection, "ndcg_at_k", ndcg_at_k)
    return clock


@pytest.mark.slow
def test_selection_stops_trying_fits_at_its_budget(slow_fits):
    data = tastes(drift=False)
    one_candidate = len(selection.time_folds(data, None)) * slow_fits.per_fit  # a fit per validation window
    budget = 1.5 * one_candidate
    result = select(data, None, NOW, LocalParams(), budget_seconds=budget, clock=slow_fits)
    assert result.seconds <= budget
    ran = [t for t in result.trials if t.ndcg is not None and t.fit]
    skipped = [t for t in result.trials if t.skipped == "budget"]
    assert ran and skipped, "the first fit runs; the fits that would overrun the budget do not"
    # Scoring-only steps (recency, negative pull) cost no fit and still run within the budget.
    assert any(t.step == "history_half_life" and t.ndcg is not None and not t.skipped for t in result.trials)


@pytest.mark.slow
@pytest.mark.parametrize("per_fit, bound", [(0.3, "floor"), (1.0, "grid"), (10.0, "cap")])
def test_the_default_budget_is_set_by_the_first_fit(slow_fits, per_fit, bound):
    slow_fits.per_fit, slow_fits.per_score = per_fit, per_fit / 10
    result = select(tastes(drift=False), None, NOW, LocalParams(), clock=slow_fits)
    folds = len(result.validation["windows"])
    scoring = folds * slow_fits.per_score
    first_candidate = scoring + folds * per_fit + scoring  # popularity's scoring, the first fit, its scoring
    # A small catalog: dense fits are cheap, so the budget is the rest of the grid at the first
    # candidate's pace and ten scorings after it, between a floor and a cap.
    grid = first_candidate * (len(selection.DENSE_FITS) + len(selection.WEIGHTINGS) - 1) + selection.SCORING_RESERVE * scoring
    expected = min(selection.CHEAP_FIT_BUDGET_CAP, max(selection.CHEAP_FIT_BUDGET_SECONDS, grid))
    assert expected == {"floor": selection.CHEAP_FIT_BUDGET_SECONDS, "grid": grid, "cap": selection.CHEAP_FIT_BUDGET_CAP}[bound]
    assert result.budget_seconds == pytest.approx(expected)
    assert result.seconds <= result.budget_seconds


@pytest.mark.slow
@pytest.mark.parametrize("seconds_per_candidate", [3.0, 14.0])
def test_cheap_fits_get_every_algorithm_scored_before_popularity_is_preferred(slow_fits, seconds_per_candidate):
    """MovieLens-1M: at 2-3 s a candidate, a 10 s floor scored two of six algorithms, the one default
    lost to popularity on validation and the popular list was served where a model was better;
    with another job on the cores a candidate took 14 s, and a fixed 30 s floor did the same."""
    data = tastes(drift=False)
    folds = len(selection.time_folds(data, None))
    slow_fits.per_fit, slow_fits.per_score = 0.9 * seconds_per_candidate / folds, 0.05 * seconds_per_candidate / folds
    result = select(data, None, NOW, LocalParams(), clock=slow_fits)
    algorithm = [t for t in result.trials if t.step == "algorithm"]
    assert len(algorithm) == len(selection.DENSE_FITS)
    weighting = [t for t in result.trials if t.step == "weighting"]
    assert len(weighting) == len(selection.WEIGHTINGS)
    assert all(t.ndcg is not None for t in algorithm + weighting), [(t.value, t.skipped) for t in result.trials]
    assert result.seconds <= result.budget_seconds


@pytest.mark.slow
def test_the_same_data_and_seed_choose_the_same_way(monkeypatch):
    monkeypatch.setattr(selection, "MAX_VALIDATION_USERS", 40)  # so validation users are drawn at random
    data = tastes(drift=True, seed=3)
    first, again = (select(data, None, NOW, LocalParams(seed=5), budget_seconds=float("inf")) for _ in range(2))
    assert first.chosen() == again.chosen()
    assert [(r["step"], r["value"], r["ndcg_at_10"]) for r in first.table()] == [(r["step"], r["value"], r["ndcg_at_10"]) for r in again.table()]
