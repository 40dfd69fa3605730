"""The weight table: which event types matter to the model, and how much.

Loaded from a JSON file the user edits (`AMP_WEIGHTS_FILE`), so a team can tune weights without a
code change; rebuilt windows pick the new values up. Validation is strict because a typo here
silently skews every recommendation.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

# Beyond this a weight is a typo (an extra zero), not a preference: Personalize's EVENT_VALUE
# is a float, but one event outweighing a thousand clicks only ever comes from a slip.
MAX_ABS_WEIGHT = 100.0


DEFAULT_IMPRESSION_TYPES = frozenset({"initial_impression", "scroll_impression"})


class WeightsError(ValueError):
    """The weight file is unusable; the message names the file and the entry."""


@dataclass(frozen=True)
class WeightTable:
    """Weights keyed by lower-cased event type; matching is case-insensitive (SPEC 5)."""

    weights: dict[str, float]
    impression_types: frozenset[str]

    def weight(self, event_type: str | None) -> float | None:
        return None if event_type is None else self.weights.get(event_type.lower())

    def is_impression(self, event_type: str | None) -> bool:
        return event_type is not None and event_type.lower() in self.impression_types

    def is_relevant(
        self,
        event_type: str | None,
        user_id: str | None,
        item_id: str | None,
        items_shown: list | None,
    ) -> bool:
        """ML-relevant: a weighted type, a user, and an item (or, for impressions, items shown).

        `items_shown` as landed keeps a None where an entry was not an id; only ids count.
        """
        if event_type is None or user_id is None:
            return False
        kind = event_type.lower()
        if kind not in self.weights:
            return False
        if kind in self.impression_types:
            return bool(items_shown) and items_shown.count(None) < len(items_shown)  # in C: this is the request path
        return item_id is not None

    @property
    def min_weight(self) -> float:
        return min(self.weights.values())

    @property
    def max_weight(self) -> float:
        return max(self.weights.values())

    @classmethod
    def from_mapping(cls, doc: object, source: str = "weights") -> "WeightTable":
        if not isinstance(doc, dict) or not isinstance(doc.get("weights"), dict):
            raise WeightsError(
                f"{source}: expected an object like "
                '{"weights": {"click": 1.0, ...}, "impression_types": ["initial_impression"]}, '
                f"got {type(doc).__name__}" + (f" with keys {sorted(doc)}" if isinstance(doc, dict) else "")
            )
        unknown = set(doc) - {"weights", "impression_types"}
        if unknown:
            raise WeightsError(f"{source}: unknown top-level keys {sorted(unknown)}")
        if not doc["weights"]:
            raise WeightsError(f"{source}: 'weights' is empty; at least one event type must carry a weight")
        weights: dict[str, float] = {}
        for name, value in doc["weights"].items():
            key = name.strip().lower()
            where = f"{source}: weights[{name!r}]"
            if not key:
                raise WeightsError(f"{where}: the event type is empty")
            if key in weights:
                raise WeightsError(f"{where}: listed twice (event types match case-insensitively)")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise WeightsError(f"{where}: {value!r} is not a number")
            if not math.isfinite(value) or abs(value) > MAX_ABS_WEIGHT:
                raise WeightsError(f"{where}: {value!r} is impossible; weights lie within ±{MAX_ABS_WEIGHT:g}")
            if value == 0:
                raise WeightsError(f"{where}: 0 means 'ignore this type'; remove the entry instead")
            weights[key] = float(value)
        # Left out, the frontend's two impression types count as such if weighted: without them
        # impression events were read as interactions with no item_id and all skipped (QA).
        impressions = doc.get("impression_types", sorted(DEFAULT_IMPRESSION_TYPES & weights.keys()))
        if not isinstance(impressions, list) or not all(isinstance(t, str) for t in impressions):
            raise WeightsError(f"{source}: 'impression_types' must be a list of event type names")
        impression_types = frozenset(t.strip().lower() for t in impressions)
        missing = sorted(impression_types - weights.keys())
        if missing:
            raise WeightsError(f"{source}: impression_types {missing} have no weight in 'weights'")
        return cls(weights=weights, impression_types=impression_types)


def load_weights(path: Path | None = None) -> WeightTable:
    """The user's weight file if given, else the defaults shipped with the package."""
    if path is None:
        raw = resources.files("amp_personalize.events").joinpath("default_weights.json").read_bytes()
        source = "default_weights.json"
    else:
        source = str(path)
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise WeightsError(f"{source}: cannot read the weight file ({exc.strerror})") from None
    try:
        # The standard library's parser, for its hooks: a key given twice is an error, not the
        # last one silently winning, and NaN or Infinity are named (QA).
        doc = json.loads(raw, object_pairs_hook=_unique_keys(source), parse_constant=_no_constant(source))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{source}: not valid JSON ({exc})") from None
    return WeightTable.from_mapping(doc, source)


def _unique_keys(source: str):
    def pairs(items: list[tuple[str, object]]) -> dict:
        seen: dict[str, object] = {}
        for key, value in items:
            if key in seen:
                raise WeightsError(f"{source}: {key!r} is given twice in one object")
            seen[key] = value
        return seen

    return pairs


def _no_constant(source: str):
    def refuse(name: str) -> float:
        raise WeightsError(f"{source}: {name} is not a number a weight can be")

    return refuse
