"""Sending PutEvents requests: ledger first, bounded rate, retries with backoff and jitter."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Callable

from botocore.exceptions import ClientError

from amp_personalize.backends.personalize.ledger import Ledger

RETRYABLE_CODES = {"ThrottlingException", "TooManyRequestsException", "ServiceUnavailable", "InternalServerError"}


class PushFailed(RuntimeError):
    """Personalize refused a request for a reason retrying cannot fix; names the events."""


@dataclass
class PushStats:
    calls: int = 0
    events: int = 0
    skipped_already_pushed: int = 0
    retries: int = 0
    latencies: list[float] = field(default_factory=list)


def _retryable(error: ClientError) -> bool:
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return error.response.get("Error", {}).get("Code") in RETRYABLE_CODES or status >= 500 or status == 429


def push(
    requests: list[dict],
    client,
    ledger: Ledger,
    max_tps: float = 100.0,
    max_retries: int = 8,
    base_delay: float = 0.2,
    sleep: Callable[[float], None] = time.sleep,
) -> PushStats:
    """Push every event of `requests` not yet in the ledger; record each call as it succeeds."""
    stats = PushStats()
    interval = 1.0 / max_tps
    next_call = 0.0
    for request in requests:
        ids = [e["eventId"] for e in request["eventList"]]
        done = ledger.already_pushed(ids)
        todo = [e for e in request["eventList"] if e["eventId"] not in done]
        stats.skipped_already_pushed += len(ids) - len(todo)
        if not todo:
            continue
        call = {**request, "eventList": todo}
        for attempt in range(max_retries + 1):
            wait = next_call - time.monotonic()
            if wait > 0:
                sleep(wait)
            next_call = time.monotonic() + interval
            started = time.perf_counter()
            try:
                client.put_events(**call)
                break
            except ClientError as error:
                if not _retryable(error) or attempt == max_retries:
                    code = error.response.get("Error", {}).get("Code")
                    raise PushFailed(
                        f"PutEvents refused events {[e['eventId'] for e in todo]} of user {call.get('userId')!r}: {code}: "
                        f"{error.response.get('Error', {}).get('Message', '')}"
                    ) from None
                stats.retries += 1
                sleep(base_delay * 2**attempt * (0.5 + random.random()))  # full jitter keeps retries apart
        stats.latencies.append(time.perf_counter() - started)
        ledger.record([e["eventId"] for e in todo])
        stats.calls += 1
        stats.events += len(todo)
    return stats
