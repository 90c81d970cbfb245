"""Queues and roles: the events queue and its DLQ, the topic that feeds it, the managed policy that
publishers attach, and the worker's task role (least privilege: these queues and the API's @connections).
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from aws_cdk import aws_sqs as sqs

VISIBILITY_TIMEOUT_S = 30  # FANOUT_VISIBILITY_TIMEOUT_S and the queue's own visibility timeout
MAX_RECEIVE_COUNT = 5  # receives before SQS moves a message to the DLQ by itself
QUEUE_RETENTION = Duration.days(4)
DLQ_RETENTION = Duration.days(14)
RECEIVE_WAIT_S = 20  # long polling, SQS's maximum
#: What the publishers, the relay and the worker take in one message (fanout.attributes.MAX_MESSAGE_BYTES),
#: set on both queues rather than left to the default, which was 256 KiB until SQS allowed 1 MiB.
MAX_MESSAGE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Queues:
    dlq: sqs.Queue
    queue: sqs.Queue
    topic: sns.Topic
    publisher_policy: iam.ManagedPolicy


def build_queues(stack: Stack, prefix: str, publisher_policy_name: str) -> Queues:
    """The events queue with its DLQ, the topic delivering raw to it, and the publisher policy."""
    dlq = sqs.Queue(
        stack,
        "DeadLetterQueue",
        queue_name=f"{prefix}-events-dlq",
        retention_period=DLQ_RETENTION,
        max_message_size_bytes=MAX_MESSAGE_BYTES,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
    )
    queue = sqs.Queue(
        stack,
        "EventsQueue",
        queue_name=f"{prefix}-events",
        visibility_timeout=Duration.seconds(VISIBILITY_TIMEOUT_S),
        max_message_size_bytes=MAX_MESSAGE_BYTES,
        retention_period=QUEUE_RETENTION,
        receive_message_wait_time=Duration.seconds(RECEIVE_WAIT_S),
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=MAX_RECEIVE_COUNT, queue=dlq),
    )
    topic = sns.Topic(
        stack,
        "EventsTopic",
        topic_name=f"{prefix}-events",
        master_key=kms.Alias.from_alias_name(stack, "SnsAwsManagedKey", "alias/aws/sns"),
        enforce_ssl=True,
    )
    topic.add_subscription(subs.SqsSubscription(queue, raw_message_delivery=True))
    publisher_policy = iam.ManagedPolicy(
        stack,
        "FanoutPublisherPolicy",
        managed_policy_name=publisher_policy_name,
        description="Publish fanout events: SendMessage to the events queue, Publish to the events topic",
        statements=[
            # GetQueueUrl: fanout.publish.Publisher looks the URL up when given only the queue name.
            iam.PolicyStatement(
                sid="SendEvents",
                actions=["sqs:SendMessage", "sqs:GetQueueUrl"],
                resources=[queue.queue_arn],
            ),
            iam.PolicyStatement(sid="PublishEvents", actions=["sns:Publish"], resources=[topic.topic_arn]),
        ],
    )
    return Queues(dlq, queue, topic, publisher_policy)


def build_task_role(stack: Stack, queues: Queues, api_id: str, stage: str) -> iam.Role:
    """The worker's role: consume the queue, send remainders and dead letters, post to @connections."""
    role = iam.Role(
        stack,
        "TaskRole",
        assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
        description="fanout worker: consume the events queue, post to the WebSocket API's connections",
    )
    # POST only: the worker posts to connections; it never reads (GET) or closes (DELETE) one.
    post_to_connections = stack.format_arn(
        service="execute-api",
        resource=api_id,
        resource_name=f"{stage}/POST/@connections/*",
        arn_format=ArnFormat.SLASH_RESOURCE_NAME,
    )
    role.add_to_policy(
        iam.PolicyStatement(
            sid="PostToConnections",
            actions=["execute-api:ManageConnections"],
            resources=[post_to_connections],
        )
    )
    role.add_to_policy(
        iam.PolicyStatement(
            sid="ConsumeEvents",
            actions=[
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes",
                "sqs:GetQueueUrl",
            ],
            resources=[queues.queue.queue_arn],
        )
    )
    role.add_to_policy(
        iam.PolicyStatement(
            sid="SendRemaindersAndDeadLetters",
            actions=["sqs:SendMessage"],
            resources=[queues.queue.queue_arn, queues.dlq.queue_arn],
        )
    )
    return role
