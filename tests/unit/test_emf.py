"""The CloudWatch Embedded Metric Format emitter: per-interval aggregates of the Prometheus registry."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from fanout.emf import CLOUDWATCH_METRICS, MAX_VALUES, EmfEmitter, LifecycleEmfEmitter
from fanout.lifecycle.metrics import LifecycleMetrics
from fanout.metrics import Metrics

CONTRACT = {
    "Events": ("Count", [["EventType", "Outcome"], ["Outcome"]]),
    "Deliveries": ("Count", [["EventType", "Outcome"], ["Outcome"]]),
    "DeliveryLatency": ("Milliseconds", [["EventType"], []]),
    "ConnectionsPruned": ("Count", [[]]),
    "DeadLettered": ("Count", [["Reason"], []]),
    "Retries": ("Count", [[]]),
    "Remainders": ("Count", [[]]),
    "QueueLag": ("Milliseconds", [[]]),
    "ProcessRestarts": ("Count", [[]]),
    "Ready": ("Count", [[]]),
    "ActiveConnections": ("Count", [[]]),
    "ConnectionsExpired": ("Count", [[]]),
}


def _emitter() -> tuple[Metrics, EmfEmitter, list[str]]:
    registry = CollectorRegistry()
    lines: list[str] = []
    return Metrics(registry), EmfEmitter(registry, write=lines.append, clock=lambda: 1_700_000_000.0), lines


def _busy(m: Metrics) -> None:
    m.events.labels("chat.message", "delivered").inc(3)
    m.events.labels("notification.new", "partial").inc()
    m.deliveries.labels("chat.message", "ok").inc(5)
    m.deliveries.labels("chat.message", "gone").inc(2)
    for seconds in (0.003, 0.02, 0.02, 0.3):
        m.delivery_latency.labels("chat.message").observe(seconds)
    m.queue_lag.observe(0.04)
    m.pruned.inc(2)
    m.retries.labels("chat.message").inc(4)
    m.remainders.labels("notification.new").inc()
    m.dead_lettered.labels("not_json").inc()
    m.dead_lettered.labels("too_large").inc(2)
    m.ready.set(1)
    m.active_connections.set(42)
    m.connections_expired.inc(3)


def _published(docs: list[dict[str, Any]]) -> dict[tuple[str, tuple[tuple[str, str], ...]], Any]:
    """What CloudWatch would extract: (metric, dimensions) -> summed value or concatenated values."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}
    for doc in docs:
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                for dims in directive["Dimensions"]:
                    key = (metric["Name"], tuple((d, doc[d]) for d in dims))
                    value = doc[metric["Name"]]
                    if isinstance(value, list):
                        out[key] = sorted([*out.get(key, []), *value])
                    else:
                        out[key] = out.get(key, 0) + value
    return out


def test_contract_names_units_and_dimension_sets() -> None:
    """Every document uses only the contract's metrics, units, namespace and dimension sets."""
    m, emitter, _ = _emitter()
    _busy(m)
    assert {name: unit for name, (unit, _) in CONTRACT.items()} == CLOUDWATCH_METRICS
    seen: set[str] = set()
    for doc in emitter.documents():
        assert 1_700_000_000_000 == doc["_aws"]["Timestamp"]
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            assert "Fanout" == directive["Namespace"]
            for metric in directive["Metrics"]:
                unit, allowed = CONTRACT[metric["Name"]]
                assert unit == metric["Unit"]
                assert all(dims in allowed for dims in directive["Dimensions"]), metric["Name"]
                seen.add(metric["Name"])
    assert set(CONTRACT) == seen


def test_one_interval_carries_the_registry_figures() -> None:
    """Counts per dimension set add up to what the Prometheus counters recorded."""
    m, emitter, _ = _emitter()
    _busy(m)
    got = _published(emitter.documents())
    assert 3 == got[("Events", (("EventType", "chat.message"), ("Outcome", "delivered")))]
    assert 3 == got[("Events", (("Outcome", "delivered"),))]
    assert 2 == got[("Deliveries", (("Outcome", "gone"),))]
    assert 2 == got[("ConnectionsPruned", ())]
    assert 4 == got[("Retries", ())]
    assert 1 == got[("Remainders", ())]
    assert 2 == got[("DeadLettered", (("Reason", "too_large"),))]
    assert 3 == got[("DeadLettered", ())]
    assert 1 == got[("Ready", ())]
    assert 0 == got[("ProcessRestarts", ())]
    latency = got[("DeliveryLatency", (("EventType", "chat.message"),))]
    assert latency == got[("DeliveryLatency", ())]
    assert 4 == len(latency)
    # Spread inside each bucket: 0-5 ms, 10-25 ms (twice), 250-500 ms.
    assert 0 < latency[0] <= 5
    assert all(10 < v <= 25 for v in latency[1:3])
    assert 250 < latency[3] <= 500
    assert 1 == len(got[("QueueLag", ())])


def test_second_interval_carries_only_the_change() -> None:
    """A flush reports the delta since the previous one; quiet metrics still send their zeros."""
    m, emitter, lines = _emitter()
    _busy(m)
    assert emitter.flush() == len(lines)
    lines.clear()
    m.events.labels("chat.message", "delivered").inc()
    emitter.flush()
    got = _published([json.loads(line) for line in lines])
    assert 1 == got[("Events", (("Outcome", "delivered"),))]
    assert ("Events", (("Outcome", "partial"),)) not in got
    assert 0 == got[("ConnectionsPruned", ())]
    assert 0 == got[("DeadLettered", ())]
    assert not any(name == "DeliveryLatency" for name, _ in got)


def test_lines_are_few_whatever_the_traffic() -> None:
    """Ten thousand posts make a bounded number of lines, each value array at most 100 long."""
    m, emitter, _ = _emitter()
    for i in range(10_000):
        m.delivery_latency.labels("chat.message").observe((i % 100) / 1000)
        m.deliveries.labels("chat.message", "ok").inc()
    docs = emitter.documents()
    assert len(docs) <= 15
    arrays = [doc["DeliveryLatency"] for doc in docs if "DeliveryLatency" in doc]
    assert all(len(values) <= MAX_VALUES for values in arrays)
    values = sorted(v for values in arrays for v in values)
    p95 = values[int(0.95 * len(values))]
    assert 50 < p95 <= 100  # the true p95 is 95 ms; the bucket is 50-100 ms


def test_counter_reset_counts_from_zero() -> None:
    """A registry that restarted (a new process) is read from zero, never as a negative delta."""
    m, emitter, _ = _emitter()
    m.pruned.inc(5)
    emitter.documents()
    emitter._previous = {key: value + 10 for key, value in emitter._previous.items()}
    m.pruned.inc(1)
    assert 6 == _published(emitter.documents())[("ConnectionsPruned", ())]


@pytest.mark.parametrize("namespace", ["Fanout", "Fanout/Staging"])
def test_namespace_is_configurable(namespace: str) -> None:
    """The namespace comes from the settings."""
    registry = CollectorRegistry()
    Metrics(registry)
    emitter = EmfEmitter(registry, namespace=namespace, write=lambda _: None)
    assert {namespace} == {
        d["Namespace"] for doc in emitter.documents() for d in doc["_aws"]["CloudWatchMetrics"]
    }


def test_only_limits_the_metrics_sent() -> None:
    """An emitter told to send only ProcessRestarts (the pool supervisor's) sends nothing else."""
    registry = CollectorRegistry()
    _busy(Metrics(registry))
    emitter = EmfEmitter(registry, write=lambda _: None, only={"ProcessRestarts"})
    docs = emitter.documents()
    assert 1 == len(docs)
    assert ["ProcessRestarts"] == [m["Name"] for m in docs[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    assert "Ready" not in docs[0]


def test_lifecycle_counts_and_a_route_error_share_one_line() -> None:
    """The lifecycle emitter puts an invocation's counts and its route error on one line, none when idle."""
    registry = CollectorRegistry()
    m = LifecycleMetrics(registry)
    lines: list[str] = []
    emitter = LifecycleEmfEmitter(registry, write=lines.append)
    assert 0 == emitter.flush()
    m.connects.inc()
    m.reconnects.inc()
    m.route_error("$connect")
    assert 1 == emitter.flush()
    got = _published([json.loads(lines[0])])
    assert {
        ("Connects", ()): 1,
        ("Reconnects", ()): 1,
        ("RouteErrors", (("Route", "$connect"),)): 1,
        ("RouteErrors", ()): 1,
    } == got
    assert 0 == emitter.flush()


def test_lifecycle_errors_of_several_routes_get_a_line_each() -> None:
    """Route errors of two routes in one flush cannot share a Route value: a second line carries the other."""
    registry = CollectorRegistry()
    m = LifecycleMetrics(registry)
    emitter = LifecycleEmfEmitter(registry, write=lambda _: None)
    m.route_error("ping")
    m.route_error("$default")
    m.route_error("Robert'); DROP")
    docs = emitter.documents()
    assert 3 == len(docs)
    got = _published(docs)
    assert 3 == got[("RouteErrors", ())]
    assert {"ping", "$default", "other"} == {dims[0][1] for name, dims in got if dims}
