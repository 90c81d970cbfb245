"""The CloudWatch alarms, each notifying the alarm topic on alarm and on recovery."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_sns as sns

from fanout_cdk.metrics import delivery_ratio, desired_tasks, fanout_metric, running_tasks
from fanout_cdk.queues import Queues

# Alarm thresholds.
DELIVERY_SUCCESS_MIN_PERCENT = 99.0
DELIVERY_LATENCY_P95_MAX_MS = 1000
OLDEST_MESSAGE_MAX_S = 60
THROTTLED_MAX_PERCENT = 1.0


@dataclass(frozen=True)
class _Spec:
    name: str
    description: str
    metric: cw.IMetric
    threshold: float
    operator: cw.ComparisonOperator
    periods: int
    missing: cw.TreatMissingData = cw.TreatMissingData.NOT_BREACHING


def alarm_topic(stack: Stack, prefix: str, arn: str | None) -> sns.ITopic:
    """The given topic for alarm notifications, or a new one."""
    if arn:
        return sns.Topic.from_topic_arn(stack, "AlarmTopic", arn)
    return sns.Topic(stack, "AlarmTopic", topic_name=f"{prefix}-alarms", enforce_ssl=True)


def build_alarms(
    stack: Stack,
    prefix: str,
    topic: sns.ITopic,
    queues: Queues,
    cluster: ecs.ICluster,
    service: ecs.FargateService,
) -> list[cw.Alarm]:
    """Every alarm, named ``{prefix}-{name}``."""
    less, greater = cw.ComparisonOperator.LESS_THAN_THRESHOLD, cw.ComparisonOperator.GREATER_THAN_THRESHOLD
    specs = [
        _Spec(
            "DeliverySuccessLow",
            f"Under {DELIVERY_SUCCESS_MIN_PERCENT}% of WebSocket posts succeeded for 5 minutes (410 gone "
            "excluded)",
            delivery_ratio(("ok",), "Delivery success %"),
            DELIVERY_SUCCESS_MIN_PERCENT,
            less,
            5,
        ),
        _Spec(
            "DeliveryLatencyHigh",
            f"p95 of sentAt to post acknowledged over {DELIVERY_LATENCY_P95_MAX_MS} ms for 5 minutes",
            fanout_metric("DeliveryLatency", "p95"),
            DELIVERY_LATENCY_P95_MAX_MS,
            greater,
            5,
        ),
        _Spec(
            "DeadLetters",
            "Messages are waiting in the dead-letter queue: inspect with `fanout dlq inspect`",
            queues.dlq.metric_approximate_number_of_messages_visible(
                statistic="Maximum", period=Duration.minutes(1)
            ),
            0,
            greater,
            1,
        ),
        _Spec(
            "OldestMessageOld",
            f"The oldest event has waited over {OLDEST_MESSAGE_MAX_S} s in the queue for 3 minutes",
            queues.queue.metric_approximate_age_of_oldest_message(
                statistic="Maximum", period=Duration.minutes(1)
            ),
            OLDEST_MESSAGE_MAX_S,
            greater,
            3,
        ),
        _Spec(
            "DeliveriesThrottled",
            f"Over {THROTTLED_MAX_PERCENT}% of posts were throttled (429) for 5 minutes: the API's "
            "account rate limit is near",
            delivery_ratio(("throttled",), "Throttled %"),
            THROTTLED_MAX_PERCENT,
            greater,
            5,
        ),
        _Spec(
            "WorkerNotReady",
            "A worker task has reported not ready (SQS or MongoDB not answering), or no task reports",
            fanout_metric("Ready", "Minimum"),
            1,
            less,
            3,
            cw.TreatMissingData.BREACHING,
        ),
        _Spec(
            "RunningTasksBelowDesired",
            "Fewer worker tasks run than desired for 5 minutes (needs Container Insights on the cluster)",
            cw.MathExpression(
                expression="desired - running",
                using_metrics={
                    "desired": desired_tasks(cluster, service),
                    "running": running_tasks(cluster, service),
                },
                label="Missing tasks",
                period=Duration.minutes(1),
            ),
            0,
            greater,
            5,
        ),
    ]
    action = cw_actions.SnsAction(topic)
    alarms = []
    for spec in specs:
        alarm = spec.metric.create_alarm(
            stack,
            spec.name,
            alarm_name=f"{prefix}-{spec.name}",
            alarm_description=spec.description,
            threshold=spec.threshold,
            comparison_operator=spec.operator,
            evaluation_periods=spec.periods,
            datapoints_to_alarm=spec.periods,
            treat_missing_data=spec.missing,
        )
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        alarms.append(alarm)
    return alarms
