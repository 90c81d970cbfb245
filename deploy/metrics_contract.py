"""The CloudWatch metric contract between the worker and this stack's dashboard and alarms.

The worker emits these through the CloudWatch Embedded Metric Format (``src/fanout/emf.py``, which exports
the same names as ``CLOUDWATCH_METRICS``) into the namespace set by ``FANOUT_CLOUDWATCH_NAMESPACE``.
``tests/deploy`` checks that every metric the dashboard and alarms read is listed here, with one of the
dimension sets listed here, and that this table agrees with the worker's.
"""

from __future__ import annotations

from dataclasses import dataclass

NAMESPACE = "Fanout"

EVENT_OUTCOMES = ("delivered", "partial", "no_connections", "expired", "invalid", "failed", "disabled")
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
)


@dataclass(frozen=True)
class MetricSpec:
    unit: str
    # Every dimension set the worker emits the metric with; () is the metric with no dimension.
    dimension_sets: tuple[tuple[str, ...], ...]
    # The values of the Outcome dimension, for the metrics that have one.
    outcomes: tuple[str, ...] = ()


METRICS: dict[str, MetricSpec] = {
    "Events": MetricSpec("Count", (("EventType", "Outcome"), ("Outcome",)), EVENT_OUTCOMES),
    "Deliveries": MetricSpec("Count", (("EventType", "Outcome"), ("Outcome",)), DELIVERY_OUTCOMES),
    "DeliveryLatency": MetricSpec("Milliseconds", (("EventType",), ())),
    "ConnectionsPruned": MetricSpec("Count", ((),)),
    "DeadLettered": MetricSpec("Count", (("Reason",), ())),
    "Retries": MetricSpec("Count", ((),)),
    "Remainders": MetricSpec("Count", ((),)),
    "QueueLag": MetricSpec("Milliseconds", ((),)),
    "ProcessRestarts": MetricSpec("Count", ((),)),
    "Ready": MetricSpec("Count", ((),)),  # 1 while SQS and MongoDB answer, else 0
}

UNITS: dict[str, str] = {name: spec.unit for name, spec in METRICS.items()}
