"""The fanout stack: events queue + DLQ, SNS topic, the Fargate worker service, least-privilege roles,
backlog autoscaling, a dashboard, alarms, and the managed policy that domain services attach to publish.

Every input is a CDK context value (``-c key=value`` or ``cdk.json``), listed in
``fanout_cdk.parameters.PARAMETERS``. The parts live in ``fanout_cdk``, one module per concern.
"""

from __future__ import annotations

import re
from typing import Any

from aws_cdk import CfnOutput, Stack, Token
from constructs import Construct
from fanout_cdk import alarms, dashboard, queues, service
from fanout_cdk.parameters import Params


class FanoutStack(Stack):
    """The worker side of fanout (see the module docstring)."""

    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        p = Params.from_context(self)
        p.warn_dummies(self)
        prefix = p.req("namePrefix")
        api_id, stage = p.req("apiId"), p.req("stage")
        if not re.fullmatch(r"[a-z0-9]{10}", api_id) and not Token.is_unresolved(api_id):
            raise ValueError(f"apiId {api_id!r} is not an API Gateway id (10 lowercase letters or digits)")

        q = queues.build_queues(self, prefix, p.req("publisherPolicyName"))
        self.dlq, self.queue, self.topic = q.dlq, q.queue, q.topic
        self.publisher_policy = q.publisher_policy
        network = service.build_network(self, p)
        self.task_role = queues.build_task_role(self, q, api_id, stage)
        worker = service.build_worker(self, p, prefix, q, network, self.task_role)
        self.log_group, self.container, self.service = worker.log_group, worker.container, worker.service
        service.add_autoscaling(p, q, network.cluster, self.service, alarms.OLDEST_MESSAGE_MAX_S)

        self.alarm_topic = alarms.alarm_topic(self, prefix, p.get("alarmTopicArn"))
        self.alarms = alarms.build_alarms(self, prefix, self.alarm_topic, q, network.cluster, self.service)
        dashboard.build_dashboard(self, prefix, self.alarms, q, network.cluster, self.service)

        for name, value, what in [
            ("QueueUrl", self.queue.queue_url, "events queue URL (FANOUT_QUEUE_URL for publishers)"),
            ("QueueArn", self.queue.queue_arn, "events queue ARN"),
            ("DeadLetterQueueUrl", self.dlq.queue_url, "dead-letter queue URL"),
            ("TopicArn", self.topic.topic_arn, "events topic ARN (FANOUT_TOPIC_ARN for publishers)"),
            ("PublisherPolicyArn", self.publisher_policy.managed_policy_arn, "attach to publishing roles"),
            ("AlarmTopicArn", self.alarm_topic.topic_arn, "alarm notifications"),
            ("ServiceName", self.service.service_name, "ECS service"),
        ]:
            CfnOutput(self, name, value=value, description=what, export_name=f"{self.stack_name}-{name}")
