"""The unpartitioned assets that read every window must not cost Dagster a walk over every window.

Dagster's default mapping from a windowed dataset to an unpartitioned asset makes each run list
every partition key since AMP_PARTITIONS_START: with 1-minute windows a user_item_scores refresh
took 72 s, all of it listing keys, and it grew with every window.
"""

import dagster as dg
import pytest

from amp_personalize.assets.interactions import impressions, interactions
from amp_personalize.assets.partitions import WINDOWS
from amp_personalize.assets.raw_events import raw_events
from amp_personalize.definitions import defs
from amp_personalize.resources import AmpResource
from amp_personalize_tests.landing_fixture import write_segment
from amp_personalize_tests.pipeline.test_recommendation_assets import (
    EVENTS,
    LOCAL_ONLY,
    WINDOW,
)

pytestmark = pytest.mark.slow


def test_refreshing_scores_and_training_do_not_list_every_window(tmp_path, monkeypatch):
    data = tmp_path / "data"
    write_segment(data, WINDOW, EVENTS)
    resources = {"amp": AmpResource(data_dir=str(data)), "personalize": LOCAL_ONLY}
    with dg.instance_for_test() as instance:
        windowed = dg.materialize([raw_events, interactions, impressions], partition_key=WINDOW, resources=resources, instance=instance)
        assert windowed.success

        listed = []
        every_key = type(WINDOWS).get_partition_keys

        def counting(self, *args, **kwargs):
            keys = every_key(self, *args, **kwargs)
            listed.append(len(keys))
            return keys

        monkeypatch.setattr(type(WINDOWS), "get_partition_keys", counting)
        # The project's own jobs: a job of the one asset alone would not know its upstream's windows.
        for job, asset in (("refresh_user_item_scores", "user_item_scores"), ("retrain", "recommender_model")):
            result = defs.resolve_job_def(job).execute_in_process(resources=resources, instance=instance)
            assert result.success
            assert result.asset_materializations_for_node(asset), f"{asset} was not materialized"
    assert listed == [], f"runs listed every window: {listed} keys"
