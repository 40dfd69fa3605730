"""The pipeline's data logic: plain polars functions from frame to frame.

The Dagster assets call these, the benchmark calls these, and the tests call them on tiny
frames; none of them knows about Dagster or files beyond what it is handed.
"""
