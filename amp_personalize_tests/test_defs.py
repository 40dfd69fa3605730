"""The whole Definitions object loads: a broken import or a dangling dependency fails here."""

import dagster as dg

from amp_personalize.definitions import defs


def test_definitions_load_with_every_asset_check_and_sensor():
    repo = defs.get_repository_def()
    assert {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()} == {
        "raw_events", "interactions", "impressions", "user_item_scores",
        "recommender_model", "recommendations", "similar_items",
    }
    checks = {(k.asset_key.to_user_string(), k.name) for k in repo.asset_graph.asset_check_keys}
    assert ("interactions", "event_value_in_range") in checks
    assert {asset for asset, _ in checks} == {
        "raw_events", "interactions", "impressions", "user_item_scores", "recommender_model", "recommendations", "similar_items",
    }
    assert {s.name for s in repo.sensor_defs} == {"landing_sensor", "scores_after_window", "scores_after_kept_out_window", "caches_after_training"}
    assert defs.resolve_job_def("process_window").partitions_def is not None
    defs.resolve_all_job_defs()


def test_the_personalize_backend_adds_the_live_push_and_its_sensor():
    from amp_personalize.definitions import build_definitions
    from amp_personalize.settings import Settings

    settings = Settings.from_env({"AWS_PERSONALIZE_TRACKING_ID": "tid", "AWS_PERSONALIZE_CAMPAIGN_ARN": "arn:aws:personalize:us-east-1:1:campaign/amp"})
    assert settings.backend == "personalize"
    live = build_definitions(settings)
    repo = live.get_repository_def()
    assert "personalize_events" in {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert "personalize_events_sensor" in {s.name for s in repo.sensor_defs}
    assert live.resolve_job_def("push_to_personalize")
    assert live.resources["personalize"].tracking_id == "tid"

    # A campaign alone (events reach Personalize some other way): caches from it, no push runs.
    reading = build_definitions(Settings.from_env({"AWS_PERSONALIZE_CAMPAIGN_ARN": "arn:aws:personalize:us-east-1:1:campaign/amp"}))
    repo = reading.get_repository_def()
    assert "recommendations" in {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert "personalize_events" not in {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert "personalize_events_sensor" not in {s.name for s in repo.sensor_defs}


def test_every_blocking_check_is_declared_blocking():
    repo = defs.get_repository_def()
    specs = {(s.asset_key.to_user_string(), s.name): s.blocking for a in repo.assets_defs_by_key.values() for s in a.check_specs}
    assert specs[("interactions", "no_null_ids")] is True
    assert specs[("interactions", "no_future_timestamps")] is False
    assert isinstance(defs, dg.Definitions)


def test_dg_loads_the_project_from_pyproject():
    import subprocess
    import sys
    from pathlib import Path

    dg_cli = Path(sys.executable).parent / "dg"
    result = subprocess.run([str(dg_cli), "check", "defs"], cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All definitions loaded successfully" in result.stdout + result.stderr


def test_every_asset_has_owners_and_a_code_version_and_every_dataset_its_table():
    """Issue 16: the UI showed no owner, no code version, no columns and no table for any asset."""
    repo = defs.get_repository_def()
    for key, asset in repo.assets_defs_by_key.items():
        assert asset.owners_by_key[key] == ["team:data"], key
        assert asset.code_versions_by_key[key], key
    for dataset in ("raw_events", "interactions", "impressions", "user_item_scores", "recommendations", "similar_items"):
        key = dg.AssetKey(dataset)
        meta = repo.assets_defs_by_key[key].metadata_by_key[key]
        assert meta["dagster/table_name"] == f"warehouse.main.{dataset}"
        assert meta["dagster/column_schema"].columns[0].description, dataset
