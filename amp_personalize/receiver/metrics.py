"""Prometheus metrics for the receiver.

The request path only bumps plain integers; a custom collector turns them into Prometheus
families at scrape time. prometheus_client's own Counter takes a lock per `inc`, which cost
about a quarter of the handler's own time at 10k+ requests/s. One registry per app, so tests
and workers never share counts.
"""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
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


class ShippingMetrics:
    """With AMP_LANDING_URL: what waits to be shipped on this volume, read at scrape time from the
    landing directory and the shipper's counters (it runs in a process of its own)."""

    def __init__(self, data_dir, landing_dir) -> None:
        self.data_dir, self.landing_dir = data_dir, landing_dir

    def describe(self):
        return []

    def collect(self):
        import time

        from amp_personalize.landing.shipping import SHIPPED_DIR, read_state, waiting

        now_ms = time.time() * 1000
        left = waiting(self.landing_dir, self.data_dir / SHIPPED_DIR)
        state = read_state(self.data_dir) or {}
        oldest = left.oldest_ms
        for name, doc, value in (
            ("amp_ship_waiting_segments", "Sealed segments not yet confirmed in S3", len(left.segments)),
            ("amp_ship_waiting_bytes", "Bytes of sealed segments not yet confirmed in S3", left.bytes),
            ("amp_ship_oldest_waiting_seconds", "Age of the oldest segment not yet shipped (0: none)", (now_ms - oldest) / 1000 if oldest else 0),
            ("amp_ship_last_success_age_seconds", "Seconds since the shipper's last successful pass (-1: none yet)",
             (now_ms - state["last_success_ms"]) / 1000 if state.get("last_success_ms") else -1),
        ):
            yield GaugeMetricFamily(name, doc, value=value)
        for name, doc, key in (
            ("amp_ship_upload_failures", "Shipping passes that failed (S3 errors, outages)", "upload_failures"),
            ("amp_ship_segments", "Segments uploaded by this volume's shipper since it started", "shipped_segments"),
            ("amp_ship_bytes", "Bytes uploaded by this volume's shipper since it started", "shipped_bytes"),
        ):
            yield CounterMetricFamily(name, doc, value=state.get(key, 0))
