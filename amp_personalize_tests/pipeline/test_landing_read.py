"""Reading landed segments: what is no landed record is counted and dropped, never fatal, and a
line reads the same whatever else the window holds."""

import pytest

from amp_personalize.landing.segments import sealed_segments
from amp_personalize.transforms.landing import read_landing
from amp_personalize_tests.landing_fixture import write_segment

W = "20260101T1000Z"
CLICKS = [{"event_type": "click", "user_id": "u", "uuid": f"e{i}", "event_properties": {"item_id": "d"}} for i in range(3)]
GARBAGE = b"\x00\x00garbage\n"


def read(tmp_path, stray: bytes, damaged_elsewhere: bool):
    data = tmp_path / "data"
    write_segment(data, W, CLICKS[:1], tail=stray)
    write_segment(data, W, CLICKS[1:], name="0000000000002-fixture-000001", tail=GARBAGE if damaged_elsewhere else b"")
    landed, malformed = read_landing(sealed_segments(data / "landing", W))
    return landed, malformed - damaged_elsewhere


@pytest.mark.parametrize("damaged_elsewhere", [False, True], ids=["alone", "beside a damaged segment"])
@pytest.mark.parametrize(
    "stray",
    [
        pytest.param(b'{"foo":1}\n', id="an object that is no landed record"),
        pytest.param(b'{"kind":"bogus","event_id":"x","received_at":1}\n', id="an unknown kind"),
        pytest.param(b"[1,2]\n", id="not an object"),
        pytest.param(GARBAGE, id="not JSON"),
        pytest.param(b'{"kind":"event","event_id":"\xff\xfe","received_at":1}\n', id="not UTF-8"),
    ],
)
def test_a_line_that_is_no_landed_record_is_counted_and_the_rest_is_read(tmp_path, stray, damaged_elsewhere):
    """QA: `{"foo": 1}` went through as a row of nulls and failed its window's blocking checks."""
    landed, malformed = read(tmp_path, stray, damaged_elsewhere)
    assert malformed == 1
    assert sorted(landed["event_id"]) == ["e0", "e1", "e2"]


@pytest.mark.parametrize("damaged_elsewhere", [False, True], ids=["alone", "beside a damaged segment"])
@pytest.mark.parametrize(
    "stray, column, value",
    [
        pytest.param(b'{"kind":"event","event_id":"x","session_id":"abc","received_at":1}\n', "session_id", None, id="unreadable"),
        pytest.param(b'{"kind":"event","event_id":"x","session_id":"42","received_at":1}\n', "session_id", 42, id="a number as text"),
        pytest.param(b'{"kind":"event","event_id":"x","event_time":99999999999999999999,"received_at":1}\n', "event_time", None,
                     id="past int64"),
    ],
)
def test_a_field_of_another_type_reads_the_same_wherever_it_is(tmp_path, stray, column, value, damaged_elsewhere):
    """QA: one such line failed its window's run; a first fix kept or dropped it depending on
    whether another segment of the window was damaged (review)."""
    landed, malformed = read(tmp_path, stray, damaged_elsewhere)
    assert malformed == 0
    assert landed.filter(event_id="x")[column].to_list() == [value]
    assert landed.height == 4
