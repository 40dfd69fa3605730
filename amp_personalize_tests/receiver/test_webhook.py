"""The webhook contract (SPEC 3), over real HTTP to a real uvicorn."""

import gzip
from dataclasses import replace

import httpx
import orjson
import pytest

from amp_personalize.events import load_weights
from amp_personalize.receiver import create_app
from amp_personalize.transforms.interactions import impressions, skip_reasons
from amp_personalize.transforms.landing import read_landing
from amp_personalize.transforms.raw_events import raw_events
from amp_personalize.transforms.weights import weights_frame
from amp_personalize_tests.conftest import WEBHOOK, LiveReceiver, landed_lines

SEED_CURL_BODY = """{
    "events": [{
      "event_type": "click",
      "user_id": "1",
      "event_properties": {
        "item_id": "doc_123"
      },
      "time": 1234567890000
    }]
  }"""


def click(user="u1", item="doc_1", **extra):
    return {"event_type": "click", "user_id": user, "event_properties": {"item_id": item}, **extra}


def test_seed_curl_example_gets_the_seed_reply(receiver, settings):
    r = receiver.post(content=SEED_CURL_BODY.encode(), headers={"Content-Type": "application/json"})
    assert r.status_code == 200
    assert r.json() == {
        "message": "Webhook successfully processed",
        "processed": 1,
        "skipped": 0,
        "code": 200,
        "events_ingested": 1,
    }
    [line] = landed_lines(settings.data_dir)
    assert line["event"] == orjson.loads(SEED_CURL_BODY)["events"][0]
    assert (line["event_type"], line["user_id"], line["item_id"], line["event_time"]) == (
        "click", "1", "doc_123", 1234567890000
    )
    assert line["received_at"] > 1234567890000


@pytest.mark.parametrize(
    "body, processed, skipped",
    [
        ({"events": [click(), click(item=None), {"event_type": "page_view", "user_id": "u1"}]}, 1, 2),
        (click(uuid="one"), 1, 0),  # Amplitude's Webhook destination: one event per request
        ([click(), {"event_type": "initial_impression", "user_id": "u", "event_properties": {"items_shown": ["a", "b"]}}], 2, 0),
        ({"api_key": "k", "events": [click(), click()], "options": {"min_id_length": 1}}, 2, 0),  # HTTP V2
        ({"user_id": "u1", "user_properties": {"plan": "pro"}}, 0, 1),  # "Send Users" payload
    ],
    ids=["events-object", "single-event", "list", "http-v2", "identify"],
)
def test_every_body_shape_is_landed_and_counted(receiver, settings, body, processed, skipped):
    r = receiver.post(body)
    assert r.status_code == 200, r.text
    assert (r.json()["processed"], r.json()["skipped"], r.json()["events_ingested"]) == (
        processed, skipped, processed + skipped
    )
    assert len(landed_lines(settings.data_dir)) == processed + skipped


def test_items_shown_keep_their_positions_from_the_request_to_impressions(receiver, settings):
    shown = ["doc_a", None, {"id": "doc_x"}, "", "doc_b"]  # doc_b was shown fifth
    r = receiver.post({"events": [
        {"event_type": "initial_impression", "user_id": "u1", "uuid": "i1", "event_properties": {"items_shown": shown}},
        # Only entries that are not ids: nothing was shown, exactly as for an empty list.
        {"event_type": "scroll_impression", "user_id": "u1", "uuid": "i2", "event_properties": {"items_shown": [None, "", {}]}},
        {"event_type": "scroll_impression", "user_id": "u1", "uuid": "i3", "event_properties": {"items_shown": []}},
    ]})
    assert (r.json()["processed"], r.json()["skipped"]) == (1, 2)
    lines = {line["event_id"]: line for line in landed_lines(settings.data_dir)}
    assert lines["i1"]["items_shown"] == ["doc_a", None, None, None, "doc_b"]
    assert lines["i1"]["event"]["event_properties"]["items_shown"] == shown  # the raw event, as sent

    landed, _ = read_landing(sorted((settings.data_dir / "landing").glob("*/*")))
    raw, _ = raw_events(landed)
    weights = weights_frame(load_weights())
    shown_rows = impressions(raw, weights).select("event_id", "item_id", "position").rows()
    assert shown_rows == [("i1", "doc_a", 0), ("i1", "doc_b", 4)]
    assert skip_reasons(raw, weights) == {"processed": 1, "no_items_shown": 2}


def test_gzip_body(receiver, settings):
    body = gzip.compress(orjson.dumps({"events": [click(), click(user="u2")]}))
    r = receiver.post(content=body, headers={"Content-Encoding": "gzip"})
    assert r.json()["events_ingested"] == 2
    assert {line["user_id"] for line in landed_lines(settings.data_dir)} == {"u1", "u2"}


def test_path_without_trailing_slash_is_not_redirected(receiver):
    r = receiver.post(click(), path=WEBHOOK.rstrip("/"))
    assert r.status_code == 200


@pytest.mark.parametrize(
    "content, headers, status, message",
    [
        (b"not json", {}, 400, "body is not valid JSON"),
        (b"", {}, 400, "body is empty"),
        (b'{"foo": 1}', {}, 400, "no events"),
        (b'{"events": []}', {}, 400, "'events' is empty"),
        (b'{"events": {"a": 1}}', {}, 400, "'events' must be a list, got dict"),
        (b"[]", {}, 400, "the list of events is empty"),
        (b'"click"', {}, 400, "body must be a JSON object or list"),
        (b'{"events": [{"event_type": "click", "user_id": "u"}, 7]}', {}, 400, "events[1] is not an object (got int)"),
        (b'[{"event_type": "click", "user_id": "u"}, {"time": 1}]', {}, 400, "body[1] has no event_type"),
        (b'{"events": [{"event_type": null, "user_id": "u"}, {"event_type": ""}]}', {}, 400, "events[1].event_type must be"),
        (b"\x1f\x8bnot really gzip", {"Content-Encoding": "gzip"}, 400, "not valid gzip"),
        (gzip.compress(b'{"events": [1]}', mtime=0)[:-6], {"Content-Encoding": "gzip"}, 400, "gzip body is truncated"),
        (b"{}", {"Content-Encoding": "br"}, 415, "Content-Encoding 'br' is not supported"),
    ],
)
def test_bad_requests_are_rejected_with_a_reason_and_land_nothing(receiver, settings, content, headers, status, message):
    r = receiver.post(content=content, headers=headers)
    assert r.status_code == status
    assert r.json()["code"] == status
    assert message in r.json()["error"]
    assert landed_lines(settings.data_dir) == []


def test_secret_is_required_when_set(settings):
    with LiveReceiver(create_app(replace(settings, webhook_secret="s3cret"))) as live:
        assert live.post(click()).status_code == 401
        wrong = live.post(click(), headers={"Authorization": "Bearer s3cre"})
        assert wrong.status_code == 401
        assert "s3cret" not in wrong.text
        assert live.post(click(), headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert len(landed_lines(settings.data_dir)) == 1


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
def test_the_auth_scheme_is_case_insensitive_and_the_secret_is_not(settings, scheme):
    with LiveReceiver(create_app(replace(settings, webhook_secret="s3cret"))) as live:
        assert live.post(click(), headers={"Authorization": f"{scheme} s3cret"}).status_code == 200  # RFC 7235: the scheme is case-insensitive
        for refused in [f"{scheme} S3CRET", f"{scheme} s3cre", f"{scheme} s3cretx", f"{scheme}  s3cret", f"{scheme}s3cret", scheme, "Basic s3cret", "s3cret"]:
            r = live.post(click(), headers={"Authorization": refused})
            assert r.status_code == 401, refused
            assert r.headers["www-authenticate"] == "Bearer"
        assert len(landed_lines(settings.data_dir)) == 1


def test_body_limit_is_enforced_while_streaming(settings):
    with LiveReceiver(create_app(replace(settings, max_body_bytes=1000))) as live:
        big = orjson.dumps({"events": [click(item="x" * 2000)]})
        declared = live.post(content=big)
        assert declared.status_code == 413
        assert "exceeds the limit of 1000 bytes" in declared.json()["error"]

        def chunks():  # chunked transfer: no Content-Length, the limit must trip mid-stream
            for _ in range(1000):
                yield b" " * 100

        streamed = httpx.post(live.url + WEBHOOK, content=chunks(), timeout=30)
        assert streamed.status_code == 413
        bomb = gzip.compress(orjson.dumps({"events": [click(item="y" * 5000)]}))
        assert len(bomb) < 1000
        inflated = live.post(content=bomb, headers={"Content-Encoding": "gzip"})
        assert inflated.status_code == 413
        assert "decompressed body exceeds" in inflated.json()["error"]
        assert landed_lines(settings.data_dir) == []


def test_healthz_and_metrics(receiver):
    assert httpx.get(receiver.url + "/healthz").json() == {"status": "ok"}
    receiver.post({"events": [click(), {"event_type": "page_view", "user_id": "u"}]})
    receiver.post(content=b"nope")
    text = httpx.get(receiver.url + "/metrics").text
    assert 'amp_requests_total{status="200"} 1.0' in text
    assert 'amp_requests_total{status="400"} 1.0' in text
    assert "amp_events_received_total 2.0" in text
    assert "amp_events_processed_total 1.0" in text
    assert "amp_events_skipped_total 1.0" in text
    assert "amp_commit_seconds_count 1.0" in text
    assert "amp_landing_quarantined_lines_total 0.0" in text


def deep_event(levels: int, **fields) -> bytes:
    """An event whose nesting, the event object itself included, is `levels` deep.

    Built as text: orjson (like the receiver) parses far deeper JSON than it can serialize.
    """
    head = orjson.dumps({"event_type": "a", "user_id": "1", **fields})[:-1]
    depth = levels - 1  # the event object is the first level
    return head + b',"x":' + b"[" * depth + b"1" + b"]" * depth + b"}"


@pytest.mark.parametrize(
    "content, where",
    [
        (deep_event(300), "the event"),  # Amplitude's Webhook destination: one event per request
        (b'{"events": [' + orjson.dumps(click()) + b"," + deep_event(300) + b"]}", "events[1]"),
        (b"[" + orjson.dumps(click()) + b"," + deep_event(300, uuid="deep-1") + b"]", "body[1]"),  # an id: no hash of the event
        (b'{"events": [' + deep_event(254, insert_id="deep-2") + b"]}", "events[0]"),  # one level past the limit
    ],
    ids=["single-event", "events-object", "list-with-uuid", "one-past-the-limit"],
)
def test_an_event_nested_too_deeply_is_rejected_and_lands_nothing(receiver, settings, content, where):
    r = receiver.post(content=content)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == 400
    assert f"{where} is nested too deeply" in r.json()["error"]
    assert landed_lines(settings.data_dir) == []


def test_an_event_at_the_nesting_limit_lands_whole(receiver, settings):
    content = b'{"events": [' + deep_event(253) + b"," + deep_event(253, uuid="deep-3") + b"]}"
    r = receiver.post(content=content)
    assert r.status_code == 200, r.text
    assert r.json()["events_ingested"] == 2
    landed = landed_lines(settings.data_dir)
    assert [line["event"] for line in landed] == orjson.loads(content)["events"]


def test_the_webhook_url_opened_in_a_browser_says_it_takes_posts(receiver):
    for path in ("/webhooks/amplitude/", "/webhooks/amplitude"):
        answer = httpx.get(receiver.url + path)
        assert answer.status_code == 405 and answer.headers["allow"] == "POST", path
        assert "POST events" in answer.json()["error"]
