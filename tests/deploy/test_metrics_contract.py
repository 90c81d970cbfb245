"""Every CloudWatch metric the dashboard and alarms read is one the worker emits, as the worker emits it."""

from __future__ import annotations

import json
from typing import Any

from tests.deploy.conftest import REPO_ROOT, Synth

import metrics_contract as contract  # isort: skip - on sys.path through conftest, as app.py puts it

# Namespaces other than the worker's that the stack may read, and what it may read there.
AWS_METRICS = {
    "AWS/SQS": {
        "ApproximateNumberOfMessagesVisible",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateAgeOfOldestMessage",
    },
    "ECS/ContainerInsights": {"RunningTaskCount", "DesiredTaskCount"},
    "AWS/ECS": {"CPUUtilization", "MemoryUtilization"},
    "AWS/ApiGateway": {"ConnectCount", "MessageCount", "IntegrationError", "ClientError", "ExecutionError"},
}
REQUIRED_ALARMS = {
    "DeliverySuccessLow": "Deliveries",
    "DeliveryLatencyHigh": "DeliveryLatency",
    "DeadLetters": "ApproximateNumberOfMessagesVisible",
    "OldestMessageOld": "ApproximateAgeOfOldestMessage",
    "DeliveriesThrottled": "Deliveries",
    "WorkerNotReady": "Ready",
    "RunningTasksBelowDesired": "RunningTaskCount",
    "QueueLagHigh": "QueueLag",
    "GoneRateSpike": "Deliveries",
    "ProcessRestarts": "ProcessRestarts",
    "RouteErrorsHigh": "RouteErrors",
    "ReconnectStorm": "Reconnects",
}


def check(namespace: str, name: str, dimensions: dict[str, Any], where: str) -> None:
    if namespace != contract.NAMESPACE:
        assert name in AWS_METRICS.get(namespace, set()), f"{where}: unexpected {namespace} {name}"
        return
    assert name in contract.METRICS, f"{where}: {name} is not in the metric contract"
    spec = contract.METRICS[name]
    assert tuple(sorted(dimensions)) in {tuple(sorted(d)) for d in spec.dimension_sets}, (
        f"{where}: {name} is not emitted with dimensions {sorted(dimensions)}"
    )
    if "Outcome" in dimensions:
        assert dimensions["Outcome"] in spec.outcomes, (
            f"{where}: {name} has no outcome {dimensions['Outcome']}"
        )


def alarm_metrics(s: Synth) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(alarm id, namespace, metric name, dimensions) for every metric of every alarm."""
    found = []
    for alarm_id, alarm in s.resources("AWS::CloudWatch::Alarm").items():
        props = alarm["Properties"]
        if "MetricName" in props:
            dims = {d["Name"]: d["Value"] for d in props.get("Dimensions", [])}
            found.append((alarm_id, props["Namespace"], props["MetricName"], dims))
        for query in props.get("Metrics", []):
            if "MetricStat" in query:
                metric = query["MetricStat"]["Metric"]
                dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
                found.append((alarm_id, metric["Namespace"], metric["MetricName"], dims))
    return found


def dashboard_metrics(s: Synth) -> list[tuple[str, str, dict[str, Any]]]:
    _, dashboard = s.one("AWS::CloudWatch::Dashboard")
    body = dashboard["Properties"]["DashboardBody"]
    text = (
        "".join(p if isinstance(p, str) else "TOKEN" for p in body["Fn::Join"][1])
        if isinstance(body, dict)
        else body
    )
    found = []
    for widget in json.loads(text)["widgets"]:
        for row in widget["properties"].get("metrics", []):
            plain = [x for x in row if not isinstance(x, dict)]
            if not plain:
                continue  # a math expression; its inputs are rows of their own
            namespace, name, *dims = plain
            assert "." not in (namespace, name), "shorthand rows are not expected from CDK"
            found.append((namespace, name, dict(zip(dims[::2], dims[1::2], strict=True))))
    return found


def test_alarms_read_only_contract_metrics(default_synth: Synth) -> None:
    """Every alarm reads a metric the worker emits, with dimensions it emits."""
    metrics = alarm_metrics(default_synth)
    assert metrics
    for alarm_id, namespace, name, dims in metrics:
        check(namespace, name, dims, alarm_id)


def test_required_alarms_exist(default_synth: Synth) -> None:
    """Each alarm the runbook names exists, reads its metric and notifies someone."""
    alarms = default_synth.resources("AWS::CloudWatch::Alarm")
    by_name = {a["Properties"].get("AlarmName"): k for k, a in alarms.items()}
    read = {
        alarm_id: {name for a, _, name, _ in alarm_metrics(default_synth) if a == alarm_id}
        for alarm_id in alarms
    }
    for name, metric in REQUIRED_ALARMS.items():
        alarm_id = by_name.get(f"fanout-{name}")
        assert alarm_id, f"alarm {name} missing"
        assert metric in read[alarm_id], f"alarm {name} does not read {metric}"
        assert alarms[alarm_id]["Properties"]["AlarmActions"], f"alarm {name} notifies nobody"


def test_alarm_shapes(default_synth: Synth) -> None:
    """The alarms read the statistic, namespace and missing-data rule their condition needs."""
    alarms = {
        a["Properties"].get("AlarmName"): a["Properties"]
        for a in default_synth.resources("AWS::CloudWatch::Alarm").values()
    }
    success = alarms["fanout-DeliverySuccessLow"]
    [expr] = [m["Expression"] for m in success["Metrics"] if "Expression" in m]
    assert ", 100 * (FILL(ok, 0)) / (" in expr and "FILL(gone" not in expr
    assert success["TreatMissingData"] == "notBreaching"
    latency = alarms["fanout-DeliveryLatencyHigh"]
    assert (latency["ExtendedStatistic"], latency["Namespace"]) == ("p95", "Fanout")
    dlq = alarms["fanout-DeadLetters"]
    assert (dlq["Namespace"], dlq["Statistic"]) == ("AWS/SQS", "Maximum")
    oldest = alarms["fanout-OldestMessageOld"]
    assert (oldest["MetricName"], oldest["Namespace"]) == ("ApproximateAgeOfOldestMessage", "AWS/SQS")
    ready = alarms["fanout-WorkerNotReady"]
    assert (ready["Statistic"], ready["TreatMissingData"]) == ("Minimum", "breaching")
    gone = alarms["fanout-GoneRateSpike"]
    [expr] = [m["Expression"] for m in gone["Metrics"] if "Expression" in m]
    assert ", 100 * (FILL(gone, 0)) / (" in expr and "FILL(ok, 0) + FILL(gone, 0)" in expr


def test_dashboard_reads_only_contract_metrics(default_synth: Synth) -> None:
    """The dashboard shows every contract metric and nothing the worker does not emit."""
    metrics = dashboard_metrics(default_synth)
    for namespace, name, dims in metrics:
        check(namespace, name, dims, "dashboard")
    shown = {name for namespace, name, _ in metrics if namespace == contract.NAMESPACE}
    assert shown == set(contract.METRICS), f"not on the dashboard: {sorted(set(contract.METRICS) - shown)}"


def test_contract_matches_the_emitters() -> None:
    """The contract's worker and lifecycle names and units are the ones src/fanout/emf.py emits."""
    from fanout import emf

    # A metric the contract names ahead of the code may still be missing from emf.py (none today).
    pending = contract.PENDING_IN_SRC
    assert {k: v for k, v in contract.UNITS.items() if k not in pending} == emf.CLOUDWATCH_METRICS
    assert {k: v for k, v in contract.LIFECYCLE_UNITS.items() if k not in pending} == emf.LIFECYCLE_METRICS
    assert set() == pending, "src emits every contract metric: nothing is pending"


def test_delivery_outcomes_match_the_gateway_client() -> None:
    """The Deliveries outcomes are the gateway client's."""
    from fanout.gateway.client import Outcome

    assert set(contract.DELIVERY_OUTCOMES) == {o.value for o in Outcome}


def test_namespace_matches_the_settings_default() -> None:
    """The namespace is FANOUT_CLOUDWATCH_NAMESPACE's default."""
    from fanout.config import Settings

    assert Settings.model_fields["cloudwatch_namespace"].default == contract.NAMESPACE


def test_grafana_cloudwatch_panels_read_api_gateway_metrics() -> None:
    """The Grafana dashboard's CloudWatch panels read API Gateway's five WebSocket metrics for one API and
    stage, and nothing else."""
    dashboard = json.loads((REPO_ROOT / "deploy" / "grafana" / "fanout.json").read_text())
    read = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            if target.get("datasource", {}).get("type") != "cloudwatch":
                continue
            check(
                target["namespace"], target["metricName"], target["dimensions"], f"grafana {panel['title']}"
            )
            assert target["dimensions"] == {"ApiId": "$api_id", "Stage": "$api_stage"}
            assert target["statistic"] == "Sum"
            read.add(target["metricName"])
    assert read == AWS_METRICS["AWS/ApiGateway"]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"cloudwatch", "api_id", "api_stage"} <= variables


def test_worker_only_dashboard_shows_the_existing_api(existing_synth: Synth) -> None:
    """For an existing API the dashboard reads that API's own metrics and no lifecycle metric of ours."""
    metrics = dashboard_metrics(existing_synth)
    for namespace, name, dims in metrics:
        check(namespace, name, dims, "dashboard")
    api = [(name, dims) for namespace, name, dims in metrics if namespace == "AWS/ApiGateway"]
    assert {name for name, _ in api} == AWS_METRICS["AWS/ApiGateway"]
    assert all(dims == {"ApiId": "a1b2c3d4e5", "Stage": "prod"} for _, dims in api)
    shown = {name for namespace, name, _ in metrics if namespace == contract.NAMESPACE}
    lifecycle = {name for name, spec in contract.METRICS.items() if spec.source == "lifecycle"}
    assert shown == set(contract.METRICS) - lifecycle
