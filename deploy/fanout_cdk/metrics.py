"""The metrics that the alarms, the dashboard and the autoscaling read, built only from the contract."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_ecs as ecs
from metrics_contract import DELIVERY_OUTCOMES, METRICS, NAMESPACE
from thresholds import NOT_JUDGED

_MINUTE = Duration.minutes(1)


def fanout_metric(
    name: str,
    statistic: str,
    dimensions: dict[str, str] | None = None,
    period_s: int = 60,
    label: str | None = None,
) -> cw.Metric:
    """A metric of the contract; refuses names and dimension sets that are not emitted."""
    spec = METRICS[name]
    dims = dimensions or {}
    if tuple(sorted(dims)) not in {tuple(sorted(s)) for s in spec.dimension_sets}:
        raise ValueError(f"{name} is not emitted with dimensions {sorted(dims)}")
    if "Outcome" in dims and dims["Outcome"] not in spec.outcomes:
        raise ValueError(f"{name} has no outcome {dims['Outcome']!r}")
    return cw.Metric(
        namespace=NAMESPACE,
        metric_name=name,
        dimensions_map=dims or None,
        statistic=statistic,
        period=Duration.seconds(period_s),
        label=label,
    )


def delivery_ratio(
    numerator: tuple[str, ...],
    label: str,
    *,
    excluded: tuple[str, ...] = NOT_JUDGED,
    min_per_min: float = 0,
    otherwise: float = 0,
) -> cw.MathExpression:
    """Percent of posts whose outcome is one of ``numerator``, over the posts whose outcome is not
    ``excluded`` (by default 410 gone and expired); with ``min_per_min``, minutes with fewer posts read
    ``otherwise`` instead."""
    outcomes = [o for o in DELIVERY_OUTCOMES if o not in excluded]
    using = {o: fanout_metric("Deliveries", "Sum", {"Outcome": o}) for o in outcomes}
    total = " + ".join(f"FILL({o}, 0)" for o in outcomes)
    part = " + ".join(f"FILL({o}, 0)" for o in numerator)
    expression = f"100 * ({part}) / ({total})"
    if min_per_min:
        expression = f"IF(({total}) >= {min_per_min:g}, {expression}, {otherwise:g})"
    return cw.MathExpression(
        expression=expression, using_metrics=using, label=label, period=Duration.minutes(1)
    )


def reconnect_share(label: str, *, min_per_min: float = 0) -> cw.MathExpression:
    """Percent of connects that were reconnects; with ``min_per_min``, quieter minutes read 0."""
    using = {"reconnects": fanout_metric("Reconnects", "Sum"), "connects": fanout_metric("Connects", "Sum")}
    expression = "100 * FILL(reconnects, 0) / connects"
    if min_per_min:
        expression = f"IF(FILL(reconnects, 0) >= {min_per_min:g}, {expression}, 0)"
    return cw.MathExpression(
        expression=expression, using_metrics=using, label=label, period=Duration.minutes(1)
    )


def running_tasks(cluster: ecs.ICluster, service: ecs.FargateService) -> cw.Metric:
    """Running worker tasks (Container Insights)."""
    return _task_count("RunningTaskCount", cluster, service)


def desired_tasks(cluster: ecs.ICluster, service: ecs.FargateService) -> cw.Metric:
    """Desired worker tasks (Container Insights)."""
    return _task_count("DesiredTaskCount", cluster, service)


def _task_count(name: str, cluster: ecs.ICluster, service: ecs.FargateService) -> cw.Metric:
    return cw.Metric(
        namespace="ECS/ContainerInsights",
        metric_name=name,
        dimensions_map={"ClusterName": cluster.cluster_name, "ServiceName": service.service_name},
        statistic="Average",
        period=Duration.minutes(1),
    )


# API Gateway's own WebSocket metrics, per API and stage.
API_GATEWAY_METRICS = ("ConnectCount", "MessageCount", "IntegrationError", "ClientError", "ExecutionError")


def api_gateway_metric(name: str, api_id: str, stage: str, label: str | None = None) -> cw.Metric:
    """One of API Gateway's WebSocket metrics for the API's stage, summed per minute."""
    if name not in API_GATEWAY_METRICS:
        raise ValueError(f"{name} is not one of API Gateway's WebSocket metrics read here")
    return cw.Metric(
        namespace="AWS/ApiGateway",
        metric_name=name,
        dimensions_map={"ApiId": api_id, "Stage": stage},
        statistic="Sum",
        period=_MINUTE,
        label=label or name,
    )


def unauthorized_share(label: str) -> cw.MathExpression:
    """Percent of connect attempts answered 401."""
    using = {
        "unauthorized": fanout_metric("ConnectsUnauthorized", "Sum"),
        "connects": fanout_metric("Connects", "Sum"),
    }
    return cw.MathExpression(
        expression="100 * FILL(unauthorized, 0) / (FILL(connects, 0) + FILL(unauthorized, 0))",
        using_metrics=using,
        label=label,
        period=_MINUTE,
    )
