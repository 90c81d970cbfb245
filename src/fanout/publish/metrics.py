"""The background publishers' metrics, in the domain service's own registry.

Publishers that share a registry share these metrics (a registry holds each name once), so a service may
run a sync and an async publisher side by side. ``event_type`` goes through ``catalog.metric_label``.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from fanout.publish.batch import Entry

BATCH_BUCKETS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)

#: Why an event was not sent: SQS refused it for its content, the buffer stayed full (the caller got
#: ``PublishBufferFull``), or it was still unsent when the publisher closed.
FAILED_REASONS = ("refused", "buffer_full", "unsent_at_close")


class PublisherMetrics:
    """Buffered, sent, failed and retried events per type; buffer depth; entries per batch call."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.buffered = Counter(
            "fanout_publisher_buffered", "Events accepted into the buffer", ["event_type"], registry=registry
        )
        self.sent = Counter("fanout_publisher_sent", "Events SQS accepted", ["event_type"], registry=registry)
        self.failed = Counter(
            "fanout_publisher_failed",
            "Events not sent: refused by SQS for their content, buffer full, or unsent at close",
            ["event_type", "reason"],
            registry=registry,
        )
        self.retried = Counter(
            "fanout_publisher_retried",
            "Events sent again after a failed call or entry",
            ["event_type"],
            registry=registry,
        )
        self.pending = Gauge(
            "fanout_publisher_pending",
            "Events buffered or being sent",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.batch_size = Histogram(
            "fanout_publisher_batch_size",
            "Entries per SendMessageBatch call",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )

    def count(self, counter: Counter, entries: Iterable[Entry], *labels: str) -> None:
        for entry in entries:
            counter.labels(entry.label, *labels).inc()


_shared: weakref.WeakKeyDictionary[CollectorRegistry, PublisherMetrics] = weakref.WeakKeyDictionary()


def metrics_for(registry: CollectorRegistry | None) -> PublisherMetrics:
    """The publisher metrics of ``registry`` (prometheus-client's default one when None), made once."""
    registry = REGISTRY if registry is None else registry
    found = _shared.get(registry)
    if found is None:
        found = _shared[registry] = PublisherMetrics(registry)
    return found
