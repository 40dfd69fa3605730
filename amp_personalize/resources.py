"""The one Dagster resource: where the data lives and the knobs the assets read.

Built from Settings (the environment) in definitions.py; tests build it with a temp data_dir.
It carries every setting the Dagster code reads, so sensors and assets see the values the
code location was loaded with (the one reading of the environment), shown in the UI's resource
page and overridable per run. Two things are not on it: the webhook secret and the read token
(only the receiver needs them, and resource config is shown in the UI) and the Personalize settings, which are the
`personalize` resource's.
"""

from __future__ import annotations

import os
from dataclasses import fields, replace
from pathlib import Path

import dagster as dg

from amp_personalize.backends.personalize.resource import PersonalizeResource
from amp_personalize.events import WeightTable, load_weights
from amp_personalize.settings import Settings

# Settings that never reach a resource (see the module docstring).
NOT_CARRIED = frozenset({"webhook_secret", "read_token", "personalize"})
# Paths are strings on the resource because run config is JSON.
PATHS = frozenset({"data_dir", "weights_file"})
DATABASE_URL = "AMP_DATABASE_URL"


class AmpResource(dg.ConfigurableResource):
    # Defaults are the settings' own, so the two cannot drift apart.
    data_dir: str = str(Settings.data_dir)
    weights_file: str | None = None
    max_body_bytes: int = Settings.max_body_bytes
    window_minutes: int = Settings.window_minutes
    segment_max_age_seconds: float = Settings.segment_max_age_seconds
    segment_max_bytes: int = Settings.segment_max_bytes
    commit_interval_ms: float = Settings.commit_interval_ms
    commit_max_events: int = Settings.commit_max_events
    receiver_host: str = Settings.receiver_host
    receiver_port: int = Settings.receiver_port
    body_timeout_seconds: float = Settings.body_timeout_seconds
    max_connections: int = Settings.max_connections
    serving_host: str = Settings.serving_host
    serving_port: int | None = Settings.serving_port
    landing_url: str | None = Settings.landing_url
    lake_url: str | None = Settings.lake_url
    landing_keep_hours: float = Settings.landing_keep_hours
    volume_dead_after_seconds: float = Settings.volume_dead_after_seconds
    # A URL with a password would show in the UI's resource page: the variable's name is kept
    # instead (dg.EnvVar), and read when a run or sensor needs it.
    database_url: str | None = Settings.database_url
    grace_seconds: float = Settings.grace_seconds
    history_days: int = Settings.history_days
    dedupe_lookback_hours: int = Settings.dedupe_lookback_hours
    future_skew_minutes: int = Settings.future_skew_minutes
    partitions_start: str | None = Settings.partitions_start
    backend: str = Settings.backend
    retrain_cron: str = Settings.retrain_cron
    active_days: int = Settings.active_days
    num_results: int = Settings.num_results
    exclude_seen: bool = Settings.exclude_seen

    @classmethod
    def from_settings(cls, settings: Settings) -> "AmpResource":
        values = {f.name: getattr(settings, f.name) for f in fields(Settings) if f.name not in NOT_CARRIED}
        values = {name: str(value) if name in PATHS and value is not None else value for name, value in values.items()}
        if settings.database_url and os.environ.get(DATABASE_URL, "").strip() == settings.database_url:
            values["database_url"] = dg.EnvVar(DATABASE_URL)  # never the value: it may hold a password
        return cls(**values)

    def settings(self, personalize: PersonalizeResource | None = None) -> Settings:
        """The settings this resource was built from (and the `personalize` resource's, if given)."""
        values = {f.name: getattr(self, f.name) for f in fields(Settings) if f.name not in NOT_CARRIED}
        if isinstance(values["database_url"], dg.EnvVar):  # outside a run: not resolved by Dagster
            values["database_url"] = values["database_url"].get_value()
        values["database_url"] = (values["database_url"] or "").strip() or None  # a secret file's newline
        values.update({name: Path(values[name]) for name in PATHS if values[name] is not None})
        settings = Settings(**values)
        return replace(settings, personalize=personalize.settings()) if personalize is not None else settings

    def recommender(self, personalize: PersonalizeResource):
        """The recommender backend the settings choose: `local`, or `personalize` with its resource."""
        if self.backend == "personalize":
            from amp_personalize.backends.personalize.backend import PersonalizeBackend

            return PersonalizeBackend(personalize.settings(), personalize.clients(), self.settings(), self.weights())
        from amp_personalize.backends.local.backend import LocalBackend
        from amp_personalize.backends.local.model import LocalParams

        return LocalBackend(LocalParams(exclude_seen=self.exclude_seen))

    def weights(self) -> WeightTable:
        # Read at every materialization, so an edited weight file applies to rebuilt windows.
        return load_weights(Path(self.weights_file) if self.weights_file else None)
