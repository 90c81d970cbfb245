"""The CloudWatch alarms, built from ``thresholds.ALARMS`` (the values the Prometheus rules use too); each
notifies the alarm topic on alarm and on recovery.
"""

from __future__ import annotations

from collections.abc import Callable

import thresholds as t
from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_sns as sns

from fanout_cdk.metrics import delivery_ratio, desired_tasks, fanout_metric, reconnect_share, running_tasks
from fanout_cdk.queues import Queues


def alarm_topic(stack: Stack, prefix: str, arn: str | None) -> sns.ITopic:
    """The given topic for alarm notifications, or a new one."""
    if arn:
        return sns.Topic.from_topic_arn(stack, "AlarmTopic", arn)
    return sns.Topic(stack, "AlarmTopic", topic_name=f"{prefix}-alarms", enforce_ssl=True)


def _metrics(
    queues: Queues, cluster: ecs.ICluster, service: ecs.FargateService
) -> dict[str, Callable[[t.Alarm], tuple[cw.IMetric, float]]]:
    """CloudWatch alarm name -> (the metric it reads, the threshold's unit in the metric's)."""
    ms, minute = 1000.0, Duration.minutes(1)
    return {
        "DeliverySuccessLow": lambda a: (
            delivery_ratio(("ok",), "Delivery success %", min_per_min=a.min_per_min, otherwise=100),
            1,
        ),
        "DeliveryLatencyHigh": lambda a: (fanout_metric("DeliveryLatency", "p95"), ms),
        "QueueLagHigh": lambda a: (fanout_metric("QueueLag", "p95"), ms),
        "OldestMessageOld": lambda a: (
            queues.queue.metric_approximate_age_of_oldest_message(statistic="Maximum", period=minute),
            1,
        ),
        "DeadLetters": lambda a: (
            queues.dlq.metric_approximate_number_of_messages_visible(statistic="Maximum", period=minute),
            1,
        ),
        "GoneRateSpike": lambda a: (
            delivery_ratio(("gone",), "Gone %", excluded=t.NOT_POSTED, min_per_min=a.min_per_min),
            1,
        ),
        "DeliveriesThrottled": lambda a: (
            delivery_ratio(("throttled",), "Throttled %", min_per_min=a.min_per_min),
            1,
        ),
        "WorkerNotReady": lambda a: (fanout_metric("Ready", "Minimum"), 1),
        "ProcessRestarts": lambda a: (
            fanout_metric("ProcessRestarts", "Sum", period_s=a.window_min * 60),
            1,
        ),
        "RunningTasksBelowDesired": lambda a: (
            cw.MathExpression(
                expression="desired - running",
                using_metrics={
                    "desired": desired_tasks(cluster, service),
                    "running": running_tasks(cluster, service),
                },
                label="Missing tasks",
                period=minute,
            ),
            1,
        ),
        "RouteErrorsHigh": lambda a: (fanout_metric("RouteErrors", "Sum"), 1),
        "ReconnectStorm": lambda a: (reconnect_share("Reconnects %", min_per_min=a.min_per_min), 1),
    }


def build_alarms(
    stack: Stack,
    prefix: str,
    topic: sns.ITopic,
    queues: Queues,
    cluster: ecs.ICluster,
    service: ecs.FargateService,
    *,
    lifecycle: bool,
) -> list[cw.Alarm]:
    """Every alarm of ``thresholds.ALARMS`` that CloudWatch can see, named ``{prefix}-{name}``; the socket
    side's only when ``lifecycle`` (this stack deploys the lifecycle Lambda that emits their metrics)."""
    metrics = _metrics(queues, cluster, service)
    action = cw_actions.SnsAction(topic)
    alarms = []
    for spec in t.ALARMS:
        if spec.cloudwatch is None or (spec in t.LIFECYCLE_ALARMS and not lifecycle):
            continue
        metric, factor = metrics[spec.cloudwatch](spec)
        periods = 1 if spec.count else spec.window_min  # a count spans its window in one period
        alarm = metric.create_alarm(
            stack,
            spec.cloudwatch,
            alarm_name=f"{prefix}-{spec.cloudwatch}",
            alarm_description=spec.describe(),
            threshold=spec.threshold * factor,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD
            if spec.above
            else cw.ComparisonOperator.LESS_THAN_THRESHOLD,
            evaluation_periods=periods,
            datapoints_to_alarm=periods,
            # No report from any worker is as bad as a report of not ready; elsewhere silence is no traffic.
            treat_missing_data=cw.TreatMissingData.BREACHING
            if spec is t.WORKER_NOT_READY
            else cw.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        alarms.append(alarm)
    return alarms
