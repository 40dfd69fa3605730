"""The webhook receiver: Amplitude posts here, we land durably, then we reply."""

from amp_personalize.receiver.app import create_app

__all__ = ["create_app"]
