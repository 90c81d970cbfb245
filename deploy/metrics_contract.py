"""The metric contract between the code and this stack's dashboards and alarms.

CloudWatch: the worker emits its metrics through the Embedded Metric Format (``src/fanout/emf.py``, which
exports the same names as ``CLOUDWATCH_METRICS``) into the namespace set by ``FANOUT_CLOUDWATCH_NAMESPACE``;
the lifecycle Lambda emits the socket-side ones (``source="lifecycle"``) as EMF into the same namespace.
Each metric also names the Prometheus series it mirrors.

``tests/deploy`` checks that every metric the dashboard and alarms read is listed here, with one of the
dimension sets listed here, and that this table agrees with the worker's; ``tests/unit/test_metrics.py``
checks the Prometheus names against what the code exports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

NAMESPACE = "Fanout"

EVENT_OUTCOMES = (
    "delivered",
    "partial",
    "no_connections",
    "expired",
    "invalid",
    "failed",
    "disabled",
    "conflated",
    "superseded",
)
DELIVERY_OUTCOMES = (
    "ok",
    "gone",
    "throttled",
    "server_error",
    "timeout",
    "unreachable",
    "forbidden",
    "too_large",
    "rejected",
    "expired",
    "unsupported_version",
)


@dataclass(frozen=True)
class MetricSpec:
    unit: str
    # Every dimension set the metric is emitted with; () is the metric with no dimension.
    dimension_sets: tuple[tuple[str, ...], ...]
    # The Prometheus series with the same figures (a counter's ``_total`` name, a histogram's base name).
    prometheus: str
    # The values of the Outcome dimension, for the metrics that have one.
    outcomes: tuple[str, ...] = ()
    # Who emits it: the worker pool (emf.py) or the lifecycle Lambda.
    source: Literal["worker", "lifecycle"] = "worker"


METRICS: dict[str, MetricSpec] = {
    "Events": MetricSpec(
        "Count", (("EventType", "Outcome"), ("Outcome",)), "fanout_events_total", EVENT_OUTCOMES
    ),
    "Deliveries": MetricSpec(
        "Count", (("EventType", "Outcome"), ("Outcome",)), "fanout_deliveries_total", DELIVERY_OUTCOMES
    ),
    "DeliveryLatency": MetricSpec("Milliseconds", (("EventType",), ()), "fanout_delivery_latency_seconds"),
    "ConnectionsPruned": MetricSpec("Count", ((),), "fanout_connections_pruned_total"),
    "DeadLettered": MetricSpec("Count", (("Reason",), ()), "fanout_dead_lettered_total"),
    "Retries": MetricSpec("Count", ((),), "fanout_post_retries_total"),
    "Remainders": MetricSpec("Count", ((),), "fanout_remainders_total"),
    "QueueLag": MetricSpec("Milliseconds", ((),), "fanout_queue_lag_seconds"),
    "ProcessRestarts": MetricSpec("Count", ((),), "fanout_process_restarts_total"),
    "Ready": MetricSpec("Count", ((),), "fanout_ready"),  # 1 while SQS and MongoDB answer, else 0
    # Socket health. A gauge sampled from MongoDB by one process of the pool, once per interval:
    "ActiveConnections": MetricSpec("Count", ((),), "fanout_active_connections"),
    # Records MongoDB's TTL monitor removed since the last sample, estimated by the worker:
    "ConnectionsExpired": MetricSpec("Count", ((),), "fanout_connections_expired_total"),
    "Connects": MetricSpec("Count", ((),), "fanout_lifecycle_connects_total", source="lifecycle"),
    "Disconnects": MetricSpec("Count", ((),), "fanout_lifecycle_disconnects_total", source="lifecycle"),
    # $connect answered 401 (no token, a bad or expired one):
    "ConnectsUnauthorized": MetricSpec(
        "Count", ((),), "fanout_lifecycle_unauthorized_total", source="lifecycle"
    ),
    # $connect answered 429: the user already holds FANOUT_MAX_CONNECTIONS_PER_USER live connections:
    "ConnectsRefused": MetricSpec(
        "Count", ((),), "fanout_lifecycle_connects_refused_total", source="lifecycle"
    ),
    # A route's handler failed (the Route dimension is the API Gateway route key, e.g. `$connect`):
    "RouteErrors": MetricSpec(
        "Count", (("Route",), ()), "fanout_lifecycle_route_errors_total", source="lifecycle"
    ),
    # A connect by a user who disconnected within a short window:
    "Reconnects": MetricSpec("Count", ((),), "fanout_lifecycle_reconnects_total", source="lifecycle"),
}

# In this contract but not yet emitted by src/: the drift tests accept their absence from emf.py and from
# the Prometheus registries until the code emits them; remove each name once it does. Empty: src emits all.
PENDING_IN_SRC: frozenset[str] = frozenset()
PENDING_PROMETHEUS = frozenset(METRICS[name].prometheus for name in PENDING_IN_SRC)

# The worker's CloudWatch metrics: name -> unit, as emf.CLOUDWATCH_METRICS has them.
UNITS: dict[str, str] = {name: spec.unit for name, spec in METRICS.items() if spec.source == "worker"}
# The lifecycle Lambda's: name -> unit, as emf.LIFECYCLE_METRICS has them.
LIFECYCLE_UNITS: dict[str, str] = {
    name: spec.unit for name, spec in METRICS.items() if spec.source == "lifecycle"
}
