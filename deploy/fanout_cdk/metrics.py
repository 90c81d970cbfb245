"""The metrics that the alarms, the dashboard and the autoscaling read, built only from the contract."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_ecs as ecs
from metrics_contract import DELIVERY_OUTCOMES, METRICS, NAMESPACE

# Deliveries outcomes left out of the success ratio's denominator: `gone` (410) is a client that left
# without a $disconnect; its record is pruned, and no retry or fix on our side could deliver it.
SUCCESS_RATIO_EXCLUDED_OUTCOMES = ("gone",)


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


def delivery_ratio(numerator: tuple[str, ...], label: str) -> cw.MathExpression:
    """Percent of posts (410 gone excluded) whose outcome is one of ``numerator``."""
    outcomes = [o for o in DELIVERY_OUTCOMES if o not in SUCCESS_RATIO_EXCLUDED_OUTCOMES]
    using = {o: fanout_metric("Deliveries", "Sum", {"Outcome": o}) for o in outcomes}
    total = " + ".join(f"FILL({o}, 0)" for o in outcomes)
    part = " + ".join(f"FILL({o}, 0)" for o in numerator)
    return cw.MathExpression(
        expression=f"100 * ({part}) / ({total})",
        using_metrics=using,
        label=label,
        period=Duration.minutes(1),
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
