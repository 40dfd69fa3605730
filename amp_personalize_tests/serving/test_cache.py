"""The serving cache answers with the source the recommendations dataset records."""

import polars as pl

from amp_personalize.lake.parquet import partition_path, write_atomic
from amp_personalize.serving.cache import RecommendationCache


def test_a_cached_list_of_popularity_backfill_is_not_called_a_model_list(tmp_path):
    lake = tmp_path / "lake"
    write_atomic(pl.DataFrame({
        "user_id": ["known", "known", "cold", "cold"],
        "rank": pl.Series([1, 2, 1, 2], dtype=pl.Int32),
        "item_id": ["a", "b", "p", "q"],
        "score": [0.9, 0.5, 10.0, 8.0],
        "source": ["model", "popularity", "popularity", "popularity"],
        "model_version": ["v1"] * 4,
    }), partition_path(lake, "recommendations"))
    write_atomic(pl.DataFrame({"rank": pl.Series([1], dtype=pl.Int32), "item_id": ["p"], "score": [10.0], "source": ["popularity"]}),
                 partition_path(lake, "popular_items"))
    cache = RecommendationCache(lake)
    assert cache.recommend("known", 2) == ([("a", 0.9), ("b", 0.5)], "model", "v1")
    assert cache.recommend("cold", 2) == ([("p", 10.0), ("q", 8.0)], "popularity", "v1")
    assert cache.recommend("stranger", 2) == ([("p", 10.0)], "popularity", "v1")
