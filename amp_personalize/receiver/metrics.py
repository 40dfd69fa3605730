"""Prometheus metrics for the receiver.

The request path only bumps plain integers; a custom collector turns them into Prometheus
families at scrape time. prometheus_client's own Counter takes a lock per `inc`, which cost
about a quarter of the handler's own time at 10k+ requests/s. One registry per app, so tests
and workers never share counts.
"""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ReceiverMetrics:
    def __init__(self) -> None:
        self.by_status: Tally[int] = Tally()
        self.events_received = 0
        self.events_processed = 0
        self.body_bytes = 0
        self.torn_lines = 0
        self.segments_recovered = 0
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(self)
        self.commit_seconds = Histogram(
            "amp_commit_seconds",
            "Time to fdatasync one commit group",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0),
            registry=self.registry,
        )
        self.commit_requests = Histogram(
            "amp_commit_group_requests",
            "Requests sharing one fsync",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )

    # -- the request path: plain integer arithmetic only ---------------------------------------

    def request(self, status: int) -> None:
        self.by_status[status] += 1

    def events(self, total: int, processed: int, body_bytes: int) -> None:
        self.events_received += total
        self.events_processed += processed
        self.body_bytes += body_bytes

    def commit(self, requests: int, events: int, seconds: float | None) -> None:
        if seconds is not None:  # None: answered by an earlier sync or seal, timed then
            self.commit_seconds.observe(seconds)
        self.commit_requests.observe(requests)

    # -- scrape time ---------------------------------------------------------------------------

    def describe(self):
        return []

    def collect(self):
        requests = CounterMetricFamily("amp_requests", "Webhook requests by HTTP status", labels=["status"])
        for status, count in sorted(self.by_status.items()):
            requests.add_metric([str(status)], count)
        yield requests
        skipped = self.events_received - self.events_processed
        for name, doc, value in (
            ("amp_events_received", "Events landed (all kinds)", self.events_received),
            ("amp_events_processed", "ML-relevant events landed", self.events_processed),
            ("amp_events_skipped", "Landed events not relevant to the model", skipped),
            ("amp_body_bytes", "Body bytes of acknowledged requests, before decompression", self.body_bytes),
            ("amp_landing_quarantined_lines", "Torn last lines moved to quarantine at recovery", self.torn_lines),
            ("amp_landing_segments_recovered", "Open segments sealed by recovery at start-up", self.segments_recovered),
        ):
            yield CounterMetricFamily(name, doc, value=value)

    def render(self) -> bytes:
        return generate_latest(self.registry)
