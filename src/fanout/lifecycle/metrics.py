"""The lifecycle's socket-health counters, named as ``deploy/metrics_contract.py`` fixes them.

The local emulator serves them on its ``/metrics`` (it runs the same ``Lifecycle``); the Lambda sends them
to CloudWatch as EMF, one line per invocation at most (``emf.LifecycleEmfEmitter``). A route error is a
handler that raised (answered 500), never a client's bad frame, which gets a ``system.error`` and counts
nothing.
"""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter

# A route key as API Gateway sends it: `$connect`, `$disconnect`, `$default` or a configured action. The
# label keeps only such names (the API's own routes, a handful), so no caller can grow the label set.
_ROUTE = re.compile(r"\$?[a-z][a-z0-9_.]{0,39}")


def route_label(route: object) -> str:
    """The ``route`` label (and the ``Route`` dimension) of a route key; ``other`` for anything odd."""
    return route if isinstance(route, str) and _ROUTE.fullmatch(route) else "other"


class LifecycleMetrics:
    """Connects, disconnects, 401s, 429s, reconnects and route errors, on the registry it is given."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.connects = Counter(
            "fanout_lifecycle_connects", "$connect accepted (a record stored)", registry=registry
        )
        self.disconnects = Counter(
            "fanout_lifecycle_disconnects", "$disconnect handled (the record removed)", registry=registry
        )
        self.unauthorized = Counter(
            "fanout_lifecycle_unauthorized",
            "$connect answered 401: no token, or a bad or expired one",
            registry=registry,
        )
        self.refused = Counter(
            "fanout_lifecycle_connects_refused",
            "$connect answered 429: the user already holds FANOUT_MAX_CONNECTIONS_PER_USER live connections",
            registry=registry,
        )
        self.reconnects = Counter(
            "fanout_lifecycle_reconnects",
            "Connects by a user whose connection closed within the reconnect window",
            registry=registry,
        )
        self.route_errors = Counter(
            "fanout_lifecycle_route_errors",
            "Route handlers that failed (answered 500), by API Gateway route key",
            ["route"],
            registry=registry,
        )

    def route_error(self, route: object) -> None:
        """Count one failed handler of ``route``."""
        self.route_errors.labels(route_label(route)).inc()
