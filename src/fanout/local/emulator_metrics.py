"""The local gateway emulator's own Prometheus counters, served at its ``GET /metrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

#: Emulator count keys (``Emulator.counts``) -> the HTTP status its management API answered.
_POST_STATUS = {
    "delivered": "200",
    "virtual": "200",
    "gone": "410",
    "dropped": "410",
    "throttled": "429",
    "server_error": "500",
    "too_large": "413",
    "forbidden": "403",
}
_CONNECTION_EVENTS = {
    "connected": "connected",
    "disconnected": "disconnected",
    "connect_rejected": "rejected",
}


class GatewayMetrics:
    """The local gateway emulator's own counters, served at its ``GET /metrics``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.posts = Counter(
            "fanout_gateway_posts",
            "Management API requests by HTTP status answered",
            ["status"],
            registry=registry,
        )
        self.connections = Counter(
            "fanout_gateway_connections", "WebSocket lifecycle steps", ["event"], registry=registry
        )
        self.dropped = Counter(
            "fanout_gateway_dropped",
            "Sockets dropped without $disconnect (fault injection)",
            registry=registry,
        )
        self.hung = Counter(
            "fanout_gateway_hung", "Posts delivered, then left hanging (fault injection)", registry=registry
        )
        self.virtual = Counter(
            "fanout_gateway_virtual_posts",
            "Posts to virtual connections (ids starting virt.), answered 200 with no socket",
            registry=registry,
        )
        self.open_connections = Gauge("fanout_gateway_open_connections", "Open WebSockets", registry=registry)

    def count(self, key: str) -> None:
        """Count one of the emulator's ``counts`` keys in the matching Prometheus series."""
        if key in _POST_STATUS:
            self.posts.labels(_POST_STATUS[key]).inc()
        if key in _CONNECTION_EVENTS:
            self.connections.labels(_CONNECTION_EVENTS[key]).inc()
        if key == "dropped":
            self.dropped.inc()
        elif key == "hung":
            self.hung.inc()
        elif key == "virtual":
            self.virtual.inc()
