"""The pipeline's data logic: plain polars functions from frame to frame.

The Dagster assets call these, the benchmark calls these, and the tests call them on tiny
frames; none of them knows about Dagster or files beyond what it is handed.
"""

import polars as pl

# Every timestamp in the lake: epoch milliseconds, UTC (one definition; duckdb reads it as TIMESTAMPTZ).
UTC_MS = pl.Datetime("ms", "UTC")
