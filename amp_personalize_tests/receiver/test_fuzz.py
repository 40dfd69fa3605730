"""Fuzzing bodies and headers: never a 500, never a partial landing from a rejected request."""

import gzip
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from amp_personalize.receiver import create_app
from amp_personalize.settings import Settings
from amp_personalize_tests.conftest import LiveReceiver, landed_lines

pytestmark = pytest.mark.slow

SECRET = "fuzz-secret"
scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
ids = st.none() | st.text(max_size=12) | st.integers(-5, 10**12) | st.floats(allow_nan=False) | st.booleans() | json_values
event_like = st.fixed_dictionaries(
    {},
    optional={
        "event_type": st.sampled_from(["click", "CLICK", "initial_impression", "flag", "page_view", ""]) | json_values,
        "user_id": ids,
        "device_id": ids,
        "uuid": ids,
        "$insert_id": ids,
        "session_id": ids,
        "time": ids,
        "event_time": st.text(max_size=30) | json_values,
        "event_properties": st.fixed_dictionaries(
            {}, optional={"item_id": ids, "items_shown": st.lists(ids, max_size=5) | ids, "feed_type": ids}
        )
        | json_values,
    },
)
documents = (
    st.builds(lambda evs: {"events": evs}, st.lists(event_like | json_values, max_size=5))
    | st.lists(event_like, max_size=5)
    | event_like
    | json_values
)
bodies = st.builds(lambda doc: json.dumps(doc).encode(), documents) | st.binary(max_size=300)
good_auth = f"Bearer {SECRET}"
headers = st.fixed_dictionaries(
    {"Authorization": st.sampled_from([good_auth] * 6 + ["Bearer", "", f"bearer {SECRET}", "Basic abc", f"Bearer {SECRET}x"])},
    optional={
        "Content-Encoding": st.sampled_from(["gzip", "identity", "br", "GZIP", "", "deflate"]),
        "Content-Type": st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"]),
    },
)


@pytest.fixture(scope="module")
def live():
    data = Path(tempfile.mkdtemp()) / "data"
    settings = replace(Settings.from_env({}), data_dir=data, webhook_secret=SECRET, max_body_bytes=2000)
    with LiveReceiver(create_app(settings)) as receiver:
        yield receiver, data


def test_fuzzed_requests(live):
    receiver, data = live
    seen: set[int] = set()

    @hyp_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(body=bodies, extra=headers, compress=st.booleans())
    def one_request(body, extra, compress):
        if compress and extra.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.compress(body)
        before = len(landed_lines(data))
        r = receiver.post(content=body, headers=extra)
        reply = r.json()
        seen.add(r.status_code)
        assert r.status_code in (200, 400, 401, 413, 415), (r.status_code, r.text)
        assert reply["code"] == r.status_code
        after = len(landed_lines(data))
        if r.status_code == 200:
            assert after - before == reply["events_ingested"] == reply["processed"] + reply["skipped"]
        else:
            assert after == before, "a rejected request landed something"
            assert reply["error"]

    one_request()
    assert {200, 400, 401} <= seen, f"the fuzzer never reached some outcomes: saw only {sorted(seen)}"
