"""Every setting the product reads, in one object built from the environment.

Settings are read once per process (receiver start, CLI command, Dagster code location load) so a
typo fails loudly at start-up instead of half-way through a run.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

# The longest span any duration setting may name: a century. Past it a value is a slip (an extra
# digit or a unit mix-up), and far enough past it datetime arithmetic overflows inside a run.
MAX_DAYS = 36_500
DEFAULT_RETRAIN_CRON = "0 3 * * *"
# The most items one answer holds: AMP_NUM_RESULTS, `num_results` over HTTP, `--num-results`.
MAX_NUM_RESULTS = 500


class SettingsError(ValueError):
    """A setting is present but unusable; the message names the variable."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name}={value} must be at most {maximum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0, maximum: float | None = None) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value):  # float() reads "inf" and "nan"; neither is a duration or a rate
        raise SettingsError(f"{name}={raw!r} is not a finite number")
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name}={value} must be at most {maximum}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    """A duration in seconds, at most MAX_DAYS (sleeping or adding longer ones overflows)."""
    return _float(env, name, default, minimum, maximum=MAX_DAYS * 86_400)


def parse_partitions_start(raw: str) -> int:
    """An ISO date, or date and time (UTC unless it names an offset), as epoch ms. ValueError if
    it does not parse or is before 1970."""
    try:
        start = datetime.fromisoformat(raw)
        start = start.replace(tzinfo=timezone.utc) if start.tzinfo is None else start.astimezone(timezone.utc)
    except OverflowError:  # 0001-01-01 with an offset east of UTC falls before year 1
        raise ValueError("is before 1970") from None
    except ValueError:
        raise ValueError("is not an ISO date like 2025-01-01") from None
    if start.year < 1970:
        raise ValueError("is before 1970")
    return int(start.timestamp() * 1000)


def _partitions_start(env: Mapping[str, str]) -> str | None:
    """An ISO date (or date and time, UTC unless it says otherwise) from 1970 up to now, or None
    (unset): the partitions then start where the data does (assets/partitions.py)."""
    raw = env.get("AMP_PARTITIONS_START", "").strip()
    if not raw:
        return None
    try:
        start_ms = parse_partitions_start(raw)
    except ValueError as exc:
        raise SettingsError(f"AMP_PARTITIONS_START={raw!r} {exc}") from None
    # A start in the future leaves no window a partition to process: every landed window (whose
    # time is the receive time, never ahead of now) would be refused. Say so now instead.
    start = datetime.fromtimestamp(start_ms / 1000, tz=timezone.utc)
    if start > datetime.now(timezone.utc):
        raise SettingsError(
            f"AMP_PARTITIONS_START={raw!r} is in the future: no landing window could be processed; "
            "it is the first day the window partitions cover"
        )
    return start.isoformat()


def _cron(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip()
    if not value or value == default:
        return default
    # Dagster's own validator for a schedule's cron string (imported only for a custom one: the
    # receiver reads settings too, and does not otherwise load Dagster).
    from dagster._utils.schedules import is_valid_cron_string

    if not is_valid_cron_string(value):
        raise SettingsError(
            f"{name}={value!r} is not a cron schedule Dagster accepts: five fields, minute hour day-of-month "
            "month day-of-week (e.g. '0 3 * * *', daily at 03:00 UTC)"
        )
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
    body_timeout_seconds: float = 30.0
    max_connections: int = 1000
    # Who may read recommendations and metrics (see receiver.exposure): a token, and/or a listener
    # of their own beside the webhook's. repr=False as for the webhook secret.
    read_token: str | None = field(default=None, repr=False)
    serving_host: str = "127.0.0.1"
    serving_port: int | None = None
    # Several machines (SPEC 9): landing shipped to S3, and the lake, models and caches there.
    landing_url: str | None = None
    lake_url: str | None = None
    landing_keep_hours: float = 24.0
    volume_dead_after_seconds: float = 600.0
    # Postgres for state hosts share (the Personalize ledger and its lease, the process lock);
    # repr=False: the URL may carry a password.
    database_url: str | None = field(default=None, repr=False)
    weights_file: Path | None = None
    grace_seconds: float = 30.0
    history_days: int = 90
    dedupe_lookback_hours: int = 24
    future_skew_minutes: int = 10
    # ISO; from_env checks it parses and is not in the future. None: from the data (assets/partitions.py).
    partitions_start: str | None = None
    backend: str = "local"
    retrain_cron: str = DEFAULT_RETRAIN_CRON
    active_days: int = 30
    num_results: int = 25
    exclude_seen: bool = True
    personalize: "PersonalizeSettings" = field(default_factory=lambda: PersonalizeSettings())

    @property
    def partitions_start_ms(self) -> int | None:
        """AMP_PARTITIONS_START as epoch ms (UTC); None when unset."""
        return None if self.partitions_start is None else parse_partitions_start(self.partitions_start)

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
    def ledger_path(self) -> Path:
        """What Personalize has acknowledged (the push's exactly-once record)."""
        return self.data_dir / "personalize" / "ledger.sqlite"

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
        personalize = PersonalizeSettings.from_env(env)
        return cls(
            data_dir=Path(env.get("AMP_DATA_DIR", "").strip() or "data"),
            webhook_secret=env.get("AMP_WEBHOOK_SECRET") or None,
            max_body_bytes=_int(env, "AMP_MAX_BODY_BYTES", cls.max_body_bytes, minimum=1),
            window_minutes=window_minutes,
            segment_max_age_seconds=_seconds(env, "AMP_SEGMENT_MAX_AGE_SECONDS", 15.0, minimum=0.01),
            segment_max_bytes=_int(env, "AMP_SEGMENT_MAX_BYTES", cls.segment_max_bytes, minimum=1024),
            commit_interval_ms=_float(env, "AMP_COMMIT_INTERVAL_MS", 0.0, maximum=MAX_DAYS * 86_400_000),
            commit_max_events=_int(env, "AMP_COMMIT_MAX_EVENTS", 10_000, minimum=1),
            receiver_host=env.get("AMP_RECEIVER_HOST", "").strip() or "127.0.0.1",
            receiver_port=_int(env, "AMP_RECEIVER_PORT", 8000, minimum=1, maximum=65535),
            body_timeout_seconds=_seconds(env, "AMP_BODY_TIMEOUT_SECONDS", cls.body_timeout_seconds, minimum=0.1),
            max_connections=_int(env, "AMP_MAX_CONNECTIONS", cls.max_connections, minimum=1),
            read_token=_read_token(env),
            serving_host=env.get("AMP_SERVING_HOST", "").strip() or "127.0.0.1",
            serving_port=_serving_port(env),
            landing_url=_s3_url(env, "AMP_LANDING_URL"),
            lake_url=_s3_url(env, "AMP_LAKE_URL"),
            landing_keep_hours=_float(env, "AMP_LANDING_KEEP_HOURS", cls.landing_keep_hours, maximum=MAX_DAYS * 24),
            volume_dead_after_seconds=_seconds(env, "AMP_VOLUME_DEAD_AFTER_SECONDS", cls.volume_dead_after_seconds, minimum=1),
            database_url=_database_url(env),
            weights_file=Path(weights) if weights else None,
            grace_seconds=_seconds(env, "AMP_GRACE_SECONDS", 30.0),
            history_days=_int(env, "AMP_HISTORY_DAYS", 90, minimum=1, maximum=MAX_DAYS),
            dedupe_lookback_hours=_int(env, "AMP_DEDUPE_LOOKBACK_HOURS", 24, minimum=0, maximum=MAX_DAYS * 24),
            future_skew_minutes=_int(env, "AMP_FUTURE_SKEW_MINUTES", 10, minimum=0, maximum=MAX_DAYS * 1440),
            partitions_start=_partitions_start(env),
            backend=_backend(env, personalize),
            retrain_cron=_cron(env, "AMP_RETRAIN_CRON", DEFAULT_RETRAIN_CRON),
            active_days=_int(env, "AMP_ACTIVE_DAYS", 30, minimum=1, maximum=MAX_DAYS),
            num_results=_int(env, "AMP_NUM_RESULTS", 25, minimum=1, maximum=MAX_NUM_RESULTS),
            exclude_seen=_choice(env, "AMP_EXCLUDE_SEEN", "true", ("true", "false")) == "true",
            personalize=personalize,
        )


def _s3_url(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    from amp_personalize.storage.s3 import S3Url, S3UrlError

    try:
        return str(S3Url.parse(raw))
    except S3UrlError as exc:
        raise SettingsError(f"{name}={exc}") from None


def _database_url(env: Mapping[str, str]) -> str | None:
    raw = env.get("AMP_DATABASE_URL", "").strip()
    if raw and not raw.startswith(("postgresql://", "postgres://", "postgresql+psycopg2://")):
        # Not echoed: the URL may carry a password.
        raise SettingsError("AMP_DATABASE_URL must be a PostgreSQL URL: postgresql://user:password@host:5432/database")
    return raw or None


def _read_token(env: Mapping[str, str]) -> str | None:
    token = env.get("AMP_READ_TOKEN") or None
    if token is not None and token == env.get("AMP_WEBHOOK_SECRET"):
        # The webhook's secret is configured in Amplitude, the read token in the app: one leaked
        # must not open the other.
        raise SettingsError("AMP_READ_TOKEN must differ from AMP_WEBHOOK_SECRET")
    return token


def _serving_port(env: Mapping[str, str]) -> int | None:
    if not env.get("AMP_SERVING_PORT", "").strip():
        return None
    port = _int(env, "AMP_SERVING_PORT", 0, minimum=1, maximum=65535)
    if port == _int(env, "AMP_RECEIVER_PORT", 8000, minimum=1, maximum=65535):
        raise SettingsError(f"AMP_SERVING_PORT={port} is the webhook's port (AMP_RECEIVER_PORT): give serving a port of its own")
    return port


def _backend(env: Mapping[str, str], personalize: "PersonalizeSettings") -> str:
    """`personalize` once any Personalize ARN or tracking id is set, unless AMP_BACKEND says otherwise."""
    default = "personalize" if personalize.configured() else "local"
    backend = _choice(env, "AMP_BACKEND", default, ("local", "personalize"))
    if backend == "personalize" and not personalize.configured():
        raise SettingsError(
            "AMP_BACKEND=personalize needs AWS_PERSONALIZE_TRACKING_ID or AWS_PERSONALIZE_CAMPAIGN_ARN; "
            "`amp-personalize personalize setup` creates the resources and prints what to export"
        )
    return backend


def _arn(env: Mapping[str, str], name: str, kind: str) -> str | None:
    value = env.get(name, "").strip()
    if value and not (value.startswith("arn:") and f":{kind}/" in value):
        raise SettingsError(f"{name}={value!r} is not a Personalize {kind} ARN (arn:aws:personalize:REGION:ACCOUNT:{kind}/NAME)")
    return value or None


@dataclass(frozen=True)
class PersonalizeSettings:
    """The AWS Personalize backend's settings; AWS credentials and region come from the SDK's chain."""

    tracking_id: str | None = None
    campaign_arn: str | None = None
    sims_campaign_arn: str | None = None
    dataset_group_arn: str | None = None
    interactions_dataset_arn: str | None = None
    solution_arn: str | None = None
    filter_arn: str | None = None
    role_arn: str | None = None
    s3_url: str | None = None  # s3://bucket/prefix for import CSVs and batch inference files
    push_tps: float = 50.0
    push_concurrency: int = 4
    push_interval_seconds: int = 30
    recommend_tps: float = 20.0
    recommend_concurrency: int = 8
    batch_users: int = 20_000
    training_mode: str = "FULL"
    job_timeout_seconds: float = 4 * 3600
    poll_seconds: float = 30.0

    def configured(self) -> bool:
        return bool(self.tracking_id or self.campaign_arn)

    def destination(self) -> dict[str, str | None]:
        """Where pushed and imported events go: what the ledger's record of them is true of."""
        return {"dataset_group_arn": self.dataset_group_arn, "interactions_dataset_arn": self.interactions_dataset_arn,
                "tracking_id": self.tracking_id}

    def require(self, *names: str) -> None:
        """Fail naming every missing variable the operation at hand needs."""
        missing = [_ENV_NAMES[n] for n in names if not getattr(self, n)]
        if missing:
            raise SettingsError(
                f"the personalize backend needs {', '.join(missing)} for this; "
                "`amp-personalize personalize setup` creates the resources and prints what to export"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "PersonalizeSettings":
        s3_url = env.get("AMP_PERSONALIZE_S3_URL", "").strip() or None
        if s3_url and not s3_url.startswith("s3://"):
            raise SettingsError(f"AMP_PERSONALIZE_S3_URL={s3_url!r} must look like s3://bucket/prefix")
        tracking_id = env.get("AWS_PERSONALIZE_TRACKING_ID", "").strip() or None
        role = env.get("AWS_PERSONALIZE_ROLE_ARN", "").strip() or None
        if role and not role.startswith("arn:"):
            raise SettingsError(f"AWS_PERSONALIZE_ROLE_ARN={role!r} is not an IAM role ARN")
        mode = _choice(env, "AMP_PERSONALIZE_TRAINING_MODE", "full", ("full", "update")).upper()
        return cls(
            tracking_id=tracking_id,
            campaign_arn=_arn(env, "AWS_PERSONALIZE_CAMPAIGN_ARN", "campaign"),
            sims_campaign_arn=_arn(env, "AWS_PERSONALIZE_SIMS_CAMPAIGN_ARN", "campaign"),
            dataset_group_arn=_arn(env, "AWS_PERSONALIZE_DATASET_GROUP_ARN", "dataset-group"),
            interactions_dataset_arn=_arn(env, "AWS_PERSONALIZE_INTERACTIONS_DATASET_ARN", "dataset"),
            solution_arn=_arn(env, "AWS_PERSONALIZE_SOLUTION_ARN", "solution"),
            filter_arn=_arn(env, "AWS_PERSONALIZE_FILTER_ARN", "filter"),
            role_arn=role,
            s3_url=s3_url.rstrip("/") if s3_url else None,
            push_tps=_float(env, "AMP_PERSONALIZE_PUSH_TPS", cls.push_tps, minimum=0.1),
            push_concurrency=_int(env, "AMP_PERSONALIZE_PUSH_CONCURRENCY", cls.push_concurrency, minimum=1),
            push_interval_seconds=_int(env, "AMP_PERSONALIZE_PUSH_INTERVAL_SECONDS", cls.push_interval_seconds, minimum=1, maximum=MAX_DAYS * 86_400),
            recommend_tps=_float(env, "AMP_PERSONALIZE_RECOMMEND_TPS", cls.recommend_tps, minimum=0.1),
            recommend_concurrency=_int(env, "AMP_PERSONALIZE_RECOMMEND_CONCURRENCY", cls.recommend_concurrency, minimum=1),
            batch_users=_int(env, "AMP_PERSONALIZE_BATCH_USERS", cls.batch_users, minimum=1),
            training_mode=mode,
            job_timeout_seconds=_seconds(env, "AMP_PERSONALIZE_JOB_TIMEOUT_SECONDS", cls.job_timeout_seconds, minimum=1),
            poll_seconds=_seconds(env, "AMP_PERSONALIZE_POLL_SECONDS", cls.poll_seconds, minimum=0.01),
        )


_ENV_NAMES = {
    "tracking_id": "AWS_PERSONALIZE_TRACKING_ID",
    "campaign_arn": "AWS_PERSONALIZE_CAMPAIGN_ARN",
    "sims_campaign_arn": "AWS_PERSONALIZE_SIMS_CAMPAIGN_ARN",
    "dataset_group_arn": "AWS_PERSONALIZE_DATASET_GROUP_ARN",
    "interactions_dataset_arn": "AWS_PERSONALIZE_INTERACTIONS_DATASET_ARN",
    "solution_arn": "AWS_PERSONALIZE_SOLUTION_ARN",
    "filter_arn": "AWS_PERSONALIZE_FILTER_ARN",
    "role_arn": "AWS_PERSONALIZE_ROLE_ARN",
    "s3_url": "AMP_PERSONALIZE_S3_URL",
}


def env_name(setting: str) -> str:
    """The environment variable a Personalize setting comes from."""
    return _ENV_NAMES.get(setting, setting)
