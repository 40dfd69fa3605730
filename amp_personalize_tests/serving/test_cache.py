"""The serving cache answers with the source the recommendations dataset records, and says
what is missing when there is no cache or no id."""

import httpx
import polars as pl
from click.testing import CliRunner

from amp_personalize.cli import main
from amp_personalize.lake.parquet import partition_path, write_atomic
from amp_personalize.receiver import create_app
from amp_personalize.serving.cache import RecommendationCache
from amp_personalize_tests.conftest import LiveReceiver


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


def test_before_any_cache_and_without_an_id_the_answers_say_what_is_missing(settings):
    with LiveReceiver(create_app(settings)) as live:
        for route in ("/recommendations/u1", "/similar-items/doc_1"):
            r = httpx.get(live.url + route)
            assert r.status_code == 503 and "cached yet: train a model" in r.json()["error"], (route, r.text)
        for route, what in (("/recommendations/", "no user id"), ("/similar-items/", "no item id")):
            r = httpx.get(live.url + route)
            assert r.status_code == 404 and r.json()["error"].startswith(what), (route, r.text)
    result = CliRunner().invoke(main, ["similar", "doc_1"], env={"AMP_DATA_DIR": str(settings.data_dir)})
    assert result.exit_code == 1 and "no similar items cached yet: run `amp-personalize train`" in result.output


def test_similar_items_are_served_while_the_recommendations_cache_is_empty(tmp_path):
    """Nobody active in AMP_ACTIVE_DAYS leaves recommendations empty; similar_items stands alone."""
    lake = tmp_path / "lake"
    write_atomic(pl.DataFrame(schema={"user_id": pl.String, "rank": pl.Int32, "item_id": pl.String, "score": pl.Float64,
                                      "source": pl.String, "model_version": pl.String}), partition_path(lake, "recommendations"))
    write_atomic(pl.DataFrame({"item_id": ["p1"], "rank": pl.Series([1], dtype=pl.Int32), "similar_item_id": ["p2"], "score": [0.9],
                               "model_version": ["v1"]}), partition_path(lake, "similar_items"))
    assert RecommendationCache(lake).similar("p1", 5) == ([("p2", 0.9)], "v1")


def test_a_damaged_cache_file_leaves_the_last_good_lists_in_service(tmp_path, settings, caplog, monkeypatch):
    """QA: a truncated recommendations file answered 500 to a request at every reload check,
    and `recommend` printed a traceback."""
    lake = settings.data_dir / "lake"
    path = partition_path(lake, "recommendations")
    write_atomic(pl.DataFrame({
        "user_id": ["u1"], "rank": pl.Series([1], dtype=pl.Int32), "item_id": ["a"], "score": [0.9],
        "source": ["model"], "model_version": ["v1"],
    }), path)
    cache = RecommendationCache(lake, check_every_seconds=0)
    assert cache.recommend("u1", 5) == ([("a", 0.9)], "model", "v1")
    path.write_bytes(path.read_bytes()[:40])  # cut short, as a full disk or a bad copy leaves it
    reads = []
    real_read = pl.read_parquet
    monkeypatch.setattr(pl, "read_parquet", lambda *a, **k: reads.append(a) or real_read(*a, **k))
    for _ in range(3):
        assert cache.recommend("u1", 5) == ([("a", 0.9)], "model", "v1")
    assert len(reads) == 1  # tried once, then left alone until it changes or a minute passes (review)
    monkeypatch.undo()
    said = [r.getMessage() for r in caplog.records if "cannot read the cached recommendations" in r.getMessage()]
    assert len(said) == 1 and "still serving the last good ones" in said[0]  # once, not at every check

    # With no good snapshot to fall back on (a server started on the damaged file): 503, saying why.
    with LiveReceiver(create_app(settings)) as live:
        r = httpx.get(live.url + "/recommendations/u1")
        assert r.status_code == 503 and "cannot be read" in r.json()["error"] and "amp-personalize train" in r.json()["error"]
    result = CliRunner().invoke(main, ["recommend", "u1"], env={"AMP_DATA_DIR": str(settings.data_dir)})
    assert result.exit_code == 1 and "cannot be read" in result.output and "Traceback" not in result.output
    empty = CliRunner().invoke(main, ["recommend", ""], env={"AMP_DATA_DIR": str(settings.data_dir)})
    assert empty.exit_code == 2 and "USER_ID is empty" in empty.output


def test_a_passing_read_error_is_retried_and_a_user_with_nothing_left_gets_an_empty_list(tmp_path, monkeypatch):
    """Review: one OSError on the first load (out of file descriptors, say) meant 503 until the
    next training; and with only users who have nothing left, no row carried the model version."""
    import amp_personalize.serving.cache as cache_module

    lake = tmp_path / "lake"
    write_atomic(pl.DataFrame(schema={"user_id": pl.String, "rank": pl.Int32, "item_id": pl.String, "score": pl.Float64,
                                      "source": pl.String, "model_version": pl.String}),
                 partition_path(lake, "recommendations"),
                 {cache_module.NOTHING_LEFT_KEY: '["hater"]', cache_module.MODEL_VERSION_KEY: "v7"})
    write_atomic(pl.DataFrame({"rank": pl.Series([1], dtype=pl.Int32), "item_id": ["p"], "score": [1.0], "source": ["popularity"]}),
                 partition_path(lake, "popular_items"))
    real_read = pl.read_parquet
    failures = iter([OSError(24, "Too many open files")])

    def flaky(*args, **kwargs):
        for error in failures:
            raise error
        return real_read(*args, **kwargs)

    monkeypatch.setattr(cache_module.pl, "read_parquet", flaky)
    cache = RecommendationCache(lake, check_every_seconds=0)
    try:
        cache.recommend("hater", 5)
        raise AssertionError("the first read failed: nothing to serve")
    except cache_module.CacheUnreadable as error:
        assert "Too many open files" in str(error)
    monkeypatch.setattr(cache_module, "RETRY_DAMAGED_SECONDS", 0.0)
    assert cache.recommend("hater", 5) == ([], "none", "v7")
    assert cache.recommend("stranger", 5) == ([("p", 1.0)], "popularity", "v7")
