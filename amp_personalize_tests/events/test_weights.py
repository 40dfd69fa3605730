import json

import pytest

from amp_personalize.events import WeightsError, WeightTable, load_weights

SPEC_WEIGHTS = {
    "fundraise": 3.0, "donate": 3.0, "upvote": 2.0, "share": 2.0, "download": 1.5, "click": 1.0,
    "scroll_impression": 0.5, "initial_impression": 0.3, "downvote": -1.0, "hide": -1.5, "flag": -2.5,
}


def test_defaults_are_the_spec_table():
    table = load_weights()
    assert table.weights == SPEC_WEIGHTS
    assert table.impression_types == {"initial_impression", "scroll_impression"}
    assert (table.min_weight, table.max_weight) == (-2.5, 3.0)


def test_matching_is_case_insensitive():
    table = load_weights()
    assert table.weight("Click") == table.weight("CLICK") == 1.0
    assert table.weight("page_view") is None


@pytest.mark.parametrize(
    "event_type, user, item, shown, relevant",
    [
        ("click", "u1", "doc_1", None, True),
        ("Upvote", "u1", "doc_1", None, True),
        ("click", None, "doc_1", None, False),  # no user id
        ("click", "u1", None, None, False),  # no item
        ("page_view", "u1", "doc_1", None, False),  # no weight
        ("initial_impression", "u1", None, ["a", "b"], True),
        ("scroll_impression", "u1", None, [], False),  # empty items_shown
        ("scroll_impression", "u1", None, [None, "a"], True),  # landed with a gap where a non-id was
        ("initial_impression", "u1", None, [None, None], False),  # only non-ids: nothing shown
        ("initial_impression", "u1", "doc_1", None, False),  # an impression needs items_shown
        ("flag", "u1", "doc_1", None, True),  # negative signals are relevant too
    ],
)
def test_relevance_rule(event_type, user, item, shown, relevant):
    assert load_weights().is_relevant(event_type, user, item, shown) is relevant


def test_user_file_replaces_defaults(tmp_path):
    path = tmp_path / "w.json"
    path.write_text(json.dumps({"weights": {"Click": 2, "seen": 0.1}, "impression_types": ["seen"]}))
    table = load_weights(path)
    assert table.weights == {"click": 2.0, "seen": 0.1}
    assert table.is_impression("SEEN")


@pytest.mark.parametrize(
    "doc, message",
    [
        ([1, 2], "expected an object"),
        ({"click": 1.0}, "expected an object"),
        ({"weights": {}}, "'weights' is empty"),
        ({"weights": {"click": "high"}}, "weights['click']: 'high' is not a number"),
        ({"weights": {"click": True}}, "is not a number"),
        ({"weights": {"click": 1e9}}, "is impossible"),
        ({"weights": {"click": 0}}, "remove the entry"),
        ({"weights": {"click": 1, "CLICK": 2}}, "listed twice"),
        ({"weights": {"click": 1}, "impression_types": ["seen"]}, "['seen'] have no weight"),
        ({"weights": {"click": 1}, "impression_types": "seen"}, "must be a list"),
        ({"weights": {"click": 1}, "extra": 1}, "unknown top-level keys ['extra']"),
    ],
)
def test_bad_weight_files_name_the_problem(tmp_path, doc, message):
    path = tmp_path / "weights.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(WeightsError) as err:
        load_weights(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_nan_and_unreadable_files(tmp_path):
    with pytest.raises(WeightsError, match="is impossible"):
        WeightTable.from_mapping({"weights": {"click": float("nan")}})
    path = tmp_path / "w.json"
    path.write_text("{not json")
    with pytest.raises(WeightsError, match="not valid JSON"):
        load_weights(path)
    with pytest.raises(WeightsError, match="cannot read"):
        load_weights(tmp_path / "missing.json")


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"weights": {"click": 1, "click": 2}}', "'click' is given twice in one object"),
        ('{"weights": {"click": NaN}}', "NaN is not a number a weight can be"),
        ('{"weights": {"click": -Infinity}}', "-Infinity is not a number a weight can be"),
        (b'{"weights": {"cl\xe9ck": 1}}', "not valid JSON"),
    ],
)
def test_what_a_json_parser_would_let_through_is_named(tmp_path, text, message):
    """QA: a key given twice took the last value silently; NaN said only 'unexpected character'."""
    path = tmp_path / "w.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(WeightsError, match=message):
        load_weights(path)


def test_a_file_without_impression_types_keeps_the_frontend_impressions(tmp_path):
    """QA: left out, impression_types was empty and every impression event was skipped."""
    path = tmp_path / "w.json"
    path.write_text(json.dumps({"weights": {"click": 1.0, "initial_impression": 0.3, "scroll_impression": 0.5}}))
    assert load_weights(path).impression_types == {"initial_impression", "scroll_impression"}
    path.write_text(json.dumps({"weights": {"click": 1.0, "initial_impression": 0.3}, "impression_types": []}))
    assert load_weights(path).impression_types == frozenset()  # said outright: none
