"""What a receiver facing the network answers: the webhook, and nothing else without a token or
an internal listener (`amp-personalize serve`, its own process, over HTTP)."""

from __future__ import annotations

import httpx
import pytest

from amp_personalize_tests.conftest import ReceiverProcess, free_port

READS = ("/recommendations/u1", "/similar-items/d1", "/metrics")
EVENT = {"events": [{"event_type": "click", "user_id": "u1", "event_properties": {"item_id": "d1"}}]}


def stderr_of(receiver: ReceiverProcess) -> str:
    receiver.stop()
    return receiver.proc.stderr.read().decode()


@pytest.mark.slow
def test_a_receiver_on_a_public_address_serves_only_the_webhook_and_says_why(start_receiver):
    live = start_receiver(AMP_RECEIVER_HOST="0.0.0.0")
    for path in READS:
        refused = httpx.get(live.url + path)
        assert refused.status_code == 403 and "AMP_READ_TOKEN" in refused.json()["error"], path
    assert httpx.get(live.url + "/healthz").status_code == 200
    assert httpx.post(live.url + "/webhooks/amplitude/", json=EVENT).status_code == 200
    assert "recommendations and /metrics are refused (403)" in stderr_of(live)


@pytest.mark.slow
def test_the_read_token_opens_serving_and_metrics_and_nothing_else_does(start_receiver):
    live = start_receiver(AMP_RECEIVER_HOST="0.0.0.0", AMP_READ_TOKEN="r3ad", AMP_WEBHOOK_SECRET="hook")
    for path in READS:
        for headers in ({}, {"Authorization": "Bearer hook"}, {"Authorization": "Bearer r3a"}):
            refused = httpx.get(live.url + path, headers=headers)
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer", (path, headers)
        answered = httpx.get(live.url + path, headers={"Authorization": "Bearer r3ad"})
        assert answered.status_code in (200, 503), path  # 503: no model trained yet, said so
    metrics = httpx.get(live.url + "/metrics", headers={"Authorization": "Bearer r3ad"})
    assert metrics.status_code == 200 and "amp_requests_total" in metrics.text
    # The webhook takes its own secret only.
    assert httpx.post(live.url + "/webhooks/amplitude/", json=EVENT, headers={"Authorization": "Bearer r3ad"}).status_code == 401
    assert httpx.post(live.url + "/webhooks/amplitude/", json=EVENT, headers={"Authorization": "Bearer hook"}).status_code == 200


@pytest.mark.slow
def test_an_internal_listener_serves_reads_that_the_webhooks_listener_does_not(start_receiver):
    internal = free_port()
    live = start_receiver(AMP_RECEIVER_HOST="0.0.0.0", AMP_SERVING_PORT=str(internal))
    for path in READS:
        assert httpx.get(live.url + path).status_code == 404, path
        assert httpx.get(f"http://127.0.0.1:{internal}{path}").status_code in (200, 503), path
    assert httpx.get(f"http://127.0.0.1:{internal}/metrics").status_code == 200
    assert httpx.post(live.url + "/webhooks/amplitude/", json=EVENT).status_code == 200


def test_a_read_token_equal_to_the_webhook_secret_is_refused_at_start():
    from amp_personalize.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="AMP_READ_TOKEN must differ from AMP_WEBHOOK_SECRET"):
        Settings.from_env({"AMP_READ_TOKEN": "same", "AMP_WEBHOOK_SECRET": "same"})
