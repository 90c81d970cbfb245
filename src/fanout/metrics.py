"""Metric definitions. A ``Metrics`` takes its ``CollectorRegistry``; tests pass a fresh one.

Label values stay bounded: ``event_type`` goes through ``fanout.catalog.metric_label`` (unknown types fold
into ``other``), outcomes and reasons are closed sets, and no user or connection id is ever a label.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Milliseconds to tens of seconds: a push on a healthy path takes ~5-50 ms; a retried one seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
POST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Every figure the worker exports, named as DESIGN.md fixes them for dashboards and alarms."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.events = Counter(
            "fanout_events", "Consumed events by outcome", ["event_type", "outcome"], registry=registry
        )
        self.deliveries = Counter(
            "fanout_deliveries", "Connection posts by outcome", ["event_type", "outcome"], registry=registry
        )
        self.delivery_latency = Histogram(
            "fanout_delivery_latency_seconds",
            "Event sentAt to post acknowledged",
            ["event_type"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.post_latency = Histogram(
            "fanout_post_latency_seconds",
            "One @connections POST, request to response",
            ["event_type"],
            buckets=POST_BUCKETS,
            registry=registry,
        )
        self.pruned = Counter(
            "fanout_connections_pruned", "Gone connection records deleted", registry=registry
        )
        self.retries = Counter("fanout_post_retries", "Posts retried", ["event_type"], registry=registry)
        self.remainders = Counter(
            "fanout_remainders",
            "Events re-enqueued for the connections that still failed",
            ["event_type"],
            registry=registry,
        )
        self.shards = Counter(
            "fanout_shards",
            "Shards a large audience was split into and put back on the queue",
            ["event_type"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "fanout_dead_lettered", "Messages moved to the dead-letter queue", ["reason"], registry=registry
        )
        self.queue_lag = Histogram(
            "fanout_queue_lag_seconds",
            "SQS SentTimestamp to receive",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.lookup_latency = Histogram(
            "fanout_lookup_latency_seconds",
            "MongoDB connection lookups",
            buckets=POST_BUCKETS,
            registry=registry,
        )
        self.events_in_flight = Gauge(
            "fanout_events_in_flight",
            "Events being fanned out",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.posts_in_flight = Gauge(
            "fanout_posts_in_flight",
            "Posts awaiting an answer",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.throttle_wait = Counter(
            "fanout_throttle_wait_seconds",
            "Time posts waited on the adaptive rate limiter (it paces after 429s)",
            registry=registry,
        )
        self.records_skipped = Counter(
            "fanout_records_skipped",
            "Malformed connection records skipped by lookups (a field missing or of the wrong type)",
            registry=registry,
        )
        self.history_write_failures = Counter(
            "fanout_history_write_failures",
            "History writes that failed: the event was delivered but a resume may answer a resync",
            registry=registry,
        )
        self.ready = Gauge(
            "fanout_ready", "1 while SQS and MongoDB answer", registry=registry, multiprocess_mode="livemin"
        )
        # Socket health, sampled from MongoDB by one process (fanout.worker.census); 0 in the others, so
        # the pool's livesum is the sampler's count.
        self.active_connections = Gauge(
            "fanout_active_connections",
            "Live connection records (expiresAt in the future), sampled once per census interval",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.connections_expired = Counter(
            "fanout_connections_expired",
            "Connection records removed after their expiresAt passed: MongoDB's TTL monitor, estimated",
            registry=registry,
        )
        # fanout_process_restarts_total and fanout_processes come from the pool supervisor
        # (fanout.worker.pool): a child defining them too would export each family twice.
