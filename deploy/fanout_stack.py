"""The fanout stack: the whole real-time layer, or the worker alone for an existing API.

- queues and roles: events queue + DLQ, SNS topic, the publisher policy, the worker's task role;
- the WebSocket API with every lifecycle route, its stage and the lifecycle Lambda (unless ``apiId``
  names an existing API: then the stack deploys the worker alone, as before);
- the Fargate worker service with backlog autoscaling;
- monitoring: the alarms from ``thresholds.py`` and the dashboard, with its socket-health row.

Every input is a CDK context value (``-c key=value`` or ``cdk.json``), listed in
``fanout_cdk.parameters.PARAMETERS``. The parts live in ``fanout_cdk``, one module per concern.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct
from fanout_cdk import alarms, dashboard, lifecycle, queues, service, websocket_api
from fanout_cdk.parameters import Params
from thresholds import OLDEST_MESSAGE


class FanoutStack(Stack):
    """The real-time layer of fanout (see the module docstring)."""

    def __init__(
        self, scope: Construct, construct_id: str, *, deploying: bool = False, **kwargs: Any
    ) -> None:
        """``deploying``: a production synth, which refuses placeholder secret ARNs instead of warning."""
        super().__init__(scope, construct_id, **kwargs)
        p = Params.from_context(self)
        p.check()
        p.check_placeholders(self, deploying)
        prefix = p.req("namePrefix")

        q = queues.build_queues(self, prefix, p.req("publisherPolicyName"))
        self.dlq, self.queue, self.topic = q.dlq, q.queue, q.topic
        self.publisher_policy = q.publisher_policy
        network = service.build_network(self, p)

        self.lifecycle: lifecycle.Lifecycle | None = None
        self.websocket: websocket_api.WebSocket | None = None
        management_endpoint = None
        if p.creates_api:
            self.lifecycle = lifecycle.build_lifecycle(self, p, prefix, network, q)
            self.websocket = websocket_api.build_api(self, p, prefix, self.lifecycle.function)
            api_id, stage = self.websocket.api.api_id, self.websocket.stage.stage_name
            # Records name the domain clients used; the execute-api endpoint reaches every connection.
            management_endpoint = self.websocket.stage.callback_url
        else:
            api_id, stage = p.req("apiId"), p.req("stage")

        self.task_role = queues.build_task_role(self, q, api_id, stage)
        worker = service.build_worker(
            self, p, prefix, q, network, self.task_role, management_endpoint, api_id
        )
        self.log_group, self.container, self.service = worker.log_group, worker.container, worker.service
        service.add_autoscaling(p, q, network.cluster, self.service, int(OLDEST_MESSAGE.threshold))

        self.alarm_topic = alarms.alarm_topic(self, prefix, p.get("alarmTopicArn"))
        self.alarms = alarms.build_alarms(
            self, prefix, self.alarm_topic, q, network.cluster, self.service, lifecycle=p.creates_api
        )
        dashboard.build_dashboard(
            self,
            prefix,
            self.alarms,
            q,
            network.cluster,
            self.service,
            dashboard.Socket(api_id, stage, lifecycle=p.creates_api),
        )
        self._outputs()

    def _outputs(self) -> None:
        outputs = [
            ("QueueUrl", self.queue.queue_url, "events queue URL (FANOUT_QUEUE_URL for publishers)"),
            ("QueueArn", self.queue.queue_arn, "events queue ARN"),
            ("DeadLetterQueueUrl", self.dlq.queue_url, "dead-letter queue URL"),
            ("TopicArn", self.topic.topic_arn, "events topic ARN (FANOUT_TOPIC_ARN for publishers)"),
            ("PublisherPolicyArn", self.publisher_policy.managed_policy_arn, "attach to publishing roles"),
            ("AlarmTopicArn", self.alarm_topic.topic_arn, "alarm notifications"),
            ("ServiceName", self.service.service_name, "ECS service"),
        ]
        if self.websocket is not None and self.lifecycle is not None:
            outputs += [
                ("WebSocketApiId", self.websocket.api.api_id, "the WebSocket API's id"),
                ("WebSocketUrl", self.websocket.stage.url, "clients connect here (wss://...)"),
                ("ManagementEndpoint", self.websocket.stage.callback_url, "the @connections endpoint"),
                ("LifecycleFunctionName", self.lifecycle.function.function_name, "the lifecycle Lambda"),
                ("InboundQueueUrl", self.lifecycle.inbound.queue_url, "client actions for the domain"),
            ]
            if self.websocket.domain is not None:
                domain = self.websocket.domain
                outputs += [
                    ("WebSocketDomainUrl", f"wss://{domain.name}", "clients connect here with the domain"),
                    ("WebSocketDomainTarget", domain.regional_domain_name, "CNAME or alias target for DNS"),
                ]
        for name, value, what in outputs:
            CfnOutput(self, name, value=value, description=what, export_name=f"{self.stack_name}-{name}")
