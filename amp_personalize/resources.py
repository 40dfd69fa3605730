"""The one Dagster resource: where the data lives and the knobs the assets read.

Built from Settings (the environment) in definitions.py; tests build it with a temp data_dir.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import dagster as dg

from amp_personalize.backends.personalize.resource import PersonalizeResource
from amp_personalize.events import WeightTable, load_weights
from amp_personalize.settings import Settings

# The settings the assets read, mirrored on the resource so the Dagster UI shows them and a run
# can override them; the two paths are strings there because run config is JSON.
MIRRORED = (
    "window_minutes", "history_days", "dedupe_lookback_hours", "future_skew_minutes",
    "grace_seconds", "active_days", "num_results", "exclude_seen", "backend",
)


class AmpResource(dg.ConfigurableResource):
    data_dir: str = "data"
    weights_file: str | None = None
    window_minutes: int = Settings.window_minutes
    history_days: int = Settings.history_days
    dedupe_lookback_hours: int = Settings.dedupe_lookback_hours
    future_skew_minutes: int = Settings.future_skew_minutes
    grace_seconds: float = Settings.grace_seconds
    active_days: int = Settings.active_days
    num_results: int = Settings.num_results
    exclude_seen: bool = Settings.exclude_seen
    backend: str = Settings.backend

    @classmethod
    def from_settings(cls, settings: Settings) -> "AmpResource":
        return cls(
            data_dir=str(settings.data_dir),
            weights_file=str(settings.weights_file) if settings.weights_file else None,
            **{name: getattr(settings, name) for name in MIRRORED},
        )

    def settings(self) -> Settings:
        return replace(
            Settings.from_env({}),
            data_dir=Path(self.data_dir),
            weights_file=Path(self.weights_file) if self.weights_file else None,
            **{name: getattr(self, name) for name in MIRRORED},
        )

    def recommender(self, personalize: PersonalizeResource):
        """The recommender backend the settings choose: `local`, or `personalize` with its resource."""
        if self.backend == "personalize":
            from amp_personalize.backends.personalize.backend import PersonalizeBackend

            return PersonalizeBackend(personalize.settings(), personalize.clients(), self.settings().ledger_path, self.weights())
        from amp_personalize.backends.local.backend import LocalBackend
        from amp_personalize.backends.local.model import LocalParams

        return LocalBackend(LocalParams(exclude_seen=self.exclude_seen))

    def weights(self) -> WeightTable:
        # Read at every materialization, so an edited weight file applies to rebuilt windows.
        return load_weights(Path(self.weights_file) if self.weights_file else None)
