"""What the Dagster UI says about each dataset before any run: its columns, its duckdb view, who owns it.

The columns come from the schemas the transforms write with, in duckdb's type names (the view's
own, which is what a user queries); a test holds them to the views.
"""

from __future__ import annotations

import dagster as dg
import polars as pl

from amp_personalize.backends.base import RECOMMENDATIONS_SCHEMA, SIMILAR_ITEMS_SCHEMA
from amp_personalize.transforms import UTC_MS
from amp_personalize.transforms.interactions import IMPRESSIONS_SCHEMA, INTERACTIONS_SCHEMA
from amp_personalize.transforms.raw_events import RAW_EVENTS_SCHEMA
from amp_personalize.transforms.scores import SCORES_SCHEMA

# The data team that runs the pipeline (SPEC 1); Dagster shows it on every asset and filters by it.
OWNERS = ["team:data"]
# Bumped when an asset's code makes different rows from the same input: Dagster then marks what
# was built before as built by older code. One for all, as they ship together.
CODE_VERSION = "1"
WAREHOUSE_CATALOG = "warehouse"  # duckdb names a file's catalog after it: data/warehouse.duckdb

_DUCKDB_TYPES = {
    pl.String(): "VARCHAR",
    pl.Int64(): "BIGINT",
    pl.Int32(): "INTEGER",
    pl.UInt32(): "UINTEGER",
    pl.Float64(): "DOUBLE",
    pl.Boolean(): "BOOLEAN",
    UTC_MS: "TIMESTAMP WITH TIME ZONE",
    pl.List(pl.String()): "VARCHAR[]",
}

_EVENT = {
    "event_id": "the dedupe key: uuid, else $insert_id, else insert_id, else sha256: of the event's JSON",
    "user_id": "Amplitude's user_id",
    "item_id": "event_properties.item_id: the item acted on",
    "event_time": "when it happened: time, else event_time / client_event_time / server_received_time",
    "session_id": "Amplitude's session (ms since epoch; -1 when none)",
    "recommendation_id": "event_properties.recommendation_id: the list the item was shown in",
    "feed_type": "event_properties.feed_type: which feed showed the items",
    "event_value": "the weight of its event type in the weight file",
}
COLUMN_DESCRIPTIONS: dict[str, dict[str, str]] = {
    "raw_events": {
        **_EVENT,
        "kind": "event, or user for a user payload (Amplitude's Send Users)",
        "event_type": "as sent",
        "device_id": "Amplitude's device_id",
        "event_time_missing": "no time in the event: event_time is the receive time",
        "received_at": "when the receiver landed it: the landing window is by this time",
        "items_shown": "event_properties.items_shown, in display order (null where an entry was not an id)",
        "properties": "event_properties as JSON text",
    },
    "interactions": {**_EVENT, "event_type": "weighted type, lower case (click, upvote, flag, ...)"},
    "impressions": {
        **_EVENT,
        "item_id": "one item shown",
        "position": "its 0-based position in what was shown",
        "impression_type": "initial_impression or scroll_impression",
    },
    "user_item_scores": {
        "user_id": "Amplitude's user_id",
        "item_id": "the item",
        "net_weight": "sum of event_value over AMP_HISTORY_DAYS",
        "n_events": "interactions counted",
        "last_event_time": "the latest of them",
        "negative": "any downvote, hide or flag: never recommended to this user",
    },
    "recommendations": {
        "user_id": "an active user (or one who ever vetoed an item)",
        "rank": "1 is best",
        "item_id": "the recommended item",
        "score": "the backend's score; it never rises with rank",
        "source": "model, or popularity where the model ran out",
        "model_version": "the model that made the list",
        "generated_at": "when the list was made",
    },
    "similar_items": {
        "item_id": "the item",
        "rank": "1 is most similar",
        "similar_item_id": "a similar item, never the item itself",
        "score": "similarity; it never rises with rank",
        "model_version": "the model that made the list",
    },
}
SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "raw_events": RAW_EVENTS_SCHEMA,
    "interactions": INTERACTIONS_SCHEMA,
    "impressions": IMPRESSIONS_SCHEMA,
    "user_item_scores": SCORES_SCHEMA,
    "recommendations": {**RECOMMENDATIONS_SCHEMA, "model_version": pl.String(), "generated_at": UTC_MS},
    "similar_items": {**SIMILAR_ITEMS_SCHEMA, "model_version": pl.String()},
}


def column_schema(dataset: str) -> dg.TableSchema:
    described = COLUMN_DESCRIPTIONS[dataset]
    return dg.TableSchema(
        columns=[dg.TableColumn(name, _DUCKDB_TYPES[dtype], description=described.get(name)) for name, dtype in SCHEMAS[dataset].items()]
    )


def table_metadata(dataset: str) -> dict:
    """A dataset asset's definition metadata: its columns and the duckdb view of the same name."""
    return {
        "dagster/column_schema": column_schema(dataset),
        "dagster/table_name": f"{WAREHOUSE_CATALOG}.main.{dataset}",
    }
