"""The event rules (SPEC section 5): weights, relevance, dedupe key, event time, windows.

The receiver, the Dagster assets and the tests all import these; nobody restates them.
"""

from amp_personalize.events.fields import EventShapeError, extract
from amp_personalize.events.weights import WeightsError, WeightTable, load_weights
from amp_personalize.events.windows import window_key, window_of

__all__ = [
    "EventShapeError",
    "WeightTable",
    "WeightsError",
    "extract",
    "load_weights",
    "window_key",
    "window_of",
]
