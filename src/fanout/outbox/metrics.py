"""The outbox relay's metrics: how far behind the outbox is, and what the relay sent."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class OutboxMetrics:
    """Lag and pending entries (every relay reports them), entries relayed or refused, the leaseholder."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.lag = Gauge(
            "fanout_outbox_lag_seconds",
            "Age of the oldest outbox entry not yet relayed; 0 when none waits",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.pending = Gauge(
            "fanout_outbox_pending",
            "Outbox entries not yet relayed",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.relayed = Counter(
            "fanout_outbox_relayed", "Outbox entries sent to SQS", ["event_type"], registry=registry
        )
        self.refused = Counter(
            "fanout_outbox_refused",
            "Outbox entries SQS refused for good (marked relayed with the error)",
            ["event_type"],
            registry=registry,
        )
        self.leader = Gauge(
            "fanout_outbox_relay_leader",
            "1 while this relay holds the outbox's lease",
            registry=registry,
            multiprocess_mode="livesum",
        )
