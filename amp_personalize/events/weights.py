"""The weight table: which event types matter to the model, and how much.

Loaded from a JSON file the user edits (`AMP_WEIGHTS_FILE`), so a team can tune weights without a
code change; rebuilt windows pick the new values up. Validation is strict because a typo here
silently skews every recommendation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import orjson

# Beyond this a weight is a typo (an extra zero), not a preference: Personalize's EVENT_VALUE
# is a float, but one event outweighing a thousand clicks only ever comes from a slip.
MAX_ABS_WEIGHT = 100.0


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
        impressions = doc.get("impression_types", [])
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
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise WeightsError(f"{source}: not valid JSON ({exc})") from None
    return WeightTable.from_mapping(doc, source)
