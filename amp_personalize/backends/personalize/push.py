"""Sending PutEvents requests: ledger first, a TPS ceiling, bounded concurrency, retries.

At ~20 ms a call one connection makes 50 calls/s, so calls go out from `concurrency` workers
under one shared rate limiter. A user's calls stay on one worker in time order (a session's
events must reach Personalize in the order they happened); different users run side by side.

An event Personalize refuses as invalid is set aside, not retried for ever: one bad event must
not hold back every event after it. A refused call of several events is sent again one event
at a time to find the bad one. When the last 20 events, across runs, were all refused and no
call was accepted, the cause is the setup (a tracking id, a dataset schema), not the events:
then the run fails, and what it was refused is not set aside.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from botocore.exceptions import ClientError

from amp_personalize.backends.personalize.ledger import Ledger

RETRYABLE_CODES = {"ThrottlingException", "TooManyRequestsException", "ServiceUnavailable", "InternalServerError"}
# The error PutEvents gives for a request it finds invalid; any other refusal (a tracking id or
# dataset that does not exist, missing permissions) says nothing about the events themselves.
INVALID_EVENT_CODES = {"InvalidInputException"}
# This many events refused in a row, across runs, with no call accepted: the setup is wrong.
REFUSED_BEFORE_ANY_ACCEPTED = 20


class PushFailed(RuntimeError):
    """Personalize refused a request for a reason retrying cannot fix; names the events."""


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class PushStats:
    calls: int = 0
    events: int = 0
    skipped_already_pushed: int = 0
    retries: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)  # (event id, Personalize's reason), set aside
    latencies: list[float] = field(default_factory=list)  # seconds per acknowledged call
    lags: list[float] = field(default_factory=list)  # seconds from the receiver's ack to Personalize's, per event


class RateLimiter:
    """At most `tps` calls started per second across threads: each call takes the next slot."""

    def __init__(self, tps: float, sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 1.0 / tps
        self._next = 0.0
        self._lock = threading.Lock()
        self._sleep = sleep

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(self._next, now)
            self._next = slot + self.interval
        if slot > now:
            self._sleep(slot - now)


def _retryable(error: ClientError) -> bool:
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return error.response.get("Error", {}).get("Code") in RETRYABLE_CODES or status >= 500 or status == 429


def push(
    requests: list[dict],
    client,
    ledger: Ledger,
    max_tps: float = 50.0,
    concurrency: int = 1,
    received_at: dict[str, float] | None = None,
    max_retries: int = 8,
    base_delay: float = 0.2,
    sleep: Callable[[float], None] = time.sleep,
) -> PushStats:
    """Push every event of `requests` not yet in the ledger; record each call as it succeeds.

    `received_at` (event id -> epoch seconds of the receiver's acknowledgment) gives the lag.
    Events refused as invalid are recorded in the ledger as refused when the run ends (see the
    module docstring); any other refusal stops every worker and raises PushFailed naming its events.
    """
    stats = PushStats()
    refused_before = ledger.refusal_streak()  # by earlier runs, none of whose calls was accepted
    limiter = RateLimiter(max_tps, sleep=sleep)
    lock = threading.Lock()
    stop = threading.Event()
    # One lookup for the whole run: the caller holds exclusive_push, so nothing else adds to
    # the ledger meanwhile, and workers need not queue on its lock for a query per request.
    done = ledger.already_pushed([e["eventId"] for r in requests for e in r["eventList"]])
    by_user: dict[str, list[dict]] = {}
    for request in requests:
        by_user.setdefault(request["userId"], []).append(request)

    def send(call: dict) -> float:
        for attempt in range(max_retries + 1):
            limiter.wait()
            started = time.perf_counter()
            try:
                client.put_events(**call)
                return time.perf_counter() - started
            except ClientError as error:
                if not _retryable(error) or attempt == max_retries:
                    err = error.response.get("Error", {})
                    if err.get("Code") in INVALID_EVENT_CODES:
                        raise _Refused(f"{err.get('Code')}: {err.get('Message', '')}") from None
                    raise PushFailed(
                        f"PutEvents refused events {[e['eventId'] for e in call['eventList']]} of user {call.get('userId')!r}: "
                        f"{err.get('Code')}: {err.get('Message', '')}"
                    ) from None
                with lock:
                    stats.retries += 1
                sleep(base_delay * 2**attempt * (0.5 + random.random()))  # jitter keeps retries apart
        raise AssertionError("unreachable")

    def user_worker(user_requests: list[dict]) -> None:
        for request in user_requests:
            if stop.is_set():
                return
            todo = [e for e in request["eventList"] if e["eventId"] not in done]
            with lock:
                stats.skipped_already_pushed += len(request["eventList"]) - len(todo)
            if not todo:
                continue
            try:
                deliver(request, todo)
            except BaseException:
                stop.set()
                raise

    def deliver(request: dict, todo: list[dict]) -> None:
        try:
            latency = send({**request, "eventList": todo})
        except _Refused as refusal:
            if len(todo) > 1:  # which of them? Each alone, still in time order
                for event in todo:
                    deliver(request, [event])
                return
            with lock:
                stats.refused.append((todo[0]["eventId"], refusal.reason))
                in_a_row = refused_before + len(stats.refused)
                if stats.calls == 0 and in_a_row >= REFUSED_BEFORE_ANY_ACCEPTED:
                    raise PushFailed(
                        f"PutEvents refused the last {in_a_row} events in a row and accepted none "
                        f"(this run's first: {stats.refused[0][0]!r}: {stats.refused[0][1]}); check the tracking id and the dataset schema"
                    ) from None
            return
        ledger.record([e["eventId"] for e in todo])
        acked = time.time()
        with lock:
            stats.latencies.append(latency)
            stats.calls += 1
            stats.events += len(todo)
            if received_at:
                stats.lags.extend(acked - received_at[e["eventId"]] for e in todo if e["eventId"] in received_at)

    if concurrency <= 1:
        for user_requests in by_user.values():
            user_worker(user_requests)
        ledger.refuse(stats.refused, accepted=stats.calls > 0)
        return stats
    # Busiest users first: a user's calls are sequential, so one left for last would run alone.
    busiest_first = sorted(by_user.values(), key=len, reverse=True)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="put-events") as pool:
        futures = [pool.submit(user_worker, user_requests) for user_requests in busiest_first]
        errors = [f.exception() for f in futures]
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise first
    ledger.refuse(stats.refused, accepted=stats.calls > 0)
    return stats

