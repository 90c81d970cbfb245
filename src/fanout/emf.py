"""CloudWatch metrics through the Embedded Metric Format (EMF): one aggregate per interval on stdout.

Every interval the emitter reads the process's Prometheus registry, turns the change since its last read
into a few EMF documents (one JSON line each) and prints them; the ECS ``awslogs`` driver ships them to
CloudWatch Logs, which extracts the metrics without any API call. So CloudWatch sees the same figures as
Prometheus, and a busy worker still prints a handful of lines a minute, not one per post.

Latency histograms become EMF value arrays spread evenly inside each bucket (the interpolation Prometheus'
``histogram_quantile`` uses), so a CloudWatch p95 agrees with the Grafana one to the bucket's resolution.

The lifecycle Lambda uses ``LifecycleEmfEmitter`` on its own counters: flushed at the end of each
invocation, one line at most (an invocation handles one route), none when nothing was counted.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator
from typing import Any

from prometheus_client import CollectorRegistry

#: The CloudWatch contract (namespace ``Fanout`` by default): metric name -> unit. Alarms depend on it.
CLOUDWATCH_METRICS: dict[str, str] = {
    "Events": "Count",  # dimensions [EventType, Outcome], [Outcome]
    "Deliveries": "Count",  # [EventType, Outcome], [Outcome]
    "DeliveryLatency": "Milliseconds",  # [EventType], none
    "ConnectionsPruned": "Count",
    "DeadLettered": "Count",  # [Reason], none
    "Retries": "Count",
    "Remainders": "Count",
    "QueueLag": "Milliseconds",
    "ProcessRestarts": "Count",
    "Ready": "Count",  # 0 or 1
    "ActiveConnections": "Count",  # sent only by the process that samples it (worker.census)
    "ConnectionsExpired": "Count",  # estimated by that process
}
#: Metrics only the sampling process sends: from the others they would be zeros, or the same count twice.
SAMPLED_METRICS = frozenset({"ActiveConnections", "ConnectionsExpired"})
#: The lifecycle Lambda's CloudWatch metrics (``LifecycleEmfEmitter``) -> unit.
LIFECYCLE_METRICS: dict[str, str] = {
    "Connects": "Count",
    "Disconnects": "Count",
    "ConnectsUnauthorized": "Count",
    "ConnectsRefused": "Count",
    "Reconnects": "Count",
    "RouteErrors": "Count",  # dimensions [Route], none
}
#: Lifecycle metric -> the Prometheus counter it mirrors (route errors aside: they have a label).
_LIFECYCLE_SERIES = {
    "Connects": "fanout_lifecycle_connects_total",
    "Disconnects": "fanout_lifecycle_disconnects_total",
    "ConnectsUnauthorized": "fanout_lifecycle_unauthorized_total",
    "ConnectsRefused": "fanout_lifecycle_connects_refused_total",
    "Reconnects": "fanout_lifecycle_reconnects_total",
}
_UNITS = {**CLOUDWATCH_METRICS, **LIFECYCLE_METRICS}

#: EMF takes at most 100 values for one metric in one document.
MAX_VALUES = 100
#: Latency values per histogram per interval at most; beyond it every bucket's count scales down evenly.
MAX_SAMPLES = 1000

_Key = tuple[str, tuple[tuple[str, str], ...]]
_Labels = dict[str, str]


def _snapshot(registry: CollectorRegistry) -> tuple[dict[_Key, float], dict[_Key, float]]:
    """(cumulative samples of counters and histograms, current gauge values) keyed by name and labels."""
    cumulative: dict[_Key, float] = {}
    gauges: dict[_Key, float] = {}
    for family in registry.collect():
        target = gauges if family.type == "gauge" else cumulative
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                target[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return cumulative, gauges


def _spread(buckets: list[tuple[float, float]], scale: float) -> list[float]:
    """Latency values (ms) for cumulative ``(le, count)`` bucket deltas, spread evenly inside each bucket."""
    values: list[float] = []
    lower, below = 0.0, 0.0
    for upper, cumulative in sorted(buckets):
        count = cumulative - below
        below = cumulative
        if count > 0:
            n = max(1, round(count * scale))
            if upper == float("inf"):  # above the last bound: all we know is the bound
                values.extend([round(lower * 1000, 3)] * n)
            else:
                values.extend(round((lower + (upper - lower) * (i + 0.5) / n) * 1000, 3) for i in range(n))
        if upper != float("inf"):
            lower = upper
    return values


def _chunks(values: list[float]) -> Iterator[list[float]]:
    for start in range(0, len(values), MAX_VALUES):
        yield values[start : start + MAX_VALUES]


class EmfEmitter:
    """Prints the registry's change since the previous call as EMF lines; ``run()`` does it every interval."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        namespace: str = "Fanout",
        interval_s: float = 60.0,
        write: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
        only: Collection[str] | None = None,
    ) -> None:
        self.registry = registry
        # e.g. the pool supervisor sends only ProcessRestarts; its children send the rest
        self.only = frozenset(only) if only is not None else frozenset(CLOUDWATCH_METRICS)
        self.namespace = namespace
        self.interval_s = interval_s
        self._write = write or (lambda line: print(line, file=sys.stdout, flush=True))
        self._clock = clock
        self._previous: dict[_Key, float] = {}

    async def run(self) -> None:
        """Flush every interval until cancelled (the caller flushes once more at shutdown)."""
        while True:
            await asyncio.sleep(self.interval_s)
            self.flush()

    def flush(self) -> int:
        """Print one interval's documents; returns how many lines were written."""
        documents = self.documents()
        for document in documents:
            self._write(json.dumps(document, separators=(",", ":")))
        return len(documents)

    def _delta(self) -> tuple[dict[_Key, float], dict[_Key, float]]:
        """(the change of counters and histograms since the previous call, current gauge values)."""
        cumulative, gauges = _snapshot(self.registry)
        delta: dict[_Key, float] = {}
        for key, value in cumulative.items():
            before = self._previous.get(key, 0.0)
            delta[key] = value - before if value >= before else value  # a reset counts from zero
        self._previous = cumulative
        return delta, gauges

    def documents(self) -> list[dict[str, Any]]:
        """The EMF documents for the change since the previous call (counter resets count from zero)."""
        delta, gauges = self._delta()
        now_ms = int(self._clock() * 1000)
        docs: list[dict[str, Any]] = []

        for metric, sample in (("Events", "fanout_events_total"), ("Deliveries", "fanout_deliveries_total")):
            for labels, value in self._series(delta, sample):
                docs.append(
                    self._doc(
                        now_ms,
                        {metric: value},
                        [["EventType", "Outcome"], ["Outcome"]],
                        EventType=labels.get("event_type", ""),
                        Outcome=labels.get("outcome", ""),
                    )
                )
        dead = list(self._series(delta, "fanout_dead_lettered_total"))
        for labels, value in dead:
            docs.append(
                self._doc(now_ms, {"DeadLettered": value}, [["Reason"]], Reason=labels.get("reason", ""))
            )

        latency = self._histograms(delta, "fanout_delivery_latency_seconds", "event_type")
        scale = min(1.0, MAX_SAMPLES / max(1.0, sum(_total(b) for b in latency.values())))
        for event_type, buckets in sorted(latency.items()):
            for values in _chunks(_spread(buckets, scale)):
                docs.append(
                    self._doc(now_ms, {"DeliveryLatency": values}, [["EventType"], []], EventType=event_type)
                )
        lag = self._histograms(delta, "fanout_queue_lag_seconds", None).get("", [])
        lag_scale = min(1.0, MAX_SAMPLES / max(1.0, _total(lag)))
        for values in _chunks(_spread(lag, lag_scale)):
            docs.append(self._doc(now_ms, {"QueueLag": values}, [[]]))

        # One document every interval, zeros included, so alarms on these never lack data.
        scalars = {
            "ConnectionsPruned": self._sum(delta, "fanout_connections_pruned_total"),
            "DeadLettered": sum(value for _, value in dead),
            "Retries": self._sum(delta, "fanout_post_retries_total"),
            "Remainders": self._sum(delta, "fanout_remainders_total"),
            "ProcessRestarts": self._sum(delta, "fanout_process_restarts_total"),
            "Ready": min((v for (name, _), v in gauges.items() if name == "fanout_ready"), default=0.0),
            "ConnectionsExpired": self._sum(delta, "fanout_connections_expired_total"),
        }
        active = [v for (name, _), v in gauges.items() if name == "fanout_active_connections"]
        if active:
            scalars["ActiveConnections"] = max(active)
        docs.append(self._doc(now_ms, scalars, [[]]))
        return [kept for doc in docs if (kept := self._keep(doc))]

    def _keep(self, doc: dict[str, Any]) -> dict[str, Any] | None:
        """``doc`` without the metrics this emitter does not send; None when none is left."""
        directive = doc["_aws"]["CloudWatchMetrics"][0]
        dropped = [m["Name"] for m in directive["Metrics"] if m["Name"] not in self.only]
        if not dropped:
            return doc
        directive["Metrics"] = [m for m in directive["Metrics"] if m["Name"] in self.only]
        for name in dropped:
            del doc[name]
        return doc if directive["Metrics"] else None

    def _directive(self, metrics: dict[str, Any], dimensions: list[list[str]]) -> dict[str, Any]:
        return {
            "Namespace": self.namespace,
            "Dimensions": dimensions,
            "Metrics": [{"Name": name, "Unit": _UNITS[name]} for name in metrics],
        }

    def _doc(
        self, now_ms: int, metrics: dict[str, Any], dimensions: list[list[str]], **dimension_values: str
    ) -> dict[str, Any]:
        return {
            "_aws": {"Timestamp": now_ms, "CloudWatchMetrics": [self._directive(metrics, dimensions)]},
            **dimension_values,
            **metrics,
        }

    @staticmethod
    def _series(delta: dict[_Key, float], sample: str) -> Iterator[tuple[_Labels, float]]:
        for (name, labels), value in sorted(delta.items()):
            if name == sample and value > 0:
                yield dict(labels), value

    @staticmethod
    def _sum(delta: dict[_Key, float], sample: str) -> float:
        return sum(value for (name, _), value in delta.items() if name == sample)

    @staticmethod
    def _histograms(
        delta: dict[_Key, float], histogram: str, label: str | None
    ) -> dict[str, list[tuple[float, float]]]:
        """Per ``label`` value: the interval's cumulative ``(le, count)`` bucket deltas."""
        out: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for (name, labels), value in delta.items():
            if name == f"{histogram}_bucket":
                found = dict(labels)
                out[found.get(label, "") if label else ""].append((float(found["le"]), value))
        return {key: buckets for key, buckets in out.items() if _total(buckets) > 0}


def _total(buckets: list[tuple[float, float]]) -> float:
    """Observations in cumulative buckets: the ``+Inf`` bucket's count."""
    return max((count for _, count in buckets), default=0.0)


class LifecycleEmfEmitter(EmfEmitter):
    """The lifecycle's counters as at most one EMF line per flush while one route erred (an invocation).

    One document carries two directives: the counts without dimension, and ``RouteErrors`` by ``Route`` and
    in total. A flush after several routes erred (not one invocation) adds a line per further route.
    """

    def __init__(self, registry: CollectorRegistry, **kwargs: Any) -> None:
        kwargs.setdefault("only", LIFECYCLE_METRICS)
        super().__init__(registry, **kwargs)

    def documents(self) -> list[dict[str, Any]]:
        """The lines for what was counted since the previous call; none when nothing was."""
        delta, _ = self._delta()
        now_ms = int(self._clock() * 1000)
        counts = {name: self._sum(delta, series) for name, series in _LIFECYCLE_SERIES.items()}
        counts = {name: value for name, value in counts.items() if value > 0 and name in self.only}
        errors = list(self._series(delta, "fanout_lifecycle_route_errors_total"))
        if "RouteErrors" not in self.only:
            errors = []
        docs: list[dict[str, Any]] = []
        if counts:
            docs.append(self._doc(now_ms, counts, [[]]))
        for labels, value in errors:
            error = {"RouteErrors": value}
            if docs and "RouteErrors" not in docs[0]:  # the first one rides on the counts' line
                docs[0]["_aws"]["CloudWatchMetrics"].append(self._directive(error, [["Route"], []]))
                docs[0].update(error, Route=labels.get("route", "other"))
            else:
                docs.append(self._doc(now_ms, error, [["Route"], []], Route=labels.get("route", "other")))
        return docs
