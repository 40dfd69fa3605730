"""The lake, models and caches on S3: trained on one host, served by receivers on others that
have no lake of their own, and a new training picked up without a restart."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from amp_personalize.events.windows import window_key, window_of
from amp_personalize.landing.shipping import Shipper
from amp_personalize.settings import Settings
from amp_personalize_tests.conftest import ReceiverProcess
from amp_personalize_tests.landing_fixture import write_segment
from amp_personalize_tests.s3_server import BUCKET

pytestmark = pytest.mark.slow
LANDING, LAKE = f"s3://{BUCKET}/landing", f"s3://{BUCKET}/lake"


def cli(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMP_", "DAGSTER_"))}
    env.update(AMP_DATA_DIR=str(tmp_path / "processing"), AMP_LANDING_URL=LANDING, AMP_LAKE_URL=LAKE)
    return subprocess.run([sys.executable, "-m", "amp_personalize.cli", *args], env=env, capture_output=True, text=True, timeout=300)


def test_receivers_serve_the_s3_caches_and_follow_a_new_training(tmp_path, s3):
    window = window_key(window_of(int(time.time() * 1000), 60) - 2 * 3_600_000)
    events = [{"event_type": "click", "user_id": f"u{u}", "uuid": f"{u}-{i}", "event_properties": {"item_id": f"d{(u + i) % 9}"}}
              for u in range(12) for i in range(4)]
    volume = Settings.from_env({"AMP_DATA_DIR": str(tmp_path / "volume"), "AMP_LANDING_URL": LANDING})
    write_segment(volume.data_dir, window, events, name="1796518800000-a-000001")
    Shipper(volume).ship_once()
    assert cli(tmp_path, "process").returncode == 0
    first = cli(tmp_path, "train")
    assert first.returncode == 0, first.stderr
    counted = cli(tmp_path, "sql", "select count(*) as n from interactions")
    assert counted.returncode == 0 and "48" in counted.stdout, counted.stdout + counted.stderr

    # A receiver host with no lake: its caches come from S3.
    receiver = ReceiverProcess(tmp_path / "edge", env={"AMP_LAKE_URL": LAKE}).start()
    try:
        answer = httpx.get(receiver.url + "/recommendations/u1?num_results=3").json()
        assert answer["source"] == "model" and len(answer["items"]) == 3
        old = answer["model_version"]
        assert not (tmp_path / "edge" / "lake").exists()
        assert cli(tmp_path, "train").returncode == 0  # a new version, trained elsewhere
        deadline = time.monotonic() + 40
        while (current := httpx.get(receiver.url + "/recommendations/u1").json()["model_version"]) == old:
            assert time.monotonic() < deadline, "the new training was not picked up"
            time.sleep(1)
        assert current > old
    finally:
        receiver.stop()
