"""The CloudWatch dashboard: alarm states, then events and posts, latency and the queue, then workers."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_ecs as ecs
from metrics_contract import DELIVERY_OUTCOMES, METRICS
from thresholds import DELIVERY_SUCCESS, RECONNECT_STORM, ROUTE_ERRORS, THROTTLED

from fanout_cdk.metrics import (
    API_GATEWAY_METRICS,
    api_gateway_metric,
    delivery_ratio,
    desired_tasks,
    fanout_metric,
    reconnect_share,
    running_tasks,
    unauthorized_share,
)
from fanout_cdk.queues import Queues
from fanout_cdk.websocket_api import ROUTES


@dataclass(frozen=True)
class Socket:
    """The WebSocket API the dashboard shows, and whether this stack runs its lifecycle Lambda."""

    api_id: str
    stage: str
    lifecycle: bool


def build_dashboard(
    stack: Stack,
    prefix: str,
    alarms: list[cw.Alarm],
    queues: Queues,
    cluster: ecs.ICluster,
    service: ecs.FargateService,
    socket: Socket,
) -> cw.Dashboard:
    """The ``{prefix}-worker`` dashboard: alarms, events and posts, latency and queue, workers, sockets."""
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
            left_annotations=[cw.HorizontalAnnotation(value=DELIVERY_SUCCESS.threshold, label="alarm")],
            width=4,
        ),
        cw.GraphWidget(
            title="Throttled posts (%)",
            left=[delivery_ratio(("throttled",), "throttled %")],
            left_annotations=[cw.HorizontalAnnotation(value=THROTTLED.threshold, label="alarm")],
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
    _socket_health(dashboard, socket)
    return dashboard


def _socket_health(dashboard: cw.Dashboard, socket: Socket) -> None:
    """The socket-health rows: the lifecycle's own metrics (when it is ours), then the gauge and the API's."""
    m = fanout_metric
    dashboard.add_widgets(cw.TextWidget(markdown="## Socket health", width=24, height=1))
    width = 8 if socket.lifecycle else 12
    last_row: list[cw.IWidget] = []
    if socket.lifecycle:
        dashboard.add_widgets(
            cw.GraphWidget(
                title="Connects, disconnects, reconnects (per minute)",
                left=[
                    m("Connects", "Sum", label="connects"),
                    m("Disconnects", "Sum", label="disconnects"),
                    m("Reconnects", "Sum", label="reconnects"),
                ],
                right=[
                    m("ConnectsUnauthorized", "Sum", label="401s"),
                    m("ConnectsRefused", "Sum", label="429s (too many connections)"),
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="Reconnect rate (% of connects)",
                left=[reconnect_share("reconnects %")],
                left_annotations=[cw.HorizontalAnnotation(value=RECONNECT_STORM.threshold, label="alarm")],
                width=8,
            ),
            cw.GraphWidget(
                title="401 rate (% of connect attempts)", left=[unauthorized_share("401 %")], width=8
            ),
        )
        last_row.append(
            cw.GraphWidget(
                title="Route errors (per minute)",
                left=[
                    m("RouteErrors", "Sum", label="all routes"),
                    *(m("RouteErrors", "Sum", {"Route": route}, label=route) for route in ROUTES),
                ],
                left_annotations=[cw.HorizontalAnnotation(value=ROUTE_ERRORS.threshold, label="alarm")],
                width=width,
            )
        )
    last_row.append(
        cw.GraphWidget(
            title="Active connections",
            left=[m("ActiveConnections", "Maximum", label="active")],
            right=[m("ConnectionsExpired", "Sum", label="expired by TTL (est.)")],
            width=width,
        )
    )
    last_row.append(
        cw.GraphWidget(
            title="API Gateway (per minute)",
            left=[api_gateway_metric(n, socket.api_id, socket.stage) for n in API_GATEWAY_METRICS[:2]],
            right=[api_gateway_metric(n, socket.api_id, socket.stage) for n in API_GATEWAY_METRICS[2:]],
            width=width,
        )
    )
    dashboard.add_widgets(*last_row)
