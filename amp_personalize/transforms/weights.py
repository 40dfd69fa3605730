"""The weight table as a polars frame, for joins in the pipeline."""

from __future__ import annotations

import polars as pl

from amp_personalize.events import WeightTable


def weights_frame(table: WeightTable) -> pl.DataFrame:
    """One row per weighted event type (lower-cased), with whether it is an impression."""
    names = sorted(table.weights)
    return pl.DataFrame(
        {
            "event_type": names,
            "event_value": [table.weights[n] for n in names],
            "is_impression": [n in table.impression_types for n in names],
        },
        schema={"event_type": pl.String, "event_value": pl.Float64, "is_impression": pl.Boolean},
    )
