"""The CloudWatch dashboard: alarm states, then events and posts, latency and the queue, then workers."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_ecs as ecs
from metrics_contract import DELIVERY_OUTCOMES, METRICS

from fanout_cdk.alarms import DELIVERY_SUCCESS_MIN_PERCENT, THROTTLED_MAX_PERCENT
from fanout_cdk.metrics import delivery_ratio, desired_tasks, fanout_metric, running_tasks
from fanout_cdk.queues import Queues


def build_dashboard(
    stack: Stack,
    prefix: str,
    alarms: list[cw.Alarm],
    queues: Queues,
    cluster: ecs.ICluster,
    service: ecs.FargateService,
) -> cw.Dashboard:
    """The ``{prefix}-worker`` dashboard."""
    m = fanout_metric
    by_outcome = [m("Events", "Sum", {"Outcome": o}, label=o) for o in METRICS["Events"].outcomes]
    deliveries = [m("Deliveries", "Sum", {"Outcome": o}, label=o) for o in DELIVERY_OUTCOMES]
    dashboard = cw.Dashboard(stack, "Dashboard", dashboard_name=f"{prefix}-worker")
    dashboard.add_widgets(
        cw.AlarmStatusWidget(title="Alarms", alarms=alarms, width=24, height=3),
    )
    dashboard.add_widgets(
        cw.GraphWidget(title="Events by outcome", left=by_outcome, stacked=True, width=8),
        cw.GraphWidget(title="Posts by outcome", left=deliveries, stacked=True, width=8),
        cw.GraphWidget(
            title="Delivery success (%, 410 gone excluded)",
            left=[delivery_ratio(("ok",), "success %")],
            left_annotations=[cw.HorizontalAnnotation(value=DELIVERY_SUCCESS_MIN_PERCENT, label="alarm")],
            width=4,
        ),
        cw.GraphWidget(
            title="Throttled posts (%)",
            left=[delivery_ratio(("throttled",), "throttled %")],
            left_annotations=[cw.HorizontalAnnotation(value=THROTTLED_MAX_PERCENT, label="alarm")],
            width=4,
        ),
    )
    dashboard.add_widgets(
        cw.GraphWidget(
            title="Delivery latency (ms, sentAt to acknowledged)",
            left=[m("DeliveryLatency", s, label=s) for s in ("p50", "p95", "p99")],
            width=8,
        ),
        cw.GraphWidget(
            title="Queue lag (ms, sent to received)",
            left=[m("QueueLag", s, label=s) for s in ("p50", "p95", "Maximum")],
            width=8,
        ),
        cw.GraphWidget(
            title="Queue",
            left=[
                queues.queue.metric_approximate_number_of_messages_visible(label="visible"),
                queues.queue.metric_approximate_number_of_messages_not_visible(label="in flight"),
                queues.dlq.metric_approximate_number_of_messages_visible(label="dead letters"),
            ],
            right=[queues.queue.metric_approximate_age_of_oldest_message(label="oldest (s)")],
            width=8,
        ),
    )
    dashboard.add_widgets(
        cw.GraphWidget(
            title="Retries, remainders, dead letters, pruned",
            left=[
                m("Retries", "Sum", label="retries"),
                m("Remainders", "Sum", label="remainders"),
                m("DeadLettered", "Sum", label="dead-lettered"),
                m("ConnectionsPruned", "Sum", label="pruned"),
            ],
            width=8,
        ),
        cw.GraphWidget(
            title="Workers",
            left=[
                running_tasks(cluster, service).with_(label="running tasks"),
                desired_tasks(cluster, service).with_(label="desired tasks"),
            ],
            right=[
                m("Ready", "Minimum", label="ready (min)"),
                m("ProcessRestarts", "Sum", label="process restarts"),
            ],
            width=8,
        ),
        cw.GraphWidget(
            title="Task CPU and memory (%)",
            left=[
                service.metric_cpu_utilization(label="CPU"),
                service.metric_memory_utilization(label="memory"),
            ],
            width=8,
        ),
    )
    return dashboard
