"""Ids as Personalize takes them: one mapping on every path in, and back out of its answers.

Personalize refuses user, item, event and session ids past 256 characters; Amplitude does not.
Such an id becomes 'sha256:' and its digest wherever it goes to Personalize: PutEvents, the
import CSV, recommendation and similar-item requests, and the ledger's key for an event. So an
event pushed live and the same event in an import are one event (the ledger finds it either
way), and a user with a long id is one user on both paths. Answers naming a digest are mapped
back to the id it came from, so the caches hold the app's own ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import polars as pl

MAX_ID = 256
DIGEST_PREFIX = "sha256:"
CATALOG = "items.parquet"  # in each Personalize model version: the item ids it was trained on


def fit_id(value: str) -> str:
    return value if len(value) <= MAX_ID else DIGEST_PREFIX + hashlib.sha256(value.encode()).hexdigest()


def digests(values: Iterable[str | None]) -> dict[str, str]:
    """{id: digest} for the ids past the limit; usually empty, and then nothing needs mapping."""
    return {v: fit_id(v) for v in values if v is not None and len(v) > MAX_ID}


def fit_columns(df: pl.DataFrame, columns: list[str], list_columns: tuple[str, ...] = ()) -> pl.DataFrame:
    """The frame with every long id in `columns` (and inside the list columns) replaced by its digest."""
    found = pl.concat(
        [df.select(pl.col(c).alias("id")) for c in columns]
        + [df.select(pl.col(c).explode().alias("id")) for c in list_columns]
    ).filter(pl.col("id").str.len_chars() > MAX_ID)["id"].unique()
    if found.is_empty():
        return df
    mapping = digests(found.to_list())
    return df.with_columns(
        *(pl.col(c).replace(mapping) for c in columns),
        *(pl.col(c).list.eval(pl.element().replace(mapping)) for c in list_columns),
    )


def restore(df: pl.DataFrame, column: str, originals: Iterable[str]) -> pl.DataFrame:
    """Digests in `column` (Personalize's answers) back to the ids they came from, among `originals`."""
    back = {digest: original for original, digest in digests(originals).items()}
    return df.with_columns(pl.col(column).replace(back)) if back else df


def catalog_items(model_dir: Path) -> list[str]:
    """The items a model version was trained on: what a digest in Personalize's answers can stand for."""
    return pl.read_parquet(model_dir / CATALOG)["item_id"].to_list()
