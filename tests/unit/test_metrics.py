"""Metric definitions, and the dashboard and alert rules that must only use metrics the code exports."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from fanout.config import Settings
from fanout.lifecycle.metrics import LifecycleMetrics
from fanout.local.emulator_metrics import GatewayMetrics
from fanout.metrics import LATENCY_BUCKETS, Metrics
from fanout.outbox.metrics import OutboxMetrics
from fanout.publish.metrics import PublisherMetrics
from fanout.worker.pool import Pool, _PoolCollector

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "fanout.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"


def _contract() -> Any:
    """deploy/metrics_contract.py: the CloudWatch names, the Prometheus series each mirrors, the pending ones."""
    if "metrics_contract" not in sys.modules:  # tests/deploy may have imported it from deploy/ already
        spec = importlib.util.spec_from_file_location(
            "metrics_contract", ROOT / "deploy" / "metrics_contract.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["metrics_contract"] = module  # dataclasses resolve their annotations through it
        spec.loader.exec_module(module)
    return sys.modules["metrics_contract"]


# The contract's socket-health metrics (issue 15): the lifecycle's counters and the worker's census.
SOCKET_HEALTH = (
    "Connects",
    "Disconnects",
    "ConnectsUnauthorized",
    "ConnectsRefused",
    "RouteErrors",
    "Reconnects",
    "ActiveConnections",
    "ConnectionsExpired",
)

# Names in PromQL that are not metrics.
_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "bool",
        "inf",
        "nan",
        "atan2",
    }
)
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gauge": ("",),
    "summary": ("", "_sum", "_count"),
}


def exported_series() -> dict[str, str]:
    """Every series name a scrape of the worker, the relay, a domain service's publisher (and the emulator)
    can show -> its metric family."""
    registry = CollectorRegistry()
    Metrics(registry)
    GatewayMetrics(registry)
    LifecycleMetrics(registry)  # the emulator's /metrics serves the lifecycle's counters
    PublisherMetrics(registry)
    OutboxMetrics(registry)
    registry.register(_PoolCollector(Pool(Settings(), 1)))  # restarts and live processes: the supervisor's
    series: dict[str, str] = {}
    for family in registry.collect():
        for suffix in _SUFFIXES[family.type]:
            series[family.name + suffix] = family.name
    return series


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, labels and strings left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery durations
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)  # label lists
    names = set()
    for match in re.finditer(r"(?<![\w$.])([a-zA-Z_:][\w:]*)\s*(\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def _dashboard_exprs() -> Iterator[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            if "expr" in target:  # a Prometheus query; CloudWatch panels are checked in tests/deploy
                yield f"panel {panel['title']!r}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        text = query.get("query") if isinstance(query, dict) else None
        match = re.fullmatch(r"label_values\((.*),\s*\w+\)", text or "")
        if match:
            yield f"variable {variable['name']!r}", match.group(1)


def _alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _all_exprs() -> list[tuple[str, str]]:
    rules = [(f"alert {rule['alert']}", rule["expr"]) for rule in _alert_rules()]
    return [*_dashboard_exprs(), *rules]


def test_metric_names_extracts_only_metric_selectors() -> None:
    """The extractor keeps metrics and drops functions, label names, label values, ranges and keywords."""
    expr = (
        "histogram_quantile(0.95, sum by (event_type, le) (rate(fanout_delivery_latency_seconds_bucket"
        '{outcome="ok", event_type=~"$event_type"}[$__rate_interval]))) > 2 and on (instance) fanout_ready'
        " unless sum without (job) (increase(fanout_dead_lettered_total[15m] offset 1h)) > bool 0"
    )
    assert {
        "fanout_delivery_latency_seconds_bucket",
        "fanout_ready",
        "fanout_dead_lettered_total",
    } == metric_names(expr)


def test_exported_series_follow_the_type_suffix_rules() -> None:
    """Counters export only ``_total``, histograms ``_bucket``/``_sum``/``_count``, gauges their bare name."""
    series = exported_series()
    assert "fanout_events_total" in series
    assert "fanout_events" not in series
    assert "fanout_delivery_latency_seconds_count" in series
    assert "fanout_delivery_latency_seconds" not in series
    assert "fanout_ready" in series
    assert "fanout_ready_total" not in series


@pytest.mark.parametrize(("where", "expr"), _all_exprs(), ids=lambda v: str(v)[:60])
def test_every_dashboard_and_alert_metric_is_exported(where: str, expr: str) -> None:
    """Each metric a Grafana panel, variable or alert rule reads is exported by the code, suffix included."""
    used = metric_names(expr)
    assert used, f"{where}: no metric found in {expr!r}"
    missing = used - exported_series().keys()
    # Socket-health series the contract names ahead of the code (issue 15): allowed until src exports them.
    assert set() == missing - _contract().PENDING_PROMETHEUS, f"{where} uses metrics the code does not export"


def test_dashboard_and_rules_cover_the_design_metrics() -> None:
    """The core metrics, queue lag, readiness, the socket-health metrics, the publishers and the outbox
    appear on the dashboard, and the rules cover the alarms."""
    used_dashboard = {name for _, expr in _dashboard_exprs() for name in metric_names(expr)}
    contract = _contract()
    socket = {spec.prometheus for name, spec in contract.METRICS.items() if name in SOCKET_HEALTH}
    assert len(SOCKET_HEALTH) == len(socket)
    assert socket <= used_dashboard, "the socket-health row shows every socket metric"
    families = {exported_series()[name] for name in used_dashboard - contract.PENDING_PROMETHEUS}
    for family in (
        "fanout_events",
        "fanout_deliveries",
        "fanout_delivery_latency_seconds",
        "fanout_connections_pruned",
        "fanout_queue_lag_seconds",
        "fanout_dead_lettered",
        "fanout_events_in_flight",
        "fanout_posts_in_flight",
        "fanout_throttle_wait_seconds",
        "fanout_ready",
        "fanout_publisher_buffered",
        "fanout_publisher_sent",
        "fanout_publisher_failed",
        "fanout_publisher_batch_size",
        "fanout_outbox_lag_seconds",
        "fanout_outbox_pending",
    ):
        assert family in families, family
    alerts = {rule["alert"] for rule in _alert_rules()}
    assert {
        "FanoutDeliverySuccessLow",
        "FanoutDeliveryLatencyHigh",
        "FanoutQueueLagHigh",
        "FanoutDeadLettered",
        "FanoutGoneRateSpike",
        "FanoutThrottled",
        "FanoutWorkerNotReady",
        "FanoutOutboxLagHigh",
        "FanoutPublishFailed",
    } <= alerts


def test_every_alert_has_a_summary_and_a_runbook() -> None:
    """Each rule names its severity and points at a section of a repository document that says what to do."""
    for rule in _alert_rules():
        assert rule["labels"]["severity"] in ("page", "ticket")
        assert rule["annotations"]["summary"]
        path, anchor = rule["annotations"]["runbook"].split("#", 1)
        doc = (ROOT / path).read_text().lower()
        assert f"#### {anchor}" in doc, f"{path} has no '#### {rule['alert']}' section"


def test_metrics_contract_names_exported_series() -> None:
    """Each CloudWatch metric of the deploy contract mirrors a series the code exports, and a name waiting
    for the code (PENDING_PROMETHEUS) leaves that list once the code exports it."""
    contract = _contract()
    families = set(exported_series().values())
    for name, spec in contract.METRICS.items():
        family = spec.prometheus.removesuffix("_total")
        if spec.prometheus in contract.PENDING_PROMETHEUS:
            assert family not in families, f"{spec.prometheus} is exported now: drop it from PENDING_IN_SRC"
        else:
            assert family in families, f"{name}: {spec.prometheus} is not exported"


def test_each_family_is_exported_once() -> None:
    """No family is defined both by a worker and by the pool supervisor (a scrape would reject both)."""
    registry = CollectorRegistry()
    Metrics(registry)
    names = [family.name for family in registry.collect()]
    pool = [family.name for family in _PoolCollector(Pool(Settings(), 1)).collect()]
    assert len(names) == len(set(names))
    assert set() == set(names) & set(pool)


def test_design_metric_names_are_exported_with_their_labels() -> None:
    """The documented metric names and labels are what a scrape shows."""
    registry = CollectorRegistry()
    m = Metrics(registry)
    m.events.labels("chat.message", "delivered").inc()
    m.deliveries.labels("chat.message", "ok").inc()
    m.delivery_latency.labels("chat.message").observe(0.02)
    m.pruned.inc()
    text = generate_latest(registry).decode()
    assert 'fanout_events_total{event_type="chat.message",outcome="delivered"} 1.0' in text
    assert 'fanout_deliveries_total{event_type="chat.message",outcome="ok"} 1.0' in text
    assert 'fanout_delivery_latency_seconds_bucket{event_type="chat.message",le="0.025"} 1.0' in text
    assert "fanout_connections_pruned_total 1.0" in text


def test_latency_buckets_span_milliseconds_to_tens_of_seconds() -> None:
    """Delivery latency buckets resolve a few milliseconds and still separate tens of seconds."""
    assert LATENCY_BUCKETS[0] <= 0.005
    assert LATENCY_BUCKETS[-1] >= 30
    assert list(LATENCY_BUCKETS) == sorted(LATENCY_BUCKETS)


def test_gateway_metrics_count_the_emulator_answers() -> None:
    """The emulator's count keys land in posts by HTTP status and in connection lifecycle steps."""
    registry = CollectorRegistry()
    g = GatewayMetrics(registry)
    for key in (
        "delivered",
        "delivered",
        "gone",
        "dropped",
        "throttled",
        "connected",
        "connect_rejected",
        "hung",
    ):
        g.count(key)
    text = generate_latest(registry).decode()
    assert 'fanout_gateway_posts_total{status="200"} 2.0' in text
    assert 'fanout_gateway_posts_total{status="410"} 2.0' in text
    assert 'fanout_gateway_posts_total{status="429"} 1.0' in text
    assert 'fanout_gateway_connections_total{event="rejected"} 1.0' in text
    assert "fanout_gateway_dropped_total 1.0" in text
    assert "fanout_gateway_hung_total 1.0" in text
