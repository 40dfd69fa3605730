"""Durable landing: append-only NDJSON segments per window, sealed by atomic rename.

Readers (the landing sensor, the pipeline) only ever read sealed segments.
"""
