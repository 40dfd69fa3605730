"""Who may read recommendations, similar items and metrics from the receiver.

The webhook must face the internet for Amplitude; the rest must not by default: any user's list
reveals what they read and liked, and ids can be enumerated. So serving and /metrics answer
only (a) on a listener of their own (AMP_SERVING_PORT, on AMP_SERVING_HOST, loopback by
default), or (b) to a request with `Authorization: Bearer <AMP_READ_TOKEN>`, or (c) when the
webhook's listener is loopback-only (`make up`, a sidecar behind a proxy on the same host).
A token, when set, is asked for on every listener. /healthz stays open: load balancers need it.
"""

from __future__ import annotations

import hmac
import ipaddress

from amp_personalize.settings import Settings

READ_PREFIXES = ("/recommendations/", "/similar-items/")
READ_PATHS = frozenset({"/metrics", "/recommendations", "/similar-items"})


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def is_read_path(path: str) -> bool:
    return path in READ_PATHS or path.startswith(READ_PREFIXES)


class Exposure:
    def __init__(self, settings: Settings) -> None:
        self.token = settings.read_token.encode() if settings.read_token else None
        self.serving_port = settings.serving_port
        self.receiver_host = settings.receiver_host
        self.open_on_webhook_listener = is_loopback(settings.receiver_host) or self.token is not None

    def refusal(self, scope) -> tuple[int, str] | None:
        """(status, why) when this request may not read; None when it may."""
        if self.serving_port is not None:
            if (scope.get("server") or (None, None))[1] != self.serving_port:
                return 404, "not served on the webhook's listener (it is on AMP_SERVING_PORT)"
        elif not self.open_on_webhook_listener:
            return 403, (
                f"recommendations and metrics are not served on a non-loopback address (AMP_RECEIVER_HOST={self.receiver_host}) "
                "without AMP_READ_TOKEN or AMP_SERVING_PORT"
            )
        if self.token is not None and not self._authorized(scope):
            return 401, "missing or wrong Authorization: Bearer <AMP_READ_TOKEN>"
        return None

    def _authorized(self, scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(token, self.token)
        return False

    def describe(self, webhook_url: str) -> str:
        """The start-up line saying where serving and metrics answer, and why not elsewhere."""
        token = " to holders of AMP_READ_TOKEN" if self.token else ""
        if self.serving_port is not None:
            return f"recommendations and /metrics: on their own listener, port {self.serving_port}{token}; not on the webhook's"
        if self.token is not None:
            return f"recommendations and /metrics: on {webhook_url}{token}"
        if self.open_on_webhook_listener:
            return f"recommendations and /metrics: on {webhook_url} (loopback only)"
        return (
            f"recommendations and /metrics are refused (403): {webhook_url} is not a loopback address, and neither "
            "AMP_READ_TOKEN (a bearer token for the app and Prometheus) nor AMP_SERVING_PORT (an internal listener) is set"
        )
