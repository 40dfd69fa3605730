"""Every setting the product reads, in one object built from the environment.

Settings are read once per process (receiver start, CLI command, Dagster code location load) so a
typo fails loudly at start-up instead of half-way through a run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping


class SettingsError(ValueError):
    """A setting is present but unusable; the message names the variable."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not value >= minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name, "").strip().lower() or default
    if value not in allowed:
        raise SettingsError(f"{name}={value!r} must be one of {', '.join(allowed)}")
    return value


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("data")
    # repr=False keeps the secret out of logs and tracebacks that print the settings.
    webhook_secret: str | None = field(default=None, repr=False)
    max_body_bytes: int = 20 * 1024 * 1024
    window_minutes: int = 60
    segment_max_age_seconds: float = 15.0
    segment_max_bytes: int = 64 * 1024 * 1024
    commit_interval_ms: float = 0.0
    commit_max_events: int = 10_000
    receiver_host: str = "127.0.0.1"
    receiver_port: int = 8000
    weights_file: Path | None = None
    grace_seconds: float = 30.0
    history_days: int = 90
    dedupe_lookback_hours: int = 24
    future_skew_minutes: int = 10
    partitions_start: str = "2025-01-01"
    backend: str = "local"
    retrain_cron: str = "0 3 * * *"
    active_days: int = 30
    num_results: int = 25
    exclude_seen: bool = True

    @property
    def landing_dir(self) -> Path:
        return self.data_dir / "landing"

    @property
    def lake_dir(self) -> Path:
        return self.data_dir / "lake"

    @property
    def warehouse_path(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def quarantine_dir(self) -> Path:
        # Outside landing/ so that nothing globbing windows ever reads a torn fragment.
        return self.data_dir / "quarantine"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        window_minutes = _int(env, "AMP_WINDOW_MINUTES", 60, minimum=1)
        if (60 % window_minutes if window_minutes < 60 else (window_minutes % 60 or 1440 % window_minutes)):
            raise SettingsError(
                f"AMP_WINDOW_MINUTES={window_minutes} must divide an hour or be whole hours dividing a day, "
                "so that windows line up with the clock (and a cron schedule): 1, 5, 15, 30, 60, 120, 360, ..."
            )
        weights = env.get("AMP_WEIGHTS_FILE", "").strip()
        return cls(
            data_dir=Path(env.get("AMP_DATA_DIR", "").strip() or "data"),
            webhook_secret=env.get("AMP_WEBHOOK_SECRET") or None,
            max_body_bytes=_int(env, "AMP_MAX_BODY_BYTES", cls.max_body_bytes, minimum=1),
            window_minutes=window_minutes,
            segment_max_age_seconds=_float(env, "AMP_SEGMENT_MAX_AGE_SECONDS", 15.0, minimum=0.01),
            segment_max_bytes=_int(env, "AMP_SEGMENT_MAX_BYTES", cls.segment_max_bytes, minimum=1024),
            commit_interval_ms=_float(env, "AMP_COMMIT_INTERVAL_MS", 0.0),
            commit_max_events=_int(env, "AMP_COMMIT_MAX_EVENTS", 10_000, minimum=1),
            receiver_host=env.get("AMP_RECEIVER_HOST", "").strip() or "127.0.0.1",
            receiver_port=_int(env, "AMP_RECEIVER_PORT", 8000, minimum=0),
            weights_file=Path(weights) if weights else None,
            grace_seconds=_float(env, "AMP_GRACE_SECONDS", 30.0),
            history_days=_int(env, "AMP_HISTORY_DAYS", 90, minimum=1),
            dedupe_lookback_hours=_int(env, "AMP_DEDUPE_LOOKBACK_HOURS", 24, minimum=0),
            future_skew_minutes=_int(env, "AMP_FUTURE_SKEW_MINUTES", 10, minimum=0),
            partitions_start=env.get("AMP_PARTITIONS_START", "").strip() or "2025-01-01",
            backend=_choice(env, "AMP_BACKEND", "local", ("local",)),
            retrain_cron=env.get("AMP_RETRAIN_CRON", "").strip() or "0 3 * * *",
            active_days=_int(env, "AMP_ACTIVE_DAYS", 30, minimum=1),
            num_results=_int(env, "AMP_NUM_RESULTS", 25, minimum=1),
            exclude_seen=_choice(env, "AMP_EXCLUDE_SEEN", "true", ("true", "false")) == "true",
        )
