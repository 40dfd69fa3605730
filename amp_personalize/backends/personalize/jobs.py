"""Waiting on Personalize's long-running jobs: imports, solution versions, campaigns, batches.

Every job is polled to a final state with a timeout. A failed or stuck job fails the run with
Personalize's own reason and the ARN to look up, and the caller records nothing as done.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable


class JobFailed(RuntimeError):
    """A Personalize job ended in a failed state, or did not finish in time."""


@dataclass(frozen=True)
class Poll:
    timeout_seconds: float = 4 * 3600
    poll_seconds: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


def wait_for(describe: Callable[[], dict], what: str, poll: Poll) -> dict:
    """Call `describe` until its `status` is ACTIVE; raise JobFailed on a failure or the timeout."""
    deadline = poll.clock() + poll.timeout_seconds
    while True:
        found = describe()
        status = found["status"]
        if status == "ACTIVE":
            return found
        if status.endswith("FAILED"):
            raise JobFailed(f"{what} is {status}: {found.get('failureReason', 'no reason given')}")
        if poll.clock() > deadline:
            raise JobFailed(f"{what} is still {status} after {poll.timeout_seconds:.0f} s; check the Personalize console")
        poll.sleep(poll.poll_seconds)


def job_name(kind: str, now: datetime | None = None) -> str:
    """Sortable and unique (names are unique per account, and two trainings can start in one
    second), within the API's name pattern ([a-zA-Z0-9][a-zA-Z0-9-_]*, 63 characters)."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return re.sub(r"[^a-zA-Z0-9_-]", "-", f"amp-{kind}-{stamp}-{secrets.token_hex(3)}")[:63]
