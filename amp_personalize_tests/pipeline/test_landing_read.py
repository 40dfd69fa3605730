"""Reading landed segments: lines that are not landed records are counted and dropped, never fatal."""

import pytest

from amp_personalize.landing.segments import sealed_segments
from amp_personalize.transforms.landing import read_landing
from amp_personalize_tests.landing_fixture import write_segment

W = "20260101T1000Z"
CLICKS = [{"event_type": "click", "user_id": "u", "uuid": f"e{i}", "event_properties": {"item_id": "d"}} for i in range(3)]


@pytest.mark.parametrize(
    "stray",
    [
        pytest.param(b'{"foo":1}\n', id="an object that is no landed record"),  # duckdb reads it: nulls
        pytest.param(b'{"kind":"event","event_id":"x","session_id":"abc","received_at":1}\n', id="a field of the wrong type"),
        pytest.param(b'{"kind":"event","event_id":"x","received_at":1,"event_time":99999999999999999999}\n', id="past int64"),
        pytest.param(b'{"kind":"bogus","event_id":"x","received_at":1}\n', id="an unknown kind"),
        pytest.param(b"[1,2]\n", id="not an object"),
        pytest.param(b"\x00\x00garbage\n", id="not JSON"),
    ],
)
def test_a_stray_line_in_a_segment_is_counted_not_fatal_and_the_rest_is_read(tmp_path, stray):
    """QA: a hand-edited line of the wrong type failed its window's run, and an object with no
    event_id went through as a row of nulls that failed the window's blocking checks."""
    data = tmp_path / "data"
    write_segment(data, W, CLICKS[:1], tail=stray)
    write_segment(data, W, CLICKS[1:], name="0000000000002-fixture-000001")
    landed, malformed = read_landing(sealed_segments(data / "landing", W))
    assert malformed == 1
    assert sorted(landed["event_id"]) == ["e0", "e1", "e2"]
